"""llama.cpp in process (`llamacpp:<embedded|path.gguf>`, extra `llamacpp`): the field's CPU runtime for
quantised GGUF models, which is how the embedded judge ships.

Verdicts take one pass over the rendered chat prompt: the label log-probability is the full-vocabulary
log-softmax of the last position's logits at the label's first token, exactly as in the transformers backend
(`local.py`), so the two backends' verdicts mean the same thing. The prompt is rendered with the chat template
stored in the GGUF itself.

llama.cpp keeps one sequence in its KV cache: each prompt reuses the longest token prefix it shares with the
previous one, and a batch is evaluated in sorted order so that prompts with a common beginning (the same
instructions, the same concept in a detection prompt) follow each other. A reused prefix changes a label's
log-probability only at rounding level (llama.cpp rounds a prompt split into two batches differently;
measured about 0.03 nats), never the order of the labels in our tests. Free text is greedy (or seeded
sampling at temperature > 0) up to max_tokens or the end of the turn.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from clvq_judge.core.errors import UserError
from clvq_judge.judge.client import Completion, Request

from . import register

log = logging.getLogger(__name__)

INSTALL_HINT = ("pip install 'clvq-judge[llamacpp]' (llama-cpp-python builds from source, a few minutes: "
                'CMAKE_ARGS="-DGGML_NATIVE=OFF" works on any x86-64)')
N_CTX = 4096

_ENGINES: dict[tuple[str, int], LlamaEngine] = {}
_ENGINES_LOCK = threading.Lock()


def resolve_gguf(target: str) -> Path:
    from clvq_judge.judge.embedded import GGUFS, gguf_path

    if target in GGUFS:
        return gguf_path(target)
    path = Path(target).expanduser()
    if not path.is_file() or path.suffix.lower() != ".gguf":
        raise UserError(f"llamacpp judge {target!r} is not a .gguf file: pass llamacpp:embedded, "
                        f"llamacpp:embedded-1.5b or llamacpp:<path.gguf>")
    return path


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LlamaEngine:
    """One loaded GGUF; calls are serialised (llama.cpp keeps one sequence state)."""

    def __init__(self, path: Path, n_ctx: int = N_CTX):
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise UserError(f"judge llamacpp:... needs llama-cpp-python: {INSTALL_HINT}") from None
        self.path = path
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=_threads(),
                             logits_all=False, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"llama.cpp cannot load {path} ({str(exc)[:100]}): pass a valid GGUF file") from None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise UserError(f"judge model {path} has no chat template in its GGUF: use an instruction-tuned model")
        self.n_vocab = self.llm.n_vocab()
        eos_text = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "replace")
        self._format = Jinja2ChatFormatter(template=template, eos_token=eos_text, bos_token="")
        self._stop = {self.llm.token_eos()}
        end_turn = self.llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
        if len(end_turn) == 1:
            self._stop.add(end_turn[0])
        self._lock = threading.Lock()

    def render(self, messages: list[dict[str, str]]) -> list[int]:
        text = self._format(messages=messages).prompt
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def label_tokens(self, labels: tuple[str, ...]) -> list[int]:
        ids = []
        for label in labels:
            tokens = self.llm.tokenize(label.encode("utf-8"), add_bos=False, special=False)
            if not tokens:
                raise ValueError(f"answer label {label!r} has no tokens")
            ids.append(tokens[0])
        if len(set(ids)) != len(ids):
            raise ValueError(f"answer labels {labels} share a first token; use labels such as A, B, C")
        return ids

    def _logprobs_after(self, tokens: list[int]) -> np.ndarray:
        """Evaluate `tokens`, reusing the cached prefix; the last position's full-vocabulary log-probabilities."""
        llm = self.llm
        if len(tokens) >= llm.n_ctx():
            raise UserError(f"a judge prompt of {len(tokens)} tokens does not fit llama.cpp's context of "
                            f"{llm.n_ctx()}: show less (--show description) or use a judge with a longer context")
        cached = llm.input_ids[: llm.n_tokens].tolist()
        shared = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(tokens) - 1)  # always evaluate one token, so the logits are this prompt's
        llm.n_tokens = shared
        llm.eval(tokens[shared:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(self.n_vocab,)).astype(np.float64)
        return logits - np.logaddexp.reduce(logits)

    def score(self, tokens: list[int], label_ids: list[int]) -> list[float]:
        with self._lock:
            logprobs = self._logprobs_after(tokens)
        return [float(logprobs[i]) for i in label_ids]

    def generate(self, tokens: list[int], max_tokens: int, temperature: float, seed: int) -> tuple[str, int]:
        rng = np.random.default_rng(seed)
        out: list[int] = []
        with self._lock:
            logprobs = self._logprobs_after(tokens)
            for _ in range(max_tokens):
                if temperature > 0:
                    p = np.exp((logprobs - logprobs.max()) / temperature)
                    token = int(rng.choice(len(p), p=p / p.sum()))
                else:
                    token = int(np.argmax(logprobs))
                if token in self._stop:
                    break
                out.append(token)
                self.llm.eval([token])
                logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,)).astype(np.float64)
                logprobs = logits - np.logaddexp.reduce(logits)
        text = self.llm.detokenize(out).decode("utf-8", "replace")
        return text.strip(), len(out)


@atexit.register
def _close_engines() -> None:
    # Freed explicitly before interpreter teardown: llama.cpp's own finaliser fails once its library is unloaded.
    for engine in _ENGINES.values():
        engine.llm.close()
    _ENGINES.clear()


def load_engine(path: Path) -> LlamaEngine:
    """One loaded copy per file per process: several judges or stages share it."""
    key = (str(path.resolve()), path.stat().st_size)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            log.info("loading llama.cpp judge %s", path.name)
            _ENGINES[key] = LlamaEngine(path)
        return _ENGINES[key]


@register
class LlamaCppBackend:
    prefix = "llamacpp"
    backend = "llamacpp"
    hint = "llamacpp:<embedded|embedded-1.5b|path.gguf>"

    def __init__(self, target: str, batch_size: int = 64):
        path = resolve_gguf(target)
        self.engine = load_engine(path)
        # Cache keys name the file by name and size: a different quantisation of the same model differs.
        self.model = target if not target.endswith(".gguf") else path.name
        self.cache_model = f"{path.name}:{path.stat().st_size}"
        self.batch_size = max(batch_size, 64)  # larger chunks let the sorted order share more prefixes
        self.concurrency = 1

    @classmethod
    def open(cls, target: str, options, device: str = "cpu") -> tuple[LlamaCppBackend, str]:
        if str(device).startswith("cuda"):
            log.info("llamacpp judges run on the CPU build of llama.cpp")
        backend = cls(target, options.batch_size)
        return backend, backend.cache_model

    def complete(self, requests: list[Request]) -> list[Completion]:
        prompts = [self.engine.render(r.chat()) for r in requests]
        out: list[Completion | None] = [None] * len(requests)
        for i in sorted(range(len(requests)), key=lambda i: prompts[i]):
            request, tokens = requests[i], prompts[i]
            start = time.perf_counter()
            if request.choices:
                values = self.engine.score(tokens, self.engine.label_tokens(request.choices))
                logprobs = dict(zip(request.choices, values))
                text = max(request.choices, key=lambda label: logprobs[label])
                out[i] = Completion(text=text, choice_logprobs=logprobs, prompt_tokens=len(tokens),
                                    completion_tokens=1, seconds=time.perf_counter() - start)
            else:
                text, n = self.engine.generate(tokens, request.max_tokens, request.temperature, request.seed)
                out[i] = Completion(text=text, prompt_tokens=len(tokens), completion_tokens=n,
                                    seconds=time.perf_counter() - start)
        return out  # type: ignore[return-value]
