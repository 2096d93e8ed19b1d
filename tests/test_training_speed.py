"""Early stopping on a validation plateau (the rule, its presets, a real fit that stops) and the speed-ups that
must not change results (the ablation control's reused SVD)."""

import json
import math

import pytest
from synthetic_store import write_synthetic_store

from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.methods import LayerData, MethodDims, get_method, method_config
from clvq_judge.core.methods.base import legacy_defaults
from clvq_judge.core.methods.trainer import METRICS, progressed


def test_progress_needs_the_minimum_relative_gain():
    assert progressed(1.0, math.inf, 0.005)  # the first epoch always counts
    assert progressed(0.994, 1.0, 0.005)
    assert not progressed(0.996, 1.0, 0.005)
    assert progressed(0.9999, 1.0, 0.0) and not progressed(1.0, 1.0, 0.0)  # the paper's rule: any drop


@pytest.mark.parametrize("name", ["clvq", "vqvae", "sae"])
def test_quick_preset_stops_on_a_plateau_and_paper_preset_keeps_the_papers_rule(name):
    cls = get_method(name)
    quick, paper = method_config(cls.config_class, "quick"), method_config(cls.config_class, "paper")
    assert (quick.early_stop, quick.early_stop_min_gain) == (2, 0.005)
    assert (paper.early_stop, paper.early_stop_min_gain) == (15, 0.0)
    # A method folder saved before the option existed keeps the rule it was trained with.
    assert legacy_defaults(cls.config_class)["early_stop_min_gain"] == 0.0


def _fit(store, tmp, **options):
    cls = get_method("clvq")
    config = cls.config_class(n_concepts=8, decoder_layers=1, decoder_ff=32, decoder_heads=2, epochs=12,
                              batch_sentences=16, **options)
    data = LayerData(store, "train", 1, 2)
    method = cls(config, MethodDims.of(data))
    method.fit(data, workdir=tmp)
    return method


def test_fit_stops_when_the_gain_falls_below_the_minimum(tmp_path):
    store = ActivationStore(write_synthetic_store(tmp_path / "act", n_sentences={"train": 80, "eval": 10}))
    # A gain of 90% per epoch is never reached after the first epoch: stop after 1 + patience epochs.
    method = _fit(store, tmp_path / "m1", early_stop=2, early_stop_min_gain=0.9)
    assert len(method.history) == 3
    rows = [json.loads(line) for line in (tmp_path / "m1" / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # The kept weights are the best epoch's, even though its gain was too small to count as progress.
    best = min(rows, key=lambda r: r["val_loss"])
    assert rows[-1]["best_epoch"] == best["epoch"]
    # Without a minimum gain the same fit runs on as long as the loss falls at all.
    longer = _fit(store, tmp_path / "m2", early_stop=2, early_stop_min_gain=0.0)
    assert len(longer.history) > 3
    # Stopping changes nothing before the stop: the same epochs, the same losses.
    assert [r["val_loss"] for r in longer.history[:3]] == [r["val_loss"] for r in method.history]


def test_train_help_documents_both_options(capsys):
    from clvq_judge.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--early-stop-min-gain" in out and "Minimum relative drop of the validation loss" in out
    assert "Early-stopping patience" in out


def test_row_space_is_reused_only_for_the_same_unmodified_tensor():
    import torch

    from clvq_judge.core.ablation import directions

    h = torch.randn(5, 4, 12)
    first = directions._row_space(h)
    assert directions._row_space(h) is first
    assert directions._row_space(h.clone()) is not first  # equal values, another tensor: recomputed
    h.mul_(2)  # changed in place: recomputed, and the singular values follow
    again = directions._row_space(h)
    assert again is not first and torch.allclose(again[0], 2 * first[0], rtol=1e-4)
