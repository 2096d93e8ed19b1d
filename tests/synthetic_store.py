"""Synthetic activation caches in the real on-disk format, for tests and benchmarks (test-only, not installed).

Words are drawn from a small vocabulary; each word type has its own direction at `L_in`, and `L_out`
is a fixed nonlinear map of the sentence's `L_in` vectors, so a cross-layer model has something to learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clvq_judge.core.atomic import write_json
from clvq_judge.core.shards import ShardWriter


def write_synthetic_store(
    folder: str | Path,
    layers: tuple[int, int] = (1, 2),
    hidden: int = 16,
    n_sentences: dict[str, int] | None = None,
    vocab: int = 30,
    max_len: int = 12,
    model_kind: str = "encoder",
    n_labels: int = 2,
    shard_rows: int = 256,
    dtype: str = "float32",
    seed: int = 0,
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_sentences = n_sentences or {"train": 120, "eval": 40}
    rng = np.random.default_rng(seed)
    word_dirs = rng.normal(size=(vocab + 1, hidden)).astype(np.float32)  # row 0 = sentence start
    mix = rng.normal(size=(hidden, hidden)).astype(np.float32) / np.sqrt(hidden)
    selections = {}
    first_id = 0
    for selection, count in n_sentences.items():
        writer = ShardWriter(folder, selection, list(layers), dtype, shard_rows)
        shard_rows_list = []
        n_tokens = 0
        for s in range(count):
            length = int(rng.integers(3, max_len + 1))
            words = np.concatenate([[0], rng.integers(1, vocab + 1, size=length - 1)])
            x = word_dirs[words] + 0.1 * rng.normal(size=(length, hidden)).astype(np.float32)
            context = np.cumsum(x, axis=0) / np.arange(1, length + 1)[:, None] if model_kind == "decoder" else x.mean(0, keepdims=True)
            y = np.tanh(x @ mix) + 0.5 * context
            label = int(words[1:].sum() % n_labels)
            tokens = pd.DataFrame(
                {
                    "sentence": np.full(length, first_id + s, dtype=np.int64),
                    "position": np.arange(length, dtype=np.int32),
                    "word": ["[CLS]" if w == 0 else f"w{w}" for w in words],
                    "label": np.full(length, label, dtype=np.int64),
                    "prediction": np.full(length, label, dtype=np.int64),
                    "is_start": words == 0,
                }
            )
            writer.add({layers[0]: x, layers[-1]: y.astype(np.float32)}, tokens)
            n_tokens += length
            if writer.full():
                shard_rows_list.append(writer.flush())
        if writer.pending_rows:
            shard_rows_list.append(writer.flush())
        parts = [ShardWriter.token_part(folder, selection, k) for k in range(len(shard_rows_list))]
        pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True).to_parquet(folder / f"tokens.{selection}.parquet", index=False)
        selections[selection] = {"n_tokens": n_tokens, "n_sentences": count, "shard_rows": shard_rows_list}
        first_id += count
    write_json(
        folder / "manifest.json",
        {
            "model": "synthetic",
            "model_kind": model_kind,
            "dataset": "synthetic",
            "layers": sorted(set(layers)),
            "hidden_size": hidden,
            "dtype": dtype,
            "aggregate": "last",
            "label_names": [f"class{i}" for i in range(n_labels)],
            "selections": selections,
            "config_hash": "synthetic",
        },
    )
    return folder
