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
