"""Answer labels, the one place that reads them: strict parsing of a written answer, a ranking of labels,
the log-probability of each label in a backend's top-token list, and their normalisation over the offered
labels. Used by every protocol, the HTTP and vLLM backends and the simulated annotators alike.

Parsing is strict: an unparseable answer is re-asked once and then counted, never guessed. "A" is read the
same whether the model writes `A`, `A.`, `(A)`, `**A**` or `Answer: A`; word labels ("Yes", "Equal") are
matched without regard to case. An answer that also explains itself on the same line ("A because ...") or
names two labels is not accepted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_WRAP = " \t*\"'`"
_CHOICE = re.compile(
    r"(?:(?i:the\s+)?(?i:best\s+)?(?i:answer|option|concept|choice|verdict)(?i:\s+is)?\s*[:\-]?\s*)?"
    r"[(\[]?(?P<label>[A-Za-z]+)[)\]]?[.!:]?"
)
_SEPARATORS = re.compile(r"\s*(?:>|,|;|\s)\s*")


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        line = line.strip(_WRAP)
        if line:
            return line
    return ""


def _offered(word: str, labels: Sequence[str]) -> str | None:
    folded = {label.casefold(): label for label in labels}
    return folded.get(word.casefold())


def parse_choice(text: str, labels: Sequence[str]) -> str | None:
    """The offered label the answer names, or None."""
    line = _first_line(text)
    match = _CHOICE.fullmatch(line)
    return _offered(match.group("label"), labels) if match else None


def parse_ranking(text: str, labels: Sequence[str]) -> tuple[str, ...] | None:
    """The offered labels best first (every label exactly once), or None."""
    line = _first_line(text)
    line = re.sub(r"^(?i:answer|ranking)\s*:\s*", "", line).strip(_WRAP + ".")
    parts = [p for p in _SEPARATORS.split(line) if p]
    if len(parts) == 1 and len(parts[0]) == len(labels):
        parts = list(parts[0])  # "BAC"
    parts = [p.strip("().").upper() for p in parts]
    if sorted(parts) != sorted(labels) or len(set(parts)) != len(parts):
        return None
    return tuple(parts)


def label_logprobs(top: Sequence[tuple[str, float]], labels: Sequence[str]) -> dict[str, float | None]:
    """Each label's log-probability from a first-token top list: the entry equal to the label, else the best
    entry equal to it after stripping whitespace; None when the label is not in the list."""
    out: dict[str, float | None] = {}
    for label in labels:
        exact = [lp for tok, lp in top if tok == label]
        loose = [lp for tok, lp in top if tok.strip() == label]
        out[label] = exact[0] if exact else (max(loose) if loose else None)
    return out


def normalise_choice(logprobs: dict[str, float | None] | None, labels: Sequence[str]) -> dict[str, float] | None:
    """Probabilities of the offered labels, renormalised over just those labels (a softmax of their
    log-probabilities); None when the backend gave no log-probability for one of them."""
    if not logprobs or any(logprobs.get(label) is None for label in labels):
        return None
    values = np.array([logprobs[label] for label in labels], dtype=np.float64)
    if np.any(np.isnan(values)) or np.any(values == np.inf) or np.all(values == -np.inf):
        return None
    values = np.exp(values - values.max())
    values /= values.sum()
    return dict(zip(labels, values.tolist()))
