"""Epoch loop shared by the gradient-trained methods (CLVQ-VAE, VQ-VAE, SAE).

Adam + ReduceLROnPlateau (halving) + early stopping, best-validation weights kept. After every epoch the
whole training state (weights, optimizer, scheduler, counters, torch RNG, metrics history) goes into one
atomically written safetensors file, so a run killed at any moment resumes from its last finished epoch.

Files in the work folder: `checkpoint.safetensors` (last epoch), `best.safetensors` (best weights),
`metrics.jsonl` (one JSON object per finished epoch; rewritten from the checkpoint's history).
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..atomic import write_text, write_with
from .base import ConceptMethod, EpochCallback, OptimConfig
from .batching import Batch, LayerData

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"


@dataclass
class TrainState:
    epoch: int = 0
    """Number of finished epochs."""
    best: float = math.inf
    best_epoch: int = 0
    since_best: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class NeuralMethod(ConceptMethod):
    """A concept method whose parameters live in one nn.Module trained by `fit_neural`."""

    config_class = OptimConfig
    module: nn.Module

    def __init__(self, config: Any, dims: Any):
        super().__init__(config, dims)
        # Seeded construction without disturbing the caller's RNG: same seed, same initial weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(getattr(config, "seed", 0))
            self.module = self.build()
        self.history: list[dict[str, Any]] = []

    @abstractmethod
    def build(self) -> nn.Module:
        """The untrained module for `self.config` and `self.dims`."""

    def initialize(self, data: LayerData, device: torch.device) -> None:
        """Data-dependent initialisation before the first epoch (skipped on resume)."""

    def start_epoch(self, epoch: int) -> None:
        """Per-epoch schedule hook (e.g. temperature annealing)."""

    def after_step(self) -> None:
        """Hook after each optimizer step (e.g. renormalising decoder columns)."""

    @abstractmethod
    def step_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on one batch and per-token-averaged statistics to log (detached tensors)."""

    @abstractmethod
    def evaluate(self, data: LayerData, device: torch.device) -> dict[str, float]:
        """Validation metrics; must include `val_loss`, the quantity early stopping watches."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.module.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(tensors)
        if tensors:  # follow the device the tensors were loaded onto
            self.module.to(next(iter(tensors.values())).device)

    def fit(self, data, workdir=None, device="cpu", on_epoch_end=None, progress=False):
        fit_neural(self, data, Path(workdir) if workdir else None, torch.device(device), on_epoch_end, progress)
        return self


# --- checkpoint I/O ---------------------------------------------------------------------------------
def _save_checkpoint(path: Path, module: nn.Module, opt: torch.optim.Optimizer, sched: Any, state: TrainState) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    opt_state = opt.state_dict()
    for i, entries in opt_state["state"].items():
        for key, value in entries.items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    metadata = {
        "state": json.dumps(asdict(state)),
        "param_groups": json.dumps(opt_state["param_groups"]),
        "scheduler": json.dumps(sched.state_dict(), default=float),
    }
    write_with(path, lambda p: save_file(tensors, str(p), metadata=metadata), suffix=".safetensors")


def _load_checkpoint(path: Path, module: nn.Module, opt: torch.optim.Optimizer, sched: Any, device) -> TrainState:
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    module.load_state_dict({k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model.")})
    opt_entries: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            opt_entries.setdefault(int(i), {})[name] = value if name == "step" else value.to(device)
    opt.load_state_dict({"state": opt_entries, "param_groups": json.loads(metadata["param_groups"])})
    sched.load_state_dict(json.loads(metadata["scheduler"]))
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return TrainState(**json.loads(metadata["state"]))


def _write_metrics(workdir: Path, history: list[dict[str, Any]]) -> None:
    write_text(workdir / METRICS, "".join(json.dumps(row, sort_keys=True) + "\n" for row in history))


# --- the loop ---------------------------------------------------------------------------------------
def fit_neural(
    method: NeuralMethod,
    data: LayerData,
    workdir: Path | None,
    device: torch.device,
    on_epoch_end: EpochCallback | None = None,
    progress: bool = False,
) -> TrainState:
    cfg: OptimConfig = method.config
    train, val = data.split(cfg.val_fraction, cfg.seed)
    if val.n_sentences == 0:
        val = train
    torch.manual_seed(cfg.seed)
    module = method.module.to(device)
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=cfg.plateau_patience)
    checkpoint = workdir / CHECKPOINT if workdir else None
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, module, opt, sched, device)
        best_weights = {k: v.to(device) for k, v in load_file(str(workdir / BEST)).items()}
        log.info("resuming %s after epoch %d", method.name, state.epoch)
    else:
        state = TrainState()
        method.initialize(train, device)
        best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
    n_batches = math.ceil(train.n_sentences / cfg.batch_sentences)

    while state.epoch < cfg.epochs and not state.stopped:
        epoch = state.epoch
        method.start_epoch(epoch)
        module.train()
        started = time.perf_counter()
        sums: dict[str, torch.Tensor | float] = {}
        tokens = 0
        rng = np.random.default_rng([cfg.seed, epoch])
        bar = tqdm(
            train.batches(cfg.batch_sentences, rng, device),
            total=n_batches,
            desc=f"{method.name} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for step, batch in enumerate(bar):
            loss, stats = method.step_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            method.after_step()
            n = batch.n_tokens
            tokens += n
            # Statistics stay on the device and are read once per epoch: a per-step .item() would
            # synchronise a GPU after every batch.
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v * n
            if progress and (step % 25 == 0):
                bar.set_postfix(loss=f"{loss.item():.4f}")
        seconds = time.perf_counter() - started
        module.eval()
        with torch.no_grad():
            metrics = method.evaluate(val, device)
        sched.step(metrics["val_loss"])
        improved = metrics["val_loss"] < state.best
        if improved:
            state.best, state.best_epoch, state.since_best = metrics["val_loss"], epoch + 1, 0
            best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            state.since_best += 1
        state.epoch = epoch + 1
        state.stopped = state.since_best >= cfg.early_stop
        row = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
            "train_tokens": tokens,
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            **{f"train_{k}": float(v) / max(tokens, 1) for k, v in sums.items()},
            **metrics,
            "best_epoch": state.best_epoch,
        }
        state.history.append(row)
        log.info(
            "%s epoch %d: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
            method.name,
            epoch + 1,
        )
        if workdir is not None:
            # Best weights first: a checkpoint must never point at a best file that does not exist yet.
            if improved or not (workdir / BEST).exists():
                cpu_best = {k: v.detach().cpu().contiguous() for k, v in best_weights.items()}
                write_with(workdir / BEST, lambda p, t=cpu_best: save_file(t, str(p)), suffix=".safetensors")
            _save_checkpoint(checkpoint, module, opt, sched, state)
            _write_metrics(workdir, state.history)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
        if state.stopped:
            log.info("%s: early stop after epoch %d (best epoch %d)", method.name, epoch + 1, state.best_epoch)
    module.load_state_dict(best_weights)
    module.eval()
    method.history = state.history
    return state
