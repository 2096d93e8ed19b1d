"""Explorer latency on a finished run: the first page after start and a concept page (targets: < 1 s, < 300 ms).

    python benchmarks/explorer.py RUN_DIR [--out benchmarks/results/explorer.json] [--concepts 10]

RUN_DIR is a run folder (`runs/<name>`). Each page is rendered by Streamlit's own script runner (AppTest) in this
process, pinned to two cores: the first page is timed from a fresh process (imports, reading the run, building
the concept lists), then concept pages of the most used concepts of each method, the first of which also loads
the top layer for the L_in -> L_out view. Writes JSON with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def machine() -> dict:
    flags, model = [], platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = [f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx"))]
                break
    except OSError:
        pass
    return {"cpu": model, "flags": flags, "cores_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default="benchmarks/results/explorer.json")
    parser.add_argument("--concepts", type=int, default=10, help="concept pages timed per method")
    args = parser.parse_args()
    run = Path(args.run_dir).resolve()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    from streamlit.testing.v1 import AppTest

    from clvq_judge.pipeline.explorer import app_path

    sys.argv = ["explorer", "--runs-dir", str(run.parent), "--run", run.name]
    at = AppTest.from_file(str(app_path()), default_timeout=120)
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    assert not at.exception, at.exception
    from clvq_judge.pipeline.collect import Results
    from clvq_judge.pipeline.concept_index import ConceptIndex

    index = ConceptIndex(Results.open(run.parent, run.name))
    pages = {}
    for method in index.methods:
        times = []
        for concept in index.sorted_overview(method, "size")["concept"].head(args.concepts):
            at.query_params.update({"view": "concept", "method": method, "concept": str(int(concept))})
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
            assert not at.exception, at.exception
        pages[method] = {"first_s": times[0], "median_s": statistics.median(times), "max_s": max(times), "n": len(times)}
    at.query_params.clear()
    at.query_params.update({"view": "sentence"})
    start = time.perf_counter()
    at.run()
    sentence = time.perf_counter() - start
    every = [t for p in pages.values() for t in [p["median_s"]]]
    record = {
        "benchmark": "explorer", "run": run.name, "eval_tokens": int(len(index.tokens)), "methods": index.methods,
        "first_page_s": round(first, 4), "first_page_target_s": 1.0,
        "concept_page_median_s": round(statistics.median(every), 4) if every else None,
        "concept_page_max_s": round(max(p["max_s"] for p in pages.values()), 4) if pages else None,
        "concept_page_target_s": 0.3, "side_by_side_page_s": round(sentence, 4),
        "concept_pages": {m: {k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()} for m, p in pages.items()},
        "how": "Streamlit AppTest script runs in one process pinned to 2 cores; first page from a fresh process",
        "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("first_page_s", "concept_page_median_s", "concept_page_max_s",
                                             "side_by_side_page_s")}))


if __name__ == "__main__":
    main()
