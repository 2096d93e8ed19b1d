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
sampling at temperature > 0) up to max_tokens or the end of the turn. `clvq-judge serve --model llamacpp:...`
answers over HTTP with the same engine (`ServedEngine`).
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
        return self._last_logprobs()

    def _last_logprobs(self) -> np.ndarray:
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,)).astype(np.float64)
        return logits - np.logaddexp.reduce(logits)

    def next_logprobs(self, tokens: list[int]) -> np.ndarray:
        """Full-vocabulary log-probabilities of the token after `tokens` (what `clvq-judge serve` returns)."""
        with self._lock:
            return self._logprobs_after(tokens)

    def score(self, tokens: list[int], label_ids: list[int]) -> list[float]:
        logprobs = self.next_logprobs(tokens)
        return [float(logprobs[i]) for i in label_ids]

    def decode(self, tokens: list[int], max_tokens: int, temperature: float, seed: int,
               keep_logprobs: bool = False) -> tuple[list[int], list[np.ndarray]]:
        """Generated token ids up to the end of the turn, and (if asked) the distribution each was drawn from."""
        rng = np.random.default_rng(seed)
        out: list[int] = []
        steps: list[np.ndarray] = []
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
                if keep_logprobs:
                    steps.append(logprobs)
                self.llm.eval([token])
                logprobs = self._last_logprobs()
        return out, steps

    def detokenize(self, tokens: list[int], special: bool = False) -> str:
        return self.llm.detokenize(tokens, special=special).decode("utf-8", "replace")

    def generate(self, tokens: list[int], max_tokens: int, temperature: float, seed: int) -> tuple[str, int]:
        out, _ = self.decode(tokens, max_tokens, temperature, seed)
        return self.detokenize(out).strip(), len(out)


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


class _ServedTokenizer:
    """The two tokenizer calls `clvq-judge serve` makes on its engine, in transformers' signatures."""

    def __init__(self, engine: LlamaEngine):
        self.engine = engine

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.engine.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=False)

    def decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return self.engine.detokenize(tokens, special=not skip_special_tokens)


class ServedEngine:
    """A GGUF behind the interface `clvq-judge serve` drives (that of `local.LocalModel`), so batching,
    `guided_choice` and the response shape are the server's own for both runtimes.

    A batch runs prompt by prompt in sorted order, as in `LlamaCppBackend.complete`, to reuse shared prefixes.
    Evaluation is serialised by the engine's lock; tokenizing and detokenizing, which the server does on its
    request threads, read only the model's vocabulary, never the context that evaluation mutates.
    """

    def __init__(self, engine: LlamaEngine):
        self.engine = engine
        self.tokenizer = _ServedTokenizer(engine)

    def render(self, messages: list[dict[str, str]]) -> list[int]:
        return self.engine.render(messages)

    def label_tokens(self, labels: tuple[str, ...]) -> list[int]:
        return self.engine.label_tokens(labels)

    def token_text(self, token_id: int) -> str:
        return self.engine.detokenize([token_id], special=True)

    def score(self, prompts: list[list[int]]):
        import torch

        from .local import Scored

        out = [None] * len(prompts)
        for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
            start = time.perf_counter()
            logprobs = self.engine.next_logprobs(prompts[i])
            out[i] = Scored(len(prompts[i]), torch.from_numpy(logprobs), time.perf_counter() - start)
        return out

    def generate(self, prompts: list[list[int]], max_tokens: int, temperature: float = 0.0, seed: int = 0,
                 keep_logprobs: bool = False):
        import torch

        from .local import Generated

        out = [None] * len(prompts)
        for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
            start = time.perf_counter()
            tokens, steps = self.engine.decode(prompts[i], max_tokens, temperature, seed, keep_logprobs)
            out[i] = Generated(self.engine.detokenize(tokens), len(prompts[i]), len(tokens),
                               time.perf_counter() - start, tokens, [torch.from_numpy(lp) for lp in steps])
        return out


def load_served(target: str) -> ServedEngine:
    """The engine `clvq-judge serve --model llamacpp:<target>` answers with."""
    return ServedEngine(load_engine(resolve_gguf(target)))


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
