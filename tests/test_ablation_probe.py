"""Cross-validation folds and the vectorised fold probes, including the planted-direction check."""

import numpy as np
import pytest
import torch

from clvq_judge.core.ablation import (
    ProbeConfig,
    random_basis,
    remove_direction,
    remove_span,
    stratified_folds,
    train_fold_probes,
)

FAST = ProbeConfig(max_epochs=30)


def test_folds_are_stratified_disjoint_and_cover_everything():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    folds = stratified_folds(y, 10, seed=0)
    assert folds.shape == y.shape and set(folds) == set(range(10))
    # Each sample is in exactly one test fold, so folds are disjoint by construction; check the counts.
    assert np.bincount(folds).tolist() == [10] * 10
    for cls, per_fold in ((0, 6), (1, 3), (2, 1)):
        assert np.bincount(folds[y == cls], minlength=10).tolist() == [per_fold] * 10
    assert not np.array_equal(folds, stratified_folds(y, 10, seed=1))
    np.testing.assert_array_equal(folds, stratified_folds(y, 10, seed=0))


def _planted(n=240, d=12, seed=0):
    """Labels that live on one known direction u; every other direction is label-free noise."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d))
    x -= np.outer(x @ u, u)
    x += np.outer(2.0 * (2 * y - 1) + 0.3 * rng.normal(size=n), u)
    return torch.tensor(x, dtype=torch.float32), y, torch.tensor(u, dtype=torch.float32)


@pytest.fixture(scope="module")
def planted():
    x, y, u = _planted()
    probes = train_fold_probes(x, y, stratified_folds(y, 5, seed=0), 2, FAST, seed=0)
    return x, y, u, probes


def test_vectorised_probes_learn_separable_data(planted):
    x, y, _, probes = planted
    assert probes.n_folds == 5
    pred = probes.predict_out_of_fold(x)
    assert (pred == y).mean() > 0.95
    # Every fold's own probe is good, not just the pooled predictions.
    assert min((pred[probes.folds == f] == y[probes.folds == f]).mean() for f in range(5)) > 0.9


def test_probe_training_is_seeded():
    x, y, _ = _planted(n=120)
    folds = stratified_folds(y, 4, seed=0)
    a = train_fold_probes(x, y, folds, 2, ProbeConfig(max_epochs=5), seed=3)
    b = train_fold_probes(x, y, folds, 2, ProbeConfig(max_epochs=5), seed=3)
    assert torch.equal(a.w1, b.w1) and torch.equal(a.w2, b.w2)


def test_early_stopping_is_per_fold():
    # Pure-noise labels: validation loss stops improving quickly, so folds stop well before the cap.
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(200, 8)), dtype=torch.float32)
    y = rng.integers(0, 2, 200)
    probes = train_fold_probes(x, y, stratified_folds(y, 4, 0), 2, ProbeConfig(max_epochs=200, patience=3), seed=0)
    assert (probes.epochs < 200).all()


def test_removing_the_planted_direction_drops_to_chance_but_random_does_not(planted):
    x, y, u, probes = planted
    before = (probes.predict_out_of_fold(x) == y).mean()
    after = (probes.predict_out_of_fold(remove_direction(x, u)) == y).mean()
    control = random_basis(np.ones(len(y), dtype=int), x.shape[1], 1, seed=5)
    random = (probes.predict_out_of_fold(remove_span(x, control)) == y).mean()
    assert before > 0.95
    assert abs(after - 0.5) < 0.12
    assert random > 0.85
