"""Listwise: all methods ranked at once under `--permutations` seeded orders; each pair's outcome is the
majority over the permutations. The known-answer control is asked pairwise, as in the pairwise protocol."""

from __future__ import annotations

import itertools

import numpy as np

from clvq_judge.core.runs import derive_seed
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import parse_ranking
from clvq_judge.judge.render import LABELS, LISTWISE, PAIRWISE

from . import Ask, Context, register
from .comparison import known_answer_asks, side_by_side_request
from .pairwise import CHOICES, Pairwise


@register
class Listwise(Pairwise):
    """Its known-answer questions are pairwise ones, read exactly as the pairwise protocol reads them."""

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

    listwise = True

    def request(self, ask: Ask, ctx: Context) -> Request:
        if ask.kind == "listwise":
            return side_by_side_request(ask, ctx, self.template, None, max_tokens=4 * len(ask.shown) + 2)
        return side_by_side_request(ask, ctx, PAIRWISE, CHOICES, max_tokens=4)

    def verdict(self, ask: Ask, completion: Completion):
        if ask.kind == "listwise":
            return parse_ranking(completion.text, list(LABELS[: len(ask.shown)])), None
        return super().verdict(ask, completion)
