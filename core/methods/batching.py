"""Training data for concept methods: aligned `L_in` / `L_out` rows read from an ActivationStore.

Batches are whole sentences, gathered straight from the memory-mapped shards, so memory is bounded by
the batch, never by the number of cached tokens. Sentences of similar length are batched together
(shuffle, then sort within pools of a few dozen batches) so padding stays small without giving up
randomness.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ..activations import ActivationStore, SentenceSpans
from .standardize import Affine

# Sentences are sorted by length within pools of this many batches: large enough to cut padding,
# small enough that batch composition still changes from epoch to epoch.
POOL_BATCHES = 50


@dataclass
class Batch:
    """Padded sentences: x [B, L, D_in], y [B, L, D_out], mask [B, L] (True on real tokens)."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor | None = None
    """[B, L] each word's position in its original sentence (0 = sentence start); 0 on padding."""

    @property
    def n_tokens(self) -> int:
        return int(self.mask.sum())


def span_rows(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Concatenated row indices of several contiguous spans, without a Python loop."""
    total = int(length.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(length)[:-1]])
    return np.repeat(start - offsets, length) + np.arange(total, dtype=np.int64)


def bucketed_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Split sentence indices into batches of similar length; `rng=None` gives a fixed order."""
    n = len(lengths)
    order = rng.permutation(n) if rng is not None else np.argsort(lengths, kind="stable")
    pool = max(1, POOL_BATCHES) * batch_size
    batches: list[np.ndarray] = []
    for p in range(0, n, pool):
        chunk = order[p : p + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def rank_share(batches: list[np.ndarray], rank: int, world: int) -> list[np.ndarray]:
    """Batches `rank`, `rank + world`, ... of one epoch's list, topped up from its start so that every rank
    gets the same number (each step is a collective: a rank with one step more would wait forever)."""
    if world <= 1:
        return batches
    steps = -(-len(batches) // world)
    return [batches[(rank + i * world) % len(batches)] for i in range(steps)] if batches else []


class LayerData:
    """A set of sentences of one selection, read at an input and a target layer.

    `sentences` indexes the selection's sentence spans (None = all), so train/validation splits are
    views, not copies. `standardized(maps)` gives a view whose reads of a layer come out standardised
    (what a method fits on); every read goes through `gather` or `iter_chunks`, so both apply it.
    """

    def __init__(
        self,
        store: ActivationStore,
        selection: str,
        layer_in: int,
        layer_out: int | None = None,
        sentences: np.ndarray | None = None,
    ):
        self.store, self.selection = store, selection
        self.layer_in = layer_in
        self.layer_out = layer_in if layer_out is None else layer_out
        self._subset = sentences
        self._maps: dict[int, Affine] = {}

    # --- geometry ------------------------------------------------------------------------------------
    @cached_property
    def _positions(self) -> np.ndarray:
        """Word position of every row of the selection (one parquet column, no per-token objects)."""
        import pandas as pd

        path = self.store.folder / f"tokens.{self.selection}.parquet"
        return pd.read_parquet(path, columns=["position"])["position"].to_numpy().astype(np.int64)

    @cached_property
    def _all_spans(self) -> SentenceSpans:
        return self.store.spans(self.selection)

    @cached_property
    def spans(self) -> SentenceSpans:
        s = self._all_spans
        if self._subset is None:
            return s
        i = self._subset
        return SentenceSpans(s.sentence[i], s.start[i], s.length[i], s.shard[i], s.shard_start[i])

    @property
    def n_sentences(self) -> int:
        return len(self.spans)

    @property
    def n_tokens(self) -> int:
        return int(self.spans.length.sum())

    @property
    def d_in(self) -> int:
        return self.store.hidden_size

    @property
    def d_out(self) -> int:
        return self.store.hidden_size

    @property
    def model_kind(self) -> str:
        return self.store.model_kind

    def with_sentences(self, sentences: np.ndarray) -> LayerData:
        base = np.arange(len(self._all_spans)) if self._subset is None else self._subset
        out = LayerData(self.store, self.selection, self.layer_in, self.layer_out, base[sentences])
        out._maps = self._maps
        out.__dict__["_all_spans"] = self._all_spans
        if "_positions" in self.__dict__:  # a split shares the parent's position column instead of re-reading it
            out.__dict__["_positions"] = self._positions
        return out

    def standardized(self, maps: Mapping[int, Affine]) -> LayerData:
        """The same sentences, each listed layer read as (x - mean) / std (other layers as stored); the maps
        replace any this view had, so standardising a standardised view does not apply them twice."""
        out = LayerData(self.store, self.selection, self.layer_in, self.layer_out, self._subset)
        out.__dict__.update({k: v for k, v in self.__dict__.items() if k in ("_all_spans", "_positions", "spans")})
        out._maps = dict(maps)
        return out

    def split(self, fraction: float, seed: int) -> tuple[LayerData, LayerData]:
        """Seeded split by sentence into (train, validation); validation keeps at least one sentence."""
        n = self.n_sentences
        perm = np.random.default_rng(seed).permutation(n)
        n_val = min(n - 1, max(1, round(fraction * n))) if fraction > 0 and n > 1 else 0
        return self.with_sentences(np.sort(perm[n_val:])), self.with_sentences(np.sort(perm[:n_val]))

    # --- reading -------------------------------------------------------------------------------------
    def gather(self, layer: int, rows: np.ndarray) -> np.ndarray:
        """float32 copy of the given global rows (any order) of one layer."""
        return self._mapped(layer, self.store.rows(layer, self.selection, rows))

    def _mapped(self, layer: int, x: np.ndarray) -> np.ndarray:
        affine = self._maps.get(layer)
        return x if affine is None else np.require(affine.apply(x), np.float32)

    def token_rows(self) -> np.ndarray:
        """Global row index of every token of this set, in row order."""
        return span_rows(self.spans.start, self.spans.length)

    def sample_rows(self, layer: int, max_rows: int | None, seed: int) -> np.ndarray:
        """Up to `max_rows` token vectors drawn uniformly without replacement (all when None)."""
        rows = self.token_rows()
        if max_rows is not None and len(rows) > max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
        return self.gather(layer, rows)

    def iter_chunks(self, layer: int, chunk_rows: int = 32768) -> Iterator[np.ndarray]:
        """Consecutive float32 blocks of this set's tokens, in row order."""
        if self._subset is None:
            for chunk in self.store.iter_chunks(layer, self.selection, chunk_rows):
                yield self._mapped(layer, chunk)
            return
        rows = self.token_rows()
        for i in range(0, len(rows), chunk_rows):
            yield self.gather(layer, rows[i : i + chunk_rows])

    def batches(
        self,
        batch_sentences: int,
        rng: np.random.Generator | None = None,
        device: torch.device | str = "cpu",
        targets: bool = True,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        """Padded sentence batches; shuffled when `rng` is given, length-sorted otherwise.

        `shard=(rank, world)` keeps this rank's share of the batches (`rank_share`); every rank must pass
        an identically seeded `rng` so that the shares split one common order.
        """
        spans = self.spans
        for idx in rank_share(bucketed_order(spans.length, batch_sentences, rng), *shard):
            lengths = spans.length[idx]
            rows = span_rows(spans.start[idx], lengths)
            mask = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
            x = self._pad(self.gather(self.layer_in, rows), mask)
            y = self._pad(self.gather(self.layer_out, rows), mask) if targets else x
            positions = np.zeros(mask.shape, dtype=np.int64)
            positions[mask] = self._positions[rows]
            yield Batch(
                torch.from_numpy(x).to(device),
                torch.from_numpy(y).to(device),
                torch.from_numpy(mask).to(device),
                torch.from_numpy(positions).to(device),
            )

    @staticmethod
    def _pad(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # Rows come sentence by sentence, position by position: exactly the row-major order of `mask`.
        out = np.zeros((*mask.shape, rows.shape[1]), dtype=np.float32)
        out[mask] = rows
        return out
