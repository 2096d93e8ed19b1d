"""`clvq-judge ablate` end to end on a synthetic run: real cache format, real tokenizer and hook,
a tiny BERT classifier, k-means-style concepts and an SAE-style method."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from synthetic_store import write_synthetic_store  # noqa: E402

from clvq_judge.core.ablation import sources  # noqa: E402
from clvq_judge.core.ablation.stage import COLUMNS, AblateConfig, ablate  # noqa: E402
from clvq_judge.core.errors import UserError  # noqa: E402
from clvq_judge.core.methods import REGISTRY, ConceptMethod, MethodDims  # noqa: E402
from clvq_judge.core.methods.base import OptimConfig  # noqa: E402
from clvq_judge.core.runs import Run  # noqa: E402
from clvq_judge.core.schema import ABLATION_SENTENCES  # noqa: E402

HIDDEN, VOCAB = 16, 30


@dataclasses.dataclass
class FakeExtract:
    max_length: int = 32


class FakeSAE(ConceptMethod):
    """Just enough of the SAE interface for ablation: encoder rows and top latents."""

    config_class = OptimConfig
    removal = "span"

    def fit(self, data, workdir=None, device="cpu", on_epoch_end=None, progress=False):
        return self

    def _init(self):
        self.w = torch.randn(24, HIDDEN, generator=torch.Generator().manual_seed(5))

    def assign_vectors(self, x):
        return (torch.as_tensor(x) @ self.w.T).argmax(-1).numpy()

    def top_latents(self, x, k):
        values, idx = (torch.as_tensor(x) @ self.w.T).topk(k, dim=-1)
        return idx.numpy(), torch.relu(values).numpy()

    def vectors(self):
        return self.w.numpy()

    def state_tensors(self):
        return {"w": self.w}

    def load_state_tensors(self, tensors):
        self.w = tensors["w"]


def word_tokenizer():
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(1, VOCAB + 1)]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                cls_token="[CLS]", sep_token="[SEP]")


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokenizer = word_tokenizer()
        config = transformers.BertConfig(hidden_size=HIDDEN, num_hidden_layers=3, num_attention_heads=2,
                                         intermediate_size=32, vocab_size=len(self.tokenizer))
        torch.manual_seed(0)
        self.backbone = transformers.BertModel(config).eval()
        self.head = nn.Linear(HIDDEN, 2)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0])


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    run = Run.open(tmp_path, "r", create=True)
    run.write_info({"seed": 3, "model_kind": "encoder"})
    folder = write_synthetic_store(run.stage_dir("extract"), layers=(1, 2), hidden=HIDDEN, vocab=VOCAB,
                                   n_sentences={"train": 8, "eval": 48}, seed=1)
    tokens = pd.read_parquet(folder / "tokens.eval.parquet")
    rng = np.random.default_rng(0)
    saliency = tokens[["sentence", "position"]].assign(saliency=rng.random(len(tokens)).astype(np.float32))
    saliency.to_parquet(folder / "saliency.parquet")
    first = tokens.groupby("sentence").first()
    sentences = pd.DataFrame({"sentence": first.index, "label": first["label"], "prediction": first["prediction"],
                              "ig_delta": 0.0})
    sentences.to_parquet(folder / "sentences.parquet")
    run.finish("extract", FakeExtract())
    texts = tokens[tokens.position > 0].groupby("sentence")["word"].agg(" ".join)
    data = pd.DataFrame({"sentence": texts.index, "split": "dev", "text": texts.to_numpy(),
                         "label": first.loc[texts.index, "label"].to_numpy()})
    (run.root / "data").mkdir()
    data.to_parquet(run.root / "data" / "sentences.parquet")
    concepts = sources.concepts_dir(run, "kmeans")
    concepts.mkdir(parents=True)
    np.save(concepts / "vectors.npy", rng.normal(size=(6, HIDDEN)).astype(np.float32))
    np.save(concepts / "assignments.npy", rng.integers(0, 6, len(tokens)))
    monkeypatch.setitem(REGISTRY, "fake_sae", FakeSAE)
    monkeypatch.setattr(FakeSAE, "name", "fake_sae")
    sae = FakeSAE(OptimConfig(), MethodDims(HIDDEN, HIDDEN, 1, 2))
    sae._init()
    sae.save(sources.method_dir(run, "sae"))
    calls = []

    def load_model(run, device):
        calls.append(1)
        return TinyClassifier()

    monkeypatch.setattr(sources, "load_model", load_model)
    return run, calls


def config_for(run, **kw):
    base = dict(run=run.name, runs_dir=str(run.root.parent), method=("kmeans", "sae"), folds=4, sae_k=(1, 2),
                bootstrap=100, device="cpu")
    return AblateConfig(**{**base, **kw})


def test_ablate_writes_results_summary_and_chart(run_dir):
    run, calls = run_dir
    results = ablate(config_for(run))
    folder = run.stage_dir("ablate")
    assert list(results.columns) == COLUMNS
    table = pd.read_csv(folder / "results.csv")
    assert len(table) == 3 * 2 * 5  # variants x protocols x conditions
    assert set(table.label) == {"kmeans", "sae k=1", "sae k=2"}
    assert set(table.condition) == {"original", "concept", "random", "random_energy", "other_concept"}
    # The energy-matched control removes what the concept removes; the uniform one (here) far less.
    removals = table[table.condition != "original"].set_index(["label", "protocol", "condition"]).energy_share
    for label in ("kmeans", "sae k=2"):
        for protocol in ("paper", "model"):
            assert removals[label, protocol, "random_energy"] == pytest.approx(removals[label, protocol, "concept"], rel=1e-3)
    assert (table[table.condition == "original"].energy_share == 0).all()
    assert (table.n == 48).all()
    assert table.accuracy.between(0, 1).all() and (table.ci_low <= table.ci_high).all()
    original = table[table.condition == "original"]
    assert (original.relative_drop == 0).all() and (original.flip_rate == 0).all()
    # The paper protocol trains its probes once: every variant shares the unperturbed accuracy.
    assert original[original.protocol == "paper"].accuracy.nunique() == 1
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_sentences"] == 48 and summary["probe_token"] == "start"
    assert set(summary["methods"]["sae k=2"]) >= {"paper", "model", "layer"}
    for protocol in ("paper", "model"):
        entry = summary["methods"]["kmeans"][protocol]
        head = entry["drop_vs_energy_control"]
        assert head["ci_low"] <= head["value"] <= head["ci_high"]
        assert head["value"] == pytest.approx(entry["random_energy"] - entry["after"])
        fit = entry["flip_vs_energy"]
        assert fit["n"] == 4 * 48 and np.isfinite(fit["slope"]) and -1 <= fit["r"] <= 1
        assert entry["energy_match"]["share_within_1pct"] > 0.9
    assert summary["methods"]["kmeans"]["layer"] == 1  # the SAE's recorded L_in is 1 too
    png = (folder / "ablation.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 5000
    assert len(calls) == 1
    # Per-sentence results: one row per sentence for every row of results.csv, and their mean is its accuracy
    # (the model protocol's; the paper protocol's accuracy is a mean over folds).
    per = pd.read_csv(folder / "sentences.csv")
    assert list(per.columns) == ABLATION_SENTENCES and len(per) == len(table) * 48
    assert set(per.correct) <= {0, 1}
    means = per.groupby(["label", "protocol", "condition"]).correct.mean()
    model = table[table.protocol == "model"].set_index(["label", "protocol", "condition"]).accuracy
    assert means[model.index].to_numpy() == pytest.approx(model.to_numpy())

    # Same options again: a no-op that returns the stored table without loading the model.
    again = ablate(config_for(run))
    pd.testing.assert_frame_equal(again, table)
    assert len(calls) == 1
    with pytest.raises(UserError, match="--force"):
        ablate(config_for(run, folds=5))


def test_ablate_is_reproducible_and_checks_options(run_dir):
    run, _ = run_dir
    first = ablate(config_for(run, protocol="paper", method=("kmeans",)))
    second = ablate(config_for(run, protocol="paper", method=("kmeans",), force=True))
    pd.testing.assert_frame_equal(first, second)
    centered = ablate(config_for(run, protocol="paper", method=("kmeans",), center=True, force=True))
    assert json.loads((run.stage_dir("ablate") / "summary.json").read_text())["centered"] is True
    # Same probes, same unperturbed accuracy; the removals are taken from other vectors.
    assert centered.accuracy.iloc[0] == first.accuracy.iloc[0]
    assert not np.allclose(centered.flip_rate.to_numpy(), first.flip_rate.to_numpy())
    # Centred directions: the vector method's table loses the training mean, so other things are removed.
    shifted = ablate(config_for(run, protocol="paper", method=("kmeans",), center_directions=True, force=True))
    summary = json.loads((run.stage_dir("ablate") / "summary.json").read_text())
    assert summary["center_directions"] and summary["methods"]["kmeans"]["directions_centered"]
    assert not np.allclose(shifted.energy_share.to_numpy(), first.energy_share.to_numpy())
    with pytest.raises(UserError, match="unknown --method"):
        ablate(config_for(run, method=("pca",)))
    with pytest.raises(UserError, match="--folds"):
        ablate(config_for(run, folds=1, force=True))


def test_standardized_space_removes_in_z_with_matched_controls(run_dir):
    from clvq_judge.core.ablation.stage import EXCLUDE
    from clvq_judge.core.config import config_hash

    run, _ = run_dir
    plain = ablate(config_for(run))
    # A run finished before --space existed has the same hash as one with the default model space.
    assert run.done_record("ablate")["config_hash"] == config_hash(config_for(run), EXCLUDE + ("space",))
    with pytest.raises(UserError, match="--force"):
        ablate(config_for(run, space="standardized"))
    z = ablate(config_for(run, space="standardized", force=True))
    summary = json.loads((run.stage_dir("ablate") / "summary.json").read_text())
    assert summary["space"] == "standardized"
    assert summary["methods"]["kmeans"]["space"] == "standardized" and summary["methods"]["kmeans"]["directions_centered"]
    assert not summary["methods"]["sae k=1"]["directions_centered"]
    # Same probes and model, so the same unperturbed accuracy; other directions, so other removed energy.
    original = (z.condition == "original")
    pd.testing.assert_series_equal(z[original].accuracy, plain[original].accuracy)
    assert not np.allclose(z[~original].energy_share.to_numpy(), plain[~original].energy_share.to_numpy())
    removals = z[~original].set_index(["label", "protocol", "condition"]).energy_share
    for protocol in ("paper", "model"):
        assert removals["kmeans", protocol, "random_energy"] == pytest.approx(removals["kmeans", protocol, "concept"], rel=1e-3)
        assert summary["methods"]["kmeans"][protocol]["energy_match"]["share_within_1pct"] > 0.9
    assert z.accuracy.between(0, 1).all()


def test_cli_builds_the_config_and_reports_user_errors(tmp_path, monkeypatch, capsys):
    from clvq_judge.cli.main import main
    from clvq_judge.core.ablation import stage

    seen = {}
    monkeypatch.setattr(stage, "ablate", lambda config: seen.setdefault("config", config))
    assert main(["ablate", "--run", "x", "--method", "clvq", "sae", "--sae-k", "1", "5", "--protocol", "paper"]) == 0
    config = seen["config"]
    assert config.method == ("clvq", "sae") and config.sae_k == (1, 5) and config.protocol == "paper"
    monkeypatch.undo()
    assert main(["ablate", "--run", "missing", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]
