"""CLVQ-VAE (spec section 2): adaptive residual encoder -> EMA quantizer -> transformer decoder -> L_out.

The decoder reads only the quantized sequence, so everything that reaches the reconstruction of `L_out`
passed the discrete bottleneck. Concept vectors are the trained code vectors; they live in the encoder's
output space, which starts as the `L_in` space (identity initialisation) and stays close to it because
the residual mix m = 0.5 * sigmoid(a) never exceeds one half.

Quick default vs the paper: the paper uses a 6-layer decoder with feed-forward 2048 and 50 epochs; the
defaults here (2 layers, feed-forward min(2048, 4 * hidden), 20 epochs) keep a full training on ~40k
384-d word vectors within minutes on two CPU cores. `clvq-judge train --preset paper` restores the
paper's sizes (`CLVQConfig.paper_preset`). Ours, not the paper's: the decoder adds a learned per-code output
vector that starts at each code's mean target (`decoder_code_table`, on by default; off restores the paper's
plain transformer decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ..config import option
from ..errors import UserError
from .base import MethodDims, OptimConfig
from .batching import Batch, LayerData
from .codebook_init import init_codebook
from .quantizer import EMAQuantizer, perplexity
from .trainer import NeuralMethod, in_eval_mode


@dataclass
class CLVQConfig(OptimConfig):
    """Hyper-parameters of CLVQ-VAE (and of the single-layer VQ-VAE baseline)."""

    paper_preset: ClassVar[dict[str, Any]] = {**OptimConfig.paper_preset, "decoder_layers": 6, "decoder_ff": 2048}
    # Saved before the code table existed: a plain transformer decoder (its weights have no table).
    legacy_defaults: ClassVar[dict[str, Any]] = {"decoder_code_table": False}

    n_concepts: int = option(400, ge=2)
    """Codebook size K (number of concepts)."""
    top_k: int = option(5, ge=1)
    """Training samples a code among this many nearest ones."""
    temperature: float = option(1.0, gt=0)
    """Sampling temperature T in softmax(-d / T)."""
    temperature_final: float | None = option(None, gt=0)
    """If set, anneal T geometrically from `temperature` to this value over the epochs (off by default)."""
    commitment: float = option(0.1, ge=0)
    """Weight of the commitment loss ||z - sg(e)||^2."""
    ema_decay: float = option(0.99, ge=0, lt=1)
    """Decay of the codebook's exponential moving averages."""
    ema_eps: float = option(1e-5, gt=0)
    """Laplace smoothing of the EMA cluster sizes."""
    codebook_init: Literal["scaled_spherical", "kmeans++", "random"] = "scaled_spherical"
    """Codebook initialisation from the training L_in vectors."""
    init_iterations: int = option(20, ge=0)
    """Lloyd iterations after k-means++ seeding."""
    init_max_vectors: int = option(20000, ge=1)
    """Initialise on at most this many randomly drawn training vectors (bounds memory)."""
    encoder: Literal["adaptive", "identity"] = "adaptive"
    """Encoder: adaptive residual (identity-initialised W, LayerNorm, gated mix) or plain identity."""
    decoder_layers: int = option(2, ge=0)
    """Transformer decoder layers (paper: 6)."""
    decoder_positions: bool = True
    """Add sinusoidal encodings of each word's position in its original sentence to the decoder input;
    without them the decoder sees an unordered bag of codes (positions come from the token table, so a
    frequency-filtered training sentence keeps its words' true positions)."""
    decoder_heads: int = option(8, ge=1)
    """Attention heads (reduced to the largest divisor of the hidden size that is not larger)."""
    decoder_ff: int | None = option(None, ge=1)
    """Feed-forward width; None = min(2048, 4 * hidden) (paper: 2048)."""
    dropout: float = option(0.1, ge=0, lt=1)
    """Decoder dropout."""
    decoder_code_table: bool = True
    """Add a learned vector per code to the decoder's output, initialised to the mean target of the code's
    words in the initialisation sample, with the transformer's output map starting at zero: training starts
    from the lookup of the codes and the transformer learns what context adds. The decoder still reads only
    the codes. On the news/MiniLM demo (one seed) it made the decoder beat the lookup of its own codes (eval
    FVU 0.714 vs 0.730; without it 0.722 vs 0.722); the table passes no gradient to the encoder. Off = the
    paper's plain transformer decoder (docs/method.md, "Decoder defaults (issue 12 item 3)")."""
    revive_dead: bool = False
    """Restart codes whose EMA cluster size falls below `revive_threshold` on random batch vectors."""
    revive_threshold: float = option(1e-3, gt=0)
    """EMA cluster size under which a code counts as dead for `revive_dead`."""


class AdaptiveResidualEncoder(nn.Module):
    """z = (1 - m) x + m LayerNorm(W x + b), m = 0.5 sigmoid(a); W = I, b = 0, a = 0.2 at start."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.gate = nn.Parameter(torch.tensor(0.2))
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()

    @property
    def mix(self) -> torch.Tensor:
        return 0.5 * torch.sigmoid(self.gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mix
        return (1 - m) * x + m * self.norm(self.linear(x))


def fitting_heads(dim: int, wanted: int) -> int:
    """Largest head count <= wanted that divides dim."""
    return next(h for h in range(max(1, min(wanted, dim)), 0, -1) if dim % h == 0)


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sine/cosine position encodings [..., dim] (the original Transformer's), for integer positions."""
    half = dim // 2
    freq = torch.exp(-torch.arange(half, device=positions.device, dtype=torch.float32) * (9.210340371976184 / max(half, 1)))
    angle = positions.to(torch.float32)[..., None] * freq
    enc = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
    return torch.nn.functional.pad(enc, (0, dim - 2 * half))


class QuantizedDecoder(nn.Module):
    """Transformer over the quantized sequence (bidirectional or causal), then a linear map to D_out."""

    def __init__(self, dim: int, d_out: int, layers: int, heads: int, ff: int, dropout: float, causal: bool,
                 n_codes: int | None = None):
        super().__init__()
        self.causal = causal
        layer = nn.TransformerEncoderLayer(
            dim, fitting_heads(dim, heads), ff, dropout, batch_first=True, norm_first=False
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers > 0 else None
        # Residual streams of decoder LLMs reach norms of 1e4-1e5 (Gemma): normalising the code sequence
        # keeps attention logits sane, and the output is produced in units of the target's per-dimension
        # spread around its mean, so training starts from "predict the mean" at the right scale.
        self.input_norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, d_out)
        self.register_buffer("target_mean", torch.zeros(d_out))
        self.register_buffer("target_scale", torch.ones(d_out))
        # Per-code output term (`decoder_code_table`). A transformer learns the plain code -> target map
        # slowly (on the news/MiniLM demo it stays worse than its own codes' lookup after 20 epochs, even on
        # its training words); starting from the lookup leaves it only the context part to learn.
        self.code_table = nn.Embedding(n_codes, d_out) if n_codes else None
        if self.code_table is not None:
            nn.init.zeros_(self.code_table.weight)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(
        self, q: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None, codes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """q [B, L, D] quantized vectors; codes [B, L] their code ids (needed only with a code table)."""
        h = self.input_norm(q)
        if positions is not None:
            h = h + sinusoidal(positions, q.shape[-1]).to(q.dtype)
        if self.layers is not None:
            attn_mask = None
            if self.causal:
                attn_mask = nn.Transformer.generate_square_subsequent_mask(q.shape[1], device=q.device, dtype=q.dtype)
            # Same (float) type for both masks: mixing bool and float masks is deprecated in torch.
            padding = torch.zeros(mask.shape, device=q.device, dtype=q.dtype).masked_fill(~mask, float("-inf"))
            h = self.layers(h, mask=attn_mask, src_key_padding_mask=padding, is_causal=self.causal)
        out = self.out(h)
        if self.code_table is not None:
            if codes is None:
                raise ValueError("this decoder has a per-code table: pass the code ids")
            out = out + self.code_table(codes)
        return self.target_mean + self.target_scale * out


@dataclass
class CLVQOutput:
    recon: torch.Tensor
    """[B, L, D_out] reconstruction (garbage on padding, never used there)."""
    codes: torch.Tensor
    """[N] code of each real token, in mask order."""
    commitment: torch.Tensor
    z: torch.Tensor
    """[N] encoder output of the real tokens."""


class CLVQModel(nn.Module):
    def __init__(self, cfg: CLVQConfig, d_in: int, d_out: int, causal: bool):
        super().__init__()
        self.encoder = AdaptiveResidualEncoder(d_in) if cfg.encoder == "adaptive" else nn.Identity()
        self.quantizer = EMAQuantizer(
            cfg.n_concepts, d_in, cfg.top_k, cfg.temperature, cfg.ema_decay, cfg.ema_eps,
            cfg.revive_dead, cfg.revive_threshold,
        )
        ff = cfg.decoder_ff or min(2048, 4 * d_in)
        self.use_positions = cfg.decoder_positions
        self.decoder = QuantizedDecoder(d_in, d_out, cfg.decoder_layers, cfg.decoder_heads, ff, cfg.dropout, causal,
                                        cfg.n_concepts if cfg.decoder_code_table else None)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> CLVQOutput:
        z = self.encoder(x[mask])  # only real tokens: padding never reaches the codebook
        qo = self.quantizer(z)
        q = x.new_zeros(x.shape[0], x.shape[1], qo.quantized.shape[1])
        q = q.masked_scatter(mask[..., None], qo.quantized)
        codes = torch.zeros(mask.shape, dtype=torch.long, device=x.device).masked_scatter(mask, qo.codes)
        return CLVQOutput(self.decode(q, codes, mask, positions), qo.codes, qo.commitment, z)

    def decode(self, q: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """The decoder's output [B, L, D_out] for quantized vectors q [B, L, D] whose code ids are codes [B, L]."""
        return self.decoder(q, mask, positions if self.use_positions else None, codes)


def code_table_init(codes: torch.Tensor, y: torch.Tensor, n_codes: int, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[K, D_out] each code's mean target in the decoder's output units ((mean_k - mean) / scale); 0 for a code
    no vector chose (the decoder then starts from the global mean there)."""
    counts = torch.bincount(codes, minlength=n_codes).to(y.dtype)
    sums = torch.zeros(n_codes, y.shape[1], dtype=y.dtype, device=y.device).index_add_(0, codes, y)
    per_code = sums / counts.clamp_min(1)[:, None]
    return torch.where(counts[:, None] > 0, (per_code - mean) / scale, torch.zeros_like(per_code))


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real tokens' elements only."""
    return torch.mean((recon[mask] - target[mask]) ** 2)


class FVUAccumulator:
    """Streaming sums for MSE and fraction of variance unexplained over many batches."""

    def __init__(self):
        self.sse = 0.0
        self.n = 0
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        t = target.double()
        self.sse += float(((pred.double() - t) ** 2).sum())
        self.n += t.shape[0]
        s, ss = t.sum(0), (t * t).sum(0)
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq = ss if self.sumsq is None else self.sumsq + ss

    def result(self) -> dict[str, float]:
        if not self.n:
            return {"val_mse": float("nan"), "val_fvu": float("nan")}
        total_var = float((self.sumsq - self.sum**2 / self.n).sum())
        dim = self.sum.shape[0]
        return {"val_mse": self.sse / (self.n * dim), "val_fvu": self.sse / max(total_var, 1e-12)}


class CLVQMethod(NeuralMethod):
    """Cross-layer VQ-VAE: L_in -> discrete codes -> L_out."""

    name = "clvq"
    config_class = CLVQConfig

    @classmethod
    def check(cls, config: CLVQConfig, dims: MethodDims) -> list[str]:
        if config.top_k > config.n_concepts:
            raise UserError(f"--top-k {config.top_k} exceeds --n-concepts {config.n_concepts}: sample among at most K codes")
        if config.temperature_final is not None and config.epochs == 1:
            return ["--temperature-final has no effect with a single epoch"]
        return []

    def build(self) -> CLVQModel:
        return CLVQModel(self.config, self.dims.d_in, self.dims.d_out, causal=self.dims.model_kind == "decoder")

    @property
    def model(self) -> CLVQModel:
        return self.module  # type: ignore[return-value]

    def codebook_model(self) -> CLVQModel:
        return self.model

    def initialize(self, data: LayerData, device: torch.device) -> None:
        cfg = self.config
        x = torch.from_numpy(data.sample_rows(data.layer_in, cfg.init_max_vectors, cfg.seed)).to(device)
        book = init_codebook(x, cfg.n_concepts, cfg.codebook_init, cfg.init_iterations, cfg.seed)
        y = torch.from_numpy(data.sample_rows(data.layer_out, cfg.init_max_vectors, cfg.seed)).to(device)
        with torch.no_grad():
            self.model.decoder.target_mean.copy_(y.mean(0))
            self.model.decoder.target_scale.copy_(y.std(0).clamp_min(1e-6))
        self.model.quantizer.set_codebook(book)
        if self.model.decoder.code_table is not None:
            # Same seed and rows as x: y[i] is x[i]'s target.
            with torch.no_grad():
                codes = self.model.quantizer.nearest(self.model.encoder(x))
            self.model.decoder.code_table.weight.data.copy_(
                code_table_init(codes, y, cfg.n_concepts, self.model.decoder.target_mean, self.model.decoder.target_scale)
            )

    def start_epoch(self, epoch: int) -> None:
        cfg = self.config
        if cfg.temperature_final is not None and cfg.epochs > 1:
            ratio = cfg.temperature_final / cfg.temperature
            self.model.quantizer.temperature = cfg.temperature * ratio ** (epoch / (cfg.epochs - 1))

    def step_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model(batch.x, batch.mask, batch.positions)
        mse = masked_mse(out.recon, batch.y, batch.mask)
        loss = mse + self.config.commitment * out.commitment
        return loss, {"loss": loss.detach(), "mse": mse.detach(), "commitment": out.commitment.detach()}

    @in_eval_mode
    def evaluate(self, data: LayerData, device: torch.device) -> dict[str, float]:
        acc, own = FVUAccumulator(), FVUAccumulator()  # model space (reported), method's space (val_loss)
        codes, commit, n = [], 0.0, 0
        for batch in self.internal(data).batches(self.config.batch_sentences, None, device):
            out = self.model(batch.x, batch.mask, batch.positions)
            recon, target = out.recon[batch.mask], batch.y[batch.mask]
            acc.add(self.output_to_model(recon), self.output_to_model(target))
            own.add(recon, target)
            codes.append(out.codes)
            commit += out.commitment.item() * batch.n_tokens
            n += batch.n_tokens
        all_codes = torch.cat(codes) if codes else torch.zeros(0, dtype=torch.long)
        k = self.config.n_concepts
        active = int((torch.bincount(all_codes, minlength=k) > 0).sum())
        metrics = acc.result()
        commitment = commit / max(n, 1)
        return {
            **metrics,
            "val_commitment": commitment,
            "val_loss": own.result()["val_mse"] + self.config.commitment * commitment,
            "perplexity": perplexity(all_codes, k),
            "active_codes": active,
            "dead_codes": k - active,
            "ema_dead_codes": int((self.model.quantizer.cluster_size < 1e-3).sum()),
        }

    @torch.no_grad()
    @in_eval_mode
    def assign_vectors(self, x: np.ndarray) -> np.ndarray:
        device = self.model.quantizer.codebook.device
        z = self.model.encoder(self.to_internal(torch.from_numpy(np.require(x, np.float32, ["W"])).to(device)))
        return self.model.quantizer.nearest(z).cpu().numpy().astype(np.int64)

    def vectors(self) -> np.ndarray:
        """Code vectors as L_in model-space points (mu + sigma * code when standardised)."""
        return np.asarray(self.input_to_model(self.model.quantizer.codebook.detach().cpu()).numpy(), dtype=np.float32)
