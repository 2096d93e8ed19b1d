"""The explanation token of a sentence: its most salient word (Integrated Gradients at L_in).

One function, called by the ablation, the LLM judge and the human study, so all three axes explain the
same word of the same sentence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def explanation_tokens(saliency: pd.DataFrame, tokens: pd.DataFrame, top_k: int = 1, skip_start: bool = True) -> pd.DataFrame:
    """The `top_k` most salient words of every sentence, ranked.

    `saliency` has columns sentence, position, saliency; `tokens` is the evaluation token table whose row
    order the result's `row` column indexes (the row order of the activation shards and assignments).
    With `skip_start`, the sentence-start token is used only for a sentence with no other word: the
    explanation is meant to be a word, and the paper protocol probes the start token itself.
    Returns columns sentence, rank (0 = most salient), position, row, saliency.
    """
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    where = pd.DataFrame(
        {
            "sentence": tokens["sentence"].to_numpy(),
            "position": tokens["position"].to_numpy(),
            "row": np.arange(len(tokens), dtype=np.int64),
        }
    )
    table = saliency[["sentence", "position", "saliency"]].merge(where, on=["sentence", "position"], how="inner")
    if skip_start:
        word = table["position"].to_numpy() > 0
        has_word = pd.Series(word).groupby(table["sentence"].to_numpy()).transform("any").to_numpy()
        table = table[word | ~has_word]
    # mergesort keeps ties in position order, so equal saliencies pick the earliest word every time.
    table = table.sort_values(["sentence", "saliency", "position"], ascending=[True, False, True], kind="mergesort")
    table = table.assign(rank=table.groupby("sentence").cumcount().to_numpy())
    table = table[table["rank"] < top_k].reset_index(drop=True)
    return table[["sentence", "rank", "position", "row", "saliency"]]
