"""Integrated Gradients at a hidden layer (spec §5.1), batched over interpolation steps.

Attribution of piece t = sum over hidden dims of h_t * mean_alpha dF(alpha h)/dh_t, with a zero baseline
and the midpoint Riemann rule; F is the predicted-class logit. The convergence delta
(sum of attributions - (F(h) - F(0))) tells how far the step count is from the exact integral.
"""

from __future__ import annotations

import torch
from torch import nn

from .hooks import bypass_blocks, capture, edit_hidden, find_blocks, run_until_stop


def layer_integrated_gradients(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: int,
    target: torch.Tensor,
    steps: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-piece attributions [B, T] and convergence deltas [B] of the `target` logits at `layer`."""
    returns_tuple: list[bool] = []
    probe = find_blocks(model)[0].register_forward_hook(lambda m, a, out: returns_tuple.append(isinstance(out, tuple)))
    with torch.no_grad(), capture(model, [layer]) as got:
        run_until_stop(lambda: model(input_ids, attention_mask))
    probe.remove()
    h = got[layer].detach()
    # Bypassing is only safe where blocks return bare tensors (transformers 5); tuple-returning blocks run.
    tuple_free = bool(returns_tuple) and not any(returns_tuple)
    b, t, d = h.shape
    alphas = (torch.arange(steps, dtype=h.dtype, device=h.device) + 0.5) / steps
    scaled = (alphas[None, :, None, None] * h[:, None]).reshape(b * steps, t, d).requires_grad_(True)
    ids = input_ids.repeat_interleave(steps, 0)
    mask = attention_mask.repeat_interleave(steps, 0)
    # The hook overwrites hidden state `layer`, so the blocks below it need not run on the b*steps copies.
    with edit_hidden(model, layer, lambda _: scaled), bypass_blocks(model, layer if tuple_free else 0):
        logits = model(ids, mask)
    picked = logits.gather(1, target.repeat_interleave(steps)[:, None]).sum()
    (grad,) = torch.autograd.grad(picked, scaled)
    attr = (h * grad.reshape(b, steps, t, d).mean(1)).sum(-1) * attention_mask
    with torch.no_grad():
        full = model(input_ids, attention_mask).gather(1, target[:, None])[:, 0]
        with edit_hidden(model, layer, torch.zeros_like):
            zero = model(input_ids, attention_mask).gather(1, target[:, None])[:, 0]
    delta = attr.sum(1) - (full - zero)
    return attr.detach(), delta.detach()
