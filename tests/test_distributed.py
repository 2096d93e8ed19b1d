"""Real two-process runs under torchrun (gloo on CPU): data-parallel training and sharded extraction.

Each command is launched as a user would (`python -m torch.distributed.run --standalone --nproc-per-node 2
-m clvq_judge.cli.main -- <stage> ...`). A `sitecustomize` put on the workers' PYTHONPATH installs a
Python audit hook that records, per rank, every file the process creates, renames or deletes under the
runs folder, so "only rank 0 writes the run directory" is observed, not assumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic_store import write_synthetic_store

from clvq_judge.core import distributed
from clvq_judge.core.extract import ExtractConfig, extract
from clvq_judge.core.methods.batching import rank_share
from clvq_judge.core.runs import Run
from clvq_judge.core.train import TrainConfig, train

SMALL = ["--n-concepts", "8", "--decoder-layers", "1", "--decoder-ff", "32", "--batch-sentences", "16"]

AUDIT = textwrap.dedent('''
    import os, sys
    _root, _log = os.environ.get("AUDIT_ROOT"), os.environ.get("AUDIT_LOG")
    if _root and _log and "RANK" in os.environ:
        _out = open(f"{_log}.rank{os.environ['RANK']}", "a", buffering=1)
        _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def _note(kind, path):
            if isinstance(path, (str, bytes, os.PathLike)):
                path = os.path.abspath(os.fsdecode(path))
                if path.startswith(_root):
                    _out.write(f"{kind} {os.path.relpath(path, _root)}\\n")

        def _hook(event, args):
            if event == "open":
                path, mode, flags = args
                if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE):
                    _note("write", path)
            elif event == "os.rename":
                _note("write", args[1])
            elif event in ("os.remove", "os.mkdir", "shutil.rmtree"):
                _note(event, args[0])

        sys.addaudithook(_hook)
''')


def torchrun(tmp_path: Path, runs: Path, *stage_args: str, nproc: int = 2) -> tuple[subprocess.CompletedProcess, dict[int, list[str]]]:
    """Run one stage on `nproc` processes; returns the process and, per rank, the writes it made under `runs`."""
    audit = tmp_path / "audit"
    audit.mkdir(exist_ok=True)
    (audit / "sitecustomize.py").write_text(AUDIT)
    log = tmp_path / f"writes.{stage_args[0]}"
    for old in tmp_path.glob(f"{log.name}.rank*"):
        old.unlink()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(audit), os.environ.get("PYTHONPATH", "")]),
        "AUDIT_ROOT": str(runs.resolve()),
        "AUDIT_LOG": str(log),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "clvq_judge.cli.main", "--", *stage_args, "--runs-dir", str(runs), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    writes = {r: Path(f"{log}.rank{r}").read_text().splitlines() if Path(f"{log}.rank{r}").exists() else [] for r in range(nproc)}
    return proc, writes


def synthetic_run(runs: Path, name: str) -> Run:
    run = Run.open(runs, name, create=True)
    run.write_info({"dataset": "synthetic"})
    write_synthetic_store(run.stage_dir("extract"))
    (run.stage_dir("extract") / "done.json").write_text(json.dumps({"config_hash": "synthetic"}))
    return run


def digests(output: str) -> dict[int, str]:
    return {int(r): d for r, d in re.findall(r"rank (\d+)/2: final weights digest (\w+)", output)}


def test_rank_share_splits_one_order_evenly():
    batches = [np.array([i]) for i in range(5)]
    shares = [rank_share(batches, r, 2) for r in range(2)]
    assert [int(b[0]) for b in shares[0]] == [0, 2, 4]
    # The shorter share is topped up from the start: equal step counts, or a collective would hang.
    assert [int(b[0]) for b in shares[1]] == [1, 3, 0]
    assert rank_share(batches, 0, 1) is batches
    assert distributed.shard(list(range(7)), 1, 3) == [1, 4]


def test_single_process_helpers_are_no_ops():
    t = torch.ones(3)
    assert not distributed.is_distributed() and distributed.is_main() and distributed.world_size() == 1
    assert distributed.all_reduce_sum_(t) is t and float(t.sum()) == 3.0
    assert distributed.on_main(lambda: 41 + 1) == 42
    with distributed.session("cpu") as device:
        assert device == torch.device("cpu")
    assert distributed.state_digest({"a": t}) != distributed.state_digest({"a": t * 2})


# Not marked slow (~25 s): the default suite always runs one real two-process DDP training.
def test_two_process_training_one_writer_identical_codebooks(tmp_path):
    runs = tmp_path / "runs"
    synthetic_run(runs, "t")
    proc, writes = torchrun(tmp_path, runs, "train", "--run", "t", "--method", "clvq", *SMALL, "--epochs", "2",
                            "--revive-dead", "--revive-threshold", "0.5", "--no-progress")
    out = proc.stdout + proc.stderr
    folder = runs / "t" / "methods" / "clvq"
    assert (folder / "done.json").exists() and (folder / "model.safetensors").exists()
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((folder / "done.json").read_text())["world_size"] == 2
    # Both ranks trained their share and ended with bit-identical weights and codebook (EMA statistics
    # summed over ranks, revived codes sent from rank 0).
    got = digests(out)
    assert set(got) == {0, 1} and got[0] == got[1], out[-3000:]
    assert "rank 1 of 2 trains on 1 in 2" in out
    # One writer: rank 1 touched nothing in the run directory, rank 0 wrote the method folder.
    assert writes[1] == [], writes[1]
    written = {Path(w.split(" ", 1)[1]).name for w in writes[0] if w.startswith("write ")}
    assert {"model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "done.json"} <= written


@pytest.mark.slow
def test_two_process_resume_and_non_neural_method(tmp_path):
    runs = tmp_path / "runs"
    synthetic_run(runs, "r")

    class Killed(Exception):
        pass

    def kill_after_first(epoch, row):
        if epoch == 1:
            raise Killed

    base = dict(run="r", runs_dir=str(runs), method="clvq", n_concepts=8, decoder_layers=1, decoder_ff=32,
                batch_sentences=16, epochs=2, progress=False, device="cpu")
    with pytest.raises(Killed):
        train(TrainConfig(**base), on_epoch_end=kill_after_first)
    folder = runs / "r" / "methods" / "clvq"
    first = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
    proc, writes = torchrun(tmp_path, runs, "train", "--run", "r", "--method", "clvq", *SMALL, "--epochs", "2", "--no-progress")
    out = proc.stdout + proc.stderr
    assert out.count("resuming clvq after epoch 1") == 2  # both ranks start from the one checkpoint
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0] == first and (folder / "done.json").exists()
    got = digests(out)
    assert set(got) == {0, 1} and got[0] == got[1]
    assert writes[1] == []

    proc, writes = torchrun(tmp_path, runs, "train", "--run", "r", "--method", "kmeans", "--n-concepts", "8")
    out = proc.stdout + proc.stderr
    assert "kmeans is not data-parallel: rank 0 fits it alone, rank 1 waits" in out
    assert (runs / "r" / "methods" / "kmeans" / "done.json").exists() and writes[1] == []


@pytest.mark.slow
def test_two_process_extraction_matches_one_process(minilm_run, tmp_path):
    source_runs, _ = minilm_run
    options = dict(ig_steps=2, chunk_sentences=32, min_count=2, batch_size=16)
    roots = {}
    for name in ("one", "two"):
        roots[name] = tmp_path / name
        src, dst = source_runs / "tiny", roots[name] / "tiny"
        dst.mkdir(parents=True)
        for item in src.iterdir():  # everything finetune made, not its extraction
            if item.name != "activations":
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, dst / item.name)
    extract(ExtractConfig(run="tiny", runs_dir=str(roots["one"]), device="cpu", **options))
    _, writes = torchrun(tmp_path, roots["two"], "extract", "--run", "tiny", "--ig-steps", "2",
                         "--chunk-sentences", "32", "--min-count", "2", "--batch-size", "16")
    one, two = roots["one"] / "tiny" / "activations", roots["two"] / "tiny" / "activations"
    assert (two / "done.json").exists()
    m1, m2 = (json.loads((f / "manifest.json").read_text()) for f in (one, two))
    m1.pop("extract_seconds"), m2.pop("extract_seconds")
    assert m1 == m2 and len(m1["selections"]["train"]["shard_rows"]) >= 2
    for table in ("tokens.train.parquet", "tokens.eval.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(one / table), pd.read_parquet(two / table))
    for table in ("saliency.parquet", "sentences.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(one / table), pd.read_parquet(two / table), rtol=1e-4, atol=1e-5)
    shards = sorted(p.name for p in one.glob("layer_*.npy"))
    assert shards == sorted(p.name for p in two.glob("layer_*.npy"))
    for name in shards:
        # Workers run one thread each (torchrun's default), the reference more: equal up to float rounding.
        np.testing.assert_allclose(np.load(one / name), np.load(two / name), rtol=1e-4, atol=1e-5)
    # Rank 1 wrote only its own chunks (odd indices) and nothing that rank 0 merges or records.
    mine = [w.split(" ", 1)[1] for w in writes[1] if w.startswith("write ")]
    assert mine, "rank 1 extracted nothing"
    indices = {int(m.group(1)) for w in mine if (m := re.search(r"\.(\d{5})\.(npy|parquet)$", w))}
    assert indices and all(i % 2 == 1 for i in indices), mine
    assert not any(Path(w).name in ("manifest.json", "done.json", "tokens.train.parquet") for w in mine)
