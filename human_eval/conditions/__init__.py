"""Study conditions: what an item of a study shows, registered by name like the concept methods.

A condition is one small class in its own module plus one `register(...)` line: its name, whether it
shows the evaluation sentence and the concept, the question at the top of the page (the same words reach a
simulated annotator's prompt), and whether its items depend on the method (the `sentence` control shows
no concept, so one item per sentence serves every method). `display` freezes what an item shows at
`study create` time; nothing in it names the method or the model's prediction.
"""

from __future__ import annotations

from clvq_judge.core.errors import UserError

from .base import Condition, concept_examples

CONDITIONS: dict[str, type[Condition]] = {}


def register(cls: type[Condition]) -> type[Condition]:
    if cls.name in CONDITIONS:
        raise ValueError(f"study condition {cls.name!r} registered twice")
    CONDITIONS[cls.name] = cls
    return cls


def get_condition(name: str) -> Condition:
    try:
        return CONDITIONS[name]()
    except KeyError:
        raise UserError(f"unknown --condition {name!r}: use one of {', '.join(CONDITIONS)}") from None


def condition_names() -> tuple[str, ...]:
    return tuple(CONDITIONS)


def cells(conditions: list[str], methods: list[str]) -> list[tuple[str, str | None]]:
    """The (condition, method) pairs a sentence is shown under; a condition without a concept has one, method None."""
    out: list[tuple[str, str | None]] = []
    for name in conditions:
        out += [(name, m) for m in methods] if get_condition(name).per_method else [(name, None)]
    return out


# One line per condition; a new one is a new module and a line here.
from .both import SentenceAndConcept  # noqa: E402
from .concept import ConceptOnly  # noqa: E402
from .sentence import SentenceOnly  # noqa: E402

register(ConceptOnly)
register(SentenceOnly)
register(SentenceAndConcept)

__all__ = ["CONDITIONS", "Condition", "cells", "concept_examples", "condition_names", "get_condition", "register"]
