"""Single-layer VQ-VAE baseline: the CLVQ-VAE model reconstructing its own input layer (L_out = L_in)."""

from __future__ import annotations

from typing import Any

from .clvq import CLVQConfig, CLVQMethod


class VQVAEMethod(CLVQMethod):
    name = "vqvae"
    config_class = CLVQConfig

    @classmethod
    def target_layer(cls, config: Any, layer_in: int, layer_out: int) -> int:
        return layer_in
