"""`clvq-judge seeds`: the demo's model axis (finetune -> ablate) over several seeds, summarised.

One run per seed: the first seed's replicate is the run itself (so `demo` then `seeds --run demo` reuses
the demo's finished stages), the others are `<run>-seed<k>`. Every headline figure is then reported as its
mean over seeds with a 95% t-interval (with three seeds the interval is wide: t = 4.30 times the standard
error, which is the honest width), beside the per-seed values, in `<run>/seeds.json`.

A seed changes everything random in the chain: the classifier's head and data order, the sentence sample,
each method's initialisation and batches, the ablation's random directions and bootstrap.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

from clvq_judge.core.atomic import write_json
from clvq_judge.core.config import option, to_dict
from clvq_judge.core.errors import UserError
from clvq_judge.core.methods import method_names
from clvq_judge.core.runs import Run, RunOptions

from .demo import QUICK_RUN, DemoConfig, Timer, check_config, effective, model_axis, model_figures

SEEDS = "seeds.json"
METRICS = ("used_concepts", "l_out_lookup_fvu", "eval_reconstruction_fvu", "accuracy_concept_removed",
           "accuracy_random", "accuracy_random_energy", "accuracy_other_concept", "drop_vs_energy_control")


@dataclass
class SeedsConfig(RunOptions):
    """Options of `clvq-judge seeds`: the demo's model axis, replicated (the judge and study axes are not)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds to run; the first one's replicate is --run itself, the others <run>-seed<k>."""
    dataset: str = "news"
    """Dataset (embedded: news, news-sentences, sentiment)."""
    model: str = "minilm"
    """Model under study (embedded: minilm, gemma-270m)."""
    max_train: int = option(2000, ge=0)
    """Cap on training sentences."""
    max_dev: int = option(400, ge=0)
    """Cap on dev sentences."""
    ig_steps: int | None = None
    """Integrated-Gradients steps of extract (None = extract's default, 32; fewer for a decoder LLM on a CPU)."""
    ablate_space: Literal["model", "standardized"] = "model"
    """Coordinates ablate removes concepts in: model (the paper) or standardized (see `clvq-judge ablate --space`)."""
    methods: tuple[str, ...] = field(default_factory=method_names)
    """Concept methods to train and ablate (default: every registered one)."""
    quick: bool = False
    """Tiny sizes, as `demo --quick` (a smoke test of the replication, not a result)."""

    def demo(self, seed: int) -> DemoConfig:
        """The demo config of one seed's replicate (model axis only)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SeedsConfig) if f.name != "seeds"}
        quick_run = self.quick and self.run == RunOptions.run
        base = QUICK_RUN if quick_run else self.run
        return effective(DemoConfig(**{**shared, "run": replicate_name(base, self.seeds, seed)}, seed=seed, axes=("model",)))


def replicate_name(run: str, seeds: tuple[int, ...], seed: int) -> str:
    return run if seed == seeds[0] else f"{run}-seed{seed}"


def interval(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t-interval of per-seed values (None where fewer than two seeds have a value)."""
    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    out: dict[str, Any] = {"values": values, "n": int(len(x)), "mean": float(x.mean()) if len(x) else None}
    if len(x) >= 2:
        half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
        out.update(sd=float(x.std(ddof=1)), low=out["mean"] - half, high=out["mean"] + half,
                   min=float(x.min()), max=float(x.max()))
    else:
        out.update(sd=None, low=None, high=None, min=None, max=None)
    return out


def summarise(per_seed: dict[int, dict]) -> dict:
    """Per method and metric: the values of every seed and their mean with a 95% t-interval."""
    seeds = list(per_seed)
    methods = list(dict.fromkeys(m["method"] for f in per_seed.values() for m in f["methods"]))
    by_method: dict[str, dict] = {}
    for method in methods:
        rows = {s: next((m for m in per_seed[s]["methods"] if m["method"] == method), {}) for s in seeds}
        entry: dict[str, Any] = {"ablation_label": next(iter(rows.values())).get("ablation_label", method)}
        for metric in METRICS:
            values = [_value(rows[s].get(metric)) for s in seeds]
            entry[metric] = interval(values)
        entry["drop_vs_energy_control_ci_per_seed"] = [
            [_get(rows[s].get("drop_vs_energy_control"), "ci_low"), _get(rows[s].get("drop_vs_energy_control"), "ci_high")]
            for s in seeds]
        by_method[method] = entry
    return {
        "seeds": seeds,
        "dev_accuracy": interval([per_seed[s]["dev_accuracy"] for s in seeds]),
        "methods": by_method,
    }


def _value(v: Any) -> float | None:
    return _get(v, "value") if isinstance(v, dict) else (None if v is None else float(v))


def _get(d: dict | None, key: str) -> float | None:
    return None if d is None or d.get(key) is None else float(d[key])


def run_seeds(config: SeedsConfig) -> str:
    if len(set(config.seeds)) != len(config.seeds) or not config.seeds:
        raise UserError(f"--seeds {' '.join(map(str, config.seeds))}: give distinct seeds, e.g. --seeds 0 1 2")
    per_seed: dict[int, dict] = {}
    timings: dict[int, dict] = {}
    base_run = config.demo(config.seeds[0]).run
    lines = [f"seed replicates of run {base_run!r} ({config.dataset}, {config.model}): seeds {list(config.seeds)}"]
    for seed in config.seeds:
        one = config.demo(seed)
        check_config(one)
        name = one.run
        timer = Timer()
        model_axis(one, {"run": name, "runs_dir": config.runs_dir, "force": config.force, "device": config.device}, timer)
        per_seed[seed] = model_figures(Run.open(config.runs_dir, name), config.methods)
        timings[seed] = {k: round(v, 1) for k, v in timer.seconds.items()} | {"total": round(timer.total, 1)}
        lines.append(f"  seed {seed}: run {name!r} ({timer.total:.0f}s)")
    summary = summarise(per_seed)
    base = Run.open(config.runs_dir, base_run)
    record = {"run": base_run, "date": time.strftime("%Y-%m-%d"), "dataset": config.dataset, "model": config.model,
              "config": to_dict(config), "runs": {s: config.demo(s).run for s in config.seeds},
              "interval": "mean over seeds with a 95% t-interval (t_{0.975, n-1} * sd / sqrt(n))",
              **summary, "per_seed": per_seed, "seconds": timings}
    write_json(base.root / SEEDS, record)
    lines.append(f"  dev accuracy {_fmt(summary['dev_accuracy'])}")
    lines.append("  method          drop vs same-energy control        accuracy, concept removed       L_out lookup FVU")
    for entry in summary["methods"].values():
        lines.append(f"  {entry['ablation_label']:<15} {_fmt(entry['drop_vs_energy_control']):<34} "
                     f"{_fmt(entry['accuracy_concept_removed']):<31} {_fmt(entry['l_out_lookup_fvu'])}")
    lines.append(f"  -> {base.root / SEEDS}")
    return "\n".join(lines)


def _fmt(entry: dict) -> str:
    if entry["mean"] is None:
        return "-"
    if entry["low"] is None:
        return f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"
