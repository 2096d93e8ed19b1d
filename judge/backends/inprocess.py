"""In-process transformers backend: batched, greedy, verdicts from one forward pass (see `local.py`)."""

from __future__ import annotations

from clvq_judge.judge.client import Completion, Request

from . import register
from .local import LocalModel, Precision, load_local, resolve_precision


def verdict(model: LocalModel, scored, choices: tuple[str, ...]) -> Completion:
    ids = model.label_tokens(choices)
    logprobs = {label: float(scored.logprobs[i]) for label, i in zip(choices, ids)}
    best = max(choices, key=lambda label: logprobs[label])
    return Completion(text=best, choice_logprobs=logprobs, prompt_tokens=scored.prompt_tokens,
                      completion_tokens=1, seconds=scored.seconds)


@register
class TransformersBackend:
    prefix = "transformers"
    backend = "transformers"
    hint = "transformers:<HF id or dir>"

    def __init__(self, model: str, precision: Precision = "auto", batch_size: int = 8, device: str = "cpu"):
        self.model = model
        self.batch_size = batch_size
        self.concurrency = 1
        self.engine = load_local(model, precision, device)

    @classmethod
    def open(cls, target: str, options, device: str = "cpu") -> tuple[TransformersBackend, str]:
        precision = resolve_precision(options.precision, str(device))
        backend = cls(target, precision, options.batch_size, device)
        # Answers differ (slightly) between precisions, so the cache keeps them apart.
        return backend, target + ("" if precision == "float32" else f"@{precision}")

    def complete(self, requests: list[Request]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        prompts = [self.engine.render(r.chat()) for r in requests]
        scored = [i for i, r in enumerate(requests) if r.choices]
        if scored:
            for i, s in zip(scored, self.engine.score([prompts[i] for i in scored])):
                out[i] = verdict(self.engine, s, requests[i].choices)
        # Free-text requests sharing sampling settings decode together.
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            if not r.choices:
                groups.setdefault((r.temperature, r.seed) if r.temperature > 0 else (0.0, 0), []).append(i)
        for (temperature, seed), rows in groups.items():
            longest = max(requests[i].max_tokens for i in rows)
            generated = self.engine.generate([prompts[i] for i in rows], longest, temperature, seed)
            for i, g in zip(rows, generated):
                toks = g.token_ids[: requests[i].max_tokens]
                text = g.text if len(toks) == len(g.token_ids) else self.engine.tokenizer.decode(toks, skip_special_tokens=True)
                out[i] = Completion(text=text.strip(), prompt_tokens=g.prompt_tokens, completion_tokens=len(toks),
                                    seconds=g.seconds)
        return out  # type: ignore[return-value]
