"""Judge protocols, a registry like the concept methods' and the backends'.

A protocol is one class in its own module plus its own prompt file, registered by `@register`: it plans the
questions (`plan`), renders each with its prompt (`request`), reads an answer (`verdict`), and turns one
judge's answers into tables and all judges' tables into the result frames with the shared statistics
(`tables`, `summarise`), with its own known-answer or chance-level control beside its result (`format`).
`clvq-judge rank --protocol NAME` runs any registered protocol through the same lifecycle (`judge/rank.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.describe import JudgeUnit
from clvq_judge.judge.render import reask_messages

log = logging.getLogger(__name__)

PROTOCOLS: dict[str, type[Protocol]] = {}


def register(cls: type[Protocol]) -> type[Protocol]:
    """Make a protocol known under its `name` (one line per protocol module)."""
    PROTOCOLS[cls.name] = cls
    return cls


def get_protocol(name: str) -> Protocol:
    from clvq_judge.core.errors import UserError

    if name not in PROTOCOLS:
        raise UserError(f"unknown judge protocol {name!r}: use one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]()


@dataclass
class Ask:
    """One question to a judge. `shown` lists what is offered in order (labels A, B, ... by position):
    (method, concept, role) with role "true", "random" (the known-answer control's decoy) or ""."""

    kind: str
    unit: JudgeUnit
    order: int
    shown: list[tuple[str, int, str]]
    group: tuple = field(default_factory=tuple)
    """Asks with the same group are the orders (or items) of one comparison."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Protocol-specific facts of the question (detection: the item sentence and whether it is a member)."""


@dataclass
class Context:
    """Everything a protocol may read: the sampled units, the methods, their cards and descriptions."""

    run: Any
    units: list[JudgeUnit]
    methods: list[str]
    cards: dict[str, list[dict]]
    descriptions: dict[str, dict[int, str]]
    show: str
    seed: int
    known_answer: bool = True
    permutations: int = 3
    items: int = 4
    n_boot: int = 1000


class Protocol:
    name: ClassVar[str]
    template: ClassVar[str]
    """The prompt file in prompts/ that renders this protocol's questions."""
    needs_descriptions: ClassVar[bool] = True
    """Whether `show` other than "card" makes the protocol need the explainer's descriptions."""

    def plan(self, ctx: Context) -> list[Ask]:
        raise NotImplementedError

    def request(self, ask: Ask, ctx: Context) -> Request:
        raise NotImplementedError

    def verdict(self, ask: Ask, completion: Completion) -> tuple[object, dict[str, float] | None]:
        """The parsed verdict (None when unparseable) and the soft label probabilities (None without)."""
        raise NotImplementedError

    def tables(self, judge: str, asks: list[Ask], records: list[dict], ctx: Context) -> dict[str, pd.DataFrame]:
        """One judge's answers as tables; `comparisons` (one row per question) is required."""
        raise NotImplementedError

    def summarise(self, tables: dict[str, pd.DataFrame], ctx: Context) -> dict[str, pd.DataFrame]:
        """All judges' tables (concatenated) -> the result frames written as CSVs."""
        raise NotImplementedError

    def format(self, frames: dict[str, pd.DataFrame], note: str = "") -> str:
        raise NotImplementedError

    def reask(self, ask: Ask, request: Request, answer: str) -> Request:
        ranking = request.choices is None
        labels = request.choices or tuple(ask.extra.get("labels", ()))
        return Request(messages=reask_messages(request.messages, answer, labels, ranking),
                       max_tokens=request.max_tokens, choices=request.choices)


def ask_judge(judge, protocol: Protocol, asks: list[Ask], requests: list[Request]) -> list[dict]:
    """Ask every question; re-ask once, with a follow-up asking for just the label(s), where the answer
    could not be parsed. Returns one record per ask: raw answers, verdict, soft probabilities, seconds."""
    answers = judge.complete(requests, desc=f"{protocol.name} ({judge.name})")
    records = []
    for ask, answer in zip(asks, answers):
        verdict, soft = protocol.verdict(ask, answer)
        records.append({"raw": answer.text, "verdict": verdict, "soft": soft, "reask": None,
                        "seconds": answer.seconds, "prompt_tokens": answer.prompt_tokens, "cached": answer.cached})
    retry = [i for i, r in enumerate(records) if r["verdict"] is None]
    if retry:
        log.info("%s: %d answers could not be parsed; asking once more for just the label", judge.name, len(retry))
        follow = [protocol.reask(asks[i], requests[i], records[i]["raw"]) for i in retry]
        for i, answer in zip(retry, judge.complete(follow, desc=f"re-ask ({judge.name})")):
            verdict, soft = protocol.verdict(asks[i], answer)
            records[i].update(reask=answer.text, verdict=verdict, soft=soft if soft is not None else records[i]["soft"])
    return records


# Each module registers its protocol class.
from . import calibrated, detection, listwise, pairwise  # noqa: E402,F401
