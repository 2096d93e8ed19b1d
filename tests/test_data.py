import numpy as np
import pandas as pd
import pytest

from clvq_judge.core.data import DataOptions, load_dataset
from clvq_judge.core.errors import UserError


@pytest.mark.parametrize("name,n_labels", [("news", 5), ("news-sentences", 5), ("sentiment", 2)])
def test_embedded_datasets_split_is_fixed_and_capped(name, n_labels):
    a = load_dataset(DataOptions(dataset=name, max_train=300, max_dev=60, seed=3))
    b = load_dataset(DataOptions(dataset=name, max_train=300, max_dev=60, seed=3))
    c = load_dataset(DataOptions(dataset=name, max_train=300, max_dev=60, seed=4))
    pd.testing.assert_frame_equal(a.sentences, b.sentences)
    assert not a.sentences["text"].equals(c.sentences["text"])
    assert len(a.split("train")) == 300 and len(a.split("dev")) == 60
    assert len(a.label_names) == n_labels and set(a.sentences["label"]) <= set(range(n_labels))
    assert not set(a.split("train")["text"]) & set(a.split("dev")["text"])
    assert a.sentences["text"].str.split().str.len().max() <= 48


def test_news_sentences_is_the_paper_scale_view_split_by_article():
    from clvq_judge.core.data import load_news, load_news_sentences

    frame, labels = load_news_sentences(48)
    articles, _ = load_news(48)
    assert labels == sorted(labels) and len(labels) == 5
    # Every article contributes several sentences: about 40k in all, as the paper-scale run needs.
    assert frame["group"].nunique() == len(articles) and 35_000 < len(frame) < 50_000
    assert frame["text"].str.split().str.len().min() >= 4
    data = load_dataset(DataOptions(dataset="news-sentences", max_train=0, max_dev=0, seed=1))
    assert len(data.sentences) == len(frame)
    # No article has sentences on both sides of the split (they share names and phrasing).
    keyed = frame.assign(key=frame["text"] + "|" + frame["label"].astype(str)).drop_duplicates("key", keep=False)
    side = data.sentences.assign(key=data.sentences["text"] + "|" + data.sentences["label"].astype(str))
    joined = keyed.merge(side[["key", "split"]], on="key")
    assert (joined.groupby("group")["split"].nunique() == 1).all()
    assert 0.1 < (data.sentences["split"] == "dev").mean() < 0.2


def _frame(n=40):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"review": [f"text number {i} is {'good' if i % 2 else 'bad'}" for i in range(n)],
                         "stars": rng.choice(["pos", "neg"], size=n)})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_local_files(tmp_path, suffix):
    frame = _frame()
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    data = load_dataset(DataOptions(dataset=str(path), text_column="review", label_column="stars", dev_fraction=0.25))
    assert data.label_names == ["neg", "pos"]
    assert len(data.split("train")) == 30 and len(data.split("dev")) == 10
    assert data.sentences["sentence"].tolist() == list(range(40))


def test_hub_dataset_offline_fails_with_alternatives():
    with pytest.raises(UserError, match="embedded dataset .*news.*local"):
        load_dataset(DataOptions(dataset="ag_news"))


def test_hub_code_path_on_a_shipped_copy(tmp_path):
    """`datasets.load_dataset` itself (the hub code path) on the embedded news set saved as split files,
    with a ClassLabel feature like AG News has."""
    import datasets

    news = load_dataset(DataOptions(dataset="news", max_train=80, max_dev=20))
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=news.label_names)})
    folder = tmp_path / "news_copy"
    for split, name in (("train", "train"), ("dev", "validation")):
        part = news.split(split)[["text", "label"]]
        datasets.Dataset.from_pandas(part, features=features, preserve_index=False).to_parquet(str(folder / f"{name}.parquet"))
    loaded = load_dataset(DataOptions(dataset=str(folder), max_train=0, max_dev=0))
    assert loaded.label_names == news.label_names
    assert len(loaded.split("train")) == 80 and len(loaded.split("dev")) == 20
    assert loaded.split("dev")["text"].tolist() == news.split("dev")["text"].tolist()
