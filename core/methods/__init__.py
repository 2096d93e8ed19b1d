"""Concept methods behind one interface (`ConceptMethod`), selected by name: `--method clvq`.

Registration is explicit: the built-in methods are listed below; another method (a plug-in, a test's toy
method) calls `register(cls)` once. Every stage reads the registry when it runs, so a registered method gets
`train` flags from its config dataclass and is accepted by `concepts`, `ablate` and `demo`.
"""

from __future__ import annotations

from ..errors import UserError
from .base import REGISTRY, ConceptMethod, MethodDims, config_from, method_config, register
from .batching import LayerData
from .clustering import AgglomerativeMethod, KMeansMethod
from .clvq import CLVQMethod
from .sae import SAEMethod
from .vqvae import VQVAEMethod

BUILTIN = (CLVQMethod, VQVAEMethod, SAEMethod, KMeansMethod, AgglomerativeMethod)
"""The built-in methods, in the order stages list them."""

for _cls in BUILTIN:
    register(_cls)

METHODS: dict[str, type[ConceptMethod]] = REGISTRY
"""Method name -> class, e.g. METHODS["clvq"]."""


def method_names() -> tuple[str, ...]:
    """Every registered method, built-ins first: the default method list of `ablate` and `demo`."""
    return tuple(REGISTRY)


def get_method(name: str) -> type[ConceptMethod]:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["BUILTIN", "METHODS", "REGISTRY", "ConceptMethod", "LayerData", "MethodDims", "config_from", "get_method",
           "method_config", "method_names", "register"]
