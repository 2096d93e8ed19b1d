"""End to end: train + concepts for every method on a synthetic cache; resume; rerun is a no-op."""

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_store import write_synthetic_store

from clvq_judge.cli.main import main
from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.concepts import ConceptsConfig, build_cards, concepts
from clvq_judge.core.errors import UserError
from clvq_judge.core.methods import METHODS, ConceptMethod, LayerData, get_method
from clvq_judge.core.runs import Run
from clvq_judge.core.train import TrainConfig, train

SMALL = dict(n_concepts=8, decoder_layers=1, decoder_ff=32, sae_latents=32, sae_topk=8, batch_sentences=32, progress=False)


def make_run(tmp_path, model_kind="encoder", name="t"):
    run = Run.open(tmp_path / "runs", name, create=True)
    run.write_info({"dataset": "synthetic"})
    write_synthetic_store(run.stage_dir("extract"), model_kind=model_kind)
    (run.stage_dir("extract") / "done.json").write_text(json.dumps({"config_hash": "synthetic"}))
    return run


def cfg(tmp_path, name="t", **kw):
    return TrainConfig(run=name, runs_dir=str(tmp_path / "runs"), **{**SMALL, "epochs": 2, **kw})


def test_registry_lists_all_methods():
    assert set(METHODS) >= {"clvq", "vqvae", "sae", "kmeans", "agglomerative"}
    with pytest.raises(UserError):
        get_method("nope")


@pytest.mark.parametrize("method", ["clvq", "vqvae", "sae", "kmeans", "agglomerative"])
def test_train_and_concepts_end_to_end(tmp_path, method):
    run = make_run(tmp_path)
    folder = train(cfg(tmp_path, method=method))
    assert (folder / "done.json").exists() and (folder / "model.safetensors").exists()
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    # The recorded result is the best-validation epoch (the weights that were kept), not the last one.
    record = json.loads((folder / "done.json").read_text())
    best = min(rows, key=lambda r: (r.get("val_loss", r["val_fvu"]), r["epoch"]))
    assert record["epochs_run"] == len(rows) and record["best_metrics"] == best
    out = concepts(ConceptsConfig(run="t", runs_dir=str(tmp_path / "runs"), method=method, examples=2))
    store = ActivationStore(run.stage_dir("extract"))
    ids = np.load(out / "assignments.npy")
    vectors = np.load(out / "vectors.npy")
    assert ids.dtype == np.int64 and len(ids) == store.n_tokens("eval")
    assert vectors.shape[1] == store.hidden_size and ids.max() < len(vectors)
    cards = [json.loads(line) for line in (out / "concepts.jsonl").read_text().splitlines()]
    assert [c["id"] for c in cards] == list(range(len(vectors)))
    assert sum(c["count"] for c in cards) == len(ids)
    used = [c for c in cards if c["count"]]
    assert all("[[" in e["text"] for c in used for e in c["examples"])
    # The saved method reassigns identically.
    method_obj = ConceptMethod.load(folder)
    assert np.array_equal(method_obj.assign(LayerData(store, "eval", method_obj.dims.layer_in)), ids)


def test_layers_default_to_cached_extremes_and_single_layer_methods(tmp_path):
    run = make_run(tmp_path)
    train(cfg(tmp_path, method="vqvae", epochs=1))
    train(cfg(tmp_path, method="clvq", epochs=1))
    assert run.done_record("methods/vqvae")["config"]["layer_out"] == 1
    assert run.done_record("methods/clvq")["config"]["layer_out"] == 2
    with pytest.raises(UserError):
        train(cfg(tmp_path, method="sae", layer_in=7))


def test_causal_model_trains(tmp_path):
    make_run(tmp_path, model_kind="decoder")
    folder = train(cfg(tmp_path, method="clvq", epochs=1))
    assert json.loads((folder / "config.json").read_text())["dims"]["model_kind"] == "decoder"


class Killed(Exception):
    pass


def test_resume_after_kill_continues_at_next_epoch(tmp_path):
    make_run(tmp_path, name="a")
    make_run(tmp_path, name="b")

    def kill_after_first(epoch, row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(cfg(tmp_path, "a", method="clvq", epochs=3), on_epoch_end=kill_after_first)
    seen = []
    folder = train(cfg(tmp_path, "a", method="clvq", epochs=3), on_epoch_end=lambda e, r: seen.append(e))
    assert seen == [2, 3]
    resumed = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    straight = train(cfg(tmp_path, "b", method="clvq", epochs=3))
    uninterrupted = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_mse"] for r in resumed] == pytest.approx([r["val_mse"] for r in uninterrupted], rel=1e-5)


def test_rerun_of_finished_stage_is_a_noop(tmp_path, caplog):
    make_run(tmp_path)
    folder = train(cfg(tmp_path, method="sae", epochs=1))
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    # An option the SAE does not use does not count as a change.
    train(cfg(tmp_path, method="sae", epochs=1, top_k=3))
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(UserError):
        train(cfg(tmp_path, method="sae", epochs=1, sae_l1=1e-3))


def test_sae_exposes_top_latents_and_encoder_rows(tmp_path):
    run = make_run(tmp_path)
    folder = train(cfg(tmp_path, method="sae", epochs=1))
    sae = ConceptMethod.load(folder)
    x = LayerData(ActivationStore(run.stage_dir("extract")), "eval", 1).gather(1, np.arange(5))
    idx, act = sae.top_latents(x, 3)
    assert idx.shape == (5, 3) and (np.diff(act, axis=1) <= 0).all()
    assert np.array_equal(idx[:, 0], sae.assign_vectors(x))
    assert sae.encoder_rows(idx).shape == (5, 3, 16)


def test_cards_mark_start_dominated_concepts():
    tokens = pd.DataFrame(
        {"sentence": [0, 0, 0, 1, 1], "position": [0, 1, 2, 0, 1], "word": ["<s>", "good", "film", "<s>", "bad"],
         "is_start": [True, False, False, True, False]}
    )
    cards = build_cards(tokens, np.array([0, 1, 1, 0, 1]), 3, examples=5)
    assert cards[0]["is_start_dominated"] and not cards[1]["is_start_dominated"] and cards[2]["count"] == 0
    assert cards[1]["top_words"][0][1] == 1 and len(cards[1]["top_words"]) == 3
    texts = {e["text"] for e in cards[1]["examples"]}
    assert texts <= {"[[good]] film", "good [[film]]", "[[bad]]"} and len(texts) == 2
    assert cards[0]["examples"][0]["text"].startswith("[[<s>]] ")


def test_cli_train_and_concepts(tmp_path):
    make_run(tmp_path)
    common = ["--run", "t", "--runs-dir", str(tmp_path / "runs")]
    assert main(["train", *common, "--method", "kmeans", "--n-concepts", "5", "--no-progress"]) == 0
    assert main(["concepts", *common, "--method", "kmeans"]) == 0
    assert main(["concepts", *common, "--method", "sae"]) == 2  # not trained: one-line error
