"""Glue to the rest of the run: concept directions per method, the classifier, the evaluation texts.

Everything that depends on other stages' file formats lives here, so the math modules stay pure.

- Vector methods (clvq, vqvae, kmeans, agglomerative): `concepts/<method>/vectors.npy` [K, D] and
  `assignments.npy` (concept id per row of `tokens.eval.parquet`). Without a concepts folder the fitted
  method in `methods/<method>/` is asked directly (`vectors()`, `assign_vectors(x)`).
- Span methods (`removal = "span"`, the SAE): the fitted method in `methods/<method>/`: `vectors()` are its
  encoder rows [n_latents, D_in] and `top_latents(x, k)` its k most active latents per vector with their
  activations. The basis of a token is spanned by the encoder rows of its top-k latents that fire; the
  first (the token's assigned concept, as in `concepts/`) is kept even when nothing fires, so every token
  has at least one direction.

Which kind a method is comes from its class (`ConceptMethod.removal`), never from its name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..activations import ActivationStore
from ..atomic import read_json
from ..errors import UserError
from ..runs import Run
from .model_level import ModelBatch

log = logging.getLogger(__name__)

def removal(method: str) -> str:
    """How `ablate` removes a registered method's concept: "vector" or "span" (`ConceptMethod.removal`)."""
    from ..methods import get_method

    return get_method(method).removal


def is_span(method: str) -> bool:
    return removal(method) == "span"


def __getattr__(name: str):
    # The method lists are the registry's at the time of use, so a method registered later is accepted.
    from ..methods import method_names

    if name == "METHODS":
        return method_names()
    if name == "VECTOR_METHODS":
        return tuple(m for m in method_names() if not is_span(m))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def stage_inputs(run: Run, methods: tuple[str, ...]) -> tuple[str, ...]:
    """The finished stages `ablate` reads for these methods (recorded so a redo of any makes it outdated):
    the classifier, the cache, and per method its concepts folder or else its fitted method."""
    wanted = ["finetune", "extract"]
    for method in methods:
        concepts = f"concepts/{method}"
        wanted.append(concepts if not is_span(method) and run.is_done(concepts) else f"methods/{method}")
    return tuple(stage for stage in wanted if run.is_done(stage))


@dataclass
class ConceptSource:
    """One method variant's concepts at the explanation tokens: ids into a direction table."""

    method: str
    k: int
    """Directions per explanation token (the SAE's top-k latents; 1 for vector methods)."""
    table: np.ndarray
    """[K, D] concept directions (code vectors, centroids, or SAE encoder rows)."""
    ids: np.ndarray
    """[n_explanations, k] concept ids of each explanation row; -1 = none."""
    layer: int
    """Hidden-state index of the space the directions live in (L_in)."""
    span: bool = False
    """The table holds read-out rows of a span method (covectors: never centred, mapped as w * sigma),
    else concept points (code vectors, centroids)."""

    @property
    def label(self) -> str:
        return f"{self.method} k={self.k}" if self.span else self.method


def method_dir(run: Run, method: str) -> Path:
    return run.root / "methods" / method


def concepts_dir(run: Run, method: str) -> Path:
    return run.root / "concepts" / method


def method_layer(run: Run, method: str) -> int | None:
    """The `L_in` a fitted method was trained on, when its folder records it."""
    path = method_dir(run, method) / "config.json"
    if path.exists():
        layer = read_json(path).get("dims", {}).get("layer_in")
        return None if layer is None else int(layer)
    return None


def resolve_layer(run: Run, store: ActivationStore, method: str, requested: int | None) -> int:
    """The layer to ablate at: --layer, else the method's L_in, else the saliency layer of the cache
    (extract's default is L_in), else the lowest cached layer."""
    layer = requested
    if layer is None:
        layer = method_layer(run, method)
    if layer is None:
        layer = store.manifest.get("saliency_layer")
    if layer is None:
        layer = store.layer_in
        log.info("ablate: %s records no input layer; using the lowest cached layer %d", method, layer)
    layer = int(layer)
    if layer not in store.layers:
        raise UserError(
            f"layer {layer} of method {method!r} is not in the activation cache (cached: {store.layers}): "
            f"pass --layer with one of them or rerun `clvq-judge extract --run {run.name}` including it"
        )
    return layer


def _load_method(run: Run, method: str):
    from ..methods import ConceptMethod

    folder = method_dir(run, method)
    if not (folder / "config.json").exists():
        raise UserError(
            f"run {run.name!r} has no fitted {method!r}: run `clvq-judge train --run {run.name} --method {method}` first"
        )
    return ConceptMethod.load(folder)


def vector_source(run: Run, method: str, rows: np.ndarray, x: np.ndarray, n_tokens: int, layer: int) -> ConceptSource:
    """Concept id of each explanation row (`rows` index the eval token table; `x` are their L_in vectors)."""
    folder = concepts_dir(run, method)
    if (folder / "vectors.npy").exists() and (folder / "assignments.npy").exists():
        table = np.load(folder / "vectors.npy").astype(np.float32)
        assignments = np.load(folder / "assignments.npy", mmap_mode="r")
        if len(assignments) != n_tokens:
            raise UserError(
                f"{folder / 'assignments.npy'} has {len(assignments)} rows but the activation cache has {n_tokens} "
                f"evaluation tokens: rerun `clvq-judge concepts --run {run.name} --method {method} --force`"
            )
        ids = np.asarray(assignments[rows], dtype=np.int64)
    else:
        fitted = _load_method(run, method)
        table = np.asarray(fitted.vectors(), dtype=np.float32)
        ids = np.asarray(fitted.assign_vectors(x), dtype=np.int64)
    if table.shape[1] != x.shape[1]:
        raise UserError(
            f"{method!r} concept vectors have {table.shape[1]} dims but layer {layer} has {x.shape[1]}: "
            f"the concepts come from another model or layer; rerun `clvq-judge train --run {run.name} --force`"
        )
    return ConceptSource(method, 1, table, ids[:, None], layer)


def span_sources(run: Run, method: str, x: np.ndarray, ks: tuple[int, ...], layer: int) -> list[ConceptSource]:
    """One source per k: the top-k latents firing on each explanation token, and the encoder rows."""
    fitted = _load_method(run, method)
    if fitted.removal != "span":
        raise UserError(f"{method_dir(run, method)} holds a {fitted.name!r} method, which has no latents to span: "
                        f"retrain it with `clvq-judge train --run {run.name} --method {method} --force`")
    table = np.asarray(fitted.vectors(), dtype=np.float32)
    ids, values = fitted.top_latents(x, max(ks))
    ids = np.array(ids, dtype=np.int64)
    ids[:, 1:][np.asarray(values)[:, 1:] <= 0] = -1
    return [ConceptSource(method, k, table, ids[:, :k], layer, span=True) for k in ks]


# --- the classifier side -----------------------------------------------------------------------------------


def load_model(run: Run, device: torch.device):
    from ..classifier import load_classifier

    return load_classifier(run, device)


def eval_texts(run: Run, sentences: np.ndarray) -> list[str]:
    """Text of each evaluation sentence id, from the run's sentence table."""
    from ..classifier import load_sentences

    table = load_sentences(run).set_index("sentence")
    missing = np.setdiff1d(sentences, table.index.to_numpy())
    if len(missing):
        raise UserError(
            f"{len(missing)} evaluation sentences of the activation cache are not in data/sentences.parquet: "
            f"the cache is from another dataset; rerun `clvq-judge extract --run {run.name} --force`"
        )
    return table.loc[sentences, "text"].tolist()


def max_length(run: Run) -> int:
    """Piece limit the classifier was run with (so the hooked passes see the same truncation)."""
    for stage in ("extract", "finetune"):
        if run.is_done(stage):
            value = run.done_record(stage).get("config", {}).get("max_length")
            if value:
                return int(value)
    return 128


def encode_sentences(tokenizer, texts: list[str], batch_size: int, max_len: int) -> list[ModelBatch]:
    """Tokenize once into length-sorted batches, reused by every condition's forward pass."""
    from ..classifier import batches_by_length
    from ..encode import encode_batch

    out = []
    for idx in batches_by_length(texts, batch_size):
        enc = encode_batch(tokenizer, [texts[i] for i in idx], max_len)
        out.append(ModelBatch(np.asarray(idx), enc.input_ids, enc.attention_mask))
    return out
