"""The SAE at field sparsity: train TopK SAEs for several k and the paper's L1 SAE on one finished run, write
their sparsity, reconstruction, concept lookup and ablation figures as one JSON (docs/method.md, "The SAE at
field sparsity"; docs/evidence/sae_sweep.json).

    python experiments/sae_sweep.py RUN_DIR [--topk 16 32 64] [--out sae_sweep.json]
    python experiments/sae_sweep.py --table sae_sweep.json      # the JSON as the markdown table of the docs

RUN_DIR is a run whose `extract` and `finetune` stages are done (e.g. a copy of the demo run). Each variant
trains in a sibling run `<run>-sae-<variant>` that links the run's classifier, data and activation cache, so
the run itself is never written to.

The default k is chosen by RULE below from the training and concept figures only; the choice is computed
and written to the JSON before any ablation runs, so it cannot depend on which SAE the ablation favours.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from clvq_judge.core.ablation.stage import AblateConfig, ablate
from clvq_judge.core.atomic import write_json
from clvq_judge.core.concepts import ConceptsConfig, concepts
from clvq_judge.core.train import TrainConfig, train

LINKED = ("activations", "classifier", "data")
MAX_L0 = 64
MAX_DEAD_SHARE = 0.2
RULE = (f"among the TopK variants with eval L0 <= {MAX_L0} and at most {MAX_DEAD_SHARE:.0%} of latents dead on the "
        "evaluation words, the lowest eval reconstruction FVU of L_out; FVUs within 0.01 of the lowest count as tied "
        "and the smallest k among them wins (sparser at equal fit); if no variant qualifies, the field's usual k = 32")
FALLBACK_TOPK = 32


def variant_run(run_dir: Path, tag: str) -> Path:
    """A sibling run sharing the run's finished inputs by symbolic link (nothing in the run is written)."""
    target = run_dir.parent / f"{run_dir.name}-sae-{tag}"
    target.mkdir(exist_ok=True)
    for name in LINKED:
        link = target / name
        if not link.exists():
            link.symlink_to((run_dir / name).resolve(), target_is_directory=True)
    shutil.copy(run_dir / "run.json", target / "run.json")
    return target


def card_stats(folder: Path) -> dict[str, Any]:
    cards = [json.loads(line) for line in (folder / "concepts.jsonl").read_text().splitlines()]
    used = [c for c in cards if c["count"] > 0]
    one_word = sum(len(c["top_words"]) == 1 for c in used)
    return {"used": len(used), "one_word_cards_share": one_word / max(len(used), 1),
            "median_members": sorted(c["count"] for c in used)[len(used) // 2] if used else 0}


def fit_variant(run_dir: Path, tag: str, topk: int, epochs: int | None) -> dict[str, Any]:
    run = variant_run(run_dir, tag)
    common = {"run": run.name, "runs_dir": str(run.parent)}
    options = {"epochs": epochs} if epochs else {}
    folder = train(TrainConfig(**common, method="sae", sae_topk=topk, progress=False, **options))
    done = json.loads((folder / "done.json").read_text())
    summary = json.loads((concepts(ConceptsConfig(**common, method="sae")) / "summary.json").read_text())
    best = done.get("best_metrics", {})
    return {
        "variant": tag, "sae_topk": topk, "latents": summary["n_concepts"], "epochs_run": done.get("epochs_run"),
        "l0": summary["l0"], "dead_latents": summary["dead_latents"],
        "dead_share": summary["dead_latents"] / summary["n_concepts"],
        "eval_reconstruction_fvu": summary["eval_reconstruction_fvu"], "val_fvu": best.get("val_fvu"),
        "val_l0": best.get("l0"), "l_out_lookup_fvu": summary["l_out_lookup_fvu"],
        "cards": card_stats(folder.parent.parent / "concepts" / "sae"),
    }


def choose(rows: list[dict[str, Any]]) -> int:
    """RULE on the TopK rows (no ablation figure is read)."""
    ok = [r for r in rows if r["sae_topk"] > 0 and r["l0"] <= MAX_L0 and r["dead_share"] <= MAX_DEAD_SHARE]
    if not ok:
        return FALLBACK_TOPK
    best = min(r["eval_reconstruction_fvu"] for r in ok)
    return min(r["sae_topk"] for r in ok if r["eval_reconstruction_fvu"] <= best + 0.01)


def ablate_variant(run_dir: Path, tag: str, protocol: str) -> dict[str, Any]:
    run = run_dir.parent / f"{run_dir.name}-sae-{tag}"
    ablate(AblateConfig(run=run.name, runs_dir=str(run.parent), method=("sae",), protocol=protocol))
    summary = json.loads((run / "ablation" / "summary.json").read_text())
    out = {}
    for label, entry in summary["methods"].items():
        out[label] = {p: {"before": entry[p]["before"], "after": entry[p]["after"],
                          "random_energy": entry[p]["random_energy"],
                          "drop_vs_energy_control": entry[p]["drop_vs_energy_control"],
                          "energy_share_concept": entry[p]["energy_share"]["concept"]}
                      for p in ("paper", "model") if p in entry}
    return out


def _ci(entry: dict[str, Any]) -> str:
    return f"{entry['value']:+.3f} [{entry['ci_low']:+.3f}, {entry['ci_high']:+.3f}]"


def table(result: dict[str, Any]) -> str:
    """One row per variant and ablated k: sparsity, fit, lookup, cards and both protocols' drop vs control."""
    lines = ["| SAE | L0 (eval) | dead latents | own recon. FVU of L_out | L_out lookup FVU | one-word cards | ablated k "
             "| model: drop vs energy control [95% CI] | paper: drop vs energy control [95% CI] | energy share (model) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["variants"]:
        name = f"TopK k={row['sae_topk']}" if row["sae_topk"] else "ReLU + L1 (paper)"
        head = (f"| {name} | {row['l0']:.1f} | {row['dead_latents']:,} / {row['latents']:,} | "
                f"{row['eval_reconstruction_fvu']:.3f} | {row['l_out_lookup_fvu']:.3f} | {row['cards']['one_word_cards_share']:.0%} ")
        ablation = row.get("ablation") if isinstance(row.get("ablation"), dict) else {}
        for label, entry in sorted(ablation.items(), key=lambda item: int(item[0].split("k=")[-1])):
            model, paper = entry.get("model"), entry.get("paper")
            energy = f"{model['energy_share_concept']:.4f}" if model else "n/a"
            lines.append(head + f"| {label.split('k=')[-1]} | {_ci(model['drop_vs_energy_control']) if model else 'n/a'} | "
                         f"{_ci(paper['drop_vs_energy_control']) if paper else 'n/a'} | {energy} |")
            head = "| | | | | | "
        if not ablation:
            lines.append(head + "| | | | |")
    lines.append(f"\nChosen default k (rule: {result['rule']}): {result['chosen_topk']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["--table"]:
        print(table(json.loads(Path(argv[1]).read_text())))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run (extract and finetune done)")
    parser.add_argument("--topk", type=int, nargs="+", default=[16, 32, 64], help="k of the TopK variants")
    parser.add_argument("--no-l1", action="store_true", help="leave out the paper's L1 SAE (--sae-topk 0)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the SAE's default)")
    parser.add_argument("--protocol", default="both", choices=["both", "paper", "model"])
    parser.add_argument("--out", type=Path, default=Path("sae_sweep.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_dir = args.run_dir.resolve()
    variants = [(f"k{k}", k) for k in args.topk] + ([] if args.no_l1 else [("l1", 0)])
    rows = [fit_variant(run_dir, tag, k, args.epochs) for tag, k in variants]
    result: dict[str, Any] = {"run": run_dir.name, "rule": RULE, "chosen_topk": choose(rows), "variants": rows,
                              "ablation": "pending"}
    write_json(args.out, result)  # the choice is on disk before any ablation runs
    for row in rows:
        row["ablation"] = ablate_variant(run_dir, row["variant"], args.protocol)
        write_json(args.out, {**result, "ablation": "per variant", "variants": rows})
    print(table({**result, "variants": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
