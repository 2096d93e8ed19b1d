"""Explorer latency on a finished run: the first page after start and a concept page (targets: < 1 s, < 300 ms).

    python benchmarks/explorer.py RUN_DIR [--out benchmarks/results/explorer.json] [--concepts 10]

RUN_DIR is a run folder (`runs/<name>`). Each page is rendered by Streamlit's own script runner (AppTest) in this
process, pinned to two cores: the first page is the app's imports plus a script run with every cache emptied
(reading the run, building the concept lists; AppTest's own start-up is recorded apart), then, once the background load of the top layer that the first page starts is done (timed
too), concept pages of the most used concepts of each method. Writes JSON with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
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


def _join_warm() -> float:
    start = time.perf_counter()
    for thread in threading.enumerate():
        if thread.name == "explorer-warm":
            thread.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default="benchmarks/results/explorer.json")
    parser.add_argument("--concepts", type=int, default=10, help="concept pages timed per method")
    args = parser.parse_args()
    run = Path(args.run_dir).resolve()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    import pandas  # noqa: F401  (the server has imported these before any page)
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    start = time.perf_counter()
    from clvq_judge.pipeline import concept_index  # noqa: F401
    from clvq_judge.pipeline.explorer import app_path

    imports = time.perf_counter() - start
    sys.argv = ["explorer", "--runs-dir", str(run.parent), "--run", run.name]
    at = AppTest.from_file(str(app_path()), default_timeout=120)
    start = time.perf_counter()
    at.run()
    apptest_first = time.perf_counter() - start
    assert not at.exception, at.exception
    _join_warm()
    # AppTest pays its own start-up (component discovery) on an instance's first run; a server pays it at start.
    # So the first page is timed again with every cache emptied: reading the run and building the lists anew.
    st.cache_resource.clear()
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start + imports
    assert not at.exception, at.exception
    # The page starts loading the top layer in the background after the first page; a researcher's first click
    # comes later than that, so the concept pages are timed once it is done (its time is recorded too).
    warm = _join_warm()
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
        "first_page_s": round(first, 4), "first_page_target_s": 1.0, "app_imports_s": round(imports, 4),
        "apptest_first_run_s": round(apptest_first, 4),
        "concept_page_median_s": round(statistics.median(every), 4) if every else None,
        "concept_page_max_s": round(max(p["max_s"] for p in pages.values()), 4) if pages else None,
        "concept_page_target_s": 0.3, "side_by_side_page_s": round(sentence, 4),
        "background_warm_after_first_page_s": round(warm, 4),
        "concept_pages": {m: {k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()} for m, p in pages.items()},
        "how": "Streamlit AppTest script runs in one process pinned to 2 cores; first page = the app's imports plus "
               "a script run with every cache emptied (apptest_first_run_s adds AppTest's own start-up); concept "
               "pages after the background load of the top layer that the first page starts",
        "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("first_page_s", "concept_page_median_s", "concept_page_max_s",
                                             "side_by_side_page_s")}))


if __name__ == "__main__":
    main()
