"""Print the CLVQ-VAE decoder experiments table (docs/method.md, "Decoder defaults (issue 12 item 3)") from
run folders' own files (not part of the installed package):

    python experiments/decoder_table.py RUNS/demo RUNS/e1_topk1 RUNS/e2

Per run: the options that differ from the first run's (methods/clvq/config.json), epochs trained and the best
epoch's validation FVU (metrics.jsonl), the decoder's own reconstruction FVU and the L_out lookup FVU of its
codes on every evaluation word (concepts/clvq/done.json), codes used on the evaluation words and their
perplexity, the context-use figures of `diagnose` (diagnose/clvq.json) and, when the run has an ablation,
the model protocol's drop against the energy-matched control with its 95% bootstrap interval. A run that
stopped before its `concepts` stage shows its training curve only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _history(run: Path) -> list[dict]:
    path = run / "methods" / "clvq" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _config(run: Path) -> dict:
    # done.json once trained; started.json for a run stopped early (same keys).
    return ((_read(run / "methods" / "clvq" / "done.json") or {}).get("config")
            or (_read(run / "methods" / "clvq" / "started.json") or {}).get("config") or {})


def row(run: Path, reference: dict) -> str:
    cfg = _config(run)
    changed = ", ".join(f"{k}={cfg[k]}" for k in sorted(cfg) if k in reference and cfg[k] != reference[k])
    changed += "".join(f", {k}={cfg[k]}" for k in sorted(cfg) if k not in reference and cfg[k])
    history = _history(run)
    best = min(history, key=lambda r: r["val_loss"]) if history else {}
    concepts = _read(run / "concepts" / "clvq" / "done.json") or {}
    ctx = (_read(run / "diagnose" / "clvq.json") or {}).get("context", {})
    model = ((_read(run / "ablation" / "summary.json") or {}).get("methods", {}).get("clvq", {}) or {}).get("model")
    drop = "-"
    if model and "drop_vs_energy_control" in model:
        d = model["drop_vs_energy_control"]
        drop = f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
    used = concepts.get("used_concepts")
    cells = [
        run.name, changed.strip(", ") or "(defaults)", f"{len(history)} ({best.get('epoch', '-')})",
        _num(best.get("val_fvu")), _num(concepts.get("eval_reconstruction_fvu")), _num(concepts.get("l_out_lookup_fvu")),
        f"{used} / {_num(concepts.get('perplexity'), 0)}" if used is not None else "-",
        " / ".join(_num(ctx.get(k)) for k in ("fvu_as_is", "fvu_each_word_alone", "fvu_among_other_sentence")),
        " / ".join(_num(ctx.get(k)) for k in ("fvu_decoder_code_average_lookup", "fvu_code_training_mean_lookup",
                                              "fvu_code_mean_plus_decoder_context")),
        drop,
    ]
    return "| " + " | ".join(cells) + " |"


def curves(runs: list[Path]) -> list[str]:
    """Validation FVU per epoch, side by side (a stopped run is compared on the epochs it finished)."""
    histories = {run.name: _history(run) for run in runs}
    n = max((len(h) for h in histories.values()), default=0)
    lines = ["| epoch | " + " | ".join(histories) + " |", "|---" * (len(histories) + 1) + "|"]
    for i in range(n):
        lines.append(f"| {i + 1} | " + " | ".join(_num(h[i]["val_fvu"], 4) if i < len(h) else "" for h in histories.values()) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; the first is the reference for 'options changed'")
    args = parser.parse_args()
    reference = _config(args.runs[0])
    print("| run | options changed | epochs (best) | val FVU (best) | eval FVU: decoder | eval FVU: lookup of its codes "
          "| codes used / perplexity | context test: as is / word alone / among another sentence "
          "| lookups: decoder per-code avg / code mean / mean + decoder context | ablation drop vs energy control |")
    print("|---" * 10 + "|")
    for run in args.runs:
        print(row(run, reference))
    print()
    print("\n".join(curves(args.runs)))


if __name__ == "__main__":
    main()
