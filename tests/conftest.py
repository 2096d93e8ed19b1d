import os

# Nothing in the tests may wait on a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from clvq_judge.core.classifier import FinetuneConfig, finetune  # noqa: E402
from clvq_judge.core.extract import ExtractConfig, extract  # noqa: E402

TINY = {"max_train": 150, "max_dev": 40}


@pytest.fixture(scope="session")
def minilm_run(tmp_path_factory):
    """A tiny real run: MiniLM head classifier on news topics, then extraction (several shards)."""
    runs = tmp_path_factory.mktemp("runs")
    finetune(FinetuneConfig(run="tiny", runs_dir=str(runs), dataset="news", model="minilm", **TINY))
    store = extract(ExtractConfig(run="tiny", runs_dir=str(runs), ig_steps=4, chunk_sentences=64, min_count=2))
    return runs, store


def reference_word_states(runs, run_name, store):
    """For the first evaluation sentence: HF's own `output_hidden_states` at each word's last piece, and
    the rows the cache holds for that sentence; extraction must reproduce the former exactly."""
    import numpy as np
    import pandas as pd
    import torch

    from clvq_judge.core.classifier import load_classifier
    from clvq_judge.core.encode import encode_batch
    from clvq_judge.core.runs import Run

    model = load_classifier(Run.open(runs, run_name))
    tokens = store.tokens("eval")
    sid = int(tokens["sentence"].iloc[0])
    text = pd.read_parquet(Run.open(runs, run_name).root / "data" / "sentences.parquet").set_index("sentence").loc[sid, "text"]
    batch = encode_batch(model.tokenizer, [text])
    with torch.no_grad():
        hs = model.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True).hidden_states
    pw = batch.piece_word[0]
    last_piece = [int(np.flatnonzero(pw == p)[-1]) for p in range(pw.max() + 1)]
    rows = np.flatnonzero(tokens["sentence"].to_numpy() == sid)
    return {layer: h[0, last_piece].numpy() for layer, h in enumerate(hs)}, rows


# Fixtures of the judge and the study live in their own plugin modules (one converted model, one server,
# one browser per test session).
pytest_plugins = ["fixtures_judge", "fixtures_study"]
