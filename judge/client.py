"""The judge client interface: every backend (in-process transformers, OpenAI-compatible HTTP, vLLM
offline) answers the same `Request` with the same `Completion`.

Caching, retries of what a backend's own client does not retry, bounded concurrency and token/cost
accounting wrap any client from outside (`judge/cache.py`, `judge/pool.py`), once.

Verdicts are read in one of two ways:
- `choices` set: the answer must be one of these labels ("A", "B", ...). A backend that exposes
  log-probabilities returns `choice_logprobs` (log-probability of each label as the first answer token,
  one forward pass, no sampling) and `text` = the most probable label; others constrain or parse.
- `choices` unset: free text (descriptions), greedy unless `temperature` > 0.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Request:
    messages: tuple[tuple[str, str], ...]
    """Chat messages as (role, content) pairs."""
    max_tokens: int = 64
    temperature: float = 0.0
    choices: tuple[str, ...] | None = None
    """Allowed answer labels; when set, the backend scores them instead of sampling where it can."""
    seed: int = 0

    def key(self, backend: str, model: str) -> str:
        """Cache key: a hash of (backend, model, messages, sampling parameters). Never includes secrets."""
        payload = json.dumps({"backend": backend, "model": model, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class Completion:
    text: str
    """The answer (for `choices` requests: the chosen label, or the raw text when it could not be parsed)."""
    choice_logprobs: dict[str, float] | None = None
    """Log-probability of each allowed label as the first answer token, when the backend exposes them."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    """Wall time the backend spent on this request (its share of a batch)."""
    cached: bool = False
    extra: dict = field(default_factory=dict)


@runtime_checkable
class JudgeClient(Protocol):
    backend: str
    """Backend kind: "transformers", "openai" or "vllm"."""
    model: str
    """Model name as the backend knows it (HF id, local path, or served name)."""

    def complete(self, requests: list[Request]) -> list[Completion]:
        """Answer a batch of requests, in order. Backends batch or parallelise internally as they can."""
        ...
