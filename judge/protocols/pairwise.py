"""Pairwise: every pair of methods for each sentence, asked in both orders, with a tie answer ("Equal").
Orders that disagree (one picks A, the other B) are a tie, counted as position-inconsistent. The
known-answer control pits each method's true concept against a decoy concept of the same method.
Where the backend gives label log-probabilities the hard verdict is the most probable offered label."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from clvq_judge.core.runs import derive_seed
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import normalise_choice, parse_choice
from clvq_judge.judge.render import PAIRWISE, TIE

from . import Ask, Context, Protocol, register
from .comparison import (
    comparison_rows,
    format_table,
    known_answer_asks,
    outcomes_of,
    side_by_side_request,
    summarise,
)

CHOICES = ("A", "B", TIE)


@register
class Pairwise(Protocol):
    name = "pairwise"
    template = PAIRWISE
    calibrated = False
    listwise = False

    def plan(self, ctx: Context) -> list[Ask]:
        asks: list[Ask] = []

        def rng_for(ju):
            return np.random.default_rng(derive_seed(ctx.seed, "rank", ju.unit.sentence))

        for ju in ctx.units:
            u = ju.unit
            # One generator per comparison, so adding a method never reshuffles the other pairs' orders.
            for a, b in itertools.combinations(ctx.methods, 2):
                rng = np.random.default_rng(derive_seed(ctx.seed, "rank", u.sentence, a, b))
                pair = [(a, u.concepts[a], ""), (b, u.concepts[b], "")]
                if rng.random() < 0.5:
                    pair.reverse()
                for order, shown in enumerate((pair, pair[::-1])):
                    asks.append(Ask("pairwise", ju, order, shown, ("pairwise", u.sentence, a, b)))
        if ctx.known_answer:
            asks += known_answer_asks(ctx, rng_for)
        return asks

    def request(self, ask: Ask, ctx: Context) -> Request:
        return side_by_side_request(ask, ctx, self.template, CHOICES, max_tokens=4)

    def verdict(self, ask: Ask, completion: Completion):
        soft = normalise_choice(completion.choice_logprobs, CHOICES)
        if soft is not None:
            return max(CHOICES, key=lambda label: soft[label]), soft
        return parse_choice(completion.text, CHOICES), None

    def tables(self, judge: str, asks: list[Ask], records: list[dict], ctx: Context) -> dict[str, pd.DataFrame]:
        return {"comparisons": comparison_rows(judge, asks, records, self.template),
                **outcomes_of(judge, asks, records, ctx.methods, calibrated=self.calibrated)}

    def summarise(self, tables: dict[str, pd.DataFrame], ctx: Context) -> dict[str, pd.DataFrame]:
        return {"comparisons": tables["comparisons"],
                **summarise(tables, ctx.methods, self.listwise, ctx.n_boot, derive_seed(ctx.seed, "bootstrap"))}

    def format(self, frames: dict[str, pd.DataFrame], note: str = "") -> str:
        return format_table(frames, note)



