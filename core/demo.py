"""`clvq-judge demo`: the whole pipeline on the embedded offline default, with default options.

finetune -> extract -> train (every method) -> concepts -> ablate. Each step is the same library call as its
own CLI stage, so a rerun resumes an interrupted stage and skips finished ones.

The headline figures (the ones the README's results table shows) are written to `<run>/headline.json`;
`benchmarks/readme_table.py` turns that file into the README table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .ablation.stage import AblateConfig, ablate
from .atomic import write_json
from .classifier import FinetuneConfig, finetune
from .concepts import ConceptsConfig, concepts
from .config import option
from .errors import UserError
from .extract import ExtractConfig, extract
from .methods import METHODS, method_names
from .runs import Run, RunOptions
from .train import train, train_config_class

HEADLINE = "headline.json"


@dataclass
class DemoConfig(RunOptions):
    dataset: str = "news"
    """Dataset (embedded: news, sentiment)."""
    model: str = "minilm"
    """Model under study (embedded: minilm, gemma-270m)."""
    max_train: int = option(2000, ge=0)
    """Cap on training sentences."""
    max_dev: int = option(400, ge=0)
    """Cap on dev sentences."""
    methods: tuple[str, ...] = field(default_factory=method_names)
    """Concept methods to train, describe and ablate (default: every registered one)."""
    seed: int = 0
    """Seed of the run."""


def run_demo(config: DemoConfig) -> str:
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
    common = {"run": config.run, "runs_dir": config.runs_dir, "force": config.force, "device": config.device}
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def timed(name, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
        return out

    metrics = timed("finetune", finetune, FinetuneConfig(**common, dataset=config.dataset, model=config.model,
                                                         max_train=config.max_train, max_dev=config.max_dev, seed=config.seed))
    store = timed("extract", extract, ExtractConfig(**common, seed=config.seed))
    run = Run.open(config.runs_dir, config.run)
    for method in config.methods:
        timed("train", train, train_config_class()(**common, method=method, seed=config.seed, progress=False))
        timed("concepts", concepts, ConceptsConfig(**common, method=method, seed=config.seed))
    table = timed("ablate", ablate, AblateConfig(**common, method=tuple(config.methods)))

    lines = [
        f"demo run {run.name!r}: dataset {config.dataset!r}, model {config.model!r}",
        f"  classifier   dev accuracy {metrics['dev_accuracy']:.3f} vs majority-class baseline "
        f"{metrics['majority_baseline']:.3f} ({metrics['n_dev']} dev sentences)   -> {run.stage_dir('finetune')}",
        f"  activations  layers {store.layers}: {store.n_tokens('train')} training words, "
        f"{store.n_tokens('eval')} evaluation words, IG saliency   -> {store.folder}",
        "  concepts     (L_out lookup FVU: variance of the top layer its concept leaves unexplained; lower is better)",
    ]
    for method in config.methods:
        summary = run.done_record(f"concepts/{method}")
        lines.append(
            f"    {method:<14} {summary['used_concepts']:>4}/{summary['n_concepts']} concepts used, perplexity "
            f"{summary['perplexity']:.0f}, L_out lookup FVU {summary['l_out_lookup_fvu']:.3f}   -> {run.stage_dir(f'concepts/{method}')}"
        )
    write_json(run.root / HEADLINE, headline(run, config, metrics, store, table, timings))
    model_rows = table[(table["protocol"] == "model")]
    lines.append("  ablation     model accuracy after removing the explanation token's concept vs controls: a random "
                 "direction, a random one removing the same energy, another concept")
    for label, group in model_rows.groupby("label", sort=False):
        acc = dict(zip(group["condition"], group["accuracy"]))
        lines.append(f"    {label:<14} original {acc.get('original', float('nan')):.3f}  concept removed "
                     f"{acc.get('concept', float('nan')):.3f}  random {acc.get('random', float('nan')):.3f}  "
                     f"same-energy {acc.get('random_energy', float('nan')):.3f}  "
                     f"other concept {acc.get('other_concept', float('nan')):.3f}")
    lines.append(f"               -> {run.stage_dir('ablate')} (results.csv, summary.json, ablation.png)")
    lines.append("  time " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
                 + f", total {time.perf_counter() - started:.0f}s")
    return "\n".join(lines)


def headline(run: Run, config: DemoConfig, metrics: dict, store, table, timings: dict[str, float]) -> dict:
    """The figures the README reports, read from the stages' own records (nothing recomputed here)."""
    model_rows = table[table["protocol"] == "model"]
    accuracy = {
        (label, condition): float(acc)
        for label, condition, acc in zip(model_rows["label"], model_rows["condition"], model_rows["accuracy"])
    }
    methods = []
    for method in config.methods:
        record = run.done_record(f"concepts/{method}")
        trained = run.done_record(f"methods/{method}")["config"]
        label = next((lab for lab in dict.fromkeys(model_rows["label"]) if lab.split(" ")[0] == method), method)
        methods.append({
            "method": method,
            "layer_in": trained["layer_in"],
            "layer_out": trained["layer_out"],
            "used_concepts": record["used_concepts"],
            "n_concepts": record["n_concepts"],
            "l_out_lookup_fvu": record["l_out_lookup_fvu"],
            "reconstruction_layer": record.get("reconstruction_layer"),
            "eval_reconstruction_fvu": record.get("eval_reconstruction_fvu"),
            "ablation_label": label,
            "accuracy_concept_removed": accuracy.get((label, "concept")),
            "accuracy_random": accuracy.get((label, "random")),
            "accuracy_random_energy": accuracy.get((label, "random_energy")),
            "accuracy_other_concept": accuracy.get((label, "other_concept")),
        })
    return {
        "run": run.name,
        "date": time.strftime("%Y-%m-%d"),
        "dataset": config.dataset,
        "model": config.model,
        "dev_accuracy": metrics["dev_accuracy"],
        "majority_baseline": metrics["majority_baseline"],
        "n_dev": metrics["n_dev"],
        "layers": store.layers,
        "train_words": store.n_tokens("train"),
        "eval_words": store.n_tokens("eval"),
        "methods": methods,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
