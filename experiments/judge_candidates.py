"""Measure judge candidates (model x runtime x protocol) on one finished run, and write the table.

    python experiments/judge_candidates.py RUNS_DIR RUN --work WORK_DIR --out judges.json \
        --candidate "transformers:embedded|pairwise|both" --candidate "llamacpp:embedded|detection|both" ...
    python experiments/judge_candidates.py --render judges.json > docs/judges.md

Each candidate runs `clvq-judge rank` with its judge as the explainer too, on the same sampled units, in its
own copy of the run (the earlier stages are linked, the judge folder and its cache are fresh, so every request
is really sent and timed). The JSON records, per candidate: the known-answer control with its CI (for
detection: the member scored higher under its own concept than under a decoy), position inconsistency and
bias where the protocol has an option order, the per-method results, seconds and prompt tokens per request,
wall seconds of the whole call (descriptions included), the CPU and the precision. docs/judges.md is rendered
from that file, never typed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

from clvq_judge.core.atomic import read_json, write_json
from clvq_judge.judge.rank import RankConfig, rank

LINKED = ("run.json", "data", "classifier", "activations", "methods", "concepts", "ablation")


def cpu_info() -> dict:
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = sorted(f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "amx")) or "bf16" in f)
    import os

    return {"model": model, "flags": wanted, "cores": len(os.sched_getaffinity(0))}


def link_run(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if (source / name).exists() and not (target / name).exists():
            (target / name).symlink_to((source / name).resolve())


def measure(runs_dir: Path, run: str, work: Path, spec: str, protocol: str, show: str, methods: list[str],
            sentences: int, precision: str, index: int) -> dict:
    folder = work / f"candidate-{index}"
    link_run(runs_dir / run, folder / run)
    config = RankConfig(run=run, runs_dir=str(folder), method=methods[0], vs=tuple(methods[1:]), judge=(spec,),
                        protocol=protocol, show=show, sentences=sentences, precision=precision, bootstrap=1000)
    start = time.perf_counter()
    table = rank(config)
    wall = time.perf_counter() - start
    return summarise_ranking(folder / run / "judge", wall, table)


def summarise_ranking(judge_dir: Path, wall: float | None, table: str = "", timing: Path | None = None) -> dict:
    """One candidate's entry from a finished ranking folder (rank's judge/ or one of judge/results/*). A ranking
    redone from the cache sent nothing: `timing` names the folder of the ranking that sent those requests."""
    done = read_json(judge_dir / "done.json")
    config = done["config"]
    spec, usage = next(iter(done["usage"].items()))
    if timing is not None:
        usage = next(iter(read_json(timing / "done.json")["usage"].values()))
    frame = pd.read_csv(judge_dir / "methods.csv")
    head = frame.iloc[0]
    precision = config.get("precision")
    # A demo's ranking ran with --precision auto: its headline.json says what auto resolved to on that machine.
    headline = next((d / "headline.json" for d in judge_dir.parents if (d / "headline.json").exists()), None)
    if precision == "auto" and headline is not None:
        precision = (read_json(headline).get("precision", {}).get("rank") or {}).get(spec, precision)
    out = {
        "judge": spec, "protocol": done.get("protocol", "pairwise"), "show": config.get("show"),
        "precision": precision, "sentences": done.get("n_units"),
        "methods": done.get("methods"), "wall_seconds": round(wall, 1) if wall is not None else None,
        "requests": int(usage.get("requests_sent", 0)), "prompt_tokens": int(usage.get("prompt_tokens", 0)),
        "seconds_per_request": round(usage.get("seconds", 0.0) / max(1, usage.get("requests_sent", 1)), 3),
        "known_answer": [float(head.get("judge_known_answer_accuracy", math.nan)),
                         float(head.get("judge_known_answer_low", math.nan)),
                         float(head.get("judge_known_answer_high", math.nan))],
        "informative": bool(head.get("informative", False)),
        "per_method": frame.to_dict(orient="records"), "table": table,
    }
    if "position_inconsistency" in frame:
        comparisons = pd.read_csv(judge_dir / "pairs.csv")
        out["position_inconsistency"] = float(comparisons["position_inconsistency"].mean())
        out["position_bias"] = [float(head.get("position_bias", math.nan)), float(head.get("position_bias_low", math.nan)),
                                float(head.get("position_bias_high", math.nan))]
    describe = judge_dir / "descriptions"
    if describe.exists():
        rows = [json.loads(line) for f in describe.glob("*.jsonl") for line in f.read_text().splitlines() if line]
        out["not_a_description_share"] = (sum(bool(r.get("not_a_description")) for r in rows) / len(rows)) if rows else None
    return out


def fmt(triple) -> str:
    value, low, high = triple
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]" if math.isfinite(low) else f"{value:.2f}"


def render(data: dict) -> str:
    cpu = data["cpu"]
    lines = [
        "# Judge candidates, measured",
        "",
        f"Generated by `python experiments/judge_candidates.py --render {data['source']}` from the JSON that the same",
        f"script wrote on {data['date']} (run `{data['run']}`: {data['dataset']} + {data['model']}, seed {data['seed']}; "
        f"sentences and methods per row below). CPU: {cpu['model']}, "
        f"{cpu['cores']} cores, flags {' '.join(cpu['flags']) or 'none of avx2/avx512/amx/bf16'}. Every request was sent "
        "once; seconds per request are the backend's own time per request sent.",
        "",
        "Known-answer control: side-by-side protocols pit the true concept against a decoy of the same method (one",
        "that also holds the sentence's word where the method has one, else the closest in size), both orders;",
        "detection scores each member sentence under its own concept and under the decoy. Target: at least 0.80",
        "with the CI's lower end at least 0.65.",
        "",
        "| judge | runtime | protocol | shows | sentences x methods | known-answer [95% CI] | position inconsistency | position bias (log-odds of A) [CI] | s / request | requests |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in data["candidates"]:
        runtime = c["judge"].split(":")[0].replace("embedded", "transformers")
        if runtime == "transformers" and c.get("precision") not in (None, "auto"):
            runtime += f" {c['precision']}"
        model = data["models"].get(c["judge"], c["judge"])
        bias = fmt(c["position_bias"]) if "position_bias" in c else "none (no option order)"
        known = fmt(c["known_answer"]) + ("" if c["informative"] else " (not informative)")
        lexical = c["per_method"][0].get("string_match_known_answer")
        if lexical is not None and isinstance(lexical, float) and math.isfinite(lexical):
            known += f"; spotting the word on the card alone: {lexical:.2f}"
        incons = f"{c['position_inconsistency']:.2f}" if "position_inconsistency" in c else "-"
        lines.append(f"| {model} | {runtime} | {c['protocol']} | {c['show']} | {c['sentences']} x {len(c['methods'])} | "
                     f"{known} | {incons} | {bias} | {c['seconds_per_request']:.2f} | {c['requests']} |")
    lines += ["", "Per method (what each candidate would report):", ""]
    for c in data["candidates"]:
        lines.append(f"- **{data['models'].get(c['judge'], c['judge'])}, {c['judge'].split(':')[0]}, {c['protocol']}**:")
        for row in c["per_method"]:
            if c["protocol"] == "detection":
                lexical = row.get("string_match_auc")
                extra = f" (spotting the word on the card alone: {lexical:.2f})" if isinstance(lexical, float) and math.isfinite(lexical) else ""
                lines.append(f"  {row['method']} detection AUC {fmt([row['detection_auc'], row['detection_auc_low'], row['detection_auc_high']])}{extra}")
            else:
                lines.append(f"  {row['method']} win rate {fmt([row['win_rate'], row['win_rate_low'], row['win_rate_high']])}")
    if data.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in data["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs_dir", nargs="?")
    parser.add_argument("run", nargs="?")
    parser.add_argument("--work", help="folder for the candidates' run copies")
    parser.add_argument("--out", help="JSON to write (candidates are appended when it exists)")
    parser.add_argument("--candidate", action="append", default=[], help="SPEC|PROTOCOL|SHOW")
    parser.add_argument("--methods", nargs="+", default=["clvq", "kmeans", "sae"])
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--model-name", action="append", default=[], help="SPEC=readable model name")
    parser.add_argument("--note", action="append", default=[])
    parser.add_argument("--rename", action="append", default=[],
                        help="OLD=NEW judge spec, e.g. a local GGUF path to the embedded alias of the same file")
    parser.add_argument("--adopt", action="append", default=[],
                        help="FOLDER[:TIMING_FOLDER]: a finished ranking folder (a run's judge/results/<protocol>-<hash>) "
                        "to add as measured; TIMING_FOLDER: the ranking that sent its (since cached) requests")
    parser.add_argument("--render", help="print docs/judges.md from this JSON")
    args = parser.parse_args(argv)
    if args.render:
        sys.stdout.write(render(json.loads(Path(args.render).read_text())))
        return 0
    out = Path(args.out)
    runs_dir = Path(args.runs_dir) if args.runs_dir else None
    data = json.loads(out.read_text()) if out.exists() else None
    if data is None:
        info = read_json(runs_dir / args.run / "run.json") if runs_dir else {}
        data = {"source": str(out), "date": time.strftime("%Y-%m-%d"), "run": args.run,
                "dataset": info.get("dataset"), "model": info.get("model"), "seed": info.get("seed"),
                "methods": args.methods, "sentences": args.sentences, "cpu": cpu_info(), "models": {},
                "candidates": [], "notes": []}
    data["models"].update(dict(item.split("=", 1) for item in args.model_name))
    data["notes"] += args.note
    for item in args.adopt:
        folder, _, timing = item.partition(":")
        data["candidates"].append(summarise_ranking(Path(folder), None, timing=Path(timing) if timing else None))
        write_json(out, data)
    renames = dict(item.split("=", 1) for item in args.rename)
    for c in data["candidates"]:
        for old, new in renames.items():
            c["judge"] = c["judge"].replace(old, new)
            c["table"] = c.get("table", "").replace(old, new)
            for row in c["per_method"]:
                row["judge"] = str(row["judge"]).replace(old, new)
    write_json(out, data)
    for i, candidate in enumerate(args.candidate, start=len(data["candidates"])):
        spec, protocol, show = candidate.split("|")
        print(f"measuring {spec} {protocol} {show}", flush=True)
        data["candidates"].append(measure(runs_dir, args.run, Path(args.work), spec, protocol, show, args.methods,
                                          args.sentences, args.precision, i))
        write_json(out, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
