"""Did the voice say what we wrote? The faithfulness check of a synthesized reply.

A Realtime voice model is a speaker, not a reader: asked to read a text word for word, it may
still reword it. Its transcript of what it said is compared with the text: after
normalisation (case, accents, punctuation, WhatsApp formatting), their word-level edit
distance relative to the longer of the two must stay within a small tolerance, and some words
must survive exactly, whatever the tolerance: every number (digits, thousands separators
ignored), every price (a number with its currency) and every name (a capitalised word that
does not start a sentence). A transcript that spells a number out ("tres" for "3") fails the
check: the reply then goes as text, which is the safe side.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import attrs

#: A number as written: digits, maybe with thousands or decimal separators.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
#: A price: a currency sign before a number, or a currency word after it.
_PRICE = re.compile(
    r"(?:[$€£]\s?\d+(?:[.,]\d+)*)"
    r"|(?:\d+(?:[.,]\d+)*\s?(?:cop|usd|eur|pesos|d[oó]lares|euros)\b)",
    re.IGNORECASE,
)
#: Where a sentence starts: the text's start, after . ! ? … or a line break (opening marks
#: such as ¿ ¡ " ( may follow).
_SENTENCE_START = re.compile(r"(?:^|[.!?…\n]+)\s*[¿¡\"'(«]*", re.MULTILINE)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


@attrs.frozen
class Verdict:
    """The outcome of the check: faithful or not, the distance, and what did not survive."""

    faithful: bool
    distance: float
    missing: tuple[str, ...] = ()

    def describe(self) -> str:
        lost = f"; not said as written: {', '.join(self.missing)}" if self.missing else ""
        return f"word distance {self.distance:.2f}{lost}"


def fold(text: str) -> str:
    """Lower case without accents (``Sábado`` and ``sabado`` compare equal)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The normalised words of ``text``: folded, punctuation and formatting dropped."""
    return [word.replace("’", "'") for word in _WORD.findall(fold(text))]


def numbers(text: str) -> Counter[str]:
    """The numbers written in ``text``, separators removed (``750.000`` → ``750000``)."""
    return Counter(re.sub(r"[.,]", "", match) for match in _NUMBER.findall(text))


def prices(text: str) -> Counter[str]:
    """The prices written in ``text``, folded and without spaces or separators."""
    return Counter(re.sub(r"[\s.,]", "", fold(match)) for match in _PRICE.findall(text))


def names(text: str) -> list[str]:
    """Capitalised words that do not start a sentence (names, places, brands), folded."""
    starts = {match.end() for match in _SENTENCE_START.finditer(text)}
    found: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group()
        if match.start() in starts or not word[0].isupper():
            continue
        found.append(fold(word))
    return found


def word_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Levenshtein distance of two word lists over the longer one's length (0 to 1)."""
    if not a and not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return previous[-1] / max(len(a), len(b))


def check(text: str, transcript: str, *, max_distance: float) -> Verdict:
    """Whether ``transcript`` says ``text``: within ``max_distance``, exact where it matters."""
    distance = word_distance(words(text), words(transcript))
    missing: list[str] = []
    said_numbers = numbers(transcript)
    for number, count in numbers(text).items():
        if said_numbers[number] < count:
            missing.append(number)
    said_prices = prices(transcript)
    for price, count in prices(text).items():
        if said_prices[price] < count:
            missing.append(price)
    said = Counter(words(transcript))
    for name, count in Counter(names(text)).items():
        if said[name] < count:
            missing.append(name)
    return Verdict(distance <= max_distance and not missing, distance, tuple(missing))
