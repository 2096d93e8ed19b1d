"""Run every benchmark and the demo; write one JSON and one markdown table into benchmarks/results/.

    python benchmarks/run_all.py                      # all benchmarks + `clvq-judge demo` (runs/)
    python benchmarks/run_all.py --skip train --demo-runs-dir /tmp/runs
    python benchmarks/run_all.py --only demo

Each benchmark runs as its own process (its own peak memory, its own JSON), one after the other, so their
timings do not compete for the CPU. The demo's time per stage comes from the `headline.json` it writes:
a stage that was already done keeps the seconds it took when it did the work (see `pipeline/demo.py`), so
a finished demo is not rerun just to be timed. Outputs:

    benchmarks/results/<name>.json      each benchmark's own record
    benchmarks/results/all.json         all of them, with exit codes, wall times and the machine
    benchmarks/results/summary.md       the headline figure(s) of each, as one markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS = ("extract", "train", "judge", "human_eval")


def _get(d: dict, path: str):
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# The figures each benchmark is run for, as (label, dotted path in its JSON, unit).
HEADLINES = {
    "extract": [("extraction time / bare forward time (first size)", "summary.0.overhead_ratio", "x"),
                ("words/s (first size)", "summary.0.words_per_s", ""),
                ("peak RSS growth, small to large", "memory_growth_mb", "MB")],
    "train": [("tokens/s, first method and size", "results.0.tokens_per_s", ""),
              ("share of matmul peak", "results.0.fraction_of_matmul_peak", "")],
    "judge": [("in process, batch 8", "in_process_batch8.comparisons_per_s", "comparisons/s"),
              ("through serve, concurrency 4", "serve.concurrency_4.comparisons_per_s", "comparisons/s"),
              ("cached rerun of 1,000", "cached_rerun_1000.seconds", "s")],
    "human_eval": [("annotator page, 20 sessions, median", "page_latency.no_think_time.page_median_ms", "ms"),
                   ("results of 10,000 answers", "results_10k.median_s", "s")],
}


def numeric_leaves(d, prefix: str = "", limit: int = 6) -> list[tuple[str, float]]:
    """The first few numeric figures of a JSON record, for benchmarks without named headlines."""
    out: list[tuple[str, float]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            if k in ("machine", "date", "cpus", "python", "load_average_1min"):
                continue
            out += numeric_leaves(v, f"{prefix}.{k}" if prefix else str(k), limit - len(out))
            if len(out) >= limit:
                break
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out.append((prefix, d))
    return out[:limit]


def run_benchmark(name: str, args: list[str]) -> dict:
    out = RESULTS / f"{name}.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--out", str(out), *args],
                          cwd=ROOT, text=True, capture_output=True)
    entry = {"exit_code": proc.returncode, "wall_s": round(time.perf_counter() - started, 1)}
    if proc.returncode != 0:
        entry["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    elif out.exists():
        entry["result"] = json.loads(out.read_text())
    return entry


def run_demo(runs_dir: str, extra: list[str]) -> dict:
    exe = shutil.which("clvq-judge") or str(Path(sys.executable).with_name("clvq-judge"))
    started = time.perf_counter()
    proc = subprocess.run([exe, "demo", "--runs-dir", runs_dir, *extra], cwd=ROOT, text=True, capture_output=True)
    entry = {"exit_code": proc.returncode, "wall_s": round(time.perf_counter() - started, 1)}
    run = "demo-quick" if "--quick" in extra else "demo"
    headline = Path(runs_dir) / run / "headline.json"
    if proc.returncode != 0:
        entry["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    elif headline.exists():
        record = json.loads(headline.read_text())
        entry["result"] = {"seconds": record["seconds"], "skipped": record.get("skipped", []),
                           "this_invocation_seconds": record.get("this_invocation_seconds"),
                           "headline": str(headline)}
    return entry


def summary_table(results: dict) -> str:
    lines = ["| benchmark | figure | value |", "|---|---|---|"]
    for name, entry in results.items():
        if entry["exit_code"] != 0:
            lines.append(f"| {name} | failed (exit {entry['exit_code']}) | {' '.join(entry.get('error', []))} |")
            continue
        record = entry.get("result", {})
        if name == "demo":
            for stage, seconds in record.get("seconds", {}).items():
                lines.append(f"| demo | {stage} | {seconds:.0f} s |")
            continue
        named = [(label, _first(record, path) if ".0." in path else _get(record, path), unit)
                 for label, path, unit in HEADLINES.get(name, [])]
        named = [(label, value, unit) for label, value, unit in named if value is not None]
        if not named:
            named = [(path, value, "") for path, value in numeric_leaves(record)]
        for label, value, unit in named:
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            lines.append(f"| {name} | {label} | {shown} {unit} |".replace("  |", " |"))
    return "\n".join(lines) + "\n"


def _first(record: dict, path: str):
    head, _, tail = path.partition(".0.")
    items = _get(record, head)
    if isinstance(items, list) and items:
        return _get(items[0], tail)
    if isinstance(items, dict) and items:
        return _get(next(iter(items.values())), tail)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[*BENCHMARKS, "demo"], help="run just these")
    parser.add_argument("--skip", nargs="+", default=[], choices=[*BENCHMARKS, "demo"], help="leave these out")
    parser.add_argument("--demo-runs-dir", default=str(ROOT / "runs"), help="runs folder of the timed demo")
    parser.add_argument("--demo-args", default="", help="extra options for `clvq-judge demo`, e.g. '--quick'")
    args = parser.parse_args(argv)
    chosen = [n for n in (*BENCHMARKS, "demo") if (args.only is None or n in args.only) and n not in args.skip]
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {}
    for name in chosen:
        print(f"running {name} ...", flush=True)
        results[name] = run_demo(args.demo_runs_dir, args.demo_args.split()) if name == "demo" else run_benchmark(name, [])
        print(f"  {name}: exit {results[name]['exit_code']} in {results[name]['wall_s']:.0f}s", flush=True)
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
              "processor": platform.processor(), "load_average": os.getloadavg()}, "benchmarks": results}
    (RESULTS / "all.json").write_text(json.dumps(record, indent=2, default=str))
    table = summary_table(results)
    (RESULTS / "summary.md").write_text(f"# Benchmarks ({record['date']}, {os.cpu_count()} CPUs)\n\n{table}")
    print(table)
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
