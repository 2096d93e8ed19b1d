"""Stages recognise a span method (the SAE) and a codebook model by what the method class declares, not by
its name, and `ablate`'s default method list is the registry's when a config is made."""

import numpy as np
import pytest

from clvq_judge.core.ablation import sources
from clvq_judge.core.ablation.stage import AblateConfig
from clvq_judge.core.methods import REGISTRY, MethodDims, get_method
from clvq_judge.core.methods.clvq import CLVQConfig
from clvq_judge.core.methods.sae import SAEConfig, SAEMethod


class RenamedSAE(SAEMethod):
    """The SAE under another name: still a span method."""

    name = "renamed_sae"


@pytest.fixture
def renamed(monkeypatch):
    monkeypatch.setitem(REGISTRY, RenamedSAE.name, RenamedSAE)


def test_span_methods_are_known_by_their_class(renamed):
    assert sources.is_span("sae") and sources.is_span("renamed_sae")
    assert not any(sources.is_span(m) for m in ("clvq", "vqvae", "kmeans", "agglomerative"))
    assert "renamed_sae" not in sources.VECTOR_METHODS and "kmeans" in sources.VECTOR_METHODS


def test_ablate_default_methods_are_read_when_the_config_is_made(renamed):
    assert "renamed_sae" in AblateConfig().method
    REGISTRY.pop("renamed_sae")
    assert "renamed_sae" not in AblateConfig().method


def test_vector_methods_have_no_latents_and_only_codebook_methods_a_codebook_model():
    dims = MethodDims(16, 16, 1, 2)
    kmeans = get_method("kmeans")(get_method("kmeans").config_class(n_concepts=4), dims)
    with pytest.raises(NotImplementedError, match="one concept vector"):
        kmeans.top_latents(np.zeros((2, 16), np.float32), 1)
    assert kmeans.codebook_model() is None
    assert SAEMethod(SAEConfig(sae_latents=64, sae_topk=4), dims).codebook_model() is None
    clvq = get_method("clvq")(CLVQConfig(n_concepts=4, decoder_layers=1, decoder_ff=16), dims)
    model = clvq.codebook_model()
    assert model is clvq.module and model.quantizer.codebook.shape == (4, 16)
