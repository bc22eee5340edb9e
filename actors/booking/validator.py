"""The original bot's check of an answer against ``check_availability``'s outputs.

On with ``BEDS24_CHECK_ANSWERS=true``. ``check_answer(answer, tool_outputs)`` looks only at the
successful ``check_availability`` outputs of the turn (none: the answer is not checked, so a
price after another tool is never questioned) and returns a ``Verdict``:

- **Apartment names** (``Apartamento``, ``Apartaestudio`` or ``Apto`` followed by a code
  such as ``1317-A``): a code the outputs do not have, when exactly one code of the outputs
  shares its number (``1317-``), is corrected in the text. A simple error: no re-ask.
- **Prices** (``$250,000``, ``$250.000``, ``$ 85.50``, optionally ``COP``): an amount that is
  no amount of the outputs (compared as numbers, whatever the separators) is a problem, and
  the model is asked once to answer again with the tool's exact figures (the re-ask and its
  cool-down are the turn's, ``actors.validation``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal

from actors.booking.tool import NAME as TOOL
from actors.validation import ToolOutput, Verdict

APARTMENT = re.compile(r"\b(Apartamento|Apartaestudio|Apto\.?)(\s+)(\d{3,4})-([A-Z])\b", re.I)
PRICE = re.compile(r"\$\s?(\d{1,3}(?:[.,]\d{3})+|\d+)(?:[.,](\d{1,2}))?(?!\d)(?:\s*COP\b)?", re.I)


def amount(match: re.Match[str]) -> Decimal:
    """The number a ``PRICE`` match writes, whatever its thousands separator."""
    whole = re.sub(r"[.,]", "", match.group(1))
    cents = match.group(2)
    return Decimal(whole) + (Decimal(cents.ljust(2, "0")) / 100 if cents else Decimal(0))


def codes(text: str) -> set[str]:
    """The apartment codes (``1317-A``) named in ``text``."""
    return {f"{m.group(3)}-{m.group(4).upper()}" for m in APARTMENT.finditer(text)}


def check_answer(answer: str, tool_outputs: Sequence[ToolOutput]) -> Verdict | None:
    """The answer's names corrected and its unknown prices listed (see the module)."""
    outputs = [o.output for o in tool_outputs if o.name == TOOL and o.ok]
    if not outputs:
        return None
    joined = "\n".join(outputs)
    known = codes(joined)
    amounts = {amount(m) for m in PRICE.finditer(joined)}

    def correct(match: re.Match[str]) -> str:
        code = f"{match.group(3)}-{match.group(4).upper()}"
        if code in known:
            return match.group(0)
        same = [k for k in known if k.startswith(f"{match.group(3)}-")]
        if len(same) != 1:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{same[0]}"

    text = APARTMENT.sub(correct, answer)
    problems = tuple(
        f"el precio {m.group(0).strip()} no aparece en el resultado de {TOOL}"
        for m in PRICE.finditer(text)
        if amount(m) not in amounts
    )
    instruction = None
    if problems:
        instruction = (
            "Revisión interna: tu respuesta no coincide con lo que devolvió "
            f"{TOOL} ({'; '.join(problems)}). Vuelve a responder al cliente usando "
            "exactamente los nombres de apartamentos, precios y fechas de esa herramienta, "
            "con naturalidad y sin mencionar esta revisión."
        )
    return Verdict(
        text=text if text != answer else None, instruction=instruction, problems=problems
    )
