"""`clvq-judge extract`: per-word activations of the requested layers, plus Integrated-Gradients saliency.

One forward pass per batch captures every requested layer and stops at the highest one. Results stream
into memory-mapped shards (see `activations.py` for the layout); each chunk of sentences becomes one shard
whose token part is written last, so a killed run resumes at the first chunk without it.

Under `torchrun --nproc-per-node N` the chunks are shared out (rank r extracts chunks r, r + N, ...; each
writes its own shards and parts), then rank 0 alone merges the parts and writes the manifest and
done.json. The result is the same as one process's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from . import distributed
from .activations import ActivationStore, input_layer
from .atomic import read_json, write_json, write_with
from .classifier import batches_by_length, load_classifier, load_sentences
from .config import config_hash, option
from .encode import encode_batch, word_rows
from .errors import UserError
from .hooks import capture, check_layer, depth, run_until_stop
from .runs import NON_RESULT_FIELDS, Run, RunOptions
from .saliency import layer_integrated_gradients
from .shards import ShardWriter
from .words import aggregate, aggregate_scores, split_words

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig(RunOptions):
    layers: tuple[int, ...] = field(default_factory=tuple)
    """Hidden-state indices to cache (0 = embeddings, depth = last block); default: 2/3 of the depth and the last layer (the paper's 8 -> 12 on 12 layers)."""
    aggregate: Literal["last", "first", "mean"] = "last"
    """How sub-word pieces become one word vector: last, first or mean piece."""
    dtype: Literal["float32", "float16"] = "float32"
    """Storage dtype of the shards: float32 or float16 (half the disk; checked for overflow)."""
    min_count: int = option(5, ge=1)
    """Training selection: keep word types seen at least this often in the train split."""
    max_per_type: int = option(20, ge=1)
    """Training selection: at most this many occurrences of each word type (seeded sample)."""
    chunk_sentences: int = option(512, ge=1)
    """Sentences per shard (the unit of resuming)."""
    batch_size: int = option(32, ge=1)
    """Sentences per forward pass."""
    max_length: int = option(128, ge=2)
    """Pieces per sentence; words past the truncation are dropped."""
    saliency_layer: int | None = option(None, ge=0)
    """Layer whose hidden states Integrated Gradients attributes to (default: the lowest cached layer, L_in)."""
    ig_steps: int = option(32, ge=1)
    """Integrated-Gradients interpolation steps (paper: 500; the convergence delta is stored)."""
    seed: int = 0
    """Seed for the training selection's sampling."""


def default_layers(n_layers: int) -> tuple[int, int]:
    return (max(1, round(2 * n_layers / 3)), n_layers)


def training_selection(texts: pd.Series, sentence_ids: np.ndarray, min_count: int, max_per_type: int, seed: int) -> dict[int, np.ndarray]:
    """Kept word positions per train sentence: frequent types, capped per type, and every sentence start."""
    words = [split_words(t)[0] for t in texts]
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    table = pd.DataFrame({
        "sentence": np.repeat(sentence_ids, lengths),
        "position": np.concatenate([np.arange(1, n + 1) for n in lengths]) if len(lengths) else np.zeros(0, int),
        "word": [w for ws in words for w in ws],
    })
    counts = table["word"].map(table["word"].value_counts())
    table = table[counts.to_numpy() >= min_count]
    order = np.random.default_rng(seed).permutation(len(table))
    shuffled = table.iloc[order]
    kept = shuffled[shuffled.groupby("word").cumcount().to_numpy() < max_per_type]
    keep = {int(s): np.array([0], dtype=np.int64) for s in sentence_ids}
    for s, group in kept.groupby("sentence")["position"]:
        keep[int(s)] = np.concatenate([[0], np.sort(group.to_numpy())])
    return keep


def _keep_matrix(positions: list[np.ndarray]) -> np.ndarray:
    width = max((int(p.max()) + 1 for p in positions if len(p)), default=1)
    out = np.zeros((len(positions), width), dtype=bool)
    for i, p in enumerate(positions):
        out[i, p] = True
    return out


class Extractor:
    """Runs the classifier over sentences and returns per-word rows of the requested layers."""

    def __init__(self, model, layers: list[int], how: str, batch_size: int, max_length: int, device):
        self.model, self.layers, self.how = model, sorted(set(layers)), how
        self.batch_size, self.max_length, self.device = batch_size, max_length, device

    @torch.no_grad()
    def run(self, texts: list[str], keep: list[np.ndarray] | None):
        """Rows for `texts` in sentence order: {layer: [N, D]}, and (sentence index, position, word) per row."""
        per_sentence: list = [None] * len(texts)
        for idx in batches_by_length(texts, self.batch_size):
            batch = encode_batch(self.model.tokenizer, [texts[i] for i in idx], self.max_length).to(self.device)
            with capture(self.model, self.layers) as got:
                run_until_stop(lambda b=batch: self.model(b.input_ids, b.attention_mask))
            rows = word_rows(batch.piece_word, None if keep is None else _keep_matrix([keep[i] for i in idx]))
            arrays = {
                layer: aggregate(got[layer][rows.batch_index, rows.piece_index], rows.row_of_piece.to(self.device), rows.n_rows, self.how).float().cpu().numpy()
                for layer in self.layers
            }
            bounds = np.concatenate([[0], np.cumsum(np.bincount(rows.sentence, minlength=len(idx)))])
            for j, i in enumerate(idx):
                lo, hi = bounds[j], bounds[j + 1]
                pos = rows.position[lo:hi]
                per_sentence[i] = ({k: v[lo:hi] for k, v in arrays.items()}, pos, [batch.words[j][p] for p in pos])
        arrays = {layer: np.concatenate([s[0][layer] for s in per_sentence]) for layer in self.layers}
        sent_idx = np.repeat(np.arange(len(texts)), [len(s[1]) for s in per_sentence])
        positions = np.concatenate([s[1] for s in per_sentence])
        words = [w for s in per_sentence for w in s[2]]
        return arrays, sent_idx, positions, words


def _parts(folder: Path, prefix: str) -> list[Path]:
    return sorted((folder / "parts").glob(f"{prefix}.*.parquet"))


def _my_chunks(frame: pd.DataFrame, size: int) -> list[tuple[int, pd.DataFrame]]:
    """(index, sentences) of the chunks this rank computes: all of them in a single process."""
    chunks = [frame.iloc[i : i + size] for i in range(0, len(frame), size)]
    return distributed.shard(list(enumerate(chunks)))


def _extract_selection(extractor: Extractor, frame: pd.DataFrame, selection: str, keep, config: ExtractConfig, folder: Path) -> list[int]:
    """Rows per shard of one selection (on rank 0; other ranks write their chunks and return [])."""
    rank = distributed.rank()
    for k, chunk in tqdm(_my_chunks(frame, config.chunk_sentences), desc=f"extract {selection}", unit="chunk", disable=rank != 0):
        part = ShardWriter.token_part(folder, selection, k)
        if part.exists():  # finished before an interruption
            continue
        ids = chunk["sentence"].to_numpy()
        arrays, sent_idx, positions, words = extractor.run(
            chunk["text"].tolist(), None if keep is None else [keep[int(s)] for s in ids]
        )
        if config.dtype == "float16":
            biggest = max(float(np.abs(a).max(initial=0)) for a in arrays.values())
            if biggest > 65000:
                raise UserError(f"activations reach {biggest:.0f}, beyond float16's range: rerun with --dtype float32 --force")
        tokens = pd.DataFrame({
            "sentence": ids[sent_idx].astype(np.int64),
            "position": positions.astype(np.int32),
            "word": words,
            "label": chunk["label"].to_numpy()[sent_idx].astype(np.int64),
            "prediction": chunk["prediction"].to_numpy()[sent_idx].astype(np.int64),
            "is_start": positions == 0,
        })
        writer = ShardWriter(folder, selection, extractor.layers, config.dtype, shard_rows=0, start_index=k)
        writer.add(arrays, tokens)
        writer.flush()
    distributed.barrier()  # every rank's parts are on disk
    if not distributed.is_main():
        return []
    n_chunks = -(-len(frame) // config.chunk_sentences)
    rows_per_shard = [pq.read_metadata(ShardWriter.token_part(folder, selection, k)).num_rows for k in range(n_chunks)]
    merged = pd.concat([pd.read_parquet(p) for p in _parts(folder, f"tokens.{selection}")], ignore_index=True)
    write_with(folder / f"tokens.{selection}.parquet", lambda p: merged.to_parquet(p, index=False), suffix=".parquet")
    return rows_per_shard


def _saliency(model, frame: pd.DataFrame, config: ExtractConfig, layer: int, device, folder: Path) -> None:
    """IG saliency per evaluation word (max over its pieces) and the convergence delta per sentence."""
    per_batch = max(1, 128 // config.ig_steps)
    rank = distributed.rank()
    for k, chunk in tqdm(_my_chunks(frame, config.chunk_sentences), desc="saliency (IG)", unit="chunk", disable=rank != 0):
        part = folder / "parts" / f"saliency.{k:05d}.parquet"
        if part.exists():
            continue
        texts = chunk["text"].tolist()
        words_out, sent_out = [], []
        for idx in tqdm(list(batches_by_length(texts, per_batch)), desc=f"IG chunk {k + 1}", unit="batch", leave=False, disable=rank != 0):
            batch = encode_batch(model.tokenizer, [texts[i] for i in idx], config.max_length).to(device)
            target = torch.as_tensor(chunk["prediction"].to_numpy()[idx], device=device)
            attr, delta = layer_integrated_gradients(model, batch.input_ids, batch.attention_mask, layer, target, config.ig_steps)
            rows = word_rows(batch.piece_word)
            scores = aggregate_scores(attr[rows.batch_index, rows.piece_index], rows.row_of_piece.to(device), rows.n_rows)
            ids = chunk["sentence"].to_numpy()[idx]
            words_out.append(pd.DataFrame({"sentence": ids[rows.sentence], "position": rows.position.astype(np.int32),
                                           "saliency": scores.cpu().numpy().astype(np.float32)}))
            sent_out.append(pd.DataFrame({"sentence": ids, "ig_delta": delta.cpu().numpy().astype(np.float32)}))
        words_df = pd.concat(words_out).sort_values(["sentence", "position"])
        sent_df = pd.concat(sent_out).sort_values("sentence")
        write_with(folder / "parts" / f"ig_sentences.{k:05d}.parquet", lambda p, d=sent_df: d.to_parquet(p, index=False), suffix=".parquet")
        write_with(part, lambda p, d=words_df: d.to_parquet(p, index=False), suffix=".parquet")
    distributed.barrier()
    if not distributed.is_main():
        return
    saliency = pd.concat([pd.read_parquet(p) for p in _parts(folder, "saliency")], ignore_index=True)
    deltas = pd.concat([pd.read_parquet(p) for p in _parts(folder, "ig_sentences")], ignore_index=True)
    sentences = frame[["sentence", "label", "prediction"]].merge(deltas, on="sentence", how="left")
    write_with(folder / "saliency.parquet", lambda p: saliency.to_parquet(p, index=False), suffix=".parquet")
    write_with(folder / "sentences.parquet", lambda p: sentences.to_parquet(p, index=False), suffix=".parquet")


def extract(config: ExtractConfig) -> ActivationStore:
    """Cache activations of the run's classifier on its dataset; a finished stage is reused.

    Under `torchrun` every rank extracts its share of the chunks and rank 0 writes the rest (see above).
    """
    with distributed.session(config.device) as device:
        return _extract(config, device)


def _extract(config: ExtractConfig, device: torch.device) -> ActivationStore:
    run = Run.open(config.runs_dir, config.run)
    run.require("finetune")
    meta = read_json(run.stage_dir("finetune") / "classifier.json")
    model = None
    if "n_layers" not in meta:  # runs made before classifier.json recorded the depth
        model = load_classifier(run, device)
        meta["n_layers"] = depth(model)
    n_layers = meta["n_layers"]
    layers = sorted(set(config.layers or default_layers(n_layers)))
    for layer in layers:
        check_layer(n_layers, layer)
    sal_layer = input_layer(layers) if config.saliency_layer is None else config.saliency_layer
    check_layer(n_layers, sal_layer)
    resolved = ExtractConfig(**{**config.__dict__, "layers": tuple(layers), "saliency_layer": sal_layer})
    if not distributed.on_main(lambda: run.begin("extract", resolved, config.force, NON_RESULT_FIELDS, inputs=("finetune",))):
        log.info("extract: run %r already finished with these options (pass --force to redo)", run.name)
        return ActivationStore(run.stage_dir("extract"))
    folder = run.stage_dir("extract")
    model = model or load_classifier(run, device)
    sentences = load_sentences(run)
    preds = pd.read_parquet(run.stage_dir("finetune") / "predictions.parquet", columns=["sentence", "prediction"])
    sentences = sentences.merge(preds, on="sentence")
    train = sentences[sentences["split"] == "train"].reset_index(drop=True)
    dev = sentences[sentences["split"] == "dev"].reset_index(drop=True)
    keep = training_selection(train["text"], train["sentence"].to_numpy(), config.min_count, config.max_per_type, config.seed)

    extractor = Extractor(model, layers, config.aggregate, config.batch_size, config.max_length, device)
    started = time.perf_counter()
    shard_rows = {
        "train": _extract_selection(extractor, train, "train", keep, config, folder),
        "eval": _extract_selection(extractor, dev, "eval", None, config, folder),
    }
    extract_seconds = time.perf_counter() - started
    _saliency(model, dev, config, sal_layer, device, folder)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 writes the manifest and done.json
        return ActivationStore(folder)
    manifest = {
        "model": meta["model"],
        "model_kind": meta["model_kind"],
        "dataset": run.info().get("dataset"),
        "label_names": meta["label_names"],
        "layers": layers,
        "n_model_layers": n_layers,
        "saliency_layer": sal_layer,
        "hidden_size": meta["hidden_size"],
        "dtype": config.dtype,
        "aggregate": config.aggregate,
        "ig_steps": config.ig_steps,
        "selections": {
            name: {"n_tokens": int(sum(rows)), "n_sentences": int(len(frame)), "shard_rows": [int(r) for r in rows]}
            for (name, rows), frame in zip(shard_rows.items(), (train, dev))
        },
        "config_hash": config_hash(resolved, NON_RESULT_FIELDS),
        "extract_seconds": round(extract_seconds, 2),
    }
    write_json(folder / "manifest.json", manifest)
    run.finish("extract", resolved, NON_RESULT_FIELDS, counts={k: v["n_tokens"] for k, v in manifest["selections"].items()})
    log.info("extract: %d training and %d evaluation words of layers %s in %s",
             manifest["selections"]["train"]["n_tokens"], manifest["selections"]["eval"]["n_tokens"], layers, folder)
    distributed.barrier()
    return ActivationStore(folder)
