"""Where would the quick preset's early stopping have stopped a finished training, and what would it have kept?
(not part of the installed package)

    python experiments/early_stopping_replay.py RUNS/demo --methods clvq vqvae sae \
        --out experiments/results/early_stopping_demo.json

Replays the trainer's own rule (`trainer.progressed`: `--early-stop` epochs in a row without a relative drop
of `--early-stop-min-gain` in the validation loss) on each method's `metrics.jsonl` of a run trained without
it. Early stopping changes nothing before it stops (same seed, same batches), so the epoch it stops at and
the best epoch up to there are exactly what a training with the rule would have kept.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from clvq_judge.core.atomic import write_json
from clvq_judge.core.methods.trainer import METRICS, progressed


def replay(rows: list[dict], patience: int, min_gain: float) -> dict:
    reference, since, stop = math.inf, 0, len(rows)
    for row in rows:
        if progressed(row["val_loss"], reference, min_gain):
            reference, since = row["val_loss"], 0
        else:
            since += 1
        if since >= patience:
            stop = row["epoch"]
            break
    kept = min(rows[:stop], key=lambda r: r["val_loss"])
    full = min(rows, key=lambda r: r["val_loss"])
    return {"epochs_trained_without": len(rows), "epochs_with_early_stopping": stop,
            "epochs_saved_share": round(1 - stop / len(rows), 3),
            "kept_epoch": kept["epoch"], "val_fvu_kept": kept["val_fvu"], "val_loss_kept": kept["val_loss"],
            "best_epoch_without": full["epoch"], "val_fvu_best_without": full["val_fvu"],
            "val_loss_best_without": full["val_loss"], "val_fvu_last_epoch": rows[-1]["val_fvu"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder whose methods/<m>/metrics.jsonl to replay")
    parser.add_argument("--methods", nargs="+", default=["clvq", "vqvae", "sae"])
    parser.add_argument("--early-stop", type=int, default=2)
    parser.add_argument("--early-stop-min-gain", type=float, default=0.005)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = {"run": args.run.name, "rule": {"early_stop": args.early_stop, "early_stop_min_gain": args.early_stop_min_gain},
              "note": "val_loss (what early stopping watches) is the method's training loss on the validation split "
                      "in its own space; val_fvu is the model-space figure. '_without' = the run as trained.",
              "methods": {}}
    for method in args.methods:
        path = args.run / "methods" / method / METRICS
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        result["methods"][method] = replay(rows, args.early_stop, args.early_stop_min_gain)
        print(method, json.dumps(result["methods"][method]))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
