"""Accuracy summaries: per-fold mean and spread, relative drop, flip rate (bootstrap intervals: `core.stats`)."""

from __future__ import annotations

import numpy as np


def fold_accuracies(correct: np.ndarray, folds: np.ndarray, n_folds: int | None = None) -> np.ndarray:
    """Accuracy of each fold [F] from per-sample correctness and fold ids."""
    folds = np.asarray(folds, dtype=np.int64)
    n_folds = int(n_folds or folds.max() + 1)
    hits = np.bincount(folds, weights=np.asarray(correct, dtype=np.float64), minlength=n_folds)
    sizes = np.bincount(folds, minlength=n_folds)
    return hits / np.maximum(sizes, 1)


def relative_drop(before: float, after: float) -> float:
    """(before - after) / before: 0.935 means 93.5% of the accuracy is gone."""
    return float((before - after) / before) if before > 0 else float("nan")


def flip_rate(pred: np.ndarray, reference: np.ndarray) -> float:
    """Share of items whose prediction differs from the reference (unperturbed) prediction."""
    pred, reference = np.asarray(pred), np.asarray(reference)
    return float((pred != reference).mean()) if len(pred) else float("nan")
