"""Tensor-level checks of the CLVQ-VAE encoder, decoder masking and bottleneck."""

import torch

from clvq_judge.core.methods.clvq import (
    AdaptiveResidualEncoder,
    CLVQConfig,
    CLVQModel,
    QuantizedDecoder,
    fitting_heads,
    masked_mse,
)


def _decoder(causal: bool) -> QuantizedDecoder:
    torch.manual_seed(0)
    return QuantizedDecoder(8, 6, layers=2, heads=8, ff=16, dropout=0.1, causal=causal).eval()


def test_encoder_starts_as_identity_mix():
    enc = AdaptiveResidualEncoder(6)
    x = torch.randn(5, 6)
    m = 0.5 * torch.sigmoid(torch.tensor(0.2))
    assert torch.isclose(enc.mix, m)
    want = (1 - m) * x + m * torch.nn.functional.layer_norm(x, (6,))
    assert torch.allclose(enc(x), want, atol=1e-6)


def test_heads_divide_hidden_size():
    assert fitting_heads(384, 8) == 8 and fitting_heads(20, 8) == 5 and fitting_heads(7, 8) == 7


def test_bidirectional_decoder_sees_both_sides():
    dec = _decoder(causal=False)
    q, mask = torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool)
    changed = q.clone()
    changed[0, 4] += torch.randn(8)  # not a constant shift: the decoder layer-normalises its input
    with torch.no_grad():
        assert not torch.allclose(dec(q, mask)[0, 0], dec(changed, mask)[0, 0])  # sees the future
        changed = q.clone()
        changed[0, 0] += torch.randn(8)
        assert not torch.allclose(dec(q, mask)[0, 4], dec(changed, mask)[0, 4])  # sees the past


def test_causal_decoder_never_sees_the_future():
    dec = _decoder(causal=True)
    q, mask = torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool)
    changed = q.clone()
    changed[0, 3] += torch.randn(8)
    with torch.no_grad():
        a, b = dec(q, mask), dec(changed, mask)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)
    assert not torch.allclose(a[0, 3:], b[0, 3:])


def test_decoder_output_ignores_padding_content():
    dec = _decoder(causal=False)
    q = torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]])
    other = q.clone()
    other[0, 3:] = 100.0
    with torch.no_grad():
        assert torch.allclose(dec(q, mask)[0, :3], dec(other, mask)[0, :3], atol=1e-5)


def _model(model_kind: str = "encoder") -> CLVQModel:
    torch.manual_seed(0)
    cfg = CLVQConfig(n_concepts=4, top_k=1, decoder_layers=1, decoder_ff=16)
    model = CLVQModel(cfg, 8, 6, causal=model_kind == "decoder")
    model.quantizer.set_codebook(torch.eye(8)[:4] * 3)
    return model


def test_decoder_cannot_see_unquantized_input():
    model = _model().eval()
    x = torch.eye(8)[:4][None].repeat(2, 1, 1) * 3  # tokens sitting on codes 0..3
    mask = torch.ones(2, 4, dtype=torch.bool)
    nudged = x + 0.05 * torch.randn_like(x)  # z changes, nearest codes do not
    with torch.no_grad():
        a, b = model(x, mask), model(nudged, mask)
    assert torch.equal(a.codes, b.codes)
    assert not torch.allclose(a.z, b.z)
    assert torch.equal(a.recon, b.recon)
    # Training too: straight-through values equal the codes (fresh models: the EMA update moves codes).
    torch.manual_seed(1)
    a = _model().train()(x, mask)
    torch.manual_seed(1)
    b = _model().train()(nudged, mask)
    assert torch.equal(a.codes, b.codes)
    assert torch.allclose(a.recon, b.recon, atol=1e-5)


def test_straight_through_gradient_reaches_encoder():
    model = _model().train()
    x, mask = torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
    out = model(x, mask)
    masked_mse(out.recon, torch.randn(2, 4, 6), mask).backward()
    assert model.encoder.linear.weight.grad is not None
    assert model.encoder.linear.weight.grad.abs().sum() > 0
    assert model.encoder.gate.grad is not None


def test_padding_ignored_by_loss_and_codebook():
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    x = torch.randn(2, 4, 8)
    y = torch.randn(2, 4, 6)
    x2, y2 = x.clone(), y.clone()
    x2[~mask] = 50.0
    y2[~mask] = -50.0
    results = []
    for xs, ys in ((x, y), (x2, y2)):
        model = _model().train()
        torch.manual_seed(3)
        out = model(xs, mask)
        results.append((masked_mse(out.recon, ys, mask), out.codes, model.quantizer.codebook.clone(),
                         model.quantizer.cluster_size.clone()))
    (l1, c1, b1, s1), (l2, c2, b2, s2) = results
    assert torch.allclose(l1, l2, atol=1e-5)
    assert torch.equal(c1, c2) and len(c1) == int(mask.sum())
    assert torch.allclose(b1, b2) and torch.allclose(s1, s2)
    assert torch.isclose(s1.sum(), torch.tensor(0.99 * 4 + 0.01 * 5))  # 5 real tokens counted, not 8
