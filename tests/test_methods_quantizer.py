"""Tensor-level checks of the EMA quantizer and the codebook initialisation."""

import numpy as np
import torch
from scipy import stats

from clvq_judge.core.methods.codebook_init import init_codebook, scaled_spherical_kmeans
from clvq_judge.core.methods.quantizer import (
    EMAQuantizer,
    ema_update,
    perplexity,
    sample_codes,
    squared_distances,
)


def test_squared_distances_match_direct_computation():
    g = torch.Generator().manual_seed(0)
    z, e = torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g)
    direct = ((z[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    assert torch.allclose(squared_distances(z, e), direct, atol=1e-5)


def test_ema_update_matches_hand_computation():
    cluster_size = torch.tensor([2.0, 1.0, 0.5])
    embed_sum = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [0.0, 2.0]])
    codes = torch.tensor([0, 0, 1])
    decay, eps = 0.9, 0.01
    size, total, book = ema_update(cluster_size, embed_sum, z, codes, decay, eps)
    # By hand: counts (2, 1, 0); sums ((4, 2), (0, 2), (0, 0)).
    want_size = torch.tensor([0.9 * 2 + 0.1 * 2, 0.9 * 1 + 0.1 * 1, 0.9 * 0.5])
    want_total = torch.tensor([[0.9 * 2 + 0.1 * 4, 0.1 * 2], [0.0, 0.9 + 0.1 * 2], [0.9, 0.9]])
    n = want_size.sum()
    smoothed = (want_size + eps) / (n + 3 * eps) * n
    assert torch.allclose(size, want_size)
    assert torch.allclose(total, want_total)
    assert torch.allclose(book, want_total / smoothed[:, None])


def test_laplace_smoothing_keeps_unused_code_finite_and_sizes_sum_to_total():
    size, total, book = ema_update(
        torch.tensor([5.0, 0.0]), torch.tensor([[5.0], [0.0]]), torch.ones(3, 1), torch.zeros(3, dtype=torch.long), 0.99, 1e-5
    )
    assert size[1] == 0 and torch.isfinite(book).all()
    n = size.sum()
    smoothed = (size + 1e-5) / (n + 2e-5) * n
    assert torch.isclose(smoothed.sum(), n)
    assert smoothed[1] > 0


def test_sampling_frequencies_follow_softmax_over_k_nearest():
    dist = torch.tensor([[0.5, 3.0, 0.1, 9.0, 1.0, 2.0]])
    k, temperature, n = 3, 0.7, 30000
    g = torch.Generator().manual_seed(1)
    codes = sample_codes(dist.expand(n, -1).contiguous(), k, temperature, generator=g)
    nearest = torch.tensor([2, 0, 4])
    assert set(codes.unique().tolist()) <= set(nearest.tolist())
    p = torch.softmax(-dist[0, nearest].double() / temperature, 0).numpy()
    p = p / p.sum()
    observed = np.array([(codes == c).sum().item() for c in nearest.tolist()])
    assert stats.chisquare(observed, p * n).pvalue > 1e-3


def test_eval_uses_argmin_and_does_not_update():
    q = EMAQuantizer(4, 2, top_k=4, temperature=100.0)
    q.set_codebook(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]))
    q.eval()
    z = torch.tensor([[0.1, 0.0], [0.9, 0.1], [0.0, 1.2], [4.0, 4.0]] * 50)
    before = q.codebook.clone()
    out = q(z)
    assert out.codes.tolist() == [0, 1, 2, 3] * 50
    assert torch.equal(q.codebook, before)
    assert torch.equal(out.quantized, q.codebook[out.codes])


def test_training_samples_then_updates_codebook_without_graph():
    q = EMAQuantizer(3, 2, top_k=2)
    q.train()
    z = torch.randn(20, 2, requires_grad=True)
    q(z)
    assert not q.codebook.requires_grad and q.codebook.grad_fn is None


def test_straight_through_gradient_reaches_input():
    q = EMAQuantizer(3, 2, top_k=1)
    q.set_codebook(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    q.train()
    z = torch.tensor([[0.9, 1.2], [0.1, -0.1]], requires_grad=True)
    out = q(z, update=False)
    assert torch.allclose(out.quantized, q.codebook[out.codes])
    weights = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    (out.quantized * weights).sum().backward()
    assert torch.allclose(z.grad, weights)  # identity gradient through the quantizer


def test_perplexity_of_uniform_usage_is_number_of_codes():
    assert abs(perplexity(torch.arange(8).repeat(5), 10) - 8.0) < 1e-9


def test_scaled_spherical_init_unit_directions_and_cluster_mean_norms():
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([1.0, 0.0, 0.0]) * (2.0 + torch.rand(50, 1, generator=g))
    b = torch.tensor([0.0, 1.0, 0.0]) * (5.0 + torch.rand(40, 1, generator=g))
    x = torch.cat([a, b]) + 0.01 * torch.randn(90, 3, generator=g)
    book = scaled_spherical_kmeans(x, 2, 10, torch.Generator().manual_seed(3))
    directions = torch.nn.functional.normalize(book, dim=1)
    labels = torch.argmax(torch.nn.functional.normalize(x, dim=1) @ directions.T, 1)
    for c in range(2):
        members = x[labels == c]
        assert torch.isclose(book[c].norm(), members.norm(dim=1).mean(), rtol=1e-4)
    assert {tuple(directions.abs().round().tolist()[i][:2]) for i in range(2)} == {(1.0, 0.0), (0.0, 1.0)}


def test_init_methods_give_k_codes_on_the_data_scale():
    x = torch.randn(300, 4) * 3
    for method in ("scaled_spherical", "kmeans++", "random"):
        book = init_codebook(x, 10, method, iterations=5, seed=0)
        assert book.shape == (10, 4) and torch.isfinite(book).all()
        assert 0.2 < book.norm(dim=1).mean() / x.norm(dim=1).mean() < 2.0
    assert torch.equal(init_codebook(x, 10, seed=4), init_codebook(x, 10, seed=4))
