"""The TopK SAE (the default SAE): exactly k latents per token, gradients through exactly those, the L0 of a
trained default SAE under its k, reported by train and concepts; the L1 variant stays available."""

import json

import numpy as np
import pytest
import torch
from synthetic_store import write_synthetic_store

from clvq_judge.core.concepts import ConceptsConfig, concepts
from clvq_judge.core.errors import UserError
from clvq_judge.core.methods import ConceptMethod, MethodDims
from clvq_judge.core.methods.sae import DEFAULT_TOPK, SAEConfig, SAEMethod, SAEModel
from clvq_judge.core.runs import Run
from clvq_judge.core.train import TrainConfig, train


def test_topk_keeps_exactly_k_latents_and_their_values():
    torch.manual_seed(0)
    model = SAEModel(16, 16, latents=64, topk=5)
    with torch.no_grad():
        model.encoder.bias.fill_(100.0)  # every pre-activation positive: exactly k must survive
    x = torch.randn(50, 16)
    pre = model.preactivation(x)
    h = model.activate(pre)
    assert ((h > 0).sum(-1) == 5).all()
    kept = torch.topk(pre, 5, dim=-1)
    assert torch.equal(h.gather(-1, kept.indices), kept.values)
    with torch.no_grad():
        model.encoder.bias.fill_(-100.0)  # nothing positive: a TopK latent with pre <= 0 does not fire
    assert (model.activate(model.preactivation(x)) == 0).all()


def test_gradient_reaches_exactly_the_selected_latents():
    torch.manual_seed(1)
    model = SAEModel(8, 8, latents=40, topk=3)
    x = torch.randn(1, 8)
    recon, h = model(x)
    ((recon - torch.randn(1, 8)) ** 2).sum().backward()
    active = (h[0] > 0).nonzero().flatten()
    assert len(active) > 0
    rows = model.encoder.weight.grad.norm(dim=1)
    assert (rows[active] > 0).all()
    silent = torch.ones(40, dtype=torch.bool)
    silent[active] = False
    assert (rows[silent] == 0).all()
    assert model.decoder.weight.grad[:, silent].abs().max() == 0


def test_topk_default_and_the_l1_variant():
    assert SAEConfig().topk == DEFAULT_TOPK and DEFAULT_TOPK > 0
    assert SAEConfig(sae_topk=0).topk is None and SAEConfig(sae_topk=None).topk is None
    l1 = SAEMethod(SAEConfig(sae_topk=0, sae_latents=64), MethodDims(16, 16, 1, 2))
    assert l1.model.topk is None
    with pytest.raises(UserError, match="--sae-topk 64 keeps all 64"):
        SAEMethod.check(SAEConfig(sae_topk=64, sae_latents=64), MethodDims(16, 16, 1, 2))


def make_run(tmp_path):
    run = Run.open(tmp_path / "runs", "t", create=True)
    run.write_info({"dataset": "synthetic"})
    write_synthetic_store(run.stage_dir("extract"), n_sentences={"train": 200, "eval": 40})
    (run.stage_dir("extract") / "done.json").write_text(json.dumps({"config_hash": "synthetic"}))
    return run


def test_trained_default_sae_stays_under_its_l0_target_and_reports_it(tmp_path):
    make_run(tmp_path)
    # The default k on 4x its number of latents (the default 10 x hidden = 160 would be as fine, slower).
    common = dict(run="t", runs_dir=str(tmp_path / "runs"), method="sae", epochs=3, progress=False)
    folder = train(TrainConfig(**common, sae_latents=4 * DEFAULT_TOPK))
    done = json.loads((folder / "done.json").read_text())
    best = done["best_metrics"]
    assert done["config"]["sae_topk"] == DEFAULT_TOPK
    assert 0 < best["l0"] <= DEFAULT_TOPK and 0 <= best["dead_latents"] < 4 * DEFAULT_TOPK
    assert best["val_fvu"] < 1.0  # it learned something beyond the mean
    summary = json.loads((concepts(ConceptsConfig(run="t", runs_dir=str(tmp_path / "runs"), method="sae")) / "summary.json").read_text())
    assert 0 < summary["l0"] <= DEFAULT_TOPK
    assert {"dead_latents", "eval_reconstruction_fvu", "l_out_lookup_fvu"} <= set(summary)
    sae = ConceptMethod.load(folder)
    x = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    ids, values = sae.top_latents(x, DEFAULT_TOPK + 3)
    assert (values[:, DEFAULT_TOPK:] == 0).all()  # ranked past its own k: not firing, so not in the span
