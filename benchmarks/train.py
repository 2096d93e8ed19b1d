"""Training throughput (tokens/s per epoch) and peak memory of the gradient-trained methods.

    python benchmarks/train.py [--sizes 20000 80000] [--hidden 384] [--out benchmarks/results/train.json]
    python benchmarks/train.py --store RUNS/demo/activations --methods clvq --presets paper quick --epochs 2
    python benchmarks/train.py --sizes 81000 --methods clvq --presets paper --epochs 1   # the RSS check

Without `--store` each size is a synthetic memory-mapped cache of that many training words (same on-disk
format, `--hidden` wide); with it, the given run's cache (its train selection, lowest -> highest layer).
Each (method, preset, cache) runs in its own process so its peak RSS is its own. Throughput counts real
(non-padding) tokens of each training epoch, excluding initialisation and validation; early stopping is
off so every epoch runs. The achieved fraction compares the model's analytic training FLOPs per token with
this CPU's dense float32 matmul rate, measured in the same process. `machine` records the CPU and its flags
(`clvq_judge.core.machine.cpu_info`): float32 torch kernels use AVX-512 where the CPU has it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def flops_per_token(method: str, d: int, cfg, mean_len: float) -> float:
    """Forward+backward (3x forward) multiply-adds x 2 per real token."""
    if method == "sae":
        latents = cfg.sae_latents or 10 * d
        return 3 * 2 * (2 * d * latents)
    ff = cfg.decoder_ff or min(2048, 4 * d)
    per_layer = 2 * (4 * d * d + 2 * d * ff) + 2 * 2 * mean_len * d  # projections, MLP, attention
    forward = cfg.decoder_layers * per_layer + 2 * d * d + 2 * d * d + 2 * cfg.n_concepts * d
    return 3 * forward


def child(args) -> None:
    from clvq_judge.core.activations import ActivationStore
    from clvq_judge.core.methods import LayerData, MethodDims, get_method

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = ActivationStore(args.cache)
    cls = get_method(args.method)

    from clvq_judge.core.methods import method_config

    # Early stopping off: every requested epoch is timed.
    cfg = method_config(cls.config_class, args.preset, {"epochs": args.epochs, "val_fraction": 0.05,
                                                        "early_stop": 10**6})
    data = LayerData(store, "train", min(store.layers), max(store.layers))
    method = cls(cfg, MethodDims.of(data))
    start = time.perf_counter()
    method.fit(data)
    rates = [r["tokens_per_s"] for r in method.history]
    mean_len = data.n_tokens / data.n_sentences
    out = {
        "method": args.method,
        "preset": args.preset,
        "config": {k: getattr(cfg, k) for k in ("epochs", "batch_sentences", "decoder_layers", "decoder_ff",
                                                "sae_latents") if hasattr(cfg, k)},
        "tokens": data.n_tokens,
        "train_tokens_per_epoch": method.history[0]["train_tokens"],
        "epoch_seconds": [r["seconds"] for r in method.history],
        "total_seconds": round(time.perf_counter() - start, 2),
        "tokens_per_s_per_epoch": rates,
        "tokens_per_s": round(float(np.mean(rates)), 1),
        "flops_per_token": flops_per_token(args.method, store.hidden_size, cfg, mean_len),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mb": round(base_rss, 1),
        # Measured in the same process right after training: the CPU may be shared, so a rate taken
        # minutes apart would not be comparable.
        "matmul_gflops": round(matmul_gflops(), 2),
    }
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 80000])
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--methods", nargs="+", default=["clvq", "sae"])
    parser.add_argument("--out", default="benchmarks/results/train.json")
    parser.add_argument("--presets", nargs="+", default=["quick"], choices=["quick", "paper"])
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per run")
    parser.add_argument("--store", dest="cache", help="an existing activations folder instead of synthetic caches")
    parser.add_argument("--code", help="import clvq_judge from this folder in the measured processes (a package tree "
                        "of another commit), to compare before and after on the same cache")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from clvq_judge.core.machine import cpu_info

    gflops = matmul_gflops()
    results = []
    env = {**os.environ, **({"PYTHONPATH": args.code} if args.code else {})}

    def measure(folder: Path, cache: str) -> None:
        for preset in args.presets:
            for method in args.methods:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", "--store", str(folder), "--method", method, "--preset", preset,
                     "--epochs", str(args.epochs)],
                    capture_output=True, text=True, check=True, env=env,
                )
                row = {"cache": cache, "code": args.code or "this checkout", **json.loads(proc.stdout.strip().splitlines()[-1])}
                row["achieved_gflops"] = round(row["flops_per_token"] * row["tokens_per_s"] / 1e9, 2)
                row["fraction_of_matmul_peak"] = round(row["achieved_gflops"] / row.get("matmul_gflops", gflops), 3)
                results.append(row)
                print(json.dumps(row), file=sys.stderr)

    if args.cache:
        measure(Path(args.cache), "given cache (its train selection)")
    else:
        # The synthetic cache writer is a test fixture, kept out of the installed package.
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from synthetic_store import write_synthetic_store

        with tempfile.TemporaryDirectory() as tmp:
            for size in args.sizes:
                folder = Path(tmp) / f"store_{size}"
                # max_len 40 gives ~21.5 words per sentence, close to real review sentences.
                write_synthetic_store(
                    folder, layers=(1, 2), hidden=args.hidden, vocab=2000, max_len=40,
                    n_sentences={"train": max(1, round(size / 21.5)), "eval": 10}, shard_rows=8192,
                )
                measure(folder, f"synthetic, {size} training words, {args.hidden} wide")
    report = {
        "machine": {**cpu_info(), "torch": torch.__version__, "python": platform.python_version()},
        "matmul_gflops_at_start": round(gflops, 2),
        "load_average_1min": os.getloadavg()[0],
        "presets": args.presets,
        "epochs": args.epochs,
        "results": results,
        "notes": "tokens_per_s counts real (non-padding) tokens of each training epoch (mean over epochs); float32",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
