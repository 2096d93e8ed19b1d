import numpy as np
import pandas as pd
import pytest
import torch
from conftest import reference_word_states

from clvq_judge.core.classifier import FinetuneConfig, finetune, load_classifier, predict
from clvq_judge.core.extract import ExtractConfig, extract
from clvq_judge.core.models import minilm_dir
from clvq_judge.core.runs import Run


def test_head_classifier_beats_majority_and_reloads_identically(minilm_run):
    runs, _ = minilm_run
    run = Run.open(runs, "tiny")
    metrics = run.done_record("finetune")["metrics"]
    assert metrics["dev_accuracy"] > metrics["majority_baseline"] + 0.3
    model = load_classifier(run)
    sentences = pd.read_parquet(run.root / "data" / "sentences.parquet")
    preds = pd.read_parquet(run.stage_dir("finetune") / "predictions.parquet")
    logits = predict(model, sentences["text"].tolist()[:20], 8, 128, "cpu")
    assert (logits.argmax(1) == preds["prediction"].to_numpy()[:20]).all()


def test_adopt_existing_sequence_classifier(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "clf"
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(folder)
    metrics = finetune(FinetuneConfig(run="adopt", runs_dir=str(tmp_path / "runs"), dataset="sentiment",
                                      model=str(folder), mode="existing", max_train=30, max_dev=20))
    # The adopted model is used as is: its own logits give the stored predictions and the accuracy.
    run = Run.open(tmp_path / "runs", "adopt")
    table = pd.read_parquet(run.stage_dir("finetune") / "predictions.parquet")
    dev = table[table["split"] == "dev"]
    assert metrics["n_dev"] == 20 and metrics["dev_accuracy"] == pytest.approx((dev["prediction"] == dev["label"]).mean())
    hf = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    texts = pd.read_parquet(run.root / "data" / "sentences.parquet").set_index("sentence").loc[dev["sentence"], "text"]
    enc = AutoTokenizer.from_pretrained(str(folder))(texts.tolist(), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        assert (hf(**enc).logits.argmax(1).numpy() == dev["prediction"].to_numpy()).all()
    store = extract(ExtractConfig(run="adopt", runs_dir=str(tmp_path / "runs"), layers=(2, 4), ig_steps=2, min_count=2))
    assert store.layers == [2, 4] and store.n_tokens("eval") > 20


@pytest.mark.slow
def test_full_finetune_learns_and_resumable_state_is_cleaned(tmp_path):
    metrics = finetune(FinetuneConfig(run="full", runs_dir=str(tmp_path), dataset="news", model="minilm", mode="full",
                                      epochs=2, lr=1e-4, max_train=200, max_dev=60))
    assert metrics["dev_accuracy"] > metrics["majority_baseline"] + 0.2
    folder = Run.open(tmp_path, "full").stage_dir("finetune")
    assert (folder / "backbone" / "config.json").exists() and not (folder / "train_state.pt").exists()


@pytest.mark.slow
def test_decoder_pipeline_on_embedded_gemma(tmp_path):
    runs = str(tmp_path)
    metrics = finetune(FinetuneConfig(run="dec", runs_dir=runs, dataset="sentiment", model="gemma-270m", max_train=60, max_dev=16))
    assert metrics["n_dev"] == 16
    store = extract(ExtractConfig(run="dec", runs_dir=runs, ig_steps=2, min_count=2))
    assert store.model_kind == "decoder" and store.layers == [12, 18] and store.hidden_size == 640
    tokens = store.tokens("eval")
    assert tokens["word"].iloc[0] == "<bos>" and tokens["is_start"].sum() == 16
    expected, rows = reference_word_states(runs, "dec", store)
    np.testing.assert_allclose(store.rows(12, "eval", rows), expected[12], rtol=1e-3, atol=1e-2)


def test_hub_model_id_resolves_through_the_hf_cache(tmp_path):
    """The real `from_pretrained("org/name")` code path, offline, on the shipped MiniLM laid out as a hub cache."""
    import os
    import subprocess
    import sys

    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for item in minilm_dir().iterdir():
        (snapshot / item.name).symlink_to(item)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "clvq_judge.cli.main", "finetune", "--run", "hub", "--runs-dir", str(tmp_path / "runs"),
           "--model", "sentence-transformers/all-MiniLM-L6-v2", "--max-train", "40", "--max-dev", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "runs" / "hub" / "classifier" / "metrics.json").exists()
    other = [c if c != "hub" else "hub2" for c in cmd[:-6]]
    missing = subprocess.run(other + ["--model", "sentence-transformers/not-cached"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "embedded models" in missing.stderr
