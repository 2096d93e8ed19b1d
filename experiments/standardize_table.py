"""Print the standardisation comparison table (docs/method.md, "Standardisation (issue 12 item 4)") from run
folders' own files (not part of the installed package):

    python experiments/standardize_table.py RUNS/gemma RUNS/gemma-std RUNS/demo RUNS/minilm-std

Per run and method: whether the method standardised (its config.json; missing = no), codes used on the
evaluation words / K and the perplexity of their use (concepts/<m>/summary.json), the L_out lookup FVU, the
method's own reconstruction FVU, the model-protocol accuracy before, with the concept removed, with a random
direction, with a random direction of the concept's energy and with another concept, and the drop against
the energy-matched control with its 95% bootstrap interval (ablation/summary.json); last, the paper
protocol's drop against its energy control.

The lookup FVU is computed twice here from the cache: in the model's space (the `concepts` figure; on Gemma
one dimension of L_out holds half its variance) and with every L_out dimension divided by its training std
first (each dimension counts the same), so neither preprocessing is judged only by its own yardstick.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.methods import ConceptMethod, LayerData
from clvq_judge.core.methods.standardize import fit_stats


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _drop(protocol: dict | None) -> str:
    if not protocol or "drop_vs_energy_control" not in protocol:
        return "-"
    d = protocol["drop_vs_energy_control"]
    return f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def lookup_fvus(run: Path, method: str) -> tuple[float, float]:
    """L_out lookup FVU (each eval word predicted by its concept's training mean) in model space and with
    every dimension scaled to unit training std."""
    store = ActivationStore(run / "activations")
    fitted = ConceptMethod.load(run / "methods" / method)
    layer, k = store.layer_out, fitted.n_concepts
    train_ids = fitted.assign(LayerData(store, "train", fitted.dims.layer_in))
    eval_ids = np.load(run / "concepts" / method / "assignments.npy")
    y_train = np.concatenate(list(store.iter_chunks(layer, "train"))).astype(np.float64)
    y_eval = np.concatenate(list(store.iter_chunks(layer, "eval"))).astype(np.float64)
    sums = np.zeros((k, y_train.shape[1]))
    np.add.at(sums, train_ids, y_train)
    counts = np.bincount(train_ids, minlength=k)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], y_train.mean(0))
    sse = ((y_eval - means[eval_ids]) ** 2).sum(0)
    sst = ((y_eval - y_eval.mean(0)) ** 2).sum(0)
    _, std = fit_stats([y_train])
    w = 1.0 / std**2
    return float(sse.sum() / sst.sum()), float((w * sse).sum() / (w * sst).sum())


def rows(run: Path, methods: tuple[str, ...]) -> list[str]:
    ablation = (_read(run / "ablation" / "summary.json") or {}).get("methods", {})
    info = _read(run / "run.json") or {}
    out = []
    for method in methods:
        concepts = _read(run / "concepts" / method / "summary.json")
        if concepts is None:
            continue
        config = (_read(run / "methods" / method / "config.json") or {}).get("config", {})
        # The SAE's row is its k=1 variant (the span of its one most active latent's encoder row).
        result = ablation.get(method) or ablation.get(f"{method} k=1") or {}
        model, paper = result.get("model"), result.get("paper")
        model_fvu, std_fvu = lookup_fvus(run, method)
        assert abs(model_fvu - concepts["l_out_lookup_fvu"]) < 1e-6, (run, method)  # same figure as `concepts`
        acc = " / ".join(_num((model or {}).get(k)) for k in ("before", "after", "random", "random_energy", "other_concept"))
        out.append(
            f"| {run.parent.name}/{run.name} ({info.get('model', '?')}) | {method if method != 'sae' else 'sae k=1'} | {'yes' if config.get('standardize') else 'no'} "
            f"| {concepts['used_concepts']}/{concepts['n_concepts']} | {concepts['perplexity']:.0f} "
            f"| {model_fvu:.3f} / {std_fvu:.3f} | {_num(concepts.get('eval_reconstruction_fvu'))} "
            f"| {acc} | {_drop(model)} | {_drop(paper)} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (<runs-dir>/<run>)")
    parser.add_argument("--methods", nargs="+", default=["clvq", "kmeans", "sae"])
    args = parser.parse_args(argv)
    print("| run (model) | method | standardised | codes used / K | perplexity | L_out lookup FVU: model space / standardised | own recon. FVU "
          "| model protocol acc.: original / removed / random / random energy / other concept "
          "| model drop vs energy control [95% CI] | paper drop vs energy control [95% CI] |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        for line in rows(run, tuple(args.methods)):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
