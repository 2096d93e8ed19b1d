"""Judge throughput: comparisons/s of the embedded judge in process and through `clvq-judge serve` at
concurrency 1, 4 and 8, the client's overhead next to the model's own time, and a fully cached rerun.

    python benchmarks/judge.py [--out benchmarks/results/judge.json] [--n 8]

Precision: `auto` (bfloat16 on this CPU) everywhere, plus a plain float32 one-at-a-time baseline.
Comparisons are real pairwise prompts (`prompts/pairwise.v1.j2`, show=both) over made-up sentences and
concept cards, each distinct so nothing is answered from the cache. Overheads:
- in process: wall time of `CachedJudge.complete` (cache lookups and writes, bar, batching) minus the
  engine's own forward-pass time;
- HTTP: each request's round trip minus the model time the server reports for it (`clvq_model_seconds`),
  at concurrency 1 (at higher concurrency a request's round trip also includes queueing behind others).
The cached rerun pre-fills the cache with 1,000 answers (written by the cache itself, not by the model)
and times asking for all of them again through a live HTTP judge, whose server counter must not move.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SUBJECTS = ["The striker", "The central bank", "The new phone", "The minister", "The film", "The chip maker",
            "The coach", "The studio", "The union", "The start-up"]
VERBS = ["praised", "criticised", "announced", "delayed", "defended", "launched", "questioned", "welcomed"]
OBJECTS = ["the surprise result", "the quarterly figures", "a cheaper model", "the budget plan", "the sequel",
           "a faster processor", "the new signing", "its festival line-up"]
CARDS = [("football players and goals", ["striker", "goal", "league", "midfielder"]),
         ("company earnings and shares", ["shares", "profit", "earnings", "investors"]),
         ("phones, chips and software", ["phone", "chip", "software", "users"]),
         ("elections and ministers", ["minister", "vote", "party", "election"])]


def comparisons(n: int, tag: str):
    from clvq_judge.judge import render
    from clvq_judge.judge.client import Request

    out = []
    for i in range(n):
        sentence = f"{SUBJECTS[i % 10]} [[{VERBS[i % 8]}]] {OBJECTS[(i * 3) % 8]} on {tag} day {i}, officials said."
        a, b = CARDS[i % 4], CARDS[(i + 1) % 4]
        options = [{"label": lab, "description": d, "words": w, "examples": []} for lab, (d, w) in zip("AB", (a, b))]
        messages = render.prompt(render.PAIRWISE).messages(sentence=sentence, prediction="business", options=options,
                                                           labels=["A", "B"], show="both")
        out.append(Request(messages=messages, choices=("A", "B")))
    return out


def measure(judge, requests) -> dict:
    before = judge.usage
    start = time.perf_counter()
    answers = judge.complete(requests, desc="bench")
    wall = time.perf_counter() - start
    after = judge.usage
    sent = after["requests_sent"] - before["requests_sent"]
    prompt_tokens = after["prompt_tokens"] - before["prompt_tokens"]
    row = {"comparisons": len(requests), "requests_sent": sent, "wall_s": round(wall, 3),
           "comparisons_per_s": round(len(requests) / wall, 4),
           "prompt_tokens_per_comparison": round(prompt_tokens / len(requests), 1),
           "prompt_tokens_per_s": round(prompt_tokens / wall, 1),
           "verdicts": "".join(a.text for a in answers)}
    model_s = [a.extra.get("model_seconds") for a in answers]
    if all(m is not None for m in model_s):
        trips = [a.seconds for a in answers]
        row["mean_round_trip_s"] = round(sum(trips) / len(trips), 4)
        row["mean_model_s"] = round(sum(model_s) / len(model_s), 4)
        # Round trip minus model time: client + HTTP overhead alone at concurrency 1; with parallel requests
        # it also holds the wait behind other requests in the server's queue.
        label = "client_overhead" if judge.inner.concurrency == 1 else "client_overhead_and_queueing"
        row[f"{label}_per_request_s"] = round((sum(trips) - sum(model_s)) / len(trips), 4)
        row[f"{label}_fraction"] = round((sum(trips) - sum(model_s)) / sum(trips), 4)
    else:
        engine = after["seconds"] - before["seconds"]
        row["model_s"] = round(engine, 3)
        row["client_overhead_fraction"] = round((wall - engine) / wall, 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "judge.json"))
    parser.add_argument("--n", type=int, default=8, help="comparisons per setting (concurrency 1 uses n/4)")
    args = parser.parse_args()

    from fixtures_judge import get_json, start_server, stop_server

    from clvq_judge.core.atomic import write_json
    from clvq_judge.judge.backends import JudgeOptions, open_judges
    from clvq_judge.judge.backends.local import resolve_precision
    from clvq_judge.judge.cache import JudgeCache
    from clvq_judge.judge.client import Completion
    from clvq_judge.judge.embedded import judge_dir

    judge_dir()
    work = Path(tempfile.mkdtemp(prefix="judge-bench-"))
    result: dict = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                                "load_avg_start": os.getloadavg()}, "model": "embedded (Qwen2.5-Coder-0.5B-Instruct)",
                    "precision_auto": resolve_precision("auto")}

    # The baseline: plain float32, one prompt per forward pass.
    [plain] = open_judges(JudgeOptions(batch_size=1, precision="float32"), work / "p.sqlite")
    plain.complete(comparisons(1, "warm-up"))  # first call pays one-time kernel setup
    result["in_process_float32_batch1"] = measure(plain, comparisons(max(2, args.n // 4), "plain"))
    [alone] = open_judges(JudgeOptions(batch_size=1), work / "a.sqlite")
    alone.complete(comparisons(1, "warm-up"))
    result["in_process_batch1"] = measure(alone, comparisons(max(2, args.n // 4), "alone"))
    [batched] = open_judges(JudgeOptions(batch_size=8), work / "b.sqlite")
    result["in_process_batch8"] = measure(batched, comparisons(args.n, "batched"))

    process, base_url, _ = start_server(work, "--batch-size", "8")
    try:
        http = {}
        for concurrency in (1, 4, 8):
            [judge] = open_judges(JudgeOptions(base_url=base_url, model="embedded", concurrency=concurrency),
                                  work / f"h{concurrency}.sqlite")
            if concurrency == 1:
                judge.complete(comparisons(1, "warm-up"))
            n = max(2, args.n // 4) if concurrency == 1 else args.n
            http[f"concurrency_{concurrency}"] = measure(judge, comparisons(n, f"http{concurrency}"))
        result["serve"] = http

        cache_path = work / "cached.sqlite"
        [judge] = open_judges(JudgeOptions(base_url=base_url, model="embedded"), cache_path)
        requests = comparisons(1000, "cached")
        cache = JudgeCache(cache_path)
        for r in requests:
            cache.put(r.key(judge.backend, judge.cache_model), judge.backend, judge.cache_model, r,
                      Completion(text="A", choice_logprobs={"A": -0.5, "B": -1.0}, prompt_tokens=150, completion_tokens=1))
        server_before = get_json(base_url.removesuffix("/v1") + "/stats")["requests"]
        start = time.perf_counter()
        answers = judge.complete(requests)
        seconds = time.perf_counter() - start
        result["cached_rerun_1000"] = {
            "seconds": round(seconds, 3), "requests_sent": judge.usage["requests_sent"],
            "server_requests_during_rerun": get_json(base_url.removesuffix("/v1") + "/stats")["requests"] - server_before,
            "all_cached": all(a.cached for a in answers),
        }
    finally:
        stop_server(process)
    result["machine"]["load_avg_end"] = os.getloadavg()
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
