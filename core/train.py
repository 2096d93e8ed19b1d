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
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch

from . import distributed
from .activations import ActivationStore
from .config import field_docs, flag
from .errors import UserError
from .methods import REGISTRY, LayerData, MethodDims, get_method, method_config
from .methods.base import EpochCallback
from .methods.trainer import NeuralMethod
from .runs import Run, RunOptions

log = logging.getLogger(__name__)


@dataclass
class TrainOptions(RunOptions):
    """Stage-level options of `clvq-judge train`; each method's own options come from its config class."""

    method: str = "clvq"
    """Concept method to fit (any registered one)."""
    preset: Literal["quick", "paper"] = "quick"
    """Defaults for unset method options: quick (each method's defaults; minutes on a CPU) or paper (the paper's sizes, e.g. CLVQ-VAE: 6 decoder layers, feed-forward 2048, 50 epochs, 128-sentence batches, lr 5e-3)."""
    layer_in: int | None = None
    """Input layer L_in (hidden-state index); default: the lowest cached layer."""
    layer_out: int | None = None
    """Target layer L_out; default: the highest cached layer (single-layer methods use L_in)."""
    progress: bool = True
    """Show progress bars."""


def train_config_class() -> type:
    """`TrainOptions` plus the options of every registered method, each once (unset = the method's
    default or its --preset value). Built from the registry, so a newly registered method brings its flags."""
    return _union(tuple((name, cls.config_class) for name, cls in REGISTRY.items()))


@cache
def _union(methods: tuple[tuple[str, type], ...]) -> type:
    users: dict[str, list[str]] = {}
    first: dict[str, tuple[type, dataclasses.Field]] = {}
    for name, config_class in methods:
        for f in dataclasses.fields(config_class):
            users.setdefault(f.name, []).append(name)
            first.setdefault(f.name, (config_class, f))
    own = {f.name for f in dataclasses.fields(TrainOptions)}
    names = [name for name, _ in methods]
    fields: list[Any] = [("method", Literal[tuple(names)], dataclasses.field(default="clvq" if "clvq" in names else names[0]))]
    docs = {"method": f"Concept method to fit: {', '.join(names)}."}
    for option_name, (config_class, f) in first.items():
        if option_name in own:
            continue
        hints = typing.get_type_hints(config_class)
        shown = f.default if f.default is not dataclasses.MISSING else None
        fields.append((option_name, hints[option_name] | None,
                       dataclasses.field(default=None, metadata={**f.metadata, "shown_default": shown})))
        who = users[option_name]
        prefix = "" if len(who) == len(names) else f"{', '.join(who)}: "
        docs[option_name] = prefix + field_docs(config_class).get(option_name, "")
    cls = dataclasses.make_dataclass("TrainConfig", fields, bases=(TrainOptions,))
    cls.__module__ = __name__
    cls.__doc__ = "Options of `clvq-judge train`: the stage's own and every registered method's."
    cls.__field_docs__ = docs
    return cls


TrainConfig = train_config_class()
"""The train config for the built-in methods (call `train_config_class()` after registering another)."""


@dataclass(frozen=True)
class Plan:
    """What `train` will fit: the method, its layers and its resolved config."""

    method: str
    layer_in: int
    layer_out: int
    options: Any

    def record(self) -> dict[str, Any]:
        """The stage config recorded in done.json and hashed: the method's options and its layers."""
        return {"method": self.method, "layer_in": self.layer_in, "layer_out": self.layer_out,
                **dataclasses.asdict(self.options)}


def plan(config: Any, store: ActivationStore) -> tuple[Plan, list[str]]:
    """Resolve layers and presets and check the combination, before any work; returns one-line warnings."""
    cls = get_method(config.method)
    layers = store.layers
    layer_in = store.layer_in if config.layer_in is None else config.layer_in
    layer_out = store.layer_out if config.layer_out is None else config.layer_out
    for name, layer in (("--layer-in", layer_in), ("--layer-out", layer_out)):
        if layer not in layers:
            raise UserError(f"{name} {layer} was not extracted (cached: {layers}): pick one of them or rerun extract")
    mine = {f.name for f in dataclasses.fields(cls.config_class)}
    given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
             if f.name in mine and getattr(config, f.name, None) is not None}
    options = method_config(cls.config_class, config.preset, given)
    target = cls.target_layer(options, layer_in, layer_out)
    warnings = []
    if target != layer_out and config.layer_out is not None:
        warnings.append(f"--layer-out {layer_out} is ignored: {config.method} reconstructs its input layer {target}")
    elif target != layer_in and layer_out < layer_in:
        raise UserError(f"--layer-out {layer_out} lies below --layer-in {layer_in}: a cross-layer method maps a lower layer to a higher one")
    unused = [flag(f.name) for f in dataclasses.fields(config)
              if f.name not in mine and not hasattr(TrainOptions, f.name) and getattr(config, f.name) is not None]
    if unused:
        warnings.append(f"{', '.join(unused)} not used by {config.method}: ignored")
    dims = MethodDims(store.hidden_size, store.hidden_size, layer_in, target, store.model_kind)
    warnings += cls.check(options, dims)
    return Plan(config.method, layer_in, target, options), warnings


def train(config: Any, on_epoch_end: EpochCallback | None = None) -> Path:
    """Train (or resume, or skip if finished) one method; returns its folder.

    Under `torchrun --nproc-per-node N` a neural method trains data-parallel on N processes (see
    `methods/trainer.py`); only rank 0 writes the method folder and the others wait for it.
    """
    with distributed.session(config.device) as device:
        return _train(config, device, on_epoch_end)


def _train(config: Any, device: torch.device, on_epoch_end: EpochCallback | None) -> Path:
    run = Run.open(config.runs_dir, config.run)
    store = ActivationStore(run.require("extract"))
    cls = get_method(config.method)
    chosen, warnings = plan(config, store)
    for warning in warnings:
        log.warning("train: %s", warning)
    stage = f"methods/{config.method}"
    folder = run.stage_dir(stage)
    if not distributed.on_main(lambda: run.begin(stage, chosen.record(), force=config.force, inputs=("extract",))):
        log.info("%s already trained in %s (pass --force to redo)", config.method, folder)
        return folder
    data = LayerData(store, "train", chosen.layer_in, chosen.layer_out)
    if data.n_sentences == 0:
        raise UserError("the activation cache has no training sentences: rerun extract with more data")
    method = cls(chosen.options, MethodDims.of(data))
    log.info(
        "training %s on %d tokens (%d sentences), layer %d -> %d",
        config.method, data.n_tokens, data.n_sentences, chosen.layer_in, chosen.layer_out,
    )
    parallel = isinstance(method, NeuralMethod)
    if distributed.is_distributed() and not parallel:
        log.info("%s is not data-parallel: rank 0 fits it alone%s", config.method,
                 "" if distributed.is_main() else f", rank {distributed.rank()} waits")
    if parallel or distributed.is_main():
        method.fit(data, workdir=folder, device=device, on_epoch_end=on_epoch_end, progress=config.progress)
    if distributed.is_main():
        method.save(folder)
        history = getattr(method, "history", [])
        best = history[-1].get("best_epoch", len(history)) if history else 0
        # The number of processes is recorded, not hashed: each trains on --batch-sentences per step, so
        # it changes the effective batch (and the result) like the device changes float rounding.
        run.finish(stage, chosen.record(), best_metrics=history[best - 1] if history else {}, epochs_run=len(history),
                   world_size=distributed.world_size())
    distributed.barrier()  # the other ranks return once the method folder is complete
    return folder
