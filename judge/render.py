"""Concept cards and evaluation units -> chat messages, through the Jinja templates in `prompts/`.

A template defines a `system` and a `user` block; each becomes one chat message. Every result records
the template's name and `sha` (a hash of its text and of the templates it includes), so a changed prompt
is never mistaken for the one that produced a stored answer.

Blinding is enforced here: a comparison's options carry only a neutral label (A, B, ...), a description
and the card's words or examples; the method's name never reaches a template.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import jinja2
import jinja2.meta

from clvq_judge.core.units import Unit
from clvq_judge.prompts import load_template

EXPLAINER = "explainer.v1.j2"
PAIRWISE = "pairwise.v2.j2"
LISTWISE = "listwise.v2.j2"
DETECTION = "detection.v1.j2"
REASK = "reask.v2.j2"
REDESCRIBE = "redescribe.v1.j2"
LABELS = "ABCDEFGHIJ"
TIE = "Equal"
"""The pairwise protocols' tie answer (its first token differs from every letter label's)."""
SHOW = ("description", "card", "both")

# What a prompt shows of a card: a small judge pays for every token, so cards are trimmed here. A judge sees
# as many words, with counts, as the explainer did, so a one-word card is not mistaken for a large one.
EXPLAINER_WORDS = 8
EXPLAINER_EXAMPLES = 1
START_EXAMPLES = 3
OPTION_WORDS = EXPLAINER_WORDS
OPTION_EXAMPLES = 2
CONTEXT_WORDS = 10
"""Words kept on each side of the marked token in an example sentence."""
MAX_SENTENCE_WORDS = 60


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: load_template(name)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


@dataclass(frozen=True)
class Prompt:
    name: str
    sha: str
    """First 12 hex digits of the sha256 of the template and every template it includes."""

    def messages(self, **context) -> tuple[tuple[str, str], ...]:
        template = _environment().get_template(self.name)
        ctx = template.new_context(context)
        out = []
        for role in ("system", "user"):
            if role in template.blocks:
                text = "".join(template.blocks[role](ctx)).strip()
                if text:
                    out.append((role, text))
        return tuple(out)


@cache
def prompt(name: str) -> Prompt:
    digest = hashlib.sha256()
    seen, todo = set(), [name]
    while todo:
        current = todo.pop(0)
        if current in seen:
            continue
        seen.add(current)
        text = load_template(current)
        digest.update(current.encode() + b"\0" + text.encode() + b"\0")
        todo.extend(sorted(set(jinja2.meta.find_referenced_templates(_environment().parse(text))) - {None}))
    return Prompt(name, digest.hexdigest()[:12])


def clip_marked(text: str, context: int = CONTEXT_WORDS) -> str:
    """An example sentence cut to `context` words on each side of its [[marked]] word."""
    words = text.split()
    at = next((i for i, w in enumerate(words) if "[[" in w), None)
    if at is None:
        return " ".join(words[: 2 * context + 1])
    start, end = max(0, at - context), min(len(words), at + context + 1)
    return " ".join((["..."] if start else []) + words[start:end] + (["..."] if end < len(words) else []))


def card_words(card: dict, limit: int) -> list[tuple[str, int]]:
    """Top member words with counts; empty for a start-dominated concept, which examples show better."""
    if card.get("is_start_dominated"):
        return []
    return [(str(w), int(n)) for w, n in card.get("top_words", [])[:limit]]


def card_examples(card: dict, limit: int) -> list[str]:
    return [clip_marked(e["text"]) for e in card.get("examples", [])[:limit]]


def explainer_messages(card: dict) -> tuple[tuple[str, str], ...]:
    words = card_words(card, EXPLAINER_WORDS)
    examples = card_examples(card, EXPLAINER_EXAMPLES if words else START_EXAMPLES)
    return prompt(EXPLAINER).messages(words=words, examples=examples)


@dataclass(frozen=True)
class Option:
    """One concept as offered to a judge: everything but the method that produced it."""

    card: dict
    description: str | None = None

    def view(self, label: str = "") -> dict:
        words = [[w, str(n)] for w, n in card_words(self.card, OPTION_WORDS)]
        return {
            "label": label,
            "description": (self.description or "").strip(),
            "words": words,
            "total": int(self.card.get("count", 0) or 0),
            "examples": [] if words else card_examples(self.card, OPTION_EXAMPLES),
        }


def unit_sentence(unit: Unit) -> str:
    """The unit's sentence with its explanation token marked [[ ]] (long sentences cut around it)."""
    marked = unit.marked()
    words = marked.split()
    if len(words) <= MAX_SENTENCE_WORDS:
        return marked
    return clip_marked(marked, MAX_SENTENCE_WORDS // 2)


def comparison_messages(unit: Unit, options: Sequence[Option], show: str, template: str = PAIRWISE) -> tuple[tuple[str, str], ...]:
    """A blinded comparison: options in the given order, labelled A, B, ... by position."""
    if show not in SHOW:
        raise ValueError(f"show must be one of {SHOW}, got {show!r}")
    labels = list(LABELS[: len(options)])
    views = [o.view(label) for o, label in zip(options, labels)]
    return prompt(template).messages(
        sentence=unit_sentence(unit), prediction=unit.prediction_label, options=views, labels=labels, show=show
    )


def detection_messages(option: Option, marked_sentence: str, show: str) -> tuple[tuple[str, str], ...]:
    """One detection question: a concept, then one sentence with its word marked [[ ]]."""
    if show not in SHOW:
        raise ValueError(f"show must be one of {SHOW}, got {show!r}")
    words = marked_sentence.split()
    sentence = marked_sentence if len(words) <= MAX_SENTENCE_WORDS else clip_marked(marked_sentence, MAX_SENTENCE_WORDS // 2)
    return prompt(DETECTION).messages(o=option.view(), sentence=sentence, show=show)


def reask_messages(messages: tuple[tuple[str, str], ...], answer: str, labels: Sequence[str], ranking: bool) -> tuple[tuple[str, str], ...]:
    """The conversation so far, the unparseable answer, and one request for just the letter(s)."""
    follow_up = prompt(REASK).messages(labels=list(labels), ranking=ranking)
    return (*messages, ("assistant", answer), *follow_up)
