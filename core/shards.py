"""Streaming writer for the activation cache: rows go to disk shard by shard, never one giant array."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .activations import shard_name
from .atomic import write_with


class ShardWriter:
    """Buffers rows of several layers plus their token-table rows and flushes them as aligned shards.

    Call `add` with whole sentences only, so that no sentence straddles two shards. `flush` writes every
    layer's shard and the token part atomically; a shard is complete once its token part exists.
    """

    def __init__(self, folder: Path, selection: str, layers: list[int], dtype: str, shard_rows: int, start_index: int = 0):
        self.folder, self.selection, self.layers = Path(folder), selection, list(layers)
        self.dtype, self.shard_rows, self.index = np.dtype(dtype), shard_rows, start_index
        self._arrays: dict[int, list[np.ndarray]] = {layer: [] for layer in self.layers}
        self._tokens: list[pd.DataFrame] = []
        self._rows = 0

    @property
    def pending_rows(self) -> int:
        return self._rows

    def add(self, arrays: dict[int, np.ndarray], tokens: pd.DataFrame) -> None:
        n = len(tokens)
        for layer in self.layers:
            assert arrays[layer].shape[0] == n, "layer rows and token rows must align"
            self._arrays[layer].append(arrays[layer].astype(self.dtype, copy=False))
        self._tokens.append(tokens)
        self._rows += n

    def full(self) -> bool:
        return self._rows >= self.shard_rows

    def flush(self) -> int | None:
        """Write buffered rows as shard `self.index`; return the shard's row count (None if empty)."""
        if self._rows == 0:
            return None
        for layer in self.layers:
            block = np.concatenate(self._arrays[layer])
            write_with(self.folder / shard_name(layer, self.selection, self.index), lambda p, b=block: np.save(p, b), suffix=".npy")
            self._arrays[layer] = []
        table = pd.concat(self._tokens, ignore_index=True)
        write_with(self.token_part(self.folder, self.selection, self.index), lambda p: table.to_parquet(p, index=False), suffix=".parquet")
        self._tokens = []
        rows, self._rows = self._rows, 0
        self.index += 1
        return rows

    @staticmethod
    def token_part(folder: Path, selection: str, index: int) -> Path:
        return Path(folder) / "parts" / f"tokens.{selection}.{index:05d}.parquet"
