"""Words and their sub-word pieces: splitting text into words and aligning pieces by character offsets.

Word position 0 is reserved for the sentence-start token ([CLS] / <s> / BOS); words are numbered 1..n.
"""

from __future__ import annotations

import re

import numpy as np
import torch

WORD_RE = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def split_words(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Words of `text` with their character spans [start, end)."""
    matches = list(WORD_RE.finditer(text))
    starts = np.fromiter((m.start() for m in matches), dtype=np.int64, count=len(matches))
    ends = np.fromiter((m.end() for m in matches), dtype=np.int64, count=len(matches))
    return [m.group() for m in matches], starts, ends


def piece_to_word(offsets: np.ndarray, special: np.ndarray, starts: np.ndarray, ends: np.ndarray, start_piece: int | None) -> np.ndarray:
    """Word position (1..n) of every piece, 0 for the sentence-start piece, -1 for pieces of no word.

    A piece belongs to the word containing its last character: SentencePiece pieces carry their leading
    space ("▁word" spans " word"), so their first character lies outside the word. A word that owns no
    piece (the tokenizer merged it into a neighbour, e.g. "£42m" -> one [UNK]) gets no row.
    """
    out = np.full(len(offsets), -1, dtype=np.int64)
    if len(starts):
        last_char = offsets[:, 1] - 1
        idx = np.searchsorted(ends, last_char, side="right")
        valid = (~special) & (offsets[:, 1] > offsets[:, 0]) & (idx < len(starts))
        idx_c = np.minimum(idx, len(starts) - 1)
        valid &= starts[idx_c] <= last_char
        out[valid] = idx_c[valid] + 1
    if start_piece is not None:
        out[start_piece] = 0
    return out


def aggregate(hidden: torch.Tensor, word_ids: torch.Tensor, n_words: int, how: str = "last") -> torch.Tensor:
    """Aggregate piece vectors [P, D] into word vectors [n_words, D].

    `word_ids` [P] gives each piece's output row (0..n_words-1), non-decreasing, every row covered.
    """
    if how == "mean":
        out = torch.zeros(n_words, hidden.shape[1], dtype=hidden.dtype, device=hidden.device)
        out.index_add_(0, word_ids, hidden)
        counts = torch.bincount(word_ids, minlength=n_words).clamp_min(1).to(hidden.dtype)
        return out / counts[:, None]
    boundary = word_ids[1:] != word_ids[:-1]
    if how == "last":
        pick = torch.cat([boundary, torch.ones(1, dtype=torch.bool, device=word_ids.device)])
    elif how == "first":
        pick = torch.cat([torch.ones(1, dtype=torch.bool, device=word_ids.device), boundary])
    else:
        raise ValueError(f"unknown aggregation {how!r}")
    return hidden[pick]


def aggregate_scores(scores: torch.Tensor, word_ids: torch.Tensor, n_words: int) -> torch.Tensor:
    """Per-word maximum of piece scores (used for saliency: a word is as salient as its top piece)."""
    out = torch.full((n_words,), float("-inf"), dtype=scores.dtype, device=scores.device)
    return out.scatter_reduce(0, word_ids, scores, reduce="amax")
