import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import reference_word_states

from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.classifier import load_classifier
from clvq_judge.core.encode import encode_batch
from clvq_judge.core.errors import UserError
from clvq_judge.core.extract import ExtractConfig, extract
from clvq_judge.core.runs import Run
from clvq_judge.core.saliency import layer_integrated_gradients
from clvq_judge.core.words import split_words


def test_manifest_and_shards_align(minilm_run):
    _, store = minilm_run
    m = store.manifest
    assert m["layers"] == [4, 6] and m["model_kind"] == "encoder" and m["hidden_size"] == 384
    for selection in ("train", "eval"):
        tokens = store.tokens(selection)
        assert len(tokens) == store.n_tokens(selection) == sum(m["selections"][selection]["shard_rows"])
        for layer in store.layers:
            shards = store.shards(layer, selection)
            assert isinstance(shards[0], np.memmap)
            assert sum(len(s) for s in shards) == len(tokens)
            assert shards[0].shape[1] == 384 and np.isfinite(shards[0]).all()
    assert len(m["selections"]["train"]["shard_rows"]) == 3  # 150 sentences / 64 per chunk
    spans = store.spans("train")
    assert (spans.shard_start + spans.length <= np.array(m["selections"]["train"]["shard_rows"])[spans.shard]).all()


def test_training_selection_rules(minilm_run):
    runs, store = minilm_run
    train = store.tokens("train")
    words = train[~train["is_start"]]["word"]
    counts = words.value_counts()
    assert counts.max() <= 20
    sentences = pd.read_parquet(runs / "tiny" / "data" / "sentences.parquet")
    train_text = sentences[sentences["split"] == "train"]["text"]
    all_counts = pd.Series([w for t in train_text for w in split_words(t)[0]]).value_counts()
    assert (all_counts[counts.index] >= 2).all()  # min_count=2 in the fixture
    assert train["is_start"].sum() == (sentences["split"] == "train").sum()  # every sentence start kept
    assert (train.groupby("sentence")["position"].apply(lambda p: p.is_monotonic_increasing)).all()


def test_eval_selection_has_every_word_and_predictions(minilm_run):
    runs, store = minilm_run
    tokens = store.tokens("eval")
    sentences = pd.read_parquet(runs / "tiny" / "data" / "sentences.parquet")
    dev = sentences[sentences["split"] == "dev"]
    per_sentence = tokens.groupby("sentence").size().sort_index()
    expected = dev.set_index("sentence")["text"].map(lambda t: len(split_words(t)[0]) + 1).sort_index()
    assert per_sentence.index.tolist() == expected.index.tolist()
    # A word only goes missing when the tokenizer merges it into a neighbour's piece ("£42m" -> one [UNK]).
    assert (per_sentence <= expected).all() and per_sentence.sum() >= 0.98 * expected.sum()
    preds = pd.read_parquet(runs / "tiny" / "classifier" / "predictions.parquet").set_index("sentence")["prediction"]
    assert (tokens["prediction"].to_numpy() == preds.loc[tokens["sentence"]].to_numpy()).all()


def test_activations_equal_hf_hidden_states(minilm_run):
    runs, store = minilm_run
    expected, rows = reference_word_states(runs, "tiny", store)
    for layer in (4, 6):
        np.testing.assert_allclose(store.rows(layer, "eval", rows), expected[layer], atol=1e-4)


def test_saliency_table_and_ig_completeness(minilm_run):
    runs, store = minilm_run
    assert len(store.saliency) == store.n_tokens("eval")
    assert store.sentences["ig_delta"].notna().all()
    model = load_classifier(Run.open(runs, "tiny"))
    batch = encode_batch(model.tokenizer, ["Shares in the bank fell after profits dropped .", "Chelsea won the cup final"])
    target = torch.tensor([0, 3])
    attr, delta = layer_integrated_gradients(model, batch.input_ids, batch.attention_mask, 4, target, steps=128)
    with torch.no_grad():
        logits = model(batch.input_ids, batch.attention_mask).gather(1, target[:, None])[:, 0]
    assert attr.shape == batch.input_ids.shape
    # Completeness: attributions add up to F(h) - F(0) up to the Riemann error.
    assert (delta.abs() < 0.05 * logits.abs().clamp_min(1.0)).all(), (delta, logits)


def test_rerun_is_noop_and_conflicts_need_force(minilm_run):
    runs, _ = minilm_run
    done = Path(runs) / "tiny" / "activations" / "done.json"
    before = done.stat().st_mtime_ns
    extract(ExtractConfig(run="tiny", runs_dir=str(runs), ig_steps=4, chunk_sentences=64, min_count=2))
    assert done.stat().st_mtime_ns == before
    with pytest.raises(UserError, match="--force"):
        extract(ExtractConfig(run="tiny", runs_dir=str(runs), ig_steps=8, chunk_sentences=64, min_count=2))


def test_kill_and_resume_gives_same_cache(minilm_run, tmp_path):
    runs, store = minilm_run
    copy = tmp_path / "runs"
    shutil.copytree(Path(runs) / "tiny", copy / "tiny", ignore=shutil.ignore_patterns("activations"))
    args = [sys.executable, "-m", "clvq_judge.cli.main", "extract", "--run", "tiny", "--runs-dir", str(copy),
            "--ig-steps", "4", "--chunk-sentences", "16", "--min-count", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    parts = copy / "tiny" / "activations" / "parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("tokens.train.*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("tokens.train.*.parquet")))
    assert 2 <= done_before < 10 and not (copy / "tiny" / "activations" / "done.json").exists()
    assert subprocess.run(args, capture_output=True).returncode == 0
    resumed = ActivationStore(copy / "tiny" / "activations")
    assert len(resumed.manifest["selections"]["train"]["shard_rows"]) == 10  # 150 / 16
    pd.testing.assert_frame_equal(resumed.tokens("train"), store.tokens("train"))
    for layer in (4, 6):
        a = np.concatenate(list(resumed.shards(layer, "train")))
        b = np.concatenate(list(store.shards(layer, "train")))
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_ig_bypass_of_lower_blocks_changes_nothing(minilm_run, monkeypatch):
    import clvq_judge.core.saliency as sal

    runs, _ = minilm_run
    model = load_classifier(Run.open(runs, "tiny"))
    batch = encode_batch(model.tokenizer, ["Oil prices rose sharply on Monday .", "The film won two awards"])
    target = torch.tensor([0, 1])
    fast = layer_integrated_gradients(model, batch.input_ids, batch.attention_mask, 4, target, steps=8)
    calls = []
    real = sal.bypass_blocks
    monkeypatch.setattr(sal, "bypass_blocks", lambda m, upto: (calls.append(upto), real(m, 0))[1])
    slow = layer_integrated_gradients(model, batch.input_ids, batch.attention_mask, 4, target, steps=8)
    assert calls == [4]
    torch.testing.assert_close(fast[0], slow[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast[1], slow[1], atol=1e-4, rtol=1e-4)
