"""Sparse autoencoder baseline (spec section 3): TopK SAE (default) or the paper's ReLU SAE with an L1
penalty, untied, L_in -> L_out.

    pre = W_enc (x - b_in) + b_enc,  h = TopK(pre) (keep the k largest, ReLU them) or ReLU(pre),  y = W_dec h + b_dec

TopK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders") fixes the sparsity the field trains
at (L0 <= k, a few dozen of thousands of latents) instead of leaving it to an L1 coefficient: on the demo
the paper's 1e-4 on standardised inputs kept about 750 of 3,840 latents active per token, where removing a
token's top 1-10 encoder rows cannot matter. `--sae-topk 0` is the paper's L1 variant. The default k comes
from the sweep in experiments/sae_sweep.py (docs/method.md, "The SAE at field sparsity").

Decoder columns are renormalised to unit length after each step so the L1 penalty cannot be dodged by
shrinking h and growing W_dec (and a TopK latent's activation is its contribution's length). A token's
concept is its most active latent (argmax of `pre`, which equals the argmax of h whenever any latent
fires). `vectors()` returns the **encoder rows** W_enc[j] (in the L_in space, what reads a concept out of
L_in); `decoder_directions()` gives the decoder columns (L_out space). Ablation removes the span of the
encoder rows of a token's top-k latents (`removal = "span"`, `top_latents`).

With `--standardize` the SAE reads and reconstructs standardised vectors; in the model's space an encoder
row w becomes w / sigma_in (it reads the same latent up to a constant) and a decoder column d becomes
sigma_out * d, and the reported FVU is the model-space one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..config import option
from ..errors import UserError
from .base import MethodDims, OptimConfig
from .batching import Batch, LayerData
from .clvq import FVUAccumulator
from .trainer import NeuralMethod, in_eval_mode

DEFAULT_TOPK = 64
"""Chosen by the rule stated in experiments/sae_sweep.py before any ablation was looked at."""


@dataclass
class SAEConfig(OptimConfig):
    """Hyper-parameters of the sparse autoencoder."""

    sae_latents: int | None = option(None, ge=1)
    """Number of latents; None = 10 x the hidden size (paper: 4096 for 768-d)."""
    sae_topk: int | None = option(DEFAULT_TOPK, ge=0)
    """Latents kept per token (TopK SAE, at most this many fire: L0 <= k); 0 or none = the paper's ReLU SAE
    with the L1 penalty --sae-l1 instead (L0 then follows from the coefficient; about 750 of 3,840 on the demo)."""
    sae_l1: float = option(1e-4, ge=0)
    """L1 coefficient on latent activations (only the ReLU SAE, --sae-topk 0; paper: 1e-4)."""
    sae_single_layer: bool = False
    """Reconstruct L_in itself instead of L_out (single-layer SAE)."""

    legacy_defaults: ClassVar[dict[str, Any]] = {"sae_topk": 0}

    @property
    def topk(self) -> int | None:
        """k of a TopK SAE; None for the ReLU + L1 SAE."""
        return self.sae_topk or None


class SAEModel(nn.Module):
    def __init__(self, d_in: int, d_out: int, latents: int, topk: int | None):
        super().__init__()
        self.topk = topk
        self.input_bias = nn.Parameter(torch.zeros(d_in))
        self.encoder = nn.Linear(d_in, latents)
        self.decoder = nn.Linear(latents, d_out)
        with torch.no_grad():
            w = torch.nn.functional.normalize(torch.randn(d_out, latents), dim=0)
            self.decoder.weight.copy_(w)
            self.decoder.bias.zero_()
            # Encoder starts as the decoder's transpose (a good untied start). A ReLU SAE first fires about
            # half its latents, so it is scaled for those to sum to the input's scale, not 10x it; a TopK
            # SAE fires k, as in Gao et al.'s unscaled transpose.
            scale = 1.0 if topk else min(1.0, 2.0 * d_out / latents)
            enc = w.T if d_in == d_out else torch.randn(latents, d_in) / d_in**0.5
            self.encoder.weight.copy_(scale * enc)
            self.encoder.bias.zero_()

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x - self.input_bias)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        if self.topk is None or self.topk >= pre.shape[-1]:
            return torch.relu(pre)
        # The k largest pre-activations, ReLU'd (a latent of the top k with pre <= 0 does not fire); the
        # gradient reaches exactly the kept latents through `values`.
        values, idx = torch.topk(pre, self.topk, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, torch.relu(values))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.activate(self.preactivation(x))
        return self.decoder(h), h

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        w = self.decoder.weight
        w.div_(w.norm(dim=0, keepdim=True).clamp_min(1e-8))


class SAEMethod(NeuralMethod):
    name = "sae"
    config_class = SAEConfig
    removal = "span"

    @classmethod
    def target_layer(cls, config: SAEConfig, layer_in: int, layer_out: int) -> int:
        return layer_in if config.sae_single_layer else layer_out

    @classmethod
    def check(cls, config: SAEConfig, dims: MethodDims) -> list[str]:
        latents = config.sae_latents or 10 * dims.d_in
        if config.topk is not None and config.topk >= latents:
            raise UserError(f"--sae-topk {config.topk} keeps all {latents} latents, so nothing is sparse: pass a "
                            f"smaller --sae-topk (or --sae-topk 0 for the L1 SAE)")
        if config.topk is not None and config.sae_l1 != SAEConfig.sae_l1:
            return [f"--sae-l1 {config.sae_l1} is ignored: a TopK SAE has no L1 term (--sae-topk 0 trains the L1 SAE)"]
        return []

    @property
    def latents(self) -> int:
        return self.config.sae_latents or 10 * self.dims.d_in

    def build(self) -> SAEModel:
        return SAEModel(self.dims.d_in, self.dims.d_out, self.latents, self.config.topk)

    @property
    def model(self) -> SAEModel:
        return self.module  # type: ignore[return-value]

    def initialize(self, data: LayerData, device: torch.device) -> None:
        # Biases start at the data means so latents spend their capacity on deviations, not offsets.
        x = data.sample_rows(data.layer_in, 20000, self.config.seed)
        y = data.sample_rows(data.layer_out, 20000, self.config.seed)
        with torch.no_grad():
            self.model.input_bias.copy_(torch.from_numpy(x.mean(0)).to(device))
            self.model.decoder.bias.copy_(torch.from_numpy(y.mean(0)).to(device))
            if self.model.topk is not None:
                self._scale_encoder(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))

    def _scale_encoder(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Scale the initial encoder by the least-squares factor between its first reconstructions and the
        targets' deviations. How many of its k latents' unit columns add up depends on k, the width and
        the dimension (with k near the dimension they overshoot many times); TopK selection and ReLU are
        unchanged by a positive factor while the encoder bias is 0, so h and the reconstruction scale by it."""
        bias = self.model.decoder.bias
        r = self.model(x)[0] - bias
        s = float((r * (y - bias)).sum() / (r * r).sum().clamp_min(1e-12))
        if s > 0:
            self.model.encoder.weight.mul_(s)

    def after_step(self) -> None:
        self.model.normalize_decoder()

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        recon, h = self.model(x)
        mse = torch.mean((recon - y) ** 2)
        sparsity = h.sum(-1).mean()
        l1 = 0.0 if self.config.topk is not None else self.config.sae_l1
        return mse + l1 * sparsity, mse, h, recon

    def step_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, mse, h, _ = self._loss(batch.x[batch.mask], batch.y[batch.mask])
        return loss, {"loss": loss.detach(), "mse": mse.detach(), "l0": (h > 0).sum(-1).float().mean().detach()}

    @in_eval_mode
    def evaluate(self, data: LayerData, device: torch.device) -> dict[str, float]:
        acc = FVUAccumulator()
        fired = torch.zeros(self.latents, dtype=torch.bool, device=device)
        loss_sum, l0_sum, n = 0.0, 0.0, 0
        for batch in self.internal(data).batches(self.config.batch_sentences, None, device):
            x, y = batch.x[batch.mask], batch.y[batch.mask]
            loss, _, h, recon = self._loss(x, y)
            acc.add(self.output_to_model(recon), self.output_to_model(y))
            active = h > 0
            fired |= active.any(0)
            loss_sum += loss.item() * len(x)
            l0_sum += float(active.sum())
            n += len(x)
        return {
            **acc.result(),
            "val_loss": loss_sum / max(n, 1),
            "l0": l0_sum / max(n, 1),
            "dead_latents": int((~fired).sum()),
        }

    # --- concepts ------------------------------------------------------------------------------------
    @in_eval_mode
    def _pre(self, x: np.ndarray) -> torch.Tensor:
        device = self.model.encoder.weight.device
        z = self.to_internal(torch.from_numpy(np.require(x, np.float32, ["W"])).to(device))
        return self.model.preactivation(z)

    @torch.no_grad()
    def assign_vectors(self, x: np.ndarray) -> np.ndarray:
        return self._pre(x).argmax(-1).cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def top_latents(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per token the k most active latents (by pre-activation, descending) and their activations
        h (0 where a latent in the top k does not fire: below zero, or beyond a TopK SAE's own k)."""
        pre = self._pre(x)
        values, idx = torch.topk(pre, min(k, pre.shape[-1]), dim=-1)
        values = torch.relu(values)
        if self.config.topk is not None:
            values[:, self.config.topk :] = 0  # ranked past the SAE's own k: it does not fire
        return idx.cpu().numpy().astype(np.int64), values.cpu().numpy()

    def encoder_rows(self, latents: np.ndarray) -> np.ndarray:
        """Encoder weight vectors (L_in space) of the given latent ids, shape latents.shape + (D_in,)."""
        return self.vectors()[np.asarray(latents)]

    def vectors(self) -> np.ndarray:
        """Encoder rows [latents, D_in] as model-space read-out rows."""
        w = self.model.encoder.weight.detach().cpu()
        w = w if self.scaling is None else self.scaling.inp.covector_to_model(w)
        return w.numpy().astype(np.float32)

    def decoder_directions(self) -> np.ndarray:
        """Decoder columns as rows [latents, D_out] in the L_out model space (unit length in the space the SAE
        was fitted in)."""
        d = self.model.decoder.weight.detach().T.cpu()
        d = d if self.scaling is None else self.scaling.out.direction_to_model(d)
        return d.numpy().astype(np.float32)
