"""`clvq-judge demo`: the whole pipeline on the embedded offline default, with default options.

Each step is the same library call as its own CLI stage, so a rerun resumes or skips finished stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .classifier import FinetuneConfig, finetune
from .extract import ExtractConfig, extract
from .runs import Run, RunOptions


@dataclass
class DemoConfig(RunOptions):
    dataset: str = "news"
    """Dataset (embedded: news, sentiment)."""
    model: str = "minilm"
    """Model under study (embedded: minilm, gemma-270m)."""
    max_train: int = 2000
    """Cap on training sentences."""
    max_dev: int = 400
    """Cap on dev sentences."""
    seed: int = 0
    """Seed of the run."""


def run_demo(config: DemoConfig) -> str:
    common = {"run": config.run, "runs_dir": config.runs_dir, "force": config.force, "device": config.device}
    timings = {}
    started = time.perf_counter()
    metrics = finetune(FinetuneConfig(**common, dataset=config.dataset, model=config.model,
                                      max_train=config.max_train, max_dev=config.max_dev, seed=config.seed))
    timings["finetune"] = time.perf_counter() - started
    t = time.perf_counter()
    store = extract(ExtractConfig(**common, seed=config.seed))
    timings["extract"] = time.perf_counter() - t
    run = Run.open(config.runs_dir, config.run)
    lines = [
        f"demo run {run.name!r} on dataset {config.dataset!r} with model {config.model!r}",
        f"  classifier  dev accuracy {metrics['dev_accuracy']:.3f} vs majority-class baseline "
        f"{metrics['majority_baseline']:.3f} ({metrics['n_dev']} dev sentences)   -> {run.stage_dir('finetune')}",
        f"  activations layers {store.layers}: {store.n_tokens('train')} training words, "
        f"{store.n_tokens('eval')} evaluation words, IG saliency   -> {store.folder}",
        "  time " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
        + f", total {time.perf_counter() - started:.0f}s",
    ]
    return "\n".join(lines)
