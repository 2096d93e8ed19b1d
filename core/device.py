"""Device choice: `--device auto|cpu|cuda`."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu or auto")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}: use auto, cpu or cuda")
