"""`clvq-judge diagnose` over seed replicates: each diagnostic as mean and 95% t-interval, as JSON and a table.

    clvq-judge diagnose --run demo --method clvq     # once per replicate (demo, demo-seed1, demo-seed2)
    python experiments/diagnose_table.py --runs-dir runs --runs demo demo-seed1 demo-seed2 \
        --out experiments/results/diagnose_news.json

Reads `<run>/diagnose/<method>.json` of every run; writes the per-run values, mean, sd and interval of each
figure to --out and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clvq_judge.core.atomic import write_json
from clvq_judge.pipeline.seeds import interval

FIGURES = {
    "lookup FVU, initialised codebook": ("lookup_fvu", "initialised"),
    "lookup FVU, trained": ("lookup_fvu", "trained"),
    "oracle: k-means fitted on L_out": ("lookup_fvu", "oracle_kmeans_on_lookup_layer"),
    "NMI method ~ k-means on L_in": ("nmi", "method_vs_kmeans_l_in"),
    "NMI method ~ word identity": ("nmi", "method_vs_words"),
    "NMI k-means on L_in ~ word identity": ("nmi", "kmeans_l_in_vs_words"),
    "decoder FVU as is": ("context", "fvu_as_is"),
    "decoder FVU, each word alone": ("context", "fvu_each_word_alone"),
    "decoder FVU, among another sentence's codes": ("context", "fvu_among_other_sentence"),
    "decoder's per-code average as lookup": ("context", "fvu_decoder_code_average_lookup"),
    "per-code training mean as lookup": ("context", "fvu_code_training_mean_lookup"),
    "encoder gate m": ("encoder", "gate_m"),
    "encoder ||W - I|| / ||I||": ("encoder", "weight_distance_from_identity"),
    "encoder mean ||z - x|| / ||x||": ("encoder", "mean_relative_change"),
    "share of codes moved from init": ("codes", "moved_share"),
    "codes used on eval": ("codes", "used_eval"),
}


def summarise(records: dict[str, dict]) -> dict:
    out = {}
    for name, (group, key) in FIGURES.items():
        values = [r.get(group, {}).get(key) for r in records.values()]
        if any(v is not None for v in values):
            out[name] = interval(values)
    return out


def table(summary: dict) -> str:
    lines = ["| diagnostic | mean [95% t-interval] | per run |", "|---|---|---|"]
    for name in [n for n in FIGURES if n in summary]:  # FIGURES' order, not the JSON file's sorted keys
        e = summary[name]
        shown = f"{e['mean']:.3f}" + (f" [{e['low']:.3f}, {e['high']:.3f}]" if e.get("low") is not None else "")
        per = ", ".join("-" if v is None else f"{v:.3f}" for v in e["values"])
        lines.append(f"| {name} | {shown} | {per} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--runs", nargs="+", required=True, help="run names (one per seed)")
    parser.add_argument("--method", default="clvq")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    records = {}
    for run in args.runs:
        path = args.runs_dir / run / "diagnose" / f"{args.method}.json"
        if not path.exists():
            print(f"error: {path} does not exist: run `clvq-judge diagnose --run {run} --method {args.method}` first",
                  file=sys.stderr)
            return 2
        records[run] = json.loads(path.read_text())
    summary = summarise(records)
    write_json(args.out, {"method": args.method, "runs": args.runs, "seeds": [r.get("seed") for r in records.values()],
                          "figures": summary})
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
