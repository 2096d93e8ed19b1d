"""The precision each demo stage computed in, recorded beside the machine (`core.machine.cpu_info`)."""

from __future__ import annotations

from typing import Any

from clvq_judge.core.device import resolve_device
from clvq_judge.judge.backends import JudgeOptions, judge_specs
from clvq_judge.judge.backends.local import resolve_precision

# finetune, extract, train, concepts and ablate load and compute in float32 (no autocast anywhere in core/).
MODEL_STAGES = ("finetune", "extract", "train", "concepts", "ablate")
JUDGE_STAGES = ("describe", "rank", "simulate")


def stage_precisions(options: JudgeOptions, device: str) -> dict[str, Any]:
    """Stage -> precision: float32 for the model stages; per judge spec for the judge stages, the resolved
    `--precision` of an in-process judge or "served" for one behind an HTTP or vLLM endpoint."""
    device = str(resolve_device(device))
    judges = {}
    for spec in judge_specs(options):
        kind, _, target = spec.partition(":")
        in_process = spec == "embedded" or (kind == "transformers" and bool(target))
        judges[spec] = resolve_precision(options.precision, device) if in_process else "served"
    return {**dict.fromkeys(MODEL_STAGES, "float32"), **{stage: judges for stage in JUDGE_STAGES}}
