"""EMA vector quantizer with top-k temperature sampling (spec section 2), as pure functions plus a module.

Only real (non-padding) token vectors are ever passed in, so padding cannot move the codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..distributed import all_reduce_sum_, broadcast_, is_distributed


def squared_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """[N, K] squared Euclidean distances, via the expanded form (one matmul, no [N, K, D] tensor)."""
    d = (z * z).sum(1, keepdim=True) - 2.0 * z @ codebook.T + (codebook * codebook).sum(1)[None, :]
    return d.clamp_min_(0.0)


def sample_codes(
    dist: torch.Tensor, k: int, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One code per row, drawn from softmax(-d / T) restricted to the row's k nearest codes.

    Gumbel-max over the [N, k] matrix: a single vectorised draw for all tokens.
    """
    k = max(1, min(k, dist.shape[1]))
    neg, idx = torch.topk(-dist, k, dim=1)
    if k == 1 or temperature <= 0:
        return idx[:, 0]
    u = torch.rand(neg.shape, device=neg.device, dtype=neg.dtype, generator=generator)
    gumbel = -torch.log(-torch.log(u.clamp_(1e-12, 1.0 - 1e-7)))
    choice = torch.argmax(neg / temperature + gumbel, dim=1, keepdim=True)
    return idx.gather(1, choice).squeeze(1)


def batch_statistics(z: torch.Tensor, codes: torch.Tensor, n_codes: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-code assignment counts [K] and vector sums [K, D] of one batch (what the EMA averages)."""
    counts = torch.bincount(codes, minlength=n_codes).to(dtype)
    sums = torch.zeros(n_codes, z.shape[1], dtype=dtype, device=z.device).index_add_(0, codes, z.to(dtype))
    return counts, sums


def ema_step(
    cluster_size: torch.Tensor,
    embed_sum: torch.Tensor,
    counts: torch.Tensor,
    sums: torch.Tensor,
    decay: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New (cluster_size, embed_sum, codebook) from one batch's `batch_statistics`.

    Cluster sizes get Laplace smoothing, `(n_k + eps) / (n + K eps) * n`, so a code nobody picked
    never divides by zero.
    """
    n_codes = cluster_size.shape[0]
    cluster_size = decay * cluster_size + (1.0 - decay) * counts
    embed_sum = decay * embed_sum + (1.0 - decay) * sums
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + n_codes * eps) * total
    return cluster_size, embed_sum, embed_sum / smoothed[:, None]


def ema_update(
    cluster_size: torch.Tensor,
    embed_sum: torch.Tensor,
    z: torch.Tensor,
    codes: torch.Tensor,
    decay: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New (cluster_size, embed_sum, codebook) after one batch (`batch_statistics` then `ema_step`)."""
    counts, sums = batch_statistics(z, codes, cluster_size.shape[0], embed_sum.dtype)
    return ema_step(cluster_size, embed_sum, counts, sums, decay, eps)


def perplexity(codes: torch.Tensor, n_codes: int) -> float:
    """exp(entropy) of the code-usage distribution: the effective number of codes in use."""
    if codes.numel() == 0:
        return 0.0
    p = torch.bincount(codes, minlength=n_codes).double() / codes.numel()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor
    """Straight-through quantized vectors [N, D] (value = code vectors, gradient flows to z)."""
    codes: torch.Tensor
    """Chosen code per vector [N]."""
    commitment: torch.Tensor
    """mean ||z - stopgrad(e)||^2 per element (scalar)."""


class EMAQuantizer(nn.Module):
    """Codebook of K vectors updated by exponential moving averages of the assigned vectors.

    Training: sample among the k nearest codes with softmax(-d/T), update the codebook under no_grad.
    Evaluation: nearest code, deterministic, no update.
    """

    def __init__(
        self,
        n_codes: int,
        dim: int,
        top_k: int = 5,
        temperature: float = 1.0,
        decay: float = 0.99,
        eps: float = 1e-5,
        revive_dead: bool = False,
        revive_threshold: float = 1e-3,
    ):
        super().__init__()
        self.n_codes, self.dim = n_codes, dim
        self.top_k, self.temperature = top_k, temperature
        self.decay, self.eps = decay, eps
        self.revive_dead, self.revive_threshold = revive_dead, revive_threshold
        self.register_buffer("codebook", torch.randn(n_codes, dim))
        # Each code starts as if it had been assigned once to itself: an unused code then keeps its
        # position as its statistics decay, instead of collapsing to 0 or blowing up.
        self.register_buffer("cluster_size", torch.ones(n_codes))
        self.register_buffer("embed_sum", self.codebook.clone())

    @torch.no_grad()
    def set_codebook(self, codebook: torch.Tensor) -> None:
        self.codebook.copy_(codebook)
        self.embed_sum.copy_(codebook)
        self.cluster_size.fill_(1.0)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        return torch.argmin(squared_distances(z, self.codebook), dim=1)

    def forward(self, z: torch.Tensor, update: bool | None = None) -> QuantizerOutput:
        """Quantize real-token vectors z [N, D]; update the EMA codebook when training (or `update`)."""
        update = self.training if update is None else update
        with torch.no_grad():
            dist = squared_distances(z.detach(), self.codebook)
            codes = sample_codes(dist, self.top_k, self.temperature) if self.training else dist.argmin(1)
        e = self.codebook[codes]
        commitment = torch.mean((z - e.detach()) ** 2) if z.numel() else z.sum() * 0.0
        quantized = z + (e - z).detach() if self.training else e
        # Every rank joins the update's all-reduce, even one whose batch had no token.
        if update and (z.numel() or is_distributed()):
            self._update(z.detach(), codes)
        return QuantizerOutput(quantized, codes, commitment)

    @torch.no_grad()
    def _update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        counts, sums = batch_statistics(z, codes, self.n_codes, self.embed_sum.dtype)
        # Under torchrun each rank quantizes its own batch; summing the statistics makes every rank apply
        # the same update (that of the ranks' batches together), so the codebooks stay identical.
        all_reduce_sum_(counts)
        all_reduce_sum_(sums)
        size, total, book = ema_step(self.cluster_size, self.embed_sum, counts, sums, self.decay, self.eps)
        if self.revive_dead:
            dead = size < self.revive_threshold
            n_dead = int(dead.sum())
            if n_dead:
                # Restart dead codes on random vectors of this batch, with a fresh unit count. Rank 0's
                # picks go to every rank (the dead set is the same everywhere: the sizes are).
                pick = torch.randint(0, max(z.shape[0], 1), (n_dead,), device=z.device)
                fresh = z[pick] if z.shape[0] else torch.zeros(n_dead, z.shape[1], device=z.device, dtype=z.dtype)
                fresh = broadcast_(fresh.to(book.dtype).contiguous())
                book[dead] = fresh
                total[dead] = fresh
                size[dead] = 1.0
        self.cluster_size.copy_(size)
        self.embed_sum.copy_(total)
        self.codebook.copy_(book)
