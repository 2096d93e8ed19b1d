"""`clvq-judge train`: fit one concept method on the cached training activations.

Reads `runs/<run>/activations/`, writes `runs/<run>/methods/<method>/`:

    config.json            method name, its resolved config, dims (layers, sizes, model kind)
    model.safetensors      the fitted method (best-validation weights for trained methods)
    metrics.jsonl          one JSON object per epoch (MSE, FVU, perplexity, active/dead codes, ...)
    checkpoint.safetensors last finished epoch incl. optimizer and RNG state (resume after a kill)
    best.safetensors       best-validation weights so far
    started.json, done.json stage markers

Rerunning a finished stage with the same options does nothing; a killed one resumes at its next epoch.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .activations import ActivationStore
from .device import resolve_device
from .errors import UserError
from .methods import LayerData, MethodDims, config_from, get_method
from .methods.base import EpochCallback
from .runs import NON_RESULT_FIELDS, Run, RunOptions

log = logging.getLogger(__name__)

# Values the `--preset` fills in for options left unset.
PRESETS = {
    # Quick: on a few thousand sentences, 128-sentence batches give ~15 steps an epoch, and the paper's
    # lr 5e-3 made the decoder collapse to predicting the mean (validation FVU 1.03 on the news/MiniLM
    # default) while 1e-3 with 32-sentence batches learns (FVU 0.71 after 3 epochs).
    "quick": {"epochs": 20, "decoder_layers": 2, "decoder_ff": None, "batch_sentences": 32, "lr": 1e-3},
    "paper": {"epochs": 50, "decoder_layers": 6, "decoder_ff": 2048, "batch_sentences": 128, "lr": 5e-3},
}

# Stage-level fields that matter for every method's results.
_COMMON = ("method", "layer_in", "layer_out")


@dataclass
class TrainConfig(RunOptions):
    """Options of `clvq-judge train`; each method uses the fields its own config names."""

    method: str = "clvq"
    """Concept method: clvq, vqvae, sae, kmeans or agglomerative."""
    preset: Literal["quick", "paper"] = "quick"
    """Defaults for unset options: quick (2 decoder layers, 20 epochs, 32-sentence batches, lr 1e-3; minutes on a CPU) or paper (6 layers, 50 epochs, 128, lr 5e-3)."""
    layer_in: int | None = None
    """Input layer L_in (hidden-state index); default: the lowest cached layer."""
    layer_out: int | None = None
    """Target layer L_out; default: the highest cached layer (single-layer methods use L_in)."""
    seed: int = 0
    """Seed for split, initialisation, batch order and sampling."""
    epochs: int | None = None
    """Maximum training epochs; default from --preset."""
    batch_sentences: int | None = None
    """Sentences per batch; default from --preset."""
    lr: float | None = None
    """Adam learning rate; default from --preset."""
    weight_decay: float = 1e-4
    """Adam weight decay."""
    plateau_patience: int = 5
    """Halve the learning rate after this many epochs without validation improvement."""
    early_stop: int = 15
    """Stop after this many epochs without validation improvement."""
    val_fraction: float = 0.1
    """Share of training sentences held out for validation."""
    n_concepts: int = 400
    """Number of concepts K (codebook size, clusters)."""
    top_k: int = 5
    """CLVQ/VQ-VAE: sample among this many nearest codes during training."""
    temperature: float = 1.0
    """CLVQ/VQ-VAE: sampling temperature T."""
    temperature_final: float | None = None
    """CLVQ/VQ-VAE: anneal T geometrically to this value over the epochs (off by default)."""
    commitment: float = 0.1
    """CLVQ/VQ-VAE: commitment loss weight."""
    ema_decay: float = 0.99
    """CLVQ/VQ-VAE: codebook EMA decay."""
    ema_eps: float = 1e-5
    """CLVQ/VQ-VAE: Laplace smoothing of EMA cluster sizes."""
    codebook_init: Literal["scaled_spherical", "kmeans++", "random"] = "scaled_spherical"
    """CLVQ/VQ-VAE: codebook initialisation."""
    init_iterations: int = 20
    """CLVQ/VQ-VAE: Lloyd iterations of the codebook initialisation."""
    init_max_vectors: int = 20000
    """CLVQ/VQ-VAE: initialise the codebook on at most this many random training vectors."""
    encoder: Literal["adaptive", "identity"] = "adaptive"
    """CLVQ/VQ-VAE: adaptive residual encoder or plain identity."""
    decoder_layers: int | None = None
    """CLVQ/VQ-VAE: transformer decoder layers; default from --preset."""
    decoder_positions: bool = True
    """CLVQ/VQ-VAE: add sinusoidal encodings of each word's sentence position to the decoder input."""
    decoder_heads: int = 8
    """CLVQ/VQ-VAE: attention heads (largest divisor of the hidden size not above this)."""
    decoder_ff: int | None = None
    """CLVQ/VQ-VAE: feed-forward width; default from --preset (quick: min(2048, 4 x hidden))."""
    dropout: float = 0.1
    """CLVQ/VQ-VAE: decoder dropout."""
    revive_dead: bool = False
    """CLVQ/VQ-VAE: restart dead codes on random batch vectors."""
    revive_threshold: float = 1e-3
    """CLVQ/VQ-VAE: EMA cluster size below which a code is dead."""
    sae_latents: int | None = None
    """SAE: number of latents; default 10 x hidden size."""
    sae_l1: float = 1e-4
    """SAE: L1 coefficient."""
    sae_topk: int | None = None
    """SAE: TopK SAE with this many active latents instead of L1."""
    sae_single_layer: bool = False
    """SAE: reconstruct L_in instead of L_out."""
    kmeans_max_points: int | None = 100000
    """k-means: fit on at most this many random training vectors."""
    agglomerative_max_points: int = 6000
    """Agglomerative: fit on at most this many random training vectors (Ward is O(n^2))."""
    progress: bool = True
    """Show progress bars."""


def resolve(config: TrainConfig, store: ActivationStore) -> TrainConfig:
    """Fill layer defaults and preset values, so the recorded config says what actually ran."""
    layers = store.layers
    layer_in = min(layers) if config.layer_in is None else config.layer_in
    layer_out = max(layers) if config.layer_out is None else config.layer_out
    for name, layer in (("--layer-in", layer_in), ("--layer-out", layer_out)):
        if layer not in layers:
            raise UserError(f"{name} {layer} was not extracted (cached: {layers}): pick one of them or rerun extract")
    preset = {k: v for k, v in PRESETS[config.preset].items() if getattr(config, k) is None}
    config = dataclasses.replace(config, layer_in=layer_in, layer_out=layer_out, **preset)
    cls = get_method(config.method)
    target = cls.target_layer(config_from(cls.config_class, config), layer_in, layer_out)
    return dataclasses.replace(config, layer_out=target)


def ignored_fields(config: TrainConfig) -> tuple[str, ...]:
    """Fields that cannot change this method's result: left out of the stage's config hash."""
    used = {f.name for f in dataclasses.fields(get_method(config.method).config_class)} | set(_COMMON)
    return tuple(f.name for f in dataclasses.fields(config) if f.name not in used or f.name in NON_RESULT_FIELDS)


def train(config: TrainConfig, on_epoch_end: EpochCallback | None = None) -> Path:
    """Train (or resume, or skip if finished) one method; returns its folder."""
    run = Run.open(config.runs_dir, config.run)
    store = ActivationStore(run.require("extract"))
    cls = get_method(config.method)
    config = resolve(config, store)
    stage = f"methods/{config.method}"
    exclude = ignored_fields(config)
    folder = run.stage_dir(stage)
    if not run.begin(stage, config, force=config.force, exclude=exclude):
        log.info("%s already trained in %s (pass --force to redo)", config.method, folder)
        return folder
    method_config = config_from(cls.config_class, config)
    data = LayerData(store, "train", config.layer_in, config.layer_out)
    if data.n_sentences == 0:
        raise UserError("the activation cache has no training sentences: rerun extract with more data")
    method = cls(method_config, MethodDims.of(data))
    log.info(
        "training %s on %d tokens (%d sentences), layer %d -> %d",
        config.method, data.n_tokens, data.n_sentences, config.layer_in, config.layer_out,
    )
    method.fit(data, workdir=folder, device=resolve_device(config.device), on_epoch_end=on_epoch_end, progress=config.progress)
    method.save(folder)
    history = getattr(method, "history", [])
    best = history[-1].get("best_epoch", len(history)) if history else 0
    run.finish(stage, config, exclude, best_metrics=history[best - 1] if history else {}, epochs_run=len(history))
    return folder
