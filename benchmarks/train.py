"""Training throughput and peak memory of CLVQ-VAE and the SAE on synthetic memory-mapped caches.

    python benchmarks/train.py [--sizes 20000 80000] [--hidden 384] [--out benchmarks/results/train.json]

Each (method, size) runs in its own process so its peak RSS is its own. Throughput counts real
(non-padding) tokens of one training epoch, excluding initialisation and validation. The achieved
fraction compares the model's analytic training FLOPs per token with this CPU's dense matmul rate.
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
    store = ActivationStore(args.store)
    cls = get_method(args.method)

    from clvq_judge.core.methods import method_config

    # The quick preset is what `clvq-judge train` runs by default, so that is what gets measured.
    cfg = method_config(cls.config_class, args.preset, {"epochs": 1, "val_fraction": 0.05})
    data = LayerData(store, "train", min(store.layers), max(store.layers))
    method = cls(cfg, MethodDims.of(data))
    start = time.perf_counter()
    method.fit(data)
    row = method.history[0]
    mean_len = data.n_tokens / data.n_sentences
    out = {
        "method": args.method,
        "tokens": data.n_tokens,
        "epoch_seconds": row["seconds"],
        "total_seconds": round(time.perf_counter() - start, 2),
        "tokens_per_s": row["tokens_per_s"],
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
    parser.add_argument("--preset", default="quick", choices=["quick", "paper"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    # The synthetic cache writer is a test fixture, kept out of the installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic_store import write_synthetic_store

    gflops = matmul_gflops()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / f"store_{size}"
            # max_len 40 gives ~21.5 words per sentence, close to real review sentences.
            write_synthetic_store(
                folder, layers=(1, 2), hidden=args.hidden, vocab=2000, max_len=40,
                n_sentences={"train": max(1, round(size / 21.5)), "eval": 10}, shard_rows=8192,
            )
            for method in args.methods:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", "--store", str(folder), "--method", method, "--preset", args.preset],
                    capture_output=True, text=True, check=True,
                )
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["achieved_gflops"] = round(row["flops_per_token"] * row["tokens_per_s"] / 1e9, 2)
                row["fraction_of_matmul_peak"] = round(row["achieved_gflops"] / row.get("matmul_gflops", gflops), 3)
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "matmul_gflops_at_start": round(gflops, 2),
        "hidden": args.hidden,
        "preset": args.preset,
        "results": results,
        "notes": "one epoch at the quick defaults; tokens_per_s counts real tokens of the training epoch",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
