"""`clvq-judge serve`: a local chat model as an OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`
with logprobs and vLLM-style `guided_choice`), loopback-only by default. The model runs through transformers,
or through llama.cpp with `--model llamacpp:<embedded|embedded-1.5b|path.gguf>` (extra `llamacpp`, the
in-process backend's engine: same verdict log-probabilities, same response shape; --precision does not apply).

Requests that arrive together are batched through the model by one worker thread (a short collection
window, up to --batch-size prompts per forward pass), on the same engine as the in-process judge, so a
verdict read over HTTP equals the in-process one up to float rounding. llama.cpp evaluates one sequence at a
time, so its batches run prompt by prompt under the engine's lock.

A one-token request without sampling (how judges ask for verdicts) is answered from one forward pass:
the token is the argmax (with `guided_choice`: the most probable choice's first token) and
`top_logprobs` are full-vocabulary log-probabilities. `guided_choice` choices must differ in their first
token. `--fail-every` and `--garble-every` inject faults for testing clients; never use them otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

from fastapi import Request

from clvq_judge.core.errors import UserError

log = logging.getLogger(__name__)

MAX_TOP_LOGPROBS = 20


@dataclass
class ServeConfig:
    model: str = "embedded"
    """Model to serve: embedded (the shipped Qwen2.5-Coder-0.5B-Instruct judge) or any local transformers
    causal chat LM (directory or cached HF id) through transformers, or llamacpp:<embedded|embedded-1.5b|path.gguf>
    through llama.cpp (as --judge names it)."""
    served_name: str | None = None
    """Model name clients must ask for (default: the --model value)."""
    host: str = "127.0.0.1"
    """Interface to listen on. Loopback by default: the server has no authentication."""
    port: int = 8000
    """TCP port."""
    batch_size: int = 8
    """Most requests answered in one forward pass."""
    batch_wait_ms: float = 20.0
    """How long the first waiting request holds the batch open for others to join."""
    precision: Literal["auto", "float32", "bfloat16", "int8"] = "auto"
    """Model weights: auto (bfloat16 where the hardware has native bf16, else int8 on a CPU), float32 (the reference),
    bfloat16, or int8 (dynamic quantisation of the Linear layers; moves A-vs-B log-odds by up to 1.3 nats)."""
    device: str = "cpu"
    """cpu, cuda or auto."""
    fail_every: int = 0
    """Fault injection for testing clients: every Nth chat request answers HTTP 500 (0 = never)."""
    garble_every: int = 0
    """Fault injection for testing clients: every Nth chat request answers 200 with a non-JSON body (0 = never)."""


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


@dataclass
class Job:
    prompt: str | list[int]
    """Rendered chat prompt: text for transformers, token ids for llama.cpp."""
    max_tokens: int
    temperature: float
    seed: int
    logprobs: bool
    top_logprobs: int
    guided: tuple[str, ...] | None
    future: Future = field(default_factory=Future)

    @property
    def one_pass(self) -> bool:
        return self.temperature == 0 and (self.max_tokens == 1 or self.guided is not None)


class Batcher:
    """One worker thread owns the model; requests queue up and are answered in batches."""

    def __init__(self, engine, batch_size: int, wait_s: float):
        self.engine = engine
        self.batch_size = max(1, batch_size)
        self.wait_s = wait_s
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.batches = 0
        threading.Thread(target=self._loop, name="serve-batcher", daemon=True).start()

    def submit(self, job: Job) -> Future:
        self.jobs.put(job)
        return job.future

    def _loop(self) -> None:
        while True:
            batch = [self.jobs.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.batch_size:
                try:
                    batch.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self.batches += 1
            groups: dict[tuple, list[Job]] = {}
            for job in batch:
                kind = ("score",) if job.one_pass else ("generate", job.temperature, job.seed if job.temperature else 0)
                groups.setdefault(kind, []).append(job)
            for kind, jobs in groups.items():
                try:
                    results = self._score(jobs) if kind[0] == "score" else self._generate(jobs, kind[1], kind[2])
                except Exception as exc:  # noqa: BLE001 - handed to the request that caused it, which answers 500
                    for job in jobs:
                        job.future.set_exception(exc)
                    continue
                for job, result in zip(jobs, results):
                    job.future.set_result(result)

    def _score(self, jobs: list[Job]) -> list[dict]:
        scored = self.engine.score([j.prompt for j in jobs])
        out = []
        for job, s in zip(jobs, scored):
            if job.guided:
                ids = self.engine.label_tokens(job.guided)
                best = max(range(len(ids)), key=lambda i: float(s.logprobs[ids[i]]))
                token, text = ids[best], job.guided[best]
                n_tokens = len(self.engine.tokenizer.encode(text, add_special_tokens=False))
            else:
                token = int(s.logprobs.argmax())
                text, n_tokens = self.engine.token_text(token), 1
            content = [self._logprob_entry(token, s.logprobs, job.top_logprobs)] if job.logprobs else None
            out.append({"text": text, "prompt_tokens": s.prompt_tokens, "completion_tokens": n_tokens,
                        "finish_reason": "stop" if job.guided else "length", "logprobs": content, "seconds": s.seconds})
        return out

    def _generate(self, jobs: list[Job], temperature: float, seed: int) -> list[dict]:
        longest = max(j.max_tokens for j in jobs)
        keep = any(j.logprobs for j in jobs)
        generated = self.engine.generate([j.prompt for j in jobs], longest, temperature, seed, keep_logprobs=keep)
        out = []
        for job, g in zip(jobs, generated):
            toks = g.token_ids[: job.max_tokens]
            text = self.engine.tokenizer.decode(toks, skip_special_tokens=True)
            finish = "length" if len(toks) == job.max_tokens and len(g.token_ids) >= job.max_tokens else "stop"
            content = ([self._logprob_entry(t, lp, job.top_logprobs) for t, lp in zip(toks, g.step_logprobs)]
                       if job.logprobs else None)
            out.append({"text": text, "prompt_tokens": g.prompt_tokens, "completion_tokens": len(toks),
                        "finish_reason": finish, "logprobs": content, "seconds": g.seconds})
        return out

    def _logprob_entry(self, token: int, logprobs, top: int) -> dict:
        entry = _token_entry(self.engine.token_text(token), float(logprobs[token]))
        if top:
            values, ids = logprobs.topk(top)
            entry["top_logprobs"] = [_token_entry(self.engine.token_text(int(i)), float(v)) for v, i in zip(values, ids)]
        else:
            entry["top_logprobs"] = []
        return entry


def _token_entry(text: str, logprob: float) -> dict:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def _error(message: str, status: int, kind: str = "invalid_request_error", param=None, code=None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def parse_job(body: dict, render) -> Job:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise BadRequest("`messages` must be a non-empty list of {role, content} objects with text content", param="messages")
    if body.get("n", 1) not in (1, None):
        raise BadRequest("only n=1 is supported", param="n")
    try:
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
        seed = int(body.get("seed") or 0)
        top = int(body.get("top_logprobs") or 0)
    except (TypeError, ValueError):
        raise BadRequest("max_tokens, temperature, seed and top_logprobs must be numbers") from None
    if not 1 <= max_tokens <= 4096:
        raise BadRequest("max_tokens must be between 1 and 4096", param="max_tokens")
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise BadRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
    guided = body.get("guided_choice")
    if guided is not None:
        if not isinstance(guided, list) or not guided or not all(isinstance(c, str) and c for c in guided):
            raise BadRequest("guided_choice must be a non-empty list of strings", param="guided_choice")
        guided = tuple(guided)
    return Job(render(messages), max_tokens, temperature, seed, bool(body.get("logprobs")), top, guided)


def create_app(engine, config: ServeConfig):
    """The FastAPI app around a loaded engine (`judge.backends.local.LocalModel`, or
    `judge.backends.llamacpp.ServedEngine` with the same interface)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    name = config.served_name or config.model
    batcher = Batcher(engine, config.batch_size, config.batch_wait_ms / 1000)
    stats = {"requests": 0, "answered": 0, "injected_failures": 0, "injected_garbled": 0}
    counter_lock = threading.Lock()
    created = int(time.time())
    app = FastAPI(title="clvq-judge serve", docs_url=None, redoc_url=None)

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "clvq-judge"}]}

    @app.get("/stats")
    def get_stats():
        """Request counters, for tests and benchmarks (not part of the OpenAI API)."""
        return {**stats, "batches": batcher.batches}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        with counter_lock:
            stats["requests"] += 1
            n = stats["requests"]
        if config.fail_every and n % config.fail_every == 0:
            stats["injected_failures"] += 1
            return _error("injected failure (--fail-every)", 500, "server_error")
        if config.garble_every and n % config.garble_every == 0:
            stats["injected_garbled"] += 1
            return Response('{"id": "chatcmpl-garbled", "choices": [', media_type="application/json")
        try:
            body = await request.json()
        except ValueError:
            return _error("request body is not valid JSON", 400)
        if not isinstance(body, dict):
            return _error("request body must be a JSON object", 400)
        if body.get("model") != name:
            return _error(f"The model `{body.get('model')}` does not exist. Served: {name}", 404,
                          param="model", code="model_not_found")
        if body.get("stream"):
            return _error("stream=true is not supported", 400, param="stream")
        try:
            job = parse_job(body, engine.render)
            if job.guided:
                engine.label_tokens(job.guided)
        except BadRequest as exc:
            return _error(str(exc), exc.status, param=exc.param, code=exc.code)
        except ValueError as exc:
            return _error(str(exc), 400, param="guided_choice")
        result = await asyncio.wrap_future(batcher.submit(job))
        stats["answered"] += 1
        logprobs = {"content": result["logprobs"]} if result["logprobs"] is not None else None
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                         "finish_reason": result["finish_reason"], "logprobs": logprobs}],
            "usage": {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"],
                      "total_tokens": result["prompt_tokens"] + result["completion_tokens"]},
            # The model's own time for this request (its share of the batch), for client-overhead accounting.
            "clvq_model_seconds": result["seconds"],
        })

    return app


def _check_port(host: str, port: int) -> None:
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({os.strerror(exc.errno) if exc.errno else exc}): pick another --port or --host") from None


def open_engine(config: ServeConfig):
    from clvq_judge.core.device import resolve_device

    prefix, _, target = config.model.partition(":")
    if prefix == "llamacpp":
        from clvq_judge.judge.backends.llamacpp import load_served

        if not target:
            raise UserError("--model llamacpp: needs a model: llamacpp:embedded, llamacpp:embedded-1.5b or llamacpp:<path.gguf>")
        if str(config.device).startswith("cuda"):
            log.info("llamacpp models run on the CPU build of llama.cpp")
        return load_served(target)
    from clvq_judge.judge.backends.local import load_local

    return load_local(config.model, config.precision, str(resolve_device(config.device)))


def serve(config: ServeConfig) -> None:
    import uvicorn

    from clvq_judge.judge.backends.http import is_loopback

    if config.batch_size < 1 or config.fail_every < 0 or config.garble_every < 0:
        raise UserError("--batch-size must be >= 1 and --fail-every/--garble-every >= 0")
    _check_port(config.host, config.port)  # before the model load, which takes a while
    engine = open_engine(config)
    app = create_app(engine, config)
    url = f"http://{config.host}:{config.port}/v1"
    if not is_loopback(url):
        log.warning("listening on %s: anyone who can reach this address can use the model (no authentication)", config.host)
    log.info("serving %s at %s (OpenAI-compatible; try %s/models)", config.served_name or config.model, url, url)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    except SystemExit:
        # uvicorn exits when it cannot bind; say why in one line.
        raise UserError(f"cannot listen on {config.host}:{config.port} (in use?): pick another --port") from None
