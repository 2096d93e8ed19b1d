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
    return docs


def to_dict(config: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


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
        flag = "--" + f.name.replace("_", "-")
        help_text = docs.get(f.name, "")
        shown = "none" if default is None else (" ".join(map(str, default)) if isinstance(default, tuple) else default)
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
        parser.add_argument(flag, **kwargs)


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
