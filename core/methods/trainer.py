"""Epoch loop shared by the gradient-trained methods (CLVQ-VAE, VQ-VAE, SAE).

Adam + ReduceLROnPlateau (halving) + early stopping on a validation plateau (`early_stop` epochs without a
relative gain of `early_stop_min_gain`, options of every gradient-trained method), best-validation weights kept. After every epoch the
whole training state (weights, optimizer, scheduler, counters, torch RNG, metrics history) goes into one
atomically written safetensors file, so a run killed at any moment resumes from its last finished epoch.

Files in the work folder: `checkpoint.safetensors` (last epoch), `best.safetensors` (best weights),
`metrics.jsonl` (one JSON object per finished epoch; rewritten from the checkpoint's history).

Under `torchrun` (see `core/distributed.py`) the loop is data-parallel: every rank draws the same seeded
batch order and trains on its share of it (`rank_share`), `DistributedDataParallel` averages the
gradients, the quantizer sums its EMA statistics over the ranks, rank 0 computes the validation metrics
and sends them to all (so the schedule and early stopping agree), and only rank 0 writes files.
"""

from __future__ import annotations

import functools
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
from safetensors.torch import save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import distributed
from ..atomic import write_text, write_with
from .base import ConceptMethod, EpochCallback, OptimConfig, read_tensors
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
    """Epochs since the validation loss last fell by the minimum gain below `reference`."""
    reference: float = math.inf
    """Validation loss of the last epoch that counted as progress for early stopping."""
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def in_eval_mode(fn):
    """Run a method of a `NeuralMethod` with its module in eval mode (dropout off, nearest codes, no EMA
    codebook update) and without gradients, then give every submodule back the mode the caller had set."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        try:
            with torch.no_grad():
                return fn(self, *args, **kwargs)
        finally:
            for m, training in modes:
                m.training = training

    return wrapper


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
        """Validation metrics of model-space `data` (the method standardises it itself, `self.internal`); must
        include `val_loss`, the quantity early stopping watches (in the space the method trains in), and
        report reconstruction figures (val_mse, val_fvu) in the model's space."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.module.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(tensors)
        # A loaded method is for assigning and evaluating: a module left in training mode would sample
        # codes and move its codebook on every call.
        self.module.eval()
        if tensors:  # follow the device the tensors were loaded onto
            self.module.to(next(iter(tensors.values())).device)

    def fit(self, data, workdir=None, device="cpu", on_epoch_end=None, progress=False):
        self.fit_scaling(data)
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
    tensors = read_tensors(path)  # first: a damaged file becomes a one-line error
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
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
    values = json.loads(metadata["state"])
    # A checkpoint from before the minimum gain counted progress against the best loss itself.
    values.setdefault("reference", values.get("best", math.inf))
    return TrainState(**values)


def _write_metrics(workdir: Path, history: list[dict[str, Any]]) -> None:
    write_text(workdir / METRICS, "".join(json.dumps(row, sort_keys=True) + "\n" for row in history))


# --- data parallelism -------------------------------------------------------------------------------
class _StepModule(nn.Module):
    """The method's module with its training loss as `forward`, for DDP to wrap.

    DDP syncs gradients of what runs inside its own forward call; each method computes its loss in
    `step_loss` through the plain module, so the wrapper's forward is that call.
    """

    def __init__(self, method: NeuralMethod):
        super().__init__()
        self.inner = method.module
        self._step = method.step_loss

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, Any]]:
        return self._step(batch)


def _data_parallel(method: NeuralMethod, device: torch.device) -> nn.Module | None:
    """A DDP wrapper of the method's training step under torchrun; None in a single process."""
    if not distributed.is_distributed():
        return None
    # Initialisation (or a resumed checkpoint) can differ in the last bit between ranks: start from
    # rank 0's state, buffers (codebook, EMA statistics) included.
    for tensor in method.module.state_dict().values():
        distributed.broadcast_(tensor)
    # Buffers are not re-broadcast each step: the codebook stays identical because every rank applies
    # the same all-reduced EMA update (see quantizer.py), not because rank 0 overwrites it.
    return DistributedDataParallel(
        _StepModule(method), device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False
    )


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Torch seed of one rank's epoch: sampling and dropout differ between ranks and resume exactly."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


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
    # Batches and initialisation see the method's own (standardised) space; `evaluate` takes model-space
    # data like every outside caller and standardises it itself.
    train = method.internal(train)
    rank, world = distributed.rank(), distributed.world_size()
    writes = workdir is not None and rank == 0
    torch.manual_seed(cfg.seed)
    module = method.module.to(device)
    # foreach: one multi-tensor kernel per update term instead of a loop over parameter tensors; bitwise the
    # same weights (checked on CLVQ-VAE), and far fewer thread synchronisations on a busy CPU.
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=cfg.plateau_patience)
    checkpoint = workdir / CHECKPOINT if workdir else None
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, module, opt, sched, device)
        best_weights = {k: v.to(device) for k, v in read_tensors(workdir / BEST).items()}
        log.info("resuming %s after epoch %d", method.name, state.epoch)
    else:
        state = TrainState()
        method.initialize(train, device)
        best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
    ddp = _data_parallel(method, device)
    if ddp is not None:
        log.info("%s: rank %d of %d trains on 1 in %d of each epoch's batches; rank 0 validates and writes",
                 method.name, rank, world, world)
    step = ddp if ddp is not None else method.step_loss
    n_batches = math.ceil(math.ceil(train.n_sentences / cfg.batch_sentences) / world)

    while state.epoch < cfg.epochs and not state.stopped:
        epoch = state.epoch
        if world > 1:
            torch.manual_seed(_epoch_seed(cfg.seed, epoch, rank))
        method.start_epoch(epoch)
        module.train()
        started = time.perf_counter()
        sums: dict[str, torch.Tensor | float] = {}
        tokens = 0
        rng = np.random.default_rng([cfg.seed, epoch])
        bar = tqdm(
            train.batches(cfg.batch_sentences, rng, device, shard=(rank, world)),
            total=n_batches,
            desc=f"{method.name} epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        )
        for i, batch in enumerate(bar):
            loss, stats = step(batch)
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
            if progress and rank == 0 and (i % 25 == 0):
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if world > 1:
            sums, tokens = _sum_over_ranks(sums, tokens, device)
        seconds = time.perf_counter() - started
        module.eval()
        # One rank validates (the weights are the same on all) and every rank gets its numbers, so the
        # schedule, the best epoch and early stopping are decided identically everywhere.
        metrics = distributed.on_main(lambda: _evaluate(method, val, device))
        sched.step(metrics["val_loss"])
        improved = metrics["val_loss"] < state.best
        if improved:
            state.best, state.best_epoch = metrics["val_loss"], epoch + 1
            best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        if progressed(metrics["val_loss"], state.reference, cfg.early_stop_min_gain):
            state.reference, state.since_best = metrics["val_loss"], 0
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
        (log.info if rank == 0 else log.debug)(
            "%s epoch %d: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
            method.name,
            epoch + 1,
        )
        if writes:
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
    if world > 1:
        # Identical digests on all ranks show the ranks ended with the same weights and codebook.
        log.info("%s rank %d/%d: final weights digest %s", method.name, rank, world,
                 distributed.state_digest(module.state_dict()))
    return state


def progressed(loss: float, reference: float, min_gain: float) -> bool:
    """Whether a validation loss counts as progress for early stopping: below `reference` by at least the
    relative `min_gain` (any drop when 0, the paper's rule). Against the last epoch that progressed, not the
    previous one, so a slow steady decline still adds up to progress."""
    if not math.isfinite(reference):
        return True
    return loss < reference - min_gain * abs(reference)


def _evaluate(method: NeuralMethod, val: LayerData, device: torch.device) -> dict[str, float]:
    with torch.no_grad():
        return method.evaluate(val, device)


def _sum_over_ranks(sums: dict[str, Any], tokens: int, device: torch.device) -> tuple[dict[str, Any], int]:
    """Training statistics of all ranks' batches (every rank has the same keys: the same method)."""
    keys = sorted(sums)
    vec = torch.tensor([float(sums[k]) for k in keys] + [float(tokens)], dtype=torch.float64, device=device)
    distributed.all_reduce_sum_(vec)
    values = vec.tolist()
    return dict(zip(keys, values[:-1])), int(values[-1])
