"""Per-dimension standardisation of activations, the math only (pure functions on arrays and tensors).

Residual streams of decoder models carry a few dimensions whose values are hundreds of times larger than
the rest (Gemma-3-270M); Euclidean distances, k-means and reconstruction losses then see little else. A
method that standardises fits in z = (x - mu) / sigma, with mu and sigma per dimension over its training
rows, and maps what it shows the world back to the model's space:

- a point c (a centroid, a code vector) back to mu + sigma * c, so a k-means centroid becomes exactly the
  model-space mean of its members;
- a covector w (an SAE encoder row, read out as w . z) to w / sigma, so that (w / sigma) . x differs from
  w . z only by the constant (w / sigma) . mu;
- a direction d (an SAE decoder column, added to z) to sigma * d.

Statistics are accumulated chunk by chunk (Chan et al.'s pairwise merge of counts, means and squared
deviations, in float64), so a cache far larger than memory never becomes one array.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

REL_EPS = 1e-3
"""A dimension's std is floored at this share of the root-mean-square std over all dimensions: a dead
(constant) dimension stays 0 after centring instead of being blown up by a division by ~0."""

PREFIX = "standardize."
"""Key prefix of the statistics in a method's model.safetensors."""


def fit_stats(chunks: Iterable[np.ndarray], rel_eps: float = REL_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and floored std (float64 [D] each) of the rows of all chunks [n_i, D]."""
    n, mean, m2 = 0, None, None
    for chunk in chunks:
        block = np.asarray(chunk, dtype=np.float64)
        if not len(block):
            continue
        nb = len(block)
        mb = block.mean(0)
        m2b = ((block - mb) ** 2).sum(0)
        if mean is None:
            n, mean, m2 = nb, mb, m2b
            continue
        total = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta**2 * (n * nb / total)
        n = total
    if mean is None:
        raise ValueError("no rows to compute standardisation statistics from")
    return mean, floor_std(np.sqrt(m2 / n), rel_eps)


def floor_std(std: np.ndarray, rel_eps: float = REL_EPS) -> np.ndarray:
    """std with every entry raised to at least rel_eps times its root-mean-square (1 if all are zero)."""
    rms = float(np.sqrt(np.mean(np.square(std)))) if len(std) else 0.0
    return np.maximum(std, rel_eps * rms) if rms > 0 else np.ones_like(std)


def _like(t: torch.Tensor, x):
    """The statistic `t` in x's kind: numpy for numpy input, else a tensor on x's device and dtype."""
    if isinstance(x, np.ndarray):
        return t.numpy().astype(x.dtype if x.dtype.kind == "f" else np.float32, copy=False)
    return t.to(device=x.device, dtype=x.dtype)


@dataclass(frozen=True)
class Affine:
    """One space's statistics: z = (x - mean) / std; float32 CPU tensors [D]."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, chunks: Iterable[np.ndarray], rel_eps: float = REL_EPS) -> Affine:
        mean, std = fit_stats(chunks, rel_eps)
        return cls(torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32)))

    def apply(self, x):
        """Model space -> standardised space (numpy array or tensor, rows [..., D])."""
        return (x - _like(self.mean, x)) / _like(self.std, x)

    def invert(self, z):
        """Standardised point(s) -> model space: mu + sigma * z."""
        return z * _like(self.std, z) + _like(self.mean, z)

    def covector_to_model(self, w):
        """A row read out as w . z -> the model-space row w / sigma (equal read-out up to a constant)."""
        return w / _like(self.std, w)

    def direction_to_model(self, d):
        """A displacement d in the standardised space -> sigma * d in the model's space."""
        return d * _like(self.std, d)


@dataclass(frozen=True)
class Scaling:
    """Statistics of a method's input layer and of the layer it reconstructs (the same for single-layer methods)."""

    inp: Affine
    out: Affine

    def tensors(self) -> dict[str, torch.Tensor]:
        # Copies: a single-layer method's `out` is its `inp`, and safetensors refuses shared storage.
        return {f"{PREFIX}in_mean": self.inp.mean.clone(), f"{PREFIX}in_std": self.inp.std.clone(),
                f"{PREFIX}out_mean": self.out.mean.clone(), f"{PREFIX}out_std": self.out.std.clone()}

    @classmethod
    def pop_from(cls, tensors: dict[str, torch.Tensor]) -> Scaling | None:
        """Remove the statistics from a saved method's tensors; None (identity) for a method saved without."""
        own = {k[len(PREFIX):]: tensors.pop(k).float().cpu() for k in list(tensors) if k.startswith(PREFIX)}
        if not own:
            return None
        return cls(Affine(own["in_mean"], own["in_std"]), Affine(own["out_mean"], own["out_std"]))
