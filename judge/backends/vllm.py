"""vLLM's offline engine (extra `vllm`, which pins a CUDA torch: a GPU machine only). Imported lazily.

Verdicts: one token with the top-20 log-probabilities (vLLM returns the full-vocabulary log-probabilities
of the top tokens), read exactly as the HTTP backend reads them; free text: greedy up to max_tokens.
"""

from __future__ import annotations

import time

from clvq_judge.core.errors import UserError
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import label_logprobs, parse_choice

from . import register
from .http import TOP_LOGPROBS


@register
class VLLMBackend:
    prefix = "vllm"
    backend = "vllm"
    hint = "vllm:<model>"

    def __init__(self, model: str, batch_size: int = 64):
        try:
            import vllm
        except ImportError:
            raise UserError("judge vllm:<model> needs vLLM (a CUDA machine): pip install 'clvq-judge[vllm]'") from None
        from clvq_judge.judge.embedded import resolve_judge_model

        self.model = model
        self.batch_size = batch_size
        self.concurrency = 1
        self._vllm = vllm
        self.llm = vllm.LLM(model=resolve_judge_model(model))

    @classmethod
    def open(cls, target: str, options, device: str = "cpu") -> tuple[VLLMBackend, str]:
        return cls(target, max(options.batch_size, 64)), target

    def complete(self, requests: list[Request]) -> list[Completion]:
        vllm = self._vllm
        start = time.perf_counter()
        params = []
        for r in requests:
            if r.choices:
                params.append(vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS, seed=r.seed))
            else:
                params.append(vllm.SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed))
        outputs = self.llm.chat([r.chat() for r in requests], params, use_tqdm=False)
        seconds = (time.perf_counter() - start) / max(1, len(requests))
        out = []
        for r, o in zip(requests, outputs):
            gen = o.outputs[0]
            completion = Completion(text=gen.text.strip(), prompt_tokens=len(o.prompt_token_ids),
                                    completion_tokens=len(gen.token_ids), seconds=seconds)
            if r.choices:
                first = (gen.logprobs or [{}])[0]
                top = [(lp.decoded_token or "", lp.logprob) for lp in first.values()]
                completion.choice_logprobs = label_logprobs(top, r.choices)
                parsed = parse_choice(completion.text, r.choices)
                completion.extra["parsed"] = parsed is not None
                if parsed is not None:
                    completion.text = parsed
            out.append(completion)
        return out
