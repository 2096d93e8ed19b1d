"""On-disk activation cache: memory-mapped per-layer shards plus a token table.

Layout of `runs/<name>/activations/` (written by `clvq-judge extract`)::

    manifest.json                  model, dataset, layers, dtype, counts, shards, config hash
    layer_<L>.<selection>.<k>.npy  float16/float32 [rows, hidden] for shard k (memory-mapped on read)
    tokens.<selection>.parquet     one row per cached word: sentence, position, word, label, prediction
    saliency.parquet               evaluation words: sentence, position, saliency (Integrated Gradients)
    sentences.parquet              evaluation sentences: sentence, prediction, ig_delta

`selection` is "train" (frequency-filtered training selection) or "eval" (every word of the dev split).
Rows of every layer and of the token table align. A sentence's words are contiguous and never straddle
two shards, so per-sentence sequences can be sliced without copying the whole array.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import read_json
from .errors import UserError

SELECTIONS = ("train", "eval")


def input_layer(layers) -> int:
    """The default L_in for a set of cached layers (extract caches L_in and L_out; see `default_layers`)."""
    return min(layers)


def shard_name(layer: int, selection: str, index: int) -> str:
    return f"layer_{layer}.{selection}.{index:05d}.npy"


@dataclass
class SentenceSpans:
    """Where each sentence's rows lie: global row offset, length, shard index, offset inside its shard."""

    sentence: np.ndarray
    start: np.ndarray
    length: np.ndarray
    shard: np.ndarray
    shard_start: np.ndarray

    def __len__(self) -> int:
        return len(self.sentence)


class ActivationStore:
    """Read access to a finished extraction; arrays are memory-mapped, never loaded whole."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest = self.folder / "manifest.json"
        if not manifest.exists():
            raise UserError(f"no activation cache in {self.folder}: run `clvq-judge extract` first")
        self.manifest = read_json(manifest)
        self._open: dict[tuple[int, str], list[np.ndarray]] = {}
        self._check_files()

    def _check_files(self) -> None:
        """Refuse, before any stage starts work, a cache of an older format or with a cut-off shard."""
        redo = f"rerun `clvq-judge extract --run {self.folder.parent.name} --force`"
        m = self.manifest
        if not all(k in m for k in ("layers", "hidden_size", "selections", "dtype")) or not all(
            "shard_rows" in m["selections"].get(sel, {}) for sel in SELECTIONS if sel in m["selections"]
        ):
            raise UserError(f"the activation cache in {self.folder} was written by an older clvq-judge: {redo}")
        row_bytes = int(m["hidden_size"]) * np.dtype(m["dtype"]).itemsize
        for selection, info in m["selections"].items():
            for layer in m["layers"]:
                for k, rows in enumerate(info["shard_rows"]):
                    path = self.folder / shard_name(layer, selection, k)
                    size = path.stat().st_size if path.exists() else -1
                    if size < rows * row_bytes:
                        state = "is missing" if size < 0 else f"is truncated ({size} bytes, {rows} rows need more)"
                        raise UserError(f"activation shard {path.name} of {self.folder} {state}: {redo}")

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def layer_in(self) -> int:
        """Default L_in of every stage (train, saliency, ablate): the lowest cached layer."""
        return input_layer(self.layers)

    @property
    def layer_out(self) -> int:
        """Default L_out of every stage (train, concepts' lookup FVU): the highest cached layer."""
        return max(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.manifest["hidden_size"])

    @property
    def model_kind(self) -> str:
        """"encoder" (bidirectional) or "decoder" (causal)."""
        return self.manifest["model_kind"]

    def n_tokens(self, selection: str) -> int:
        return int(self.manifest["selections"][selection]["n_tokens"])

    def _check(self, layer: int, selection: str) -> None:
        if selection not in SELECTIONS:
            raise UserError(f"unknown selection {selection!r}: use one of {', '.join(SELECTIONS)}")
        if layer not in self.layers:
            raise UserError(
                f"layer {layer} was not extracted (cached: {self.layers}): "
                f"rerun `clvq-judge extract --layers ...` including it"
            )

    def shards(self, layer: int, selection: str) -> list[np.ndarray]:
        """The memory-mapped shards of one layer, in row order (opened once per store)."""
        self._check(layer, selection)
        key = (layer, selection)
        if key not in self._open:
            rows = self.manifest["selections"][selection]["shard_rows"]
            self._open[key] = [
                np.load(self.folder / shard_name(layer, selection, k), mmap_mode="r") for k in range(len(rows))
            ]
        return self._open[key]

    def shard_offsets(self, selection: str) -> np.ndarray:
        rows = self.manifest["selections"][selection]["shard_rows"]
        return np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

    def rows(self, layer: int, selection: str, index: np.ndarray) -> np.ndarray:
        """Gather rows by global row index (any order) into one in-memory float32 array."""
        index = np.asarray(index, dtype=np.int64)
        shards = self.shards(layer, selection)
        offsets = self.shard_offsets(selection)
        which = np.searchsorted(offsets, index, side="right") - 1
        out = np.empty((len(index), self.hidden_size), dtype=np.float32)
        for k in np.unique(which):
            mask = which == k
            out[mask] = shards[k][index[mask] - offsets[k]]
        return out

    def iter_chunks(self, layer: int, selection: str, chunk_rows: int = 65536):
        """Yield consecutive float32 blocks of one layer; memory stays bounded by `chunk_rows`."""
        for shard in self.shards(layer, selection):
            for start in range(0, len(shard), chunk_rows):
                yield np.array(shard[start : start + chunk_rows], dtype=np.float32)  # a writable copy

    def tokens(self, selection: str) -> pd.DataFrame:
        """Token table: sentence, position (0 = sentence-start token), word, label, prediction."""
        if selection not in SELECTIONS:
            raise UserError(f"unknown selection {selection!r}: use one of {', '.join(SELECTIONS)}")
        return pd.read_parquet(self.folder / f"tokens.{selection}.parquet")

    def spans(self, selection: str) -> SentenceSpans:
        """Per-sentence row spans, computed from the token table's sentence column (vectorised)."""
        sent = pd.read_parquet(self.folder / f"tokens.{selection}.parquet", columns=["sentence"])["sentence"]
        sent = sent.to_numpy()
        if len(sent) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return SentenceSpans(empty, empty, empty, empty, empty)
        change = np.flatnonzero(np.diff(sent)) + 1
        start = np.concatenate([[0], change]).astype(np.int64)
        length = np.diff(np.concatenate([start, [len(sent)]])).astype(np.int64)
        offsets = self.shard_offsets(selection)
        shard = np.searchsorted(offsets, start, side="right") - 1
        return SentenceSpans(sent[start].astype(np.int64), start, length, shard, start - offsets[shard])

    @cached_property
    def saliency(self) -> pd.DataFrame:
        """Evaluation words' Integrated-Gradients saliency: sentence, position, saliency."""
        return pd.read_parquet(self.folder / "saliency.parquet")

    @cached_property
    def sentences(self) -> pd.DataFrame:
        """Evaluation sentences: sentence, label, prediction, ig_delta (IG convergence error)."""
        return pd.read_parquet(self.folder / "sentences.parquet")
