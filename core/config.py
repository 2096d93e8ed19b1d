"""Typed dataclass configs: field docstrings become `--help`, configs serialise to JSON.

A config field is documented by the string literal right below it (attribute docstring), e.g.::

    @dataclass
    class ExtractConfig:
        layers: tuple[int, ...] = (4, 6)
        \"\"\"Hidden-state indices to cache (0 = embeddings).\"\"\"
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, get_args, get_origin


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (and its dataclass bases), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    # Classes built at run time (no source) carry their docs in `__field_docs__`.
    docs.update(cls.__dict__.get("__field_docs__", {}))
    return docs


def to_dict(config: Any) -> dict[str, Any]:
    """A config (dataclass or mapping) as JSON-ready values."""
    items = config.items() if isinstance(config, Mapping) else ((f.name, getattr(config, f.name)) for f in dataclasses.fields(config))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


# --- declared ranges ------------------------------------------------------------------------------------


def option(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """A config field with a valid range, checked by `validate` before any work: `folds: int = option(20, ge=2)`."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, metadata={"range": bounds})


_BOUND_TEXT = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}
_BOUND_OK = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def validate(config: Any) -> None:
    """Check fixed-choice fields against their `Literal` choices and numbers against their declared range.

    Raises a one-line `UserError` naming the option, the bad value and what is allowed.
    """
    from .errors import UserError

    hints = _resolved_types(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        tp, _ = _unwrap_optional(hints.get(f.name, Any))
        if get_origin(tp) is Literal and value not in get_args(tp):
            choices = ", ".join(map(str, get_args(tp)))
            raise UserError(f"{flag(f.name)} {value!r} is not a valid choice: use one of {choices}")
        bounds = f.metadata.get("range")
        if not bounds:
            continue
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            broken = [_BOUND_TEXT[k].format(b) for k, b in bounds.items() if not _BOUND_OK[k](item, b)]
            if broken or item != item:  # NaN fails every bound
                allowed = " and ".join(_BOUND_TEXT[k].format(b) for k, b in bounds.items())
                raise UserError(f"{flag(f.name)} {item} is out of range: it must be {allowed}")


def config_hash(config: Any, exclude: tuple[str, ...] = ()) -> str:
    """Stable short hash of the fields that change results (`exclude` lists those that don't)."""
    payload = {k: v for k, v in to_dict(config).items() if k not in exclude}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_arguments(parser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one `--option` per dataclass field, typed, with its default and docstring as help."""
    docs = field_docs(cls)
    hints = _resolved_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        name = flag(f.name)
        help_text = docs.get(f.name, "")
        shown = f.metadata.get("shown_default", default)
        shown = "none" if shown is None else (" ".join(map(str, shown)) if isinstance(shown, tuple) else shown)
        help_text = f"{help_text} (default: {shown})".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_text}
        origin = get_origin(tp)
        if tp is bool:
            kwargs["action"] = typing.cast(Any, __import__("argparse").BooleanOptionalAction)
        elif origin is Literal:
            kwargs["choices"] = list(get_args(tp))
            kwargs["type"] = type(get_args(tp)[0])
        elif origin in (tuple, list):
            inner = get_args(tp)[0]
            # "extend" accepts both `--method a b` and `--method a --method b`; the default is filled in
            # by `from_namespace`, because extend would append to a non-empty default.
            kwargs.update(nargs="+", type=inner, metavar=inner.__name__.upper(), action="extend", default=None)
        else:
            kwargs["type"] = tp
            kwargs["metavar"] = getattr(tp, "__name__", "VALUE").upper()
        if optional and "choices" not in kwargs:
            kwargs["type"] = _none_or(kwargs.get("type", str))
        parser.add_argument(name, **kwargs)


def _none_or(convert):
    def parse(text: str):
        return None if text.lower() in ("none", "") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def from_namespace(cls: type, namespace: Any, **overrides: Any):
    """Build a `cls` from the parsed arguments that match its fields."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(namespace, f.name):
            value = getattr(namespace, f.name)
            if isinstance(value, list):
                value = tuple(value)
            elif value is None and f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                continue  # an unset list option keeps its default
            elif value is None and isinstance(f.default, tuple):
                continue
            values[f.name] = value
    return cls(**values)


def from_dict(cls: type, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    hints = _resolved_types(cls)
    values = {}
    for k, v in data.items():
        if k in names:
            tp, _ = _unwrap_optional(hints[k])
            values[k] = tuple(v) if get_origin(tp) is tuple and isinstance(v, list) else v
    return cls(**values)
