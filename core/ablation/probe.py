"""MLP probes with stratified k-fold cross-validation, all folds trained at once.

The paper trains one small MLP per fold. Here the F probes are one batched model (weights [F, ...],
`torch.bmm` over the fold dimension) with a hand-written Adam whose steps can be masked per fold, so each
fold keeps its own early stopping exactly as if it were trained alone, at the cost of one model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeConfig:
    hidden: int = 64
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 32
    patience: int = 5
    """Epochs without a better inner-validation loss before a fold stops (its best epoch is kept)."""
    max_epochs: int = 100
    val_fraction: float = 0.1
    """Share of each fold's training part held out (stratified) for early stopping."""


def stratified_folds(y: np.ndarray, n_folds: int, seed: int, warn: bool = True) -> np.ndarray:
    """Fold id per sample: folds are disjoint, cover every sample, and each holds every class in
    proportion (per-class counts differ by at most one between folds)."""
    y = np.asarray(y)
    if n_folds < 2:
        raise UserError(f"--folds {n_folds} is too few for cross-validation: pass 2 or more")
    if n_folds > len(y):
        raise UserError(f"--folds {n_folds} exceeds the {len(y)} evaluation sentences: pass at most {len(y)}")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    offset = 0
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        # Continuing the count across classes keeps the total fold sizes balanced too.
        folds[members] = (offset + np.arange(len(members))) % n_folds
        offset += len(members)
    smallest = np.bincount(np.unique(y, return_inverse=True)[1]).min()
    if warn and smallest < n_folds:
        log.warning("a class has only %d sentences for %d folds: some test folds lack it", smallest, n_folds)
    return folds


def _padded(groups: list[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged index lists -> [F, M] index tensor (padding points at row 0) and validity mask."""
    width = max(1, max(len(g) for g in groups))
    index = np.zeros((len(groups), width), dtype=np.int64)
    mask = np.zeros((len(groups), width), dtype=bool)
    for f, g in enumerate(groups):
        index[f, : len(g)] = g
        mask[f, : len(g)] = True
    return torch.from_numpy(index).to(device), torch.from_numpy(mask).to(device)


@dataclass
class FoldProbes:
    """F trained probes; probe f was trained without the sentences of test fold f."""

    w1: torch.Tensor  # [F, D, H]
    b1: torch.Tensor  # [F, 1, H]
    w2: torch.Tensor  # [F, H, C]
    b2: torch.Tensor  # [F, 1, C]
    mean: torch.Tensor  # [F, 1, D] standardisation fitted on each fold's training part
    std: torch.Tensor  # [F, 1, D]
    folds: np.ndarray  # [N] test fold of each sample
    epochs: np.ndarray  # [F] epochs each fold trained (including the patience epochs)

    @property
    def n_folds(self) -> int:
        return self.w1.shape[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [F, n, D] -> logits [F, n, C] (evaluation mode: no dropout)."""
        h = torch.relu(torch.baddbmm(self.b1, (x - self.mean) / self.std, self.w1))
        return torch.baddbmm(self.b2, h, self.w2)

    @torch.no_grad()
    def predict_out_of_fold(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Class of every sample [N] by the probe that never saw it; `x` may be perturbed vectors."""
        x = torch.as_tensor(x, dtype=torch.float32, device=self.w1.device)
        index, mask = _padded([np.flatnonzero(self.folds == f) for f in range(self.n_folds)], x.device)
        pred = self.logits(x[index]).argmax(-1)
        out = np.empty(len(self.folds), dtype=np.int64)
        out[index[mask].cpu().numpy()] = pred[mask].cpu().numpy()
        return out


def _init_linear(n_folds: int, fan_in: int, fan_out: int, generator: torch.Generator, device):
    # nn.Linear's default initialisation, drawn for all folds at once.
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(n_folds, fan_in, fan_out, generator=generator) * 2 - 1) * bound
    b = (torch.rand(n_folds, 1, fan_out, generator=generator) * 2 - 1) * bound
    return w.to(device), b.to(device)


@contextmanager
def _single_thread(device: torch.device) -> Iterator[None]:
    """The probes' ops are tiny: on a CPU shared with other work, a second intra-op thread only adds
    synchronisation (measured 3x slower on 2 busy cores), so train on one thread and restore after."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_fold_probes(
    x: torch.Tensor | np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    n_classes: int | None = None,
    config: ProbeConfig = ProbeConfig(),
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> FoldProbes:
    """Train one MLP per fold on the unperturbed vectors `x` [N, D] with labels `y` [N]."""
    device = torch.device(device)
    with _single_thread(device):
        return _train(x, y, folds, n_classes, config, seed, device)


def _train(x, y, folds, n_classes, config: ProbeConfig, seed: int, device: torch.device) -> FoldProbes:
    x = torch.as_tensor(x, dtype=torch.float32).to(device)
    y_np = np.asarray(y, dtype=np.int64)
    yt = torch.tensor(y_np, device=device)
    folds = np.asarray(folds, dtype=np.int64)
    n_folds = int(folds.max()) + 1
    n_classes = int(n_classes or y_np.max() + 1)
    inner = max(2, round(1 / config.val_fraction))
    fit_sets, val_sets = [], []
    for f in range(n_folds):
        train = np.flatnonzero(folds != f)
        split = stratified_folds(y_np[train], min(inner, len(train)), seed + 1 + f, warn=False) if len(train) >= 2 else np.ones(len(train))
        fit_sets.append(train[split != 0])
        val_sets.append(train[split == 0])
    fit_idx, fit_mask = _padded(fit_sets, device)
    val_idx, val_mask = _padded(val_sets, device)

    fit_w = fit_mask.float()[..., None]
    count = fit_w.sum(1, keepdim=True).clamp_min(1)
    xf = x[fit_idx]
    mean = (xf * fit_w).sum(1, keepdim=True) / count
    std = (((xf - mean) ** 2 * fit_w).sum(1, keepdim=True) / count).sqrt().clamp_min(1e-6)
    del xf

    generator = torch.Generator().manual_seed(int(seed))
    w1, b1 = _init_linear(n_folds, x.shape[1], config.hidden, generator, device)
    w2, b2 = _init_linear(n_folds, config.hidden, n_classes, generator, device)
    params = [w1, b1, w2, b2]
    for p in params:
        p.requires_grad_(True)
    best = [p.detach().clone() for p in params]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    steps = torch.zeros(n_folds, device=device)
    best_loss = torch.full((n_folds,), float("inf"), device=device)
    waited = torch.zeros(n_folds, dtype=torch.long, device=device)
    active = torch.ones(n_folds, dtype=torch.bool, device=device)
    epochs = np.zeros(n_folds, dtype=np.int64)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    keep = 1.0 - config.dropout

    def forward(xb: torch.Tensor, train: bool) -> torch.Tensor:
        h = torch.relu(torch.baddbmm(params[1], (xb - mean) / std, params[0]))
        if train and config.dropout > 0:
            h = h * (torch.rand(h.shape, generator=generator).to(device) < keep) / keep
        return torch.baddbmm(params[3], h, params[2])

    def fold_loss(idx: torch.Tensor, mask: torch.Tensor, train: bool) -> torch.Tensor:
        logits = forward(x[idx], train)
        each = F.cross_entropy(logits.reshape(-1, n_classes), yt[idx].reshape(-1), reduction="none").view(idx.shape)
        return (each * mask).sum(1) / mask.sum(1).clamp_min(1)

    for epoch in range(config.max_epochs):
        if not active.any():
            break
        epochs[active.cpu().numpy()] = epoch + 1
        keys = torch.rand(fit_idx.shape, generator=generator).to(device).masked_fill(~fit_mask, 2.0)
        order = keys.argsort(dim=1)
        idx_all, mask_all = fit_idx.gather(1, order), fit_mask.gather(1, order)
        for start in range(0, idx_all.shape[1], config.batch_size):
            idx, mask = idx_all[:, start : start + config.batch_size], mask_all[:, start : start + config.batch_size]
            stepping = active & mask.any(1)
            if not stepping.any():
                continue
            # Folds are independent: the summed loss gives each fold's parameters its own mean-loss gradient.
            grads = torch.autograd.grad(fold_loss(idx, mask, True).sum(), params)
            with torch.no_grad():
                steps += stepping.float()
                t = steps.clamp_min(1).view(-1, 1, 1)
                s = stepping.view(-1, 1, 1)
                for p, g, (m, v) in zip(params, grads, moments):
                    m.copy_(torch.where(s, beta1 * m + (1 - beta1) * g, m))
                    v.copy_(torch.where(s, beta2 * v + (1 - beta2) * g * g, v))
                    update = config.lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
                    p.sub_(torch.where(s, update, torch.zeros_like(update)))
        with torch.no_grad():
            val = fold_loss(val_idx, val_mask, False)
            better = active & (val < best_loss)
            for p, b in zip(params, best):
                b.copy_(torch.where(better.view(-1, 1, 1), p, b))
            best_loss = torch.where(better, val, best_loss)
            waited = torch.where(better, torch.zeros_like(waited), waited + 1)
            active &= waited < config.patience
    log.debug("probes trained: %s epochs per fold", epochs.tolist())
    return FoldProbes(*[b.detach() for b in best], mean=mean, std=std, folds=folds, epochs=epochs)
