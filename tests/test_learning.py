"""Learning happens: on a cache where only context predicts the top layer, CLVQ-VAE's decoder beats any
lookup and loses that edge without context; `fit` starts from the initialised codebook and moves it; a
loaded method assigns and evaluates in eval mode whatever mode its caller left it in."""

import numpy as np
import pytest
import torch
from context_cache import write_context_store

from clvq_judge.core.activations import ActivationStore
from clvq_judge.core.concepts import concept_lookup_fvu
from clvq_judge.core.diagnose import code_sequences, decode, decode_alone, fvu, initial_method
from clvq_judge.core.methods import ConceptMethod, LayerData, MethodDims, get_method
from clvq_judge.core.methods.clustering import ClusterConfig
from clvq_judge.core.methods.clvq import CLVQConfig
from clvq_judge.core.methods.codebook_init import init_codebook

K, HIDDEN = 16, 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """CLVQ-VAE fitted on the context cache, with the codebook it held when the first epoch began."""
    folder = tmp_path_factory.mktemp("context") / "activations"
    store = ActivationStore(write_context_store(folder, hidden=HIDDEN, n_sentences={"train": 200, "eval": 60}))
    config = CLVQConfig(n_concepts=K, decoder_layers=1, decoder_ff=64, decoder_heads=2, dropout=0.0, epochs=8,
                        lr=1e-2, batch_sentences=32)
    method = get_method("clvq")(config, MethodDims(HIDDEN, HIDDEN, 1, 2))
    seen = {}
    original = method.start_epoch

    def start_epoch(epoch):
        if epoch == 0:
            seen["codebook"] = method.module.quantizer.codebook.detach().clone()
        original(epoch)

    method.start_epoch = start_epoch  # observes the real loop; changes nothing
    method.fit(LayerData(store, "train", 1, 2))
    return store, method, seen["codebook"]


def kmeans_lookup_fvu(store) -> float:
    kmeans = get_method("kmeans")(ClusterConfig(n_concepts=K), MethodDims(HIDDEN, HIDDEN, 1, 1))
    kmeans.fit(LayerData(store, "train", 1))
    return concept_lookup_fvu(store, kmeans.assign(LayerData(store, "train", 1)),
                              kmeans.assign(LayerData(store, "eval", 1)), K, 2)


def test_decoder_uses_context_that_no_lookup_has(trained):
    store, method, _ = trained
    lookup = kmeans_lookup_fvu(store)
    assert lookup > 0.9  # the construction: a word's own type says nothing about its top-layer vector
    data = LayerData(store, "eval", 1, 2)
    own = method.evaluate(data, "cpu")["val_fvu"]
    assert own < 0.7 and own < lookup - 0.3
    # The same decoder and codes, each word decoded alone: the edge is gone.
    # The module works in the method's (standardised) space; FVUs are taken in the model's.
    ys, alone, as_is = [], [], []
    back = method.output_to_model
    with torch.no_grad():
        for batch in method.internal(data).batches(64):
            codes = code_sequences(method.module, batch)
            alone.append(back(decode_alone(method.module, codes, batch.mask, batch.positions)))
            as_is.append(back(decode(method.module, codes, batch.mask, batch.positions)[batch.mask]))
            ys.append(back(batch.y[batch.mask]))
    y = torch.cat(ys)
    assert fvu(torch.cat(as_is), y) == pytest.approx(own, rel=1e-4)
    assert fvu(torch.cat(alone), y) > 0.9


def test_fit_starts_from_the_initialised_codebook_and_moves_it(trained):
    store, method, first = trained
    cfg = method.config
    train, _ = LayerData(store, "train", 1, 2).split(cfg.val_fraction, cfg.seed)
    x = torch.from_numpy(method.internal(train).sample_rows(1, cfg.init_max_vectors, cfg.seed))
    expected = init_codebook(x, K, cfg.codebook_init, cfg.init_iterations, cfg.seed)
    assert torch.allclose(first, expected, atol=1e-5)
    # `diagnose` rebuilds the same starting point from the saved config alone (vectors() are model-space).
    start = initial_method(method, store, "cpu").vectors()
    assert np.allclose(start, method.input_to_model(expected).numpy(), atol=1e-5)
    book = method.module.quantizer.codebook
    moved = (book - first).norm(dim=1) / first.norm(dim=1)
    assert (moved > 0.05).float().mean() > 0.5


def test_loaded_method_assigns_and_evaluates_in_eval_mode(trained, tmp_path):
    store, method, _ = trained
    method.save(tmp_path)
    loaded = ConceptMethod.load(tmp_path)
    assert not loaded.module.training
    data = LayerData(store, "eval", 1, 2)
    ids, metrics = loaded.assign(data), loaded.evaluate(data, "cpu")
    book = loaded.module.quantizer.codebook.clone()
    loaded.module.train()  # a caller that was training
    assert np.array_equal(loaded.assign(data), ids)
    again = loaded.evaluate(data, "cpu")
    assert again["val_fvu"] == pytest.approx(metrics["val_fvu"], rel=1e-6)
    # Training mode would have sampled codes and moved the EMA codebook; the caller's mode comes back.
    assert torch.equal(loaded.module.quantizer.codebook, book)
    assert loaded.module.training and loaded.module.decoder.training


def test_plain_transformer_decoder_learns_context_too(tmp_path):
    """The fixture's decoder has the per-code table (the default); the paper's plain transformer decoder
    (`decoder_code_table=False`) must learn the same context, and lose it when words stand alone."""
    store = ActivationStore(write_context_store(tmp_path / "activations", hidden=HIDDEN,
                                                n_sentences={"train": 200, "eval": 60}))
    config = CLVQConfig(n_concepts=K, decoder_layers=1, decoder_ff=64, decoder_heads=2, dropout=0.0, epochs=8,
                        lr=1e-2, batch_sentences=32, decoder_code_table=False)
    method = get_method("clvq")(config, MethodDims(HIDDEN, HIDDEN, 1, 2)).fit(LayerData(store, "train", 1, 2))
    data = LayerData(store, "eval", 1, 2)
    own = method.evaluate(data, "cpu")["val_fvu"]
    assert own < 0.7
    ys, alone = [], []
    with torch.no_grad():
        for batch in method.internal(data).batches(64):
            codes = code_sequences(method.module, batch)
            alone.append(method.output_to_model(decode_alone(method.module, codes, batch.mask, batch.positions)))
            ys.append(method.output_to_model(batch.y[batch.mask]))
    assert fvu(torch.cat(alone), torch.cat(ys)) > 0.9
