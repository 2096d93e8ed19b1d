"""Strict parsing of a judge's answer: a single offered letter, or a full ranking of the offered letters.

Anything else is unparseable: the stage re-asks once and then counts it, never guesses. "A" is read the
same whether the model writes `A`, `A.`, `(A)`, `**A**` or `Answer: A`; an answer that also explains
itself on the same line ("A because ...") or names two letters is not accepted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WRAP = " \t*\"'`"
_CHOICE = re.compile(
    r"(?:(?i:the\s+)?(?i:best\s+)?(?i:answer|option|concept|choice)(?i:\s+is)?\s*[:\-]?\s*)?"
    r"[(\[]?(?P<label>[A-Z])[)\]]?[.!:]?"
)
_SEPARATORS = re.compile(r"\s*(?:>|,|;|\s)\s*")


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        line = line.strip(_WRAP)
        if line:
            return line
    return ""


def parse_choice(text: str, labels: Sequence[str]) -> str | None:
    """The offered label the answer names, or None."""
    line = _first_line(text)
    if len(line) == 1 and line.upper() in labels:
        return line.upper()
    match = _CHOICE.fullmatch(line)
    if match and match.group("label") in labels:
        return match.group("label")
    return None


def parse_ranking(text: str, labels: Sequence[str]) -> tuple[str, ...] | None:
    """The offered labels best first (every label exactly once), or None."""
    line = _first_line(text)
    line = re.sub(r"^(?i:answer|ranking)\s*:\s*", "", line).strip(_WRAP + ".")
    parts = [p for p in _SEPARATORS.split(line) if p]
    if len(parts) == 1 and len(parts[0]) == len(labels):
        parts = list(parts[0])  # "BAC"
    parts = [p.strip("().") for p in parts]
    if sorted(parts) != sorted(labels) or len(set(parts)) != len(parts):
        return None
    return tuple(parts)
