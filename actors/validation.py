"""Pluggable answer validation: check the final text against what the tools returned.

A business sets ``WABOT_VALIDATOR_MODULE`` to a module defining
``validate(answer: str, tool_outputs: Sequence[ToolOutput]) -> str | None``: ``None`` when the
answer is fine, otherwise an instruction for the model (e.g. "the price for Apto 1 is 250.000,
not 200.000"). The user actor asks the model for one correction at most, and at most once per
user per ``WABOT_VALIDATOR_COOLDOWN_SECONDS`` (the original bot's rule), so a validator can
never loop a conversation.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import attrs


@attrs.frozen
class ToolOutput:
    name: str
    arguments: str
    output: str
    ok: bool


Validator = Callable[[str, Sequence[ToolOutput]], "str | None"]


def load_validator(module_path: str | None) -> Validator | None:
    if not module_path:
        return None
    module = importlib.import_module(module_path)
    validate = getattr(module, "validate", None)
    if not callable(validate):
        raise ValueError(f"WABOT_VALIDATOR_MODULE {module_path}: no validate(answer, outputs)")
    return validate
