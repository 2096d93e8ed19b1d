"""Every user-fixable problem gives one clear line on stderr, exit code 2, no traceback, and nothing
half-written: the table below covers every stage (finetune, extract, train, concepts, ablate, demo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clvq_judge.cli.main import main
from clvq_judge.core.runs import Run
from clvq_judge.core.train import TrainConfig, train


def _files(tmp_path):
    ok = pd.DataFrame({"text": [f"sample {i} text" for i in range(30)], "label": [i % 2 for i in range(30)]})
    (tmp_path / "empty.csv").write_text("text,label\n")
    ok.drop(columns="label").to_csv(tmp_path / "nolabel.csv", index=False)
    ok.assign(label=1).to_csv(tmp_path / "oneclass.csv", index=False)
    (tmp_path / "latin1.csv").write_bytes(b"text,label\n" + "caf\xe9 tr\xe8s bon,1\nmauvais,0\n".encode("latin-1"))
    (tmp_path / "malformed.csv").write_text('text,label\n"unterminated quote,1\nfine,0\n')
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "weird").mkdir(exist_ok=True)  # a local directory holding a model type transformers lacks
    (tmp_path / "weird" / "config.json").write_text(json.dumps({"model_type": "nosuchmodel"}))
    return tmp_path


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def broken(minilm_run, tmp_path_factory):
    """Copies of the tiny run, each damaged in one way a user can meet."""
    runs, _ = minilm_run
    root = tmp_path_factory.mktemp("broken")

    def copy(name):
        shutil.copytree(Path(runs) / "tiny", root / name, ignore=shutil.ignore_patterns("methods", "concepts", "ablation"))
        return Run.open(root, name)

    # A shard cut off (a full disk, a copy that stopped).
    run = copy("trunc")
    shard = sorted(run.stage_dir("extract").glob("layer_4.train.*.npy"))[0]
    shard.write_bytes(shard.read_bytes()[:200])
    # A fitted method whose weights file is damaged.
    copy("corrupt")
    train(TrainConfig(run="corrupt", runs_dir=str(root), method="kmeans", n_concepts=4))
    weights = Run.open(root, "corrupt").stage_dir("methods/kmeans") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    # A training killed after its first epoch whose resume checkpoint is damaged.
    copy("ckpt")

    def kill(epoch, row):
        raise Killed

    with pytest.raises(Killed):
        train(TrainConfig(run="ckpt", runs_dir=str(root), method="clvq", n_concepts=4, top_k=2, decoder_layers=1,
                          decoder_ff=16, epochs=2, progress=False), on_epoch_end=kill)
    checkpoint = Run.open(root, "ckpt").stage_dir("methods/clvq") / "checkpoint.safetensors"
    checkpoint.write_bytes(b"\0" * 64)
    # An activation cache from before the sharded format (no shard sizes in its manifest).
    run = copy("older")
    manifest = run.stage_dir("extract") / "manifest.json"
    old = json.loads(manifest.read_text())
    old["selections"] = {k: {"n_tokens": v["n_tokens"]} for k, v in old["selections"].items()}
    manifest.write_text(json.dumps(old))
    # A stage record that is not JSON.
    run = copy("baddone")
    (run.stage_dir("finetune") / "done.json").write_text("{not json")
    # A classifier redone after the cache was made from it (the done hash no longer matches).
    run = copy("stale")
    done = run.stage_dir("finetune") / "done.json"
    record = json.loads(done.read_text())
    done.write_text(json.dumps({**record, "done_hash": record["done_hash"] + "x"}))
    return root


CKPT = ["--method", "clvq", "--n-concepts", "4", "--top-k", "2", "--decoder-layers", "1", "--decoder-ff", "16",
        "--epochs", "2", "--no-progress"]
CASES = [
    # (argv, words the one-line message must contain)
    # finetune: data
    (["finetune", "--dataset", "{tmp}/missing.csv"], ["does not exist"]),
    (["finetune", "--dataset", "no_such_org/no_such_dataset"], ["hub", "embedded dataset"]),
    (["finetune", "--dataset", "{tmp}/empty.csv"], ["no usable rows"]),
    (["finetune", "--dataset", "{tmp}/nolabel.csv"], ["column 'label'", "--label-column"]),
    (["finetune", "--dataset", "{tmp}/oneclass.csv"], ["single class"]),
    (["finetune", "--dataset", "{tmp}/latin1.csv"], ["not valid utf-8", "--encoding latin-1"]),
    (["finetune", "--dataset", "{tmp}/malformed.csv"], ["cannot parse"]),
    # finetune: model, options, environment
    (["finetune", "--model", "no-such-org/no-such-model", "--max-train", "20", "--max-dev", "10"], ["hub cannot be reached", "embedded models"]),
    (["finetune", "--model", "{tmp}/weird", "--max-train", "20", "--max-dev", "10"], ["holds no model", "nosuchmodel"]),
    (["finetune", "--model", "{tmp}/no-such-dir", "--max-train", "20", "--max-dev", "10"], ["does not exist", "--model"]),
    (["finetune", "--runs-dir", "{tmp}/afile/runs"], ["cannot write", "--runs-dir"]),
    (["finetune", "--mode", "sideways"], ["--mode", "invalid choice"]),
    (["finetune", "--pooling", "max"], ["--pooling", "invalid choice"]),
    (["finetune", "--max-train", "-5"], ["--max-train -5", ">= 0"]),
    (["finetune", "--dev-fraction", "1.5"], ["--dev-fraction 1.5", "< 1"]),
    (["finetune", "--epochs", "three"], ["--epochs", "invalid int"]),
    (["finetune", "--device", "cuda"], ["no CUDA"]),
    (["finetune", "--no-such-option", "1"], ["unrecognized arguments"]),
    (["finetune", "--run", "tiny", "--runs-dir", "{runs}", "--model", "gemma-270m", "--max-train", "150", "--max-dev", "40"], ["--force"]),
    # extract
    (["extract", "--run", "never-made"], ["not found", "finetune"]),
    (["extract", "--run", "tiny", "--runs-dir", "{runs}", "--layers", "4", "9"], ["layer 9", "0..6"]),
    (["extract", "--run", "tiny", "--runs-dir", "{runs}", "--aggregate", "median"], ["--aggregate"]),
    (["extract", "--run", "tiny", "--runs-dir", "{runs}", "--dtype", "float8"], ["--dtype"]),
    (["extract", "--run", "tiny", "--runs-dir", "{runs}", "--ig-steps", "0"], ["--ig-steps 0", ">= 1"]),
    (["extract", "--run", "baddone", "--runs-dir", "{broken}"], ["corrupted", "clvq-judge finetune --run baddone"]),
    # train
    (["train", "--run", "tiny", "--runs-dir", "{runs}", "--method", "nope"], ["--method", "invalid choice"]),
    (["train", "--run", "tiny", "--runs-dir", "{runs}", "--lr", "-1"], ["--lr -1.0", "> 0"]),
    (["train", "--run", "tiny", "--runs-dir", "{runs}", "--val-fraction", "1"], ["--val-fraction 1.0", "< 1"]),
    (["train", "--run", "tiny", "--runs-dir", "{runs}", "--layer-in", "5"], ["--layer-in 5", "not extracted"]),
    (["train", "--run", "tiny", "--runs-dir", "{runs}", "--layer-in", "6", "--layer-out", "4"], ["below --layer-in"]),
    (["train", "--run", "tiny", "--runs-dir", "{runs}", "--n-concepts", "4", "--top-k", "10"], ["--top-k 10 exceeds"]),
    (["train", "--run", "tiny", "--runs-dir", "{runs}", "--method", "sae", "--sae-latents", "8", "--sae-topk", "8"], ["--sae-topk 8"]),
    (["train", "--run", "trunc", "--runs-dir", "{broken}", "--method", "kmeans"], ["truncated", "extract --run trunc --force"]),
    (["train", "--run", "older", "--runs-dir", "{broken}", "--method", "kmeans"], ["older clvq-judge", "--force"]),
    (["train", "--run", "ckpt", "--runs-dir", "{broken}", *CKPT], ["checkpoint.safetensors", "corrupted"]),
    (["train", "--run", "stale", "--runs-dir", "{broken}", "--method", "kmeans"], ["outdated", "clvq-judge extract --run stale"]),
    # concepts
    (["concepts", "--run", "tiny", "--runs-dir", "{runs}", "--method", "agglomerative"], ["no finished", "clvq-judge train"]),
    (["concepts", "--run", "corrupt", "--runs-dir", "{broken}", "--method", "kmeans"], ["model.safetensors", "corrupted"]),
    (["concepts", "--run", "tiny", "--runs-dir", "{runs}", "--start-threshold", "2"], ["--start-threshold 2.0", "<= 1"]),
    # ablate
    (["ablate", "--run", "tiny", "--runs-dir", "{runs}", "--method", "nope"], ["unknown --method nope"]),
    (["ablate", "--run", "tiny", "--runs-dir", "{runs}", "--folds", "1"], ["--folds 1"]),
    (["ablate", "--run", "tiny", "--runs-dir", "{runs}", "--protocol", "sideways"], ["--protocol", "invalid choice"]),
    # demo
    (["demo", "--methods", "nope"], ["unknown method", "nope"]),
    (["demo", "--max-dev", "-1"], ["--max-dev -1", ">= 0"]),
]


def _snapshot(*roots):
    return {str(p): p.stat().st_mtime_ns for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def test_the_table_covers_every_stage():
    assert len(CASES) >= 30
    assert {argv[0] for argv, _ in CASES} == {"finetune", "extract", "train", "concepts", "ablate", "demo"}


@pytest.mark.parametrize("argv,needles", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_one_line_exit_2(argv, needles, tmp_path, minilm_run, broken, capsys):
    runs, _ = minilm_run
    _files(tmp_path)
    argv = [a.format(tmp=tmp_path, runs=runs, broken=broken) for a in argv]
    if "--runs-dir" not in argv:
        argv += ["--runs-dir", str(tmp_path / "runs")]
    before = _snapshot(Path(runs), broken, tmp_path / "runs")
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle.lower() in err.lower(), err
    assert _snapshot(Path(runs), broken, tmp_path / "runs") == before  # nothing written, nothing half-written


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clvq_judge.cli.main", "finetune", "--dataset", str(tmp_path / "x.csv"),
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_installed_entry_point_sets_tokenizers_parallelism(tmp_path, monkeypatch):
    # `clvq-judge` calls main() directly (no `python -m`), so main itself must set it.
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    main(["finetune", "--dataset", str(tmp_path / "x.csv"), "--runs-dir", str(tmp_path)])
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    import clvq_judge.core.data as data

    def broken_loader(max_words):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(data, "load_news", broken_loader)
    with pytest.raises(KeyError):
        main(["finetune", "--runs-dir", str(tmp_path)])


def test_help_lists_every_option_with_default(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    out = capsys.readouterr().out
    for option in ("--layers", "--aggregate", "--ig-steps", "--device", "--force", "--run"):
        assert option in out
    assert "(default: last)" in out and "(default: auto)" in out
