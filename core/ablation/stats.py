"""Accuracy summaries: per-fold mean and spread, bootstrap intervals, relative drop, flip rate."""

from __future__ import annotations

import numpy as np


def fold_accuracies(correct: np.ndarray, folds: np.ndarray, n_folds: int | None = None) -> np.ndarray:
    """Accuracy of each fold [F] from per-sample correctness and fold ids."""
    folds = np.asarray(folds, dtype=np.int64)
    n_folds = int(n_folds or folds.max() + 1)
    hits = np.bincount(folds, weights=np.asarray(correct, dtype=np.float64), minlength=n_folds)
    sizes = np.bincount(folds, minlength=n_folds)
    return hits / np.maximum(sizes, 1)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampling items, seeded).

    For a paired comparison pass per-item differences (e.g. correct_random - correct_concept).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Chunks bound memory at about 4M indices however many items there are.
    chunk = max(1, 4_000_000 // len(values))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        means[start : start + size] = values[rng.integers(0, len(values), size=(size, len(values)))].mean(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def relative_drop(before: float, after: float) -> float:
    """(before - after) / before: 0.935 means 93.5% of the accuracy is gone."""
    return float((before - after) / before) if before > 0 else float("nan")


def flip_rate(pred: np.ndarray, reference: np.ndarray) -> float:
    """Share of items whose prediction differs from the reference (unperturbed) prediction."""
    pred, reference = np.asarray(pred), np.asarray(reference)
    return float((pred != reference).mean()) if len(pred) else float("nan")
