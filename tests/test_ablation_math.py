"""Pure math of the ablation: projections, bases, controls, explanation tokens, statistics."""

import numpy as np
import pandas as pd
import pytest
import torch

from clvq_judge.core.ablation import (
    basis_from_ids,
    flip_rate,
    fold_accuracies,
    orthonormal_basis,
    random_basis,
    random_ids,
    relative_drop,
    remove_direction,
    remove_span,
    sentence_ids,
)
from clvq_judge.core.ablation.directions import ranks
from clvq_judge.core.explanation import explanation_tokens
from clvq_judge.core.stats import bootstrap_ci


def test_remove_direction_removes_exactly_the_component():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(50, 16, generator=g)
    u = torch.randn(16, generator=g) * 3.0  # not unit: the function normalises
    out = remove_direction(h, u)
    unit = u / u.norm()
    assert torch.allclose(out @ unit, torch.zeros(50), atol=1e-5)
    # The part orthogonal to u is untouched.
    orth = h - (h @ unit)[:, None] * unit
    assert torch.allclose(out, orth, atol=1e-5)
    assert not torch.allclose(out, h)


def test_remove_direction_per_row_and_per_token():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(4, 8, generator=g)
    h = torch.randn(4, 5, 8, generator=g)  # every token of 4 sentences, each its own direction
    out = remove_direction(h, u)
    unit = u / u.norm(dim=1, keepdim=True)
    assert torch.allclose(torch.einsum("btd,bd->bt", out, unit), torch.zeros(4, 5), atol=1e-5)
    # Sentence 0's direction is not removed from sentence 1.
    assert torch.einsum("td,d->t", out[1], unit[0]).abs().max() > 1e-2
    # A zero direction removes nothing.
    assert torch.allclose(remove_direction(h[:1], torch.zeros(1, 8)), h[:1])


def test_remove_span_projects_off_the_subspace_only():
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(3, 4, 12, generator=g)  # 3 sentences, 4 encoder rows each
    q = orthonormal_basis(rows)
    assert torch.allclose(q.transpose(1, 2) @ q, torch.eye(4).expand(3, 4, 4), atol=1e-5)
    h = torch.randn(3, 12, generator=g)
    out = remove_span(h, q)
    # Nothing of any encoder row's direction is left, and what was orthogonal to the span is unchanged.
    assert torch.allclose(torch.einsum("bd,bkd->bk", out, rows), torch.zeros(3, 4), atol=1e-4)
    assert torch.allclose(out, h - torch.einsum("bdr,br->bd", q, torch.einsum("bd,bdr->br", h, q)), atol=1e-5)
    # Shared basis [D, r] works the same.
    assert torch.allclose(remove_span(h[:1], q[0]), out[:1], atol=1e-5)


def test_standardized_removal_projects_off_the_span_in_z_and_maps_back():
    from clvq_judge.core.ablation.projection import remove_span_standardized

    g = torch.Generator().manual_seed(4)
    h = torch.randn(3, 5, 12, generator=g)  # 3 sentences, 5 tokens
    h[..., 7] = 300 * h[..., 7] + 50  # one massive dimension, as in Gemma's residual stream
    mean, std = h.reshape(-1, 12).mean(0), h.reshape(-1, 12).std(0)
    q = orthonormal_basis(torch.randn(3, 2, 12, generator=g))
    out = remove_span_standardized(h, q, mean, std)
    z_out = (out - mean) / std
    # In z, nothing of the span is left and the rest of z is untouched; identity statistics give remove_span.
    assert torch.allclose(torch.bmm(z_out, q), torch.zeros(3, 5, 2), atol=1e-3)
    assert torch.allclose(z_out, remove_span((h - mean) / std, q), atol=1e-4)
    assert torch.allclose(remove_span_standardized(h, q, torch.zeros(12), torch.ones(12)), remove_span(h, q), atol=1e-5)
    # A zero basis (no concept) leaves the states as they were, and a second removal changes nothing.
    assert torch.allclose(remove_span_standardized(h, torch.zeros(3, 12, 2), mean, std), h, rtol=1e-5, atol=1e-3)
    assert torch.allclose(remove_span_standardized(out, q, mean, std), out, rtol=1e-5, atol=1e-3)


def test_half_precision_hidden_states_keep_their_dtype():
    h = torch.randn(2, 3, 8).to(torch.bfloat16)
    q = orthonormal_basis(torch.randn(2, 1, 8))
    out = remove_span(h, q)
    assert out.dtype == torch.bfloat16 and out.shape == h.shape


def test_basis_handles_padding_and_dependent_vectors():
    table = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 1.0, 0]])
    # Row 0: a padding slot before real ids; row 1: concept 0 and its multiple (2) plus concept 3.
    ids = np.array([[-1, 1, 3], [0, 2, 3]])
    q = basis_from_ids(table, ids)
    assert ranks(q).tolist() == [2, 2]
    h = torch.ones(2, 4)
    out = remove_span(h, q)
    assert torch.allclose(out, torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 1]]), atol=1e-5)


def test_random_basis_same_count_unit_norm_and_seeded():
    rank = np.array([1, 3, 0, 2])
    q = random_basis(rank, 10, 3, seed=7)
    norms = q.norm(dim=1)
    assert ranks(q).tolist() == rank.tolist()
    assert torch.allclose(norms[norms > 0], torch.ones(int(rank.sum())), atol=1e-5)
    assert torch.equal(q, random_basis(rank, 10, 3, seed=7))
    assert not torch.allclose(q, random_basis(rank, 10, 3, seed=8))


def test_random_ids_avoid_own_concept_and_keep_padding():
    ids = np.array([[0, -1], [1, 2], [3, -1]] * 50)
    other = random_ids(ids, 5, seed=0)
    assert ((other >= 0) == (ids >= 0)).all()
    assert not ((other[:, :, None] == ids[:, None, :]) & (ids[:, None, :] >= 0)).any()
    assert (other[1::3, 0] != other[1::3, 1]).all()
    np.testing.assert_array_equal(other, random_ids(ids, 5, seed=0))


def test_explanation_tokens_top1_topk_and_start_token():
    tokens = pd.DataFrame({"sentence": [7, 7, 7, 9, 9, 4], "position": [0, 1, 2, 0, 1, 0]})
    saliency = pd.DataFrame(
        {"sentence": [7, 7, 7, 9, 9, 4], "position": [0, 1, 2, 0, 1, 0], "saliency": [9.0, 0.2, 0.5, 1.0, -1.0, 0.1]}
    )
    top1 = explanation_tokens(saliency, tokens, top_k=1)
    # The start token is skipped while the sentence has a word; sentence 4 has none, so it keeps it.
    assert dict(zip(top1.sentence, top1.row)) == {4: 5, 7: 2, 9: 4}
    top2 = explanation_tokens(saliency, tokens, top_k=2)
    assert top2[top2.sentence == 7].sort_values("rank").row.tolist() == [2, 1]
    ids = sentence_ids(top2, np.arange(len(top2))[:, None] + 10, np.array([7, 9, 4, 5]), top_k=2)
    assert ids.shape == (4, 2) and (ids[3] == -1).all() and (ids[1, 1] == -1)


def test_statistics():
    correct = np.array([1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    folds = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(fold_accuracies(correct, folds), [1.0, 0.5, 0.0, 1.0])
    assert relative_drop(0.895, 0.058) == pytest.approx(0.935, abs=1e-3)
    assert flip_rate(np.array([0, 1, 1]), np.array([0, 0, 1])) == pytest.approx(1 / 3)
    values = np.random.default_rng(0).random(400) < 0.7
    low, high = bootstrap_ci(values, 2000, seed=3)
    assert low < values.mean() < high and high - low < 0.12
    assert (low, high) == bootstrap_ci(values, 2000, seed=3)


def test_probe_rows_pick_the_start_token_or_the_last_word():
    from clvq_judge.core.ablation.stage import probe_rows
    from clvq_judge.core.errors import UserError

    tokens = pd.DataFrame({"sentence": [5, 5, 5, 2, 2], "position": [0, 1, 2, 0, 1]})
    assert probe_rows(tokens, np.array([2, 5]), "start").tolist() == [3, 0]
    assert probe_rows(tokens, np.array([2, 5]), "last").tolist() == [4, 2]
    with pytest.raises(UserError, match="--probe-token last"):
        probe_rows(tokens[tokens.position > 0], np.array([2, 5]), "start")


def test_energy_matched_basis_removes_exactly_the_concepts_energy():
    from clvq_judge.core.ablation.directions import energy_matched_basis, pad_by_sentence, removed_energy

    g = torch.Generator().manual_seed(7)
    mean = 3.0 * torch.randn(32, generator=g)
    h = torch.randn(6, 9, 32, generator=g) + mean  # a shared offset: centroid-like directions carry much energy
    h[2, 5:] = 0  # a shorter sentence (zero padding)
    q = orthonormal_basis(torch.randn(6, 2, 32, generator=g) + mean)
    q[1, :, 1] = 0  # rank 1 for sentence 1
    rank = ranks(q)
    # Sentence 1 and 3 get targets below what a random subspace removes (the null-space branch).
    target = removed_energy(h, q) * torch.tensor([1.0, 0.01, 1.0, 0.05, 1.0, 1.0])
    u = energy_matched_basis(h, target, rank, 2, seed=1)
    assert torch.allclose(removed_energy(h, u), target, rtol=1e-4)
    expected = torch.diag_embed((torch.arange(2)[None, :] < rank[:, None]).float())
    assert torch.allclose(u.transpose(1, 2) @ u, expected, atol=1e-5)
    # The uniform control removes far less than the concept; another seed gives another subspace.
    assert (removed_energy(h, random_basis(rank, 32, 2, 0)) < 0.5 * removed_energy(h, q)).all()
    other = energy_matched_basis(h, target, rank, 2, seed=2)
    assert not torch.allclose(u, other, atol=1e-3)
    # Rows grouped per sentence, in the listed order, padded with zeros.
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    block = pad_by_sentence(x, np.array([5, 5, 7, 7, 7, 9]), np.array([7, 5, 8]))
    assert block.shape == (3, 3, 2) and block[0, 2, 1] == 9 and block[1, 1, 0] == 2 and (block[2] == 0).all()


def test_flip_energy_line_recovers_a_known_slope():
    from clvq_judge.core.ablation.stage import REMOVALS, flip_energy_fit

    rng = np.random.default_rng(0)
    share = {c: rng.random(400) for c in REMOVALS}
    # The controls flip at 0.1 + 0.6 x energy share; the concept 0.3 more often than its energy predicts.
    flipped = {c: rng.random(400) < 0.1 + 0.3 * (c == "concept") + 0.6 * share[c] for c in REMOVALS}
    fit = flip_energy_fit(share, flipped)
    assert fit["slope"] == pytest.approx(0.6, abs=0.1) and fit["intercept"] == pytest.approx(0.175, abs=0.06)
    assert 0.3 < fit["r"] < 0.7 and fit["n"] == 1600
    assert fit["concept_excess_flip_rate"] == pytest.approx(0.225, abs=0.06)
