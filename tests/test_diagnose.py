"""`clvq-judge diagnose` on a small real run over the context cache (see context_cache.py)."""

import json

import pytest
from context_cache import write_context_store

from clvq_judge.cli.main import main
from clvq_judge.core.diagnose import DiagnoseConfig, diagnose
from clvq_judge.core.runs import Run
from clvq_judge.core.train import TrainConfig, train

SMALL = dict(n_concepts=16, decoder_layers=1, decoder_ff=32, decoder_heads=2, batch_sentences=32, epochs=2,
             progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    run = Run.open(runs, "ctx", create=True)
    run.write_info({"dataset": "synthetic", "seed": 0})
    write_context_store(run.stage_dir("extract"), n_sentences={"train": 120, "eval": 40})
    for method in ("clvq", "kmeans"):
        train(TrainConfig(run="ctx", runs_dir=str(runs), method=method, **SMALL))
    return runs, run


def test_diagnose_clvq_reports_every_figure(run_dir):
    runs, run = run_dir
    text = diagnose(DiagnoseConfig(run="ctx", runs_dir=str(runs), method="clvq", context_sentences=10))
    report = json.loads((run.root / "diagnose" / "clvq.json").read_text())
    assert "lookup FVU" in text and "decoder FVU" in text and "moved" in text
    lookup = report["lookup_fvu"]
    # Nothing about a word's own type predicts its top layer here; k-means of that layer itself does better.
    assert lookup["trained"] > 0.85 and lookup["initialised"] > 0.85
    assert lookup["oracle_kmeans_on_lookup_layer"] < lookup["trained"] - 0.05
    nmi = report["nmi"]
    assert nmi["kmeans_source"] == "the run's kmeans"
    assert nmi["kmeans_l_in_vs_words"] > 0.8 and all(0 <= v <= 1 for k, v in nmi.items() if k != "kmeans_source")
    codes = report["codes"]
    assert 0 <= codes["moved_share"] <= 1 and codes["used_eval"] <= 16
    assert 0 <= codes["moved_share_beyond_encoder"] <= 1 and codes["median_relative_move_beyond_encoder"] >= 0
    encoder = report["encoder"]
    assert encoder["kind"] == "adaptive" and 0 < encoder["gate_m"] < 0.5
    context = report["context"]
    assert context["n_sentences"] == 10 and context["n_words"] > 10
    # The per-code training mean of the target is a lookup too: no better than the clustering lookups.
    assert context["fvu_code_training_mean_lookup"] > 0.8
    for key in ("fvu_as_is", "fvu_each_word_alone", "fvu_among_other_sentence", "fvu_decoder_code_average_lookup",
                "fvu_code_mean_plus_decoder_context"):
        assert context[key] > 0


def test_diagnose_kmeans_and_cli_errors(run_dir, capsys):
    runs, run = run_dir
    common = ["--run", "ctx", "--runs-dir", str(runs)]
    assert main(["diagnose", *common, "--method", "kmeans"]) == 0
    out = capsys.readouterr().out
    assert "initialised n/a" in out and "decoder" not in out
    report = json.loads((run.root / "diagnose" / "kmeans.json").read_text())
    assert report["lookup_fvu"]["initialised"] is None and "context" not in report
    assert report["nmi"]["method_vs_kmeans_l_in"] == pytest.approx(1.0)
    assert main(["diagnose", *common, "--method", "sae"]) == 2  # not trained: one-line error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train" in err[0]
    assert main(["diagnose", *common, "--move-tol", "0"]) == 2
    assert "--move-tol" in capsys.readouterr().err
