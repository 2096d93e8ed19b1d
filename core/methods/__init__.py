"""Concept methods behind one interface (`ConceptMethod`), selected by name: `--method clvq`.

Every module of this package is imported once here; a `ConceptMethod` subclass with a `name` registers
itself on definition, so adding a method means adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import UserError
from .base import REGISTRY, ConceptMethod, MethodDims, config_from
from .batching import LayerData

# Infrastructure modules that define no method.
_SUPPORT = {"base", "batching", "trainer", "quantizer", "codebook_init"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _SUPPORT and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

METHODS: dict[str, type[ConceptMethod]] = REGISTRY
"""Method name -> class, e.g. METHODS["clvq"]."""


def get_method(name: str) -> type[ConceptMethod]:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}: use one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


__all__ = ["METHODS", "ConceptMethod", "LayerData", "MethodDims", "config_from", "get_method"]
