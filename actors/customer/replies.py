"""Turning a model answer into WhatsApp messages: formatting, splitting, pacing.

Markdown becomes WhatsApp formatting (``**bold**`` → ``*bold*``, headings → bold lines, links
→ ``text (url)``), citation markers are stripped, and the text is split into natural parts:
paragraphs, with a line ending in ``:`` kept together with the bullet block that follows it,
and nothing longer than ``max_chars`` (long paragraphs split at sentence, then word bounds).
Each part gets a ``typing_time`` proportional to its length within bounds.
"""

from __future__ import annotations

import re

_CITATION = re.compile(r"【[^】]*】|\[\d+(?:†[^\]]*)?\]|\u3010[^\u3011]*\u3011")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__", re.S)
_STRIKE = re.compile(r"~~(.+?)~~", re.S)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def to_whatsapp(text: str) -> str:
    """Markdown as models write it → WhatsApp's own markup."""
    text = _CITATION.sub("", text)
    text = _LINK.sub(
        lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})", text
    )
    text = _HEADING.sub(lambda m: f"*{m.group(1).strip('*')}*", text)
    text = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = re.sub(r"^(\s*)[*]\s+", r"\1• ", text, flags=re.M)  # "* item" would read as bold
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_parts(text: str, max_chars: int) -> list[str]:
    """Split into messages: paragraphs, a heading kept with its bullet block, ≤ max_chars each."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    merged: list[str] = []
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        is_bullets = bool(lines) and all(_BULLET.match(line) for line in lines)
        if merged and is_bullets and merged[-1].rstrip().endswith(":"):
            merged[-1] = f"{merged[-1]}\n{paragraph}"
        else:
            merged.append(paragraph)
    parts: list[str] = []
    for paragraph in merged:
        parts.extend(_limit(paragraph, max_chars))
    return parts


def _limit(text: str, max_chars: int) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    out: list[str] = []
    current = ""
    for joiner, unit in _units(text, max_chars):
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) <= max_chars:
            current = candidate
        else:
            if current:
                out.append(current)
            current = unit
    if current:
        out.append(current)
    return out


def _units(text: str, max_chars: int) -> list[tuple[str, str]]:
    """(joiner, piece) pairs: lines, then sentences, then words — the largest that fit."""
    units: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if len(line) <= max_chars:
            units.append(("\n", line))
            continue
        joiner = "\n"
        for sentence in _SENTENCE_END.split(line):
            for piece in _words(sentence, max_chars):
                units.append((joiner, piece))
                joiner = " "
    return units


def _words(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def typing_time(text: str, *, minimum: float, maximum: float, chars_per_second: float) -> float:
    """Seconds of simulated typing before a part is sent."""
    return max(minimum, min(maximum, len(text) / chars_per_second))
