"""Pluggable answer validation: check the final text against what the tools returned.

A business sets ``WABOT_VALIDATOR_MODULE`` to a module defining
``validate(answer: str, tool_outputs: Sequence[ToolOutput]) -> str | Verdict | None``: ``None``
when the answer is fine; a string, an instruction for the model (e.g. "the price for Apto 1
is 250.000, not 200.000"); or a ``Verdict``, which may also correct the answer in place
(``text``) and list what is wrong (``problems``). The built-in validator of the booking tools
(``BEDS24_CHECK_ANSWERS=true``, ``actors.booking.validator``) runs first when it is on, and
the business's module then sees its corrected text.

Corrections in place always apply. The user actor asks the model for one correction at most,
and at most once per user per ``WABOT_VALIDATOR_COOLDOWN_SECONDS`` (the original bot's rule),
so a validator can never loop a conversation; the corrected answer is validated again, and
when it has more problems than the first one the first (corrected) answer is sent.
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


@attrs.frozen
class Verdict:
    """What a validator found: the answer corrected in place, and what to ask the model."""

    #: The answer with simple errors corrected (None: unchanged).
    text: str | None = None
    #: What the model is asked to correct (None: nothing to ask).
    instruction: str | None = None
    #: The discrepancies left, one line each (they count which of two answers is better).
    problems: tuple[str, ...] = ()


Validator = Callable[[str, Sequence[ToolOutput]], "str | Verdict | None"]


def as_verdict(result: str | Verdict | None) -> Verdict:
    """A validator's result as a ``Verdict`` (a plain string is an instruction)."""
    if isinstance(result, Verdict):
        return result
    if result:
        return Verdict(instruction=result, problems=(result,))
    return Verdict()


def chain(validators: Sequence[Validator]) -> Validator:
    """One validator running ``validators`` in order, each on the previous one's text."""

    def validate(answer: str, tool_outputs: Sequence[ToolOutput]) -> Verdict:
        text, instructions, problems = answer, [], []
        for validator in validators:
            verdict = as_verdict(validator(text, tool_outputs))
            text = verdict.text or text
            if verdict.instruction:
                instructions.append(verdict.instruction)
            problems.extend(verdict.problems)
        return Verdict(
            text=text if text != answer else None,
            instruction="\n\n".join(instructions) or None,
            problems=tuple(problems),
        )

    return validate


def load_validator(module_path: str | None, builtin: Validator | None = None) -> Validator | None:
    """The business's ``validate`` (``WABOT_VALIDATOR_MODULE``), after ``builtin`` if any."""
    validators: list[Validator] = [builtin] if builtin is not None else []
    if module_path:
        module = importlib.import_module(module_path)
        validate = getattr(module, "validate", None)
        if not callable(validate):
            raise ValueError(f"WABOT_VALIDATOR_MODULE {module_path}: no validate(answer, outputs)")
        validators.append(validate)
    if not validators:
        return None
    return validators[0] if len(validators) == 1 else chain(validators)
