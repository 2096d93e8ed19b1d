"""What machine a timing came from: CPU model, the instruction-set flags that decide torch's speed, cores.

The same demo took 573 s on a CPU with native bf16 and AMX and 1,433 s on a plain AVX2 one, so a time is
only readable next to its machine. `cpu_info()` is what the demo writes into headline.json.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

# Flag families that change how fast torch computes on a CPU (float32 and bf16 matmuls, vector kernels).
RELEVANT_FLAG = re.compile(r"^(avx2|fma|f16c|avx512\w*|amx\w*|avx_vnni\w*)$")

# Environment variables that cap the instruction set torch's kernels, oneDNN and MKL use. Set to AVX2 on a
# CPU with AVX-512/AMX they approximate the weaker CPU class (same cores, no wider vectors, no native bf16):
#   ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
# Only an approximation: clock speed, caches and memory bandwidth stay the stronger machine's.
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _proc_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str | None, set[str]]:
    try:
        text = path.read_text()
    except OSError:
        return None, set()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    return (model.group(1).strip() if model else None), set(flags.group(1).split()) if flags else set()


def cpu_info() -> dict[str, Any]:
    """CPU model name, its relevant flags, whether it computes bf16 natively, cores and torch's view of it.

    `native_bf16` is what `--precision auto` of the in-process judges keys on (AVX512-BF16 or AMX); torch's
    `cpu_capability` is the widest vector code path its own kernels take (float32 ops use AVX-512 where
    it reports AVX512, so float32 timings still run faster on such a CPU than on a plain AVX2 one).
    """
    import torch

    model, flags = _proc_cpuinfo()
    relevant = sorted(f for f in flags if RELEVANT_FLAG.match(f))
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: None)()
    return {
        "model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "flags": relevant,
        "avx2": "avx2" in flags,
        "avx512": any(f.startswith("avx512") for f in flags),
        "amx": any(f.startswith("amx") for f in flags),
        "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": capability,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "isa_caps": {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)},
    }


def isa_capped() -> bool:
    """Whether this process runs with torch's kernels capped below AVX-512 (ATEN_CPU_CAPABILITY=avx2 or lower)."""
    return os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("avx2", "default")


def capped_to_avx2(info: dict[str, Any]) -> bool:
    """True when every library that could use AVX-512/AMX was capped to AVX2 (see ISA_CAPS)."""
    caps = info.get("isa_caps") or {}
    return all(caps.get(name, "").lower() == "avx2" for name in ISA_CAPS)


def describe(info: dict[str, Any]) -> str:
    """One line for a table caption: model, cores and the flags that matter."""
    features = [name for name, on in (("AVX2", info.get("avx2")), ("AVX-512", info.get("avx512")),
                                      ("AMX", info.get("amx")), ("native bf16", info.get("native_bf16"))) if on]
    missing = [name for name, on in (("AVX-512", info.get("avx512")), ("native bf16", info.get("native_bf16")))
               if not on]
    text = f"{info.get('model')}, {info.get('cores')} cores"
    if features:
        text += ", " + ", ".join(features)
    if missing:
        text += ", no " + " or ".join(missing)
    if capped_to_avx2(info) and info.get("avx512"):
        text += " (capped to AVX2 in torch, oneDNN and MKL through " + ", ".join(f"{k}={v}" for k, v in sorted(
            info["isa_caps"].items())) + ", an approximation of a CPU without AVX-512 or bf16)"
    return text
