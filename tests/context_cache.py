"""A synthetic activation cache (real on-disk format) whose top layer only a model of context can predict.

Each word type has its own direction at `L_in`; a word's `L_out` vector is a fixed linear map of the mean
`L_in` direction of the *other* words of its sentence. The other words are drawn independently of the
word itself, so knowing a word's type (or any partition of `L_in` vectors) says nothing about its `L_out`
vector: every lookup table leaves nearly all the variance unexplained, while a decoder reading the whole
code sequence can reconstruct it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from clvq_judge.core.atomic import write_json
from clvq_judge.core.shards import ShardWriter

LAYERS = (1, 2)


def write_context_store(folder: str | Path, hidden: int = 16, vocab: int = 12, n_sentences: dict[str, int] | None = None,
                        lengths: tuple[int, int] = (5, 10), noise: float = 0.05, seed: int = 0) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_sentences = n_sentences or {"train": 400, "eval": 100}
    rng = np.random.default_rng(seed)
    word_dirs = 3.0 * rng.normal(size=(vocab + 1, hidden)).astype(np.float32) / np.sqrt(hidden)  # row 0: start
    mix = rng.normal(size=(hidden, hidden)).astype(np.float32) / np.sqrt(hidden)
    selections, first_id = {}, 0
    for selection, count in n_sentences.items():
        writer = ShardWriter(folder, selection, list(LAYERS), "float32", 512)
        shard_rows, n_tokens = [], 0
        for s in range(count):
            length = int(rng.integers(lengths[0], lengths[1] + 1))
            words = np.concatenate([[0], rng.integers(1, vocab + 1, size=length - 1)])
            x = word_dirs[words] + noise * rng.normal(size=(length, hidden)).astype(np.float32)
            others = (x.sum(0, keepdims=True) - x) / (length - 1)
            y = others @ mix + noise * rng.normal(size=(length, hidden)).astype(np.float32)
            tokens = pd.DataFrame({
                "sentence": np.full(length, first_id + s, dtype=np.int64),
                "position": np.arange(length, dtype=np.int32),
                "word": ["[CLS]" if w == 0 else f"w{w}" for w in words],
                "label": np.zeros(length, dtype=np.int64),
                "prediction": np.zeros(length, dtype=np.int64),
                "is_start": words == 0,
            })
            writer.add({LAYERS[0]: x, LAYERS[1]: y.astype(np.float32)}, tokens)
            n_tokens += length
            if writer.full():
                shard_rows.append(writer.flush())
        if writer.pending_rows:
            shard_rows.append(writer.flush())
        parts = [ShardWriter.token_part(folder, selection, k) for k in range(len(shard_rows))]
        pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True).to_parquet(
            folder / f"tokens.{selection}.parquet", index=False)
        selections[selection] = {"n_tokens": n_tokens, "n_sentences": count, "shard_rows": shard_rows}
        first_id += count
    write_json(folder / "manifest.json", {
        "model": "synthetic-context", "model_kind": "encoder", "dataset": "synthetic", "layers": list(LAYERS),
        "hidden_size": hidden, "dtype": "float32", "aggregate": "last", "label_names": ["class0", "class1"],
        "selections": selections, "config_hash": "synthetic-context",
    })
    (folder / "done.json").write_text(json.dumps({"config_hash": "synthetic-context"}))
    return folder
