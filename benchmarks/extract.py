"""Extraction benchmark: words/s of `extract` against a bare forward pass, and peak memory at two sizes.

    python benchmarks/extract.py --out benchmarks/results/extract.json

Each measurement runs in a fresh child process so its peak RSS is its own. The bare pass tokenizes the same
batches and runs the same truncated forward (stopping at the highest cached layer) without aggregating or
writing anything; the ratio of the two times is the extraction overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def child(mode: str, n_sentences: int, runs_dir: str) -> dict:
    import torch

    from clvq_judge.core.classifier import batches_by_length, load_classifier
    from clvq_judge.core.data import DataOptions, load_dataset
    from clvq_judge.core.encode import encode_batch
    from clvq_judge.core.extract import ExtractConfig, Extractor, _extract_selection
    from clvq_judge.core.hooks import capture, run_until_stop
    from clvq_judge.core.runs import Run

    torch.set_num_threads(os.cpu_count() or 1)
    run = Run.open(runs_dir, "bench")
    model = load_classifier(run)
    data = load_dataset(DataOptions(dataset="sentiment", max_train=n_sentences, max_dev=10, seed=1)).split("train")
    frame = data.assign(prediction=0).reset_index(drop=True)
    texts = frame["text"].tolist()
    layers = [4, 6]
    config = ExtractConfig(layers=tuple(layers), batch_size=32)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if mode == "bare":
        with torch.no_grad():
            for idx in batches_by_length(texts, config.batch_size):
                batch = encode_batch(model.tokenizer, [texts[i] for i in idx], config.max_length)
                with capture(model, layers):
                    run_until_stop(lambda b=batch: model(b.input_ids, b.attention_mask))
        seconds = time.perf_counter() - start
        n_words = None
    else:
        with tempfile.TemporaryDirectory() as folder:
            extractor = Extractor(model, layers, "last", config.batch_size, config.max_length, "cpu")
            rows = _extract_selection(extractor, frame, "eval", None, config, Path(folder))
            seconds = time.perf_counter() - start
            n_words = int(sum(rows))
            size_mb = sum(p.stat().st_size for p in Path(folder).glob("*.npy")) / 2**20
    out = {"mode": mode, "sentences": len(texts), "seconds": round(seconds, 3),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "rss_before_mb": round(rss_before / 1024, 1)}
    if n_words is not None:
        out.update(words=n_words, words_per_s=round(n_words / seconds, 1), shard_mb=round(size_mb, 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/extract.json")
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 6000], help="training sentences per measurement")
    parser.add_argument("--runs-dir", default=None, help="where the benchmark's classifier run lives (default: temp)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs_dir = args.runs_dir or str(Path(tempfile.gettempdir()) / "clvq-bench-runs")
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), runs_dir)))
        return
    from clvq_judge.core.classifier import FinetuneConfig, finetune

    finetune(FinetuneConfig(run="bench", runs_dir=runs_dir, dataset="sentiment", model="minilm", max_train=200, max_dev=50))
    results = []
    for n in args.sizes:
        for mode in ("bare", "extract"):
            proc = subprocess.run([sys.executable, __file__, "--child", mode, str(n), "--runs-dir", runs_dir],
                                  capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    summary = {}
    for n in args.sizes:
        bare = next(r for r in results if r["sentences"] == n and r["mode"] == "bare")
        ext = next(r for r in results if r["sentences"] == n and r["mode"] == "extract")
        summary[str(n)] = {"overhead_ratio": round(ext["seconds"] / bare["seconds"], 3),
                           "words_per_s": ext["words_per_s"], "bare_words_per_s": round(ext["words"] / bare["seconds"], 1),
                           "peak_rss_mb": ext["peak_rss_mb"], "shard_mb": ext["shard_mb"]}
    small, large = (summary[str(n)] for n in args.sizes)
    report = {
        "benchmark": "extract",
        "model": "minilm", "layers": [4, 6], "dataset": "sentiment", "cpu_count": os.cpu_count(),
        "measurements": results,
        "summary": summary,
        "memory_growth_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1),
        "targets": {"overhead_ratio_max": 1.3, "memory_flat": "peak RSS must not grow with dataset size"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2), f"\nmemory growth {report['memory_growth_mb']} MB; written to {args.out}")


if __name__ == "__main__":
    main()
