"""The report's sections, one module each, in page order.

A section module defines `SECTION`, an object with `name`, `title` and `build(ctx) -> Block | None` (None leaves
it out of the page). Adding a figure to the report is one new module here plus its name in `BUILTIN`.
"""

from __future__ import annotations

import importlib

from .base import Block, Context, Section

BUILTIN = ["setup", "concepts", "ablation", "judge", "study", "cards"]
"""Section modules in the order the page shows them."""


def sections(names: list[str] | None = None) -> list[Section]:
    return [importlib.import_module(f"{__name__}.{name}").SECTION for name in (names or BUILTIN)]


__all__ = ["BUILTIN", "Block", "Context", "Section", "sections"]
