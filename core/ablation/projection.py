"""Removing directions and subspaces from hidden states (pure tensor functions).

Every function accepts either one shared direction/basis or one per row (each sentence can carry its own
concept), and hidden states of shape [B, D] (one vector per sentence) or [B, T, D] (every token).
"""

from __future__ import annotations

import torch

_EPS = 1e-12


def remove_span(h: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """`h - Q Q^T h` for an orthonormal basis `q`: [D, r] shared, or [B, D, r] one per row of `h`.

    Zero columns of `q` are padding and remove nothing, so ragged ranks fit one tensor.
    """
    dtype = h.dtype
    # Half-precision hidden states lose the orthogonality of Q; project in float32, cast back at the end.
    hf, qf = h.float(), q.to(device=h.device, dtype=torch.float32)
    if qf.dim() == 2:
        return (hf - (hf @ qf) @ qf.T).to(dtype)
    if qf.dim() != 3 or qf.shape[0] != h.shape[0]:
        raise ValueError(f"basis of shape {tuple(q.shape)} does not match hidden states {tuple(h.shape)}")
    flat = hf.unsqueeze(1) if hf.dim() == 2 else hf.reshape(hf.shape[0], -1, hf.shape[-1])
    out = flat - torch.bmm(torch.bmm(flat, qf), qf.transpose(1, 2))
    return out.reshape(h.shape).to(dtype)


def remove_direction(h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """`h - (h.u) u` with `u` normalised to unit length: [D] shared, or [B, D] one per row of `h`.

    A zero `u` (no concept for that row) leaves the row unchanged.
    """
    u = u.to(device=h.device, dtype=torch.float32)
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return remove_span(h, u.unsqueeze(-1))


def remove_span_standardized(h: torch.Tensor, q: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """`remove_span` in per-dimension standardised coordinates z = (h - mean) / std, mapped back:
    `mean + std * (z - Q Q^T z)`. In the model's space this is an oblique projection, which removes what a
    concept reads in the space the method was fitted in instead of what it reads in raw coordinates."""
    hf = h.float()
    mean, std = mean.to(device=h.device, dtype=torch.float32), std.to(device=h.device, dtype=torch.float32)
    return (mean + std * remove_span((hf - mean) / std, q)).to(h.dtype)
