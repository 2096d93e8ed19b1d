"""Codebook initialisation in torch (vectorised; no sklearn): random, k-means++, scaled spherical k-means++.

Scaled spherical k-means++ (the default, spec section 2): L2-normalise the vectors, run k-means++
seeding and Lloyd iterations on the unit sphere, renormalise the centroids, then scale each one by the
mean norm of the original vectors in its cluster (the global mean norm for an empty cluster). Directions
come from cosine geometry; the scale puts every code where its members actually live.
"""

from __future__ import annotations

import torch

from .quantizer import squared_distances

INIT_METHODS = ("scaled_spherical", "kmeans++", "random")


def _generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to D(x)^2.

    Squared norms are computed once, so each step is one matrix-vector product and allocates only [N]
    vectors (a fresh [N, D] temporary per step made glibc's heap balloon to several GB)."""
    n = x.shape[0]
    sq = (x * x).sum(1)
    picks = torch.empty(k, dtype=torch.long, device=x.device)
    picks[0] = torch.randint(0, n, (1,), generator=generator, device=x.device)[0]
    closest = (sq - 2.0 * (x @ x[picks[0]]) + sq[picks[0]]).clamp_min_(0.0)
    for i in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: fall back to uniform picks
            pick = torch.randint(0, n, (1,), generator=generator, device=x.device)[0]
        else:
            pick = torch.multinomial(closest / total, 1, generator=generator)[0]
        picks[i] = pick
        torch.minimum(closest, (sq - 2.0 * (x @ x[pick]) + sq[pick]).clamp_min_(0.0), out=closest)
    return x[picks].clone()


def lloyd(
    x: torch.Tensor, centres: torch.Tensor, iterations: int, spherical: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd iterations (cosine assignment and unit centroids when `spherical`); returns (centres, labels)."""
    k = centres.shape[0]
    labels = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(max(iterations, 0) + 1):
        if spherical:
            labels = torch.argmax(x @ centres.T, dim=1)
        else:
            labels = torch.argmin(squared_distances(x, centres), dim=1)
        if _ == iterations:
            break
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        filled = counts > 0
        new = centres.clone()  # an empty cluster keeps its old centre
        new[filled] = sums[filled] / counts[filled, None]
        if spherical:
            new = torch.nn.functional.normalize(new, dim=1)
        centres = new
    return centres, labels


def scaled_spherical_kmeans(x: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    norms = x.norm(dim=1)
    unit = torch.nn.functional.normalize(x, dim=1)
    centres = torch.nn.functional.normalize(kmeans_plus_plus(unit, k, generator), dim=1)
    centres, labels = lloyd(unit, centres, iterations, spherical=True)
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    norm_sums = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, labels, norms)
    scale = torch.where(counts > 0, norm_sums / counts.clamp_min(1), norms.mean())
    return centres * scale[:, None]


def init_codebook(x: torch.Tensor, k: int, method: str = "scaled_spherical", iterations: int = 20, seed: int = 0) -> torch.Tensor:
    """[k, D] initial codebook from raw input vectors x [N, D]."""
    if method not in INIT_METHODS:
        raise ValueError(f"unknown codebook init {method!r}; use one of {INIT_METHODS}")
    x = x.float()
    g = _generator(seed, x.device)
    if x.shape[0] < k:
        # Too few vectors: repeat them with a little noise so every code still starts on the data.
        idx = torch.randint(0, x.shape[0], (k,), generator=g, device=x.device)
        noise = torch.randn(k, x.shape[1], generator=g, device=x.device) * 1e-3 * x.std().clamp_min(1e-6)
        return x[idx] + noise
    if method == "random":
        return x[torch.randperm(x.shape[0], generator=g, device=x.device)[:k]].clone()
    if method == "kmeans++":
        return lloyd(x, kmeans_plus_plus(x, k, g), iterations, spherical=False)[0]
    return scaled_spherical_kmeans(x, k, iterations, g)
