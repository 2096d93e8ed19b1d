"""`clvq-judge concepts`: turn a fitted method into concepts over the evaluation tokens.

Reads `runs/<run>/methods/<method>/` and the activation cache; writes `runs/<run>/concepts/<method>/`:

``assignments.npy``
    int64 [n_eval_tokens]: concept id of every evaluation token, row-aligned with
    `activations/tokens.eval.parquet` (and with every eval layer shard).
``vectors.npy``
    float32 [K, D]: concept directions in the L_in space, row = concept id (code vectors for
    CLVQ-VAE / VQ-VAE, centroids for clustering, encoder rows for the SAE).
``concepts.jsonl``
    one JSON object per concept id 0..K-1 (also for unused ones, so ids match `vectors.npy` rows)::

        {"id": 17, "count": 412, "share": 0.013,
         "top_words": [["dull", 40], ["boring", 31], ...],      # most frequent member words
         "examples": [{"sentence": 88, "position": 4,             # sentence id, word position
                       "text": "the plot was [[dull]] and far too long"}, ...],
         "start_share": 0.02,                                     # share of sentence-start tokens
         "is_start_dominated": false}                             # start_share > --start-threshold

    Example texts are rebuilt from the eval token table: the sentence's words (sentence-start token
    left out) joined by spaces, the concept's token marked as ``[[word]]``; for a sentence-start token
    the marked token is put in front. A start-dominated concept is best shown by its example sentences.
``summary.json``
    method, K, concepts in use, perplexity of the usage, start-dominated count, the L_out lookup FVU; for
    neural methods their own reconstruction FVU on the evaluation tokens (`eval_reconstruction_fvu`), and
    for the SAE also `l0` (mean active latents per token) and `dead_latents` (never active on them).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .activations import ActivationStore
from .atomic import write_json, write_text, write_with
from .config import option
from .device import resolve_device
from .methods import ConceptMethod, LayerData, get_method
from .runs import NON_RESULT_FIELDS, Run, RunOptions
from .schema import CONCEPT_FILES

log = logging.getLogger(__name__)


@dataclass
class ConceptsConfig(RunOptions):
    """Options of `clvq-judge concepts`."""

    method: str = "clvq"
    """Trained method whose concepts to write: clvq, vqvae, sae, kmeans or agglomerative."""
    top_words: int = option(20, ge=1)
    """Member words listed per concept (most frequent first)."""
    examples: int = option(5, ge=0)
    """Example sentences per concept (distinct sentences, seeded random choice)."""
    start_threshold: float = option(0.5, ge=0, le=1)
    """A concept whose share of sentence-start tokens exceeds this is marked start-dominated."""
    seed: int = 0
    """Seed for the choice of example sentences."""


def start_flags(tokens: pd.DataFrame) -> np.ndarray:
    if "is_start" in tokens.columns:
        return tokens["is_start"].to_numpy(dtype=bool)
    return tokens["position"].to_numpy() == 0


def build_cards(
    tokens: pd.DataFrame,
    ids: np.ndarray,
    n_concepts: int,
    top_words: int = 20,
    examples: int = 5,
    start_threshold: float = 0.5,
    seed: int = 0,
) -> list[dict]:
    """One card per concept id (see the module docstring for the fields)."""
    df = pd.DataFrame(
        {
            "concept": ids,
            "sentence": tokens["sentence"].to_numpy(),
            "position": tokens["position"].to_numpy(),
            "word": tokens["word"].astype(str).to_numpy(),
            "is_start": start_flags(tokens),
        }
    )
    counts = np.bincount(ids, minlength=n_concepts)
    starts = np.bincount(ids, weights=df["is_start"].to_numpy(float), minlength=n_concepts)
    start_share = starts / np.maximum(counts, 1)

    wc = df.groupby(["concept", "word"], sort=False).size().rename("n").reset_index()
    wc = wc.sort_values(["concept", "n", "word"], ascending=[True, False, True]).groupby("concept").head(top_words)
    words_by = {c: list(zip(g["word"], g["n"].astype(int).tolist())) for c, g in wc.groupby("concept")}

    df["key"] = np.random.default_rng(seed).random(len(df))
    ex = df.sort_values(["concept", "key"]).drop_duplicates(["concept", "sentence"])
    ex = ex.groupby("concept").head(examples)
    texts = example_texts(df[df["sentence"].isin(ex["sentence"].unique())], ex)
    ex = ex.assign(text=texts)
    ex_by = {
        c: [{"sentence": int(s), "position": int(p), "text": t} for s, p, t in zip(g["sentence"], g["position"], g["text"])]
        for c, g in ex.groupby("concept")
    }
    total = max(len(ids), 1)
    return [
        {
            "id": c,
            "count": int(counts[c]),
            "share": round(float(counts[c]) / total, 6),
            "top_words": [[w, n] for w, n in words_by.get(c, [])],
            "examples": ex_by.get(c, []),
            "start_share": round(float(start_share[c]), 6),
            "is_start_dominated": bool(counts[c] > 0 and start_share[c] > start_threshold),
        }
        for c in range(n_concepts)
    ]


def example_texts(sentence_tokens: pd.DataFrame, examples: pd.DataFrame) -> list[str]:
    """Sentence text with the example's word marked [[word]], for each row of `examples`."""
    words: dict[int, tuple[np.ndarray, list[str]]] = {}
    body = sentence_tokens[~sentence_tokens["is_start"]].sort_values(["sentence", "position"])
    for s, g in body.groupby("sentence"):
        words[int(s)] = (g["position"].to_numpy(), g["word"].tolist())
    out = []
    for s, p, w, start in zip(examples["sentence"], examples["position"], examples["word"], examples["is_start"]):
        positions, ws = words.get(int(s), (np.zeros(0, dtype=np.int64), []))
        if start:
            out.append(" ".join([f"[[{w}]]", *ws]))
            continue
        marked = list(ws)
        at = np.flatnonzero(positions == p)
        if len(at):
            marked[at[0]] = f"[[{marked[at[0]]}]]"
        out.append(" ".join(marked))
    return out


def concept_lookup_fvu(store: ActivationStore, train_ids: np.ndarray, eval_ids: np.ndarray, n_concepts: int, layer: int) -> float:
    """How much of layer `layer` a token's concept alone explains: fraction of variance unexplained on the
    eval tokens when each token is predicted by the mean `layer` vector of its concept's training tokens.

    The same measure works for every discrete method, so CLVQ-VAE's codes, single-layer VQ-VAE codes and
    clusters can be compared on how well they explain `L_out` (streamed shard by shard)."""
    d = store.hidden_size
    sums = torch.zeros(n_concepts, d, dtype=torch.float64)
    counts = torch.bincount(torch.from_numpy(train_ids), minlength=n_concepts).double()
    start = 0
    for chunk in store.iter_chunks(layer, "train"):
        idx = torch.from_numpy(train_ids[start : start + len(chunk)])
        sums.index_add_(0, idx, torch.from_numpy(chunk).double())
        start += len(chunk)
    global_mean = sums.sum(0) / counts.sum().clamp_min(1)
    means = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], global_mean)
    sse = sst = 0.0
    eval_sum, eval_n, start = torch.zeros(d, dtype=torch.float64), 0, 0
    for chunk in store.iter_chunks(layer, "eval"):
        eval_sum += torch.from_numpy(chunk).double().sum(0)
        eval_n += len(chunk)
    eval_mean = eval_sum / max(eval_n, 1)
    for chunk in store.iter_chunks(layer, "eval"):
        y = torch.from_numpy(chunk).double()
        pred = means[torch.from_numpy(eval_ids[start : start + len(chunk)])]
        sse += float(((y - pred) ** 2).sum())
        sst += float(((y - eval_mean) ** 2).sum())
        start += len(chunk)
    return sse / max(sst, 1e-12)


def concepts(config: ConceptsConfig) -> Path:
    """Write the concept cards, vectors and per-token assignments of one trained method."""
    run = Run.open(config.runs_dir, config.run)
    get_method(config.method)
    method_dir = run.require(f"methods/{config.method}")
    store = ActivationStore(run.require("extract"))
    stage = f"concepts/{config.method}"
    folder = run.stage_dir(stage)
    inputs = (f"methods/{config.method}", "extract")
    # Loaded before the stage starts, so an unreadable method leaves nothing half-written.
    method = ConceptMethod.load(method_dir, device=resolve_device(config.device))
    if not run.begin(stage, config, force=config.force, exclude=NON_RESULT_FIELDS, inputs=inputs):
        log.info("concepts of %s already written in %s", config.method, folder)
        return folder
    data = LayerData(store, "eval", method.dims.layer_in)
    ids = method.assign(data)
    tokens = store.tokens("eval")
    vectors = method.vectors()
    cards = build_cards(tokens, ids, len(vectors), config.top_words, config.examples, config.start_threshold, config.seed)
    write_with(folder / CONCEPT_FILES["assignments"], lambda p: np.save(p, ids), suffix=".npy")
    write_with(folder / CONCEPT_FILES["vectors"], lambda p: np.save(p, vectors), suffix=".npy")
    write_text(folder / CONCEPT_FILES["cards"], "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cards))
    counts = np.bincount(ids, minlength=len(vectors))
    p = counts[counts > 0] / max(len(ids), 1)
    summary = {
        "method": config.method,
        "n_concepts": len(vectors),
        "used_concepts": int((counts > 0).sum()),
        "perplexity": float(np.exp(-(p * np.log(p)).sum())) if len(p) else 0.0,
        "start_dominated": int(sum(c["is_start_dominated"] for c in cards)),
        "n_tokens": len(ids),
        "l_out_layer": store.layer_out,
        "l_out_lookup_fvu": concept_lookup_fvu(
            store, method.assign(LayerData(store, "train", method.dims.layer_in)), ids, len(vectors), store.layer_out
        ),
    }
    if hasattr(method, "evaluate"):  # neural methods: their own reconstruction on the evaluation split
        target = LayerData(store, "eval", method.dims.layer_in, method.dims.layer_out)
        with torch.no_grad():
            own = method.evaluate(target, resolve_device(config.device))
        summary.update(reconstruction_layer=method.dims.layer_out, eval_reconstruction_fvu=own["val_fvu"])
        # Sparse methods (the SAE) report their sparsity beside their FVU: active latents per token and the
        # latents that never fire on the evaluation tokens.
        summary.update({key: own[key] for key in ("l0", "dead_latents") if key in own})
    write_json(folder / CONCEPT_FILES["summary"], summary)
    run.finish(stage, config, NON_RESULT_FIELDS, **summary)
    log.info("%s: %d of %d concepts used on %d eval tokens", config.method, summary["used_concepts"], len(vectors), len(ids))
    return folder
