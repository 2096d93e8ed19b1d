"""`CachedJudge`: any backend wrapped once in the on-disk cache, bounded concurrency and usage accounting.

Cached answers come from disk and are never resent; identical requests in one call go out once. The rest
go out in chunks of the backend's `batch_size` (in-process: one forward pass each) on up to
`concurrency` threads (HTTP: one request each), and every answer is written to the cache as soon as it
arrives, so a killed or failed run loses at most its in-flight requests.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from clvq_judge.core.errors import UserError

from .cache import JudgeCache
from .client import Completion, Request

log = logging.getLogger(__name__)


def load_price_table(path: str | None) -> dict[str, dict[str, float]]:
    """JSON: {"<model>": {"prompt": $ per 1M prompt tokens, "completion": $ per 1M completion tokens}}."""
    if not path:
        return {}
    try:
        table = json.loads(Path(path).read_text())
        return {str(m): {"prompt": float(p["prompt"]), "completion": float(p["completion"])} for m, p in table.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"price table {path} is unreadable ({type(exc).__name__}): write JSON like "
            '{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}} ($ per 1M tokens)'
        ) from None


class CachedJudge:
    """Implements `JudgeClient`. `name` is the stable label reports use (the judge spec)."""

    def __init__(self, name: str, backend, cache: JudgeCache, cache_model: str | None = None,
                 price: dict[str, float] | None = None):
        self.name = name
        self.inner = backend
        self.backend: str = backend.backend
        self.model: str = backend.model
        # What the cache key names: differs from `model` where a setting (e.g. int8 weights) changes answers.
        self.cache_model = cache_model or backend.model
        self.cache = cache
        self.price = price
        self._lock = threading.Lock()
        self._usage = {"requests_sent": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "seconds": 0.0, "wall_seconds": 0.0}

    @property
    def usage(self) -> dict:
        with self._lock:
            out = dict(self._usage)
        if self.price is not None:
            out["cost_usd"] = (out["prompt_tokens"] * self.price["prompt"]
                               + out["completion_tokens"] * self.price["completion"]) / 1e6
        return out

    def complete(self, requests: list[Request], desc: str | None = None) -> list[Completion]:
        start = time.perf_counter()
        keys = [r.key(self.backend, self.cache_model) for r in requests]
        found = self.cache.get_many(keys)
        todo: dict[str, Request] = {}
        for key, request in zip(keys, requests):
            if key not in found and key not in todo:
                todo[key] = request
        with self._lock:
            self._usage["cache_hits"] += sum(1 for k in keys if k in found)
        if todo:
            found.update(self._send(list(todo.items()), desc))
        with self._lock:
            self._usage["wall_seconds"] += time.perf_counter() - start
        return [found[k] for k in keys]

    def _send(self, items: list[tuple[str, Request]], desc: str | None) -> dict[str, Completion]:
        size = max(1, getattr(self.inner, "batch_size", 1))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        workers = max(1, getattr(self.inner, "concurrency", 1))
        out: dict[str, Completion] = {}
        # Shown also when stderr is a log file (disable=None would hide it there), at most every few seconds.
        bar = tqdm(total=len(items), desc=desc or self.name, unit="req", leave=False,
                   mininterval=0.1 if sys.stderr.isatty() else 5.0)
        try:
            if workers == 1 or len(chunks) == 1:
                for chunk in chunks:
                    out.update(self._run_chunk(chunk, bar))
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
                    futures = [pool.submit(self._run_chunk, chunk, bar) for chunk in chunks]
                    finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    failed = [f for f in finished if f.exception() is not None]
                    if failed:
                        # Requests not yet started are dropped; those in flight finish and are cached.
                        for f in futures:
                            f.cancel()
                        pool.shutdown(wait=True)
                        raise failed[0].exception()
                    for f in futures:
                        out.update(f.result())
        finally:
            bar.close()
        return out

    def _run_chunk(self, chunk: list[tuple[str, Request]], bar) -> dict[str, Completion]:
        answers = self.inner.complete([r for _, r in chunk])
        for (key, request), answer in zip(chunk, answers):
            self.cache.put(key, self.backend, self.cache_model, request, answer)
        with self._lock:
            self._usage["requests_sent"] += len(chunk)
            self._usage["prompt_tokens"] += sum(a.prompt_tokens for a in answers)
            self._usage["completion_tokens"] += sum(a.completion_tokens for a in answers)
            self._usage["seconds"] += sum(a.seconds for a in answers)
        bar.update(len(chunk))
        return {key: answer for (key, _), answer in zip(chunk, answers)}

    def close(self) -> None:
        self.cache.close()
