"""OpenAI-compatible HTTP backend (OpenAI itself, `clvq-judge serve`, vLLM's server, ...) via the `openai` client.

Verdicts: `max_tokens=1, logprobs=True, top_logprobs=20`, plus vLLM-style `guided_choice` (extra body) so a
server that supports constrained output can only answer a label. A label's log-probability is read from
the first answer token's top-20 list: the entry whose token equals the label, else the best entry whose
token equals it after stripping whitespace; a label absent from the top 20 gets None. Without
log-probabilities the answer text is parsed strictly (`judge.labels.parse_choice`).

Retries of 429, 5xx, timeouts and dropped connections are the `openai` client's own (`max_retries`, with
backoff and jitter). It does not retry a 200 whose body is not JSON: that is retried here a few times.
The API key is read from the environment when the client is built and lives only in that client.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from urllib.parse import urlparse

from clvq_judge.core.errors import UserError
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import label_logprobs, parse_choice

from . import register

log = logging.getLogger(__name__)

GARBLED_RETRIES = 3
TOP_LOGPROBS = 20
DUMMY_KEY = "clvq-judge-local"


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register
class OpenAIBackend:
    prefix = "openai"
    backend = "openai"
    hint = "openai:<model>"

    def __init__(self, model: str, base_url: str | None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, timeout: float = 600.0, max_retries: int = 5, guided: bool = True):
        import openai

        self.model = model
        self.batch_size = 1
        self.concurrency = concurrency
        self.guided = guided
        self.url = base_url or "https://api.openai.com/v1"
        key = os.environ.get(api_key_env)
        if not key:
            if not is_loopback(self.url):
                raise UserError(
                    f"no API key for {self.url}: set ${api_key_env} (or name another variable with --api-key-env)"
                )
            key = DUMMY_KEY  # a local server ignores it, but the client insists on one
        self._api_key_env = api_key_env
        self._openai = openai
        self.client = openai.OpenAI(base_url=self.url, api_key=key, max_retries=max_retries, timeout=timeout)
        self._check()

    @classmethod
    def open(cls, target: str, options, device: str = "cpu") -> tuple[OpenAIBackend, str]:
        backend = cls(target, options.base_url, options.api_key_env, options.concurrency, options.request_timeout,
                      options.max_retries)
        return backend, target

    def _check(self) -> None:
        """One call up front: the server answers, the key is accepted, the model is served."""
        openai = self._openai
        try:
            served = [m.id for m in self.client.models.list()]
        except openai.AuthenticationError:
            raise UserError(f"bad API key for {self.url}: check ${self._api_key_env}") from None
        except openai.APIConnectionError:
            raise UserError(
                f"cannot reach the judge server at {self.url}: start it (e.g. `clvq-judge serve`) or fix --base-url"
            ) from None
        except (openai.APIStatusError, json.JSONDecodeError) as exc:
            raise UserError(f"judge server at {self.url} does not answer /models properly ({_why(exc)}): check --base-url") from None
        if served and self.model not in served:
            raise UserError(
                f"model {self.model!r} is not served at {self.url} (served: {', '.join(served[:8])}): fix --model"
            )

    def complete(self, requests: list[Request]) -> list[Completion]:
        return [self._one(r) for r in requests]

    def _one(self, request: Request) -> Completion:
        kwargs: dict = {"model": self.model, "messages": request.chat(), "temperature": request.temperature,
                        "seed": request.seed, "n": 1}
        if request.choices:
            kwargs.update(max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
            if self.guided:
                kwargs["extra_body"] = {"guided_choice": list(request.choices)}
        else:
            kwargs["max_tokens"] = request.max_tokens
        response = self._send(kwargs)
        seconds = response.pop("_seconds")
        choice = response["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        usage = response.get("usage") or {}
        completion = Completion(text=text.strip(), prompt_tokens=usage.get("prompt_tokens", 0) or 0,
                                completion_tokens=usage.get("completion_tokens", 0) or 0, seconds=seconds)
        if response.get("clvq_model_seconds") is not None:  # `clvq-judge serve` reports the model's own time
            completion.extra["model_seconds"] = response["clvq_model_seconds"]
        if request.choices:
            content = ((choice.get("logprobs") or {}).get("content") or [])
            if content:
                top = [(t["token"], t["logprob"]) for t in content[0].get("top_logprobs") or []]
                completion.choice_logprobs = label_logprobs(top, request.choices)
            parsed = parse_choice(text, request.choices)
            completion.extra["parsed"] = parsed is not None
            if parsed is not None:
                completion.text = parsed
        return completion

    def _send(self, kwargs: dict) -> dict:
        openai = self._openai
        for attempt in range(1, GARBLED_RETRIES + 1):
            start = time.perf_counter()
            try:
                raw = self.client.chat.completions.create(**kwargs)
            except json.JSONDecodeError:
                log.warning("judge server at %s sent a body that is not JSON (try %d of %d)", self.url, attempt, GARBLED_RETRIES)
                continue
            except openai.BadRequestError as exc:
                if "extra_body" in kwargs:
                    # Servers without vLLM-style constrained output (OpenAI itself) refuse the extra key:
                    # drop it for good and rely on log-probabilities and strict parsing.
                    log.warning("judge server at %s refused guided_choice (%s); parsing answers strictly instead",
                                self.url, _why(exc))
                    self.guided = False
                    kwargs.pop("extra_body")
                    return self._send(kwargs)
                raise UserError(f"judge server at {self.url} refused the request ({_why(exc)}): check --model and the server") from None
            except openai.AuthenticationError:
                raise UserError(f"bad API key for {self.url}: check ${self._api_key_env}") from None
            except openai.NotFoundError as exc:
                raise UserError(f"model {self.model!r} not found at {self.url} ({_why(exc)}): fix --model") from None
            except openai.APIConnectionError:
                raise UserError(
                    f"lost the judge server at {self.url} (retries exhausted): restart it and rerun to resume "
                    "(answers so far are cached)"
                ) from None
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError) as exc:
                raise UserError(
                    f"judge server at {self.url} kept failing ({_why(exc)}) after {self.client.max_retries} retries: "
                    "rerun later to resume (answers so far are cached)"
                ) from None
            seconds = time.perf_counter() - start
            if isinstance(raw, str):  # a non-JSON content type: the client hands back the raw text
                log.warning("judge server at %s sent a non-JSON reply (try %d of %d)", self.url, attempt, GARBLED_RETRIES)
                continue
            data = raw.model_dump()
            data["_seconds"] = seconds
            return data
        raise UserError(
            f"judge server at {self.url} answered {GARBLED_RETRIES} times with a body that is not valid JSON: "
            "check the server (or its proxy), then rerun to resume"
        )


def _why(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
    return f"HTTP {status}: {text}" if status else text
