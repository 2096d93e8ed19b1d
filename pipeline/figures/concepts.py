"""Concept methods: size, usage and how well each explains the top layer (one row per method)."""

from __future__ import annotations

import pandas as pd

from .base import Block, Context


def concept_table(ctx: Context) -> pd.DataFrame | None:
    rows = []
    for method in ctx.results.concept_methods:
        s = ctx.results.concept_summary(method)
        rows.append({
            "method": s.get("method", method), "concepts": s.get("n_concepts"), "used (eval)": s.get("used_concepts"),
            "perplexity": s.get("perplexity"), "L_out lookup FVU": s.get("l_out_lookup_fvu"),
            "own reconstruction FVU": s.get("eval_reconstruction_fvu"),
            "reconstructed layer": s.get("reconstruction_layer"),
            # Sparsity of the methods that have it (the SAE): active latents per evaluation word, and latents
            # that never fire on them.
            "L0 (eval)": s.get("l0"), "dead latents": s.get("dead_latents"),
        })
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    for column in ("concepts", "used (eval)", "reconstructed layer", "dead latents"):
        frame[column] = frame[column].astype("Int64")  # integers stay integers beside missing values
    return frame


class Concepts:
    name = "concepts"

    def build(self, ctx: Context) -> Block:
        table = concept_table(ctx)
        shown = None if table is None else table.round(3).astype(object).where(table.notna(), "–")
        return Block(
            title="Concept methods", summary=shown, csvs={"concepts": table} if table is not None else {},
            lead_html="<p>L_out lookup FVU: share of the top layer's variance left unexplained when each evaluation "
                      "word is predicted by the mean top-layer vector of its concept (comparable across methods; lower "
                      "is better). L0: mean active latents per evaluation word, for a sparse method.</p>",
            missing=None if table is not None else "not run (`clvq-judge train` and `clvq-judge concepts`)")


SECTION = Concepts()
