"""Judge backends, a registry like the concept methods', and the options every judging stage shares.

A backend is one class in its own module, registered under its spec prefix by `@register`: it has `prefix`,
`hint` (how a spec names it, for error messages), `backend` (its kind, part of every cache key) and a
classmethod `open(target, options, device) -> (backend, cache_model)`, and answers `complete(requests)`.
Specs: `embedded` (an alias of `transformers:embedded`, the shipped Qwen2.5-Coder-0.5B-Instruct in process),
`transformers:<HF id or dir>`, `llamacpp:<embedded|path.gguf>` (extra `llamacpp`), `openai:<model>` (OpenAI,
or any OpenAI-compatible server at --base-url, e.g. `clvq-judge serve` or vLLM's server) and
`vllm:<model>` (vLLM's offline engine, extra `vllm`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clvq_judge.core.errors import UserError
from clvq_judge.judge.cache import JudgeCache
from clvq_judge.judge.pool import CachedJudge, load_price_table

log = logging.getLogger(__name__)

BACKENDS: dict[str, type] = {}
ALIASES = {"embedded": "transformers:embedded"}
"""Spec shorthands: what a spec without a prefix stands for."""


def register(cls: type) -> type:
    """Make a backend class known under its `prefix` (one line per backend module)."""
    BACKENDS[cls.prefix] = cls
    return cls


def spec_hint() -> str:
    return "use " + ", ".join([*ALIASES, *(BACKENDS[k].hint for k in BACKENDS)])


def parse_spec(spec: str) -> tuple[type, str]:
    """(backend class, target) of a judge spec; one line naming the known specs otherwise."""
    prefix, _, target = ALIASES.get(spec, spec).partition(":")
    if prefix not in BACKENDS or not target:
        raise UserError(f"unknown judge {spec!r}: {spec_hint()}")
    return BACKENDS[prefix], target

@dataclass
class JudgeOptions:
    """Which LLM judges answer, and how they are reached. Stage configs inherit these."""

    judge: tuple[str, ...] = ("embedded",)
    """Judge(s): embedded (the shipped Qwen2.5-Coder-0.5B-Instruct, in process through transformers),
    transformers:<HF id or dir>, llamacpp:<embedded|path.gguf> (llama.cpp in process), openai:<model> (OpenAI or
    any OpenAI-compatible server at --base-url), vllm:<model> (vLLM offline engine). Repeat to use several."""
    explainer: str | None = None
    """Who writes the concept descriptions (a judge spec like --judge); none = the first --judge. A different
    explainer and judge keep a judge from favouring its own wording; results record which wrote them."""
    base_url: str | None = None
    """OpenAI-compatible server for openai:<model> judges, e.g. http://127.0.0.1:8000/v1 (`clvq-judge serve`)."""
    model: str | None = None
    """Shorthand for --judge openai:<model> (replaces the default judge; with --base-url, a model it serves)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (needed for a non-loopback URL). The key is never
    stored or logged."""
    concurrency: int = 4
    """Parallel requests to an HTTP judge."""
    batch_size: int = 8
    """Prompts per forward pass for in-process judges."""
    max_tokens: int = 16
    """Longest free-text answer (descriptions of 2-5 words), in tokens: a batch decodes until its longest answer
    ends, so a tight cap bounds the cost of one rambling answer."""
    precision: Literal["auto", "float32", "bfloat16", "int8"] = "auto"
    """Weights of in-process judges: auto (bfloat16 on CUDA or a CPU with native bf16; int8 on other CPUs, 2-3x
    faster than float32 there), float32 (the reference), bfloat16, or int8 (dynamic quantisation of the Linear
    layers, CPU only; not the same judge: A-vs-B log-odds move by up to 1.3 nats, see docs/judges.md)."""
    max_retries: int = 5
    """Retries of an HTTP judge on 429, 5xx, timeouts and dropped connections (with backoff)."""
    request_timeout: float = 600.0
    """Seconds before an HTTP request times out (and is retried)."""
    price_table: str | None = None
    """JSON file: {"<model>": {"prompt": $, "completion": $}} per 1M tokens, to report cost."""


# Options that change how fast answers come (or what they cost), never what they are: left out of the config
# hash of every stage that asks a judge. base_url stays in: another server may answer differently.
NON_RESULT_JUDGE_FIELDS = ("api_key_env", "concurrency", "batch_size", "max_retries", "request_timeout", "price_table")


def judge_specs(options: JudgeOptions) -> list[str]:
    specs = list(options.judge)
    if options.model:
        shorthand = f"openai:{options.model}"
        specs = [shorthand] if specs == ["embedded"] else [*specs, shorthand]
    return list(dict.fromkeys(specs))


def explainer_spec(options: JudgeOptions) -> str:
    return options.explainer or judge_specs(options)[0]


def open_backend(spec: str, options: JudgeOptions, device: str = "cpu"):
    """The bare backend of one spec, plus the model label its cache keys use."""
    cls, target = parse_spec(spec)
    return cls.open(target, options, device)


def open_judges(options: JudgeOptions, cache_path: Path, device: str = "cpu") -> list[CachedJudge]:
    """One ready client per judge spec, each wrapped in the on-disk cache, accounting and concurrency.

    Everything a user can get wrong fails here, up front, with one line: an unknown spec, an unreachable
    server, a model the server does not serve, a missing or bad key for a remote URL, vLLM not installed,
    an unreadable price table or a corrupted cache file.
    """
    specs = judge_specs(options)
    if not specs:
        raise UserError(f"no judge given: {spec_hint()}")
    for spec in specs:
        parse_spec(spec)
    prices = load_price_table(options.price_table)
    cache = JudgeCache(cache_path)
    judges = []
    for spec in specs:
        backend, cache_model = open_backend(spec, options, device)
        price = prices.get(backend.model) or prices.get(spec)
        if prices and price is None:
            log.warning("price table %s has no entry for %s: its cost is not reported", options.price_table, backend.model)
        judges.append(CachedJudge(spec, backend, cache, cache_model, price))
    return judges


# Each module registers its backend class; heavy libraries are imported only when a backend opens.
from . import http, inprocess, llamacpp, vllm  # noqa: E402,F401

__all__ = ["BACKENDS", "NON_RESULT_JUDGE_FIELDS", "CachedJudge", "JudgeOptions", "explainer_spec", "judge_specs", "open_backend",
           "open_judges", "parse_spec", "register"]
