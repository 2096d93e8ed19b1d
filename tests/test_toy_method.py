"""A method is one file: this toy method (its options, its fit/assign/vectors) is defined and registered
here only, and `train` (with its own flag), `concepts` and `ablate` run on it without any other change."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clvq_judge.cli.main import main
from clvq_judge.core.config import option
from clvq_judge.core.methods import REGISTRY, ConceptMethod, register
from clvq_judge.core.methods.base import MethodConfig


@dataclass
class ToyConfig(MethodConfig):
    """Options of the toy method."""

    toy_concepts: int = option(4, ge=2)
    """Concepts: the toy_concepts coordinates with the largest spread over the training vectors."""
    seed: int = 0
    """Unused; every method has a seed."""


class ToyMethod(ConceptMethod):
    """A token's concept is the highest-spread coordinate where its vector is largest."""

    name = "toy"
    config_class = ToyConfig

    def fit(self, data, workdir=None, device="cpu", on_epoch_end=None, progress=False):
        x = data.sample_rows(data.layer_in, 5000, self.config.seed)
        self.dims_kept = torch.from_numpy(np.argsort(-x.std(0))[: self.config.toy_concepts].copy())
        return self

    def assign_vectors(self, x):
        return np.asarray(x)[:, self.dims_kept.numpy()].argmax(1).astype(np.int64)

    def vectors(self):
        eye = np.eye(self.dims.d_in, dtype=np.float32)
        return eye[self.dims_kept.numpy()]

    def state_tensors(self):
        return {"dims_kept": self.dims_kept}

    def load_state_tensors(self, tensors):
        self.dims_kept = tensors["dims_kept"].long()


@pytest.fixture
def toy_registered():
    register(ToyMethod)
    yield
    REGISTRY.pop("toy")


def test_toy_method_runs_train_concepts_and_ablate(toy_registered, minilm_run, tmp_path):
    runs, store = minilm_run
    shutil.copytree(Path(runs) / "tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns("methods", "concepts", "ablation"))
    common = ["--run", "tiny", "--runs-dir", str(tmp_path)]
    assert main(["train", *common, "--method", "toy", "--toy-concepts", "5"]) == 0
    assert main(["concepts", *common, "--method", "toy"]) == 0
    assert main(["ablate", *common, "--method", "toy", "--folds", "2", "--bootstrap", "20"]) == 0
    trained = json.loads((tmp_path / "tiny" / "methods" / "toy" / "done.json").read_text())
    assert trained["config"]["toy_concepts"] == 5 and trained["config"]["layer_in"] == store.layer_in
    cards = (tmp_path / "tiny" / "concepts" / "toy" / "concepts.jsonl").read_text().splitlines()
    assert len(cards) == 5 and sum(json.loads(c)["count"] for c in cards) == store.n_tokens("eval")
    results = pd.read_csv(tmp_path / "tiny" / "ablation" / "results.csv")
    assert set(results["label"]) == {"toy"} and set(results["protocol"]) == {"paper", "model"}
    assert {"original", "concept", "random"} <= set(results["condition"])


def test_unregistered_method_is_refused_with_the_registered_ones(capsys, tmp_path):
    assert main(["train", "--method", "toy", "--runs-dir", str(tmp_path)]) == 2
    assert "invalid choice: 'toy'" in capsys.readouterr().err
