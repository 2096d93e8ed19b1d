"""Listwise: all methods ranked at once under `--permutations` seeded orders; each pair's outcome is the
majority over the permutations. The known-answer control is asked pairwise, as in the pairwise protocol."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from clvq_judge.core.runs import derive_seed
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import normalise_choice, parse_choice, parse_ranking
from clvq_judge.judge.render import LABELS, LISTWISE, PAIRWISE

from . import Ask, Context, Protocol, register
from .comparison import (
    comparison_rows,
    format_table,
    known_answer_asks,
    outcomes_of,
    side_by_side_request,
    summarise,
)
from .pairwise import CHOICES


@register
class Listwise(Protocol):
    name = "listwise"
    template = LISTWISE

    def plan(self, ctx: Context) -> list[Ask]:
        asks: list[Ask] = []

        def rng_for(ju):
            return np.random.default_rng(derive_seed(ctx.seed, "rank", ju.unit.sentence))

        orders = list(itertools.permutations(ctx.methods))
        for ju in ctx.units:
            rng = rng_for(ju)
            picks = rng.choice(len(orders), size=min(ctx.permutations, len(orders)), replace=False)
            for order, k in enumerate(picks):
                shown = [(m, ju.unit.concepts[m], "") for m in orders[k]]
                asks.append(Ask("listwise", ju, order, shown, ("listwise", ju.unit.sentence),
                                extra={"labels": tuple(LABELS[: len(shown)])}))
        if ctx.known_answer:
            asks += known_answer_asks(ctx, rng_for)
        return asks

    def request(self, ask: Ask, ctx: Context) -> Request:
        if ask.kind == "listwise":
            return side_by_side_request(ask, ctx, self.template, None, max_tokens=4 * len(ask.shown) + 2)
        return side_by_side_request(ask, ctx, PAIRWISE, CHOICES, max_tokens=4)

    def verdict(self, ask: Ask, completion: Completion):
        if ask.kind == "listwise":
            return parse_ranking(completion.text, list(LABELS[: len(ask.shown)])), None
        soft = normalise_choice(completion.choice_logprobs, CHOICES)
        if soft is not None:
            return max(CHOICES, key=lambda label: soft[label]), soft
        return parse_choice(completion.text, CHOICES), None

    def tables(self, judge: str, asks: list[Ask], records: list[dict], ctx: Context) -> dict[str, pd.DataFrame]:
        return {"comparisons": comparison_rows(judge, asks, records, self.template),
                **outcomes_of(judge, asks, records, ctx.methods)}

    def summarise(self, tables: dict[str, pd.DataFrame], ctx: Context) -> dict[str, pd.DataFrame]:
        return {"comparisons": tables["comparisons"],
                **summarise(tables, ctx.methods, True, ctx.n_boot, derive_seed(ctx.seed, "bootstrap"))}

    def format(self, frames: dict[str, pd.DataFrame], note: str = "") -> str:
        return format_table(frames, note)
