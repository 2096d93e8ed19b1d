"""Evaluation units shared by the LLM judge and the human study.

A unit is one evaluation sentence with the model's prediction, its explanation token (the one function
in `core.explanation`, as the ablation uses) and, per concept method, the concept assigned to that token
(`concepts/<method>/assignments.npy`; for the SAE its top latent). The sample is seeded and stratified
by predicted label, so every label the model predicts is represented in proportion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .activations import ActivationStore
from .atomic import read_json
from .errors import UserError
from .explanation import explanation_tokens
from .runs import Run
from .words import split_words


@dataclass(frozen=True)
class Unit:
    sentence: int
    """Sentence id (row key of `data/sentences.parquet` and the activation cache)."""
    text: str
    """The sentence as the model read it."""
    span: tuple[int, int]
    """Character span [start, end) of the explanation token in `text`; (0, 0) for a sentence-start token."""
    position: int
    """Word position of the explanation token (0 = sentence-start token)."""
    word: str
    """The explanation token."""
    row: int
    """Row of the explanation token in `activations/tokens.eval.parquet`."""
    prediction: int
    """The model's predicted label id."""
    prediction_label: str
    """The model's predicted label name."""
    label: int
    """The gold label id (kept for analysis; never shown to a judge or an annotator)."""
    concepts: dict[str, int] = field(default_factory=dict)
    """Concept id per method at the explanation token."""

    def marked(self, left: str = "[[", right: str = "]]") -> str:
        """The sentence with the explanation token wrapped in `left`/`right` (the same marker as concept cards)."""
        start, end = self.span
        if end <= start:
            return f"{left}{self.word}{right} {self.text}"
        return f"{self.text[:start]}{left}{self.text[start:end]}{right}{self.text[end:]}"

    def to_dict(self) -> dict:
        return {**self.__dict__, "span": list(self.span), "concepts": dict(self.concepts)}

    @classmethod
    def from_dict(cls, data: dict) -> Unit:
        return cls(**{**data, "span": tuple(data["span"]), "concepts": {k: int(v) for k, v in data["concepts"].items()}})


def label_names(run: Run) -> list[str]:
    path = run.root / "data" / "labels.json"
    if not path.exists():
        raise UserError(f"run {run.name!r} has no data/labels.json: run `clvq-judge finetune --run {run.name}` first")
    return list(read_json(path))


def concept_folder(run: Run, method: str) -> Path:
    """The finished `concepts/<method>` folder, or a one-line error saying how to make it."""
    stage = f"concepts/{method}"
    if not run.is_done(stage):
        raise UserError(
            f"run {run.name!r} has no concepts for method {method!r}: run "
            f"`clvq-judge train --run {run.name} --method {method}` and `clvq-judge concepts --run {run.name} "
            f"--method {method}` first"
        )
    return run.require(stage)  # refuses concepts built on an input that has since been redone


def load_cards(run: Run, method: str) -> list[dict]:
    """A method's concept cards (`concepts.jsonl`), indexed by concept id."""
    path = concept_folder(run, method) / "concepts.jsonl"
    with open(path, encoding="utf-8") as fh:
        cards = [json.loads(line) for line in fh if line.strip()]
    if any(card["id"] != i for i, card in enumerate(cards)):
        raise UserError(f"{path} is not ordered by concept id: rerun `clvq-judge concepts --run {run.name} --method {method} --force`")
    return cards


def stratified_sample(groups: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of `n` items drawn without replacement, allocated to groups in proportion to their size
    (largest remainders; every non-empty group gets at least one when n allows). Seeded; sorted."""
    groups = np.asarray(groups)
    if n >= len(groups):
        return np.arange(len(groups))
    rng = np.random.default_rng(seed)
    values, counts = np.unique(groups, return_counts=True)
    quota = counts * n / counts.sum()
    take = np.floor(quota).astype(int)
    if n >= len(values):
        take = np.maximum(take, 1)
    while take.sum() > n:  # the minimum of one pushed us over: trim the largest allocations
        take[np.argmax(take - quota)] -= 1
    order = np.argsort(-(quota - take), kind="stable")
    for i in order[: n - take.sum()]:
        take[i] += 1
    picked = [rng.choice(np.flatnonzero(groups == v), size=k, replace=False) for v, k in zip(values, take) if k]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def sample_units(run: Run, methods: tuple[str, ...] | list[str], n_sentences: int, seed: int) -> list[Unit]:
    """`n_sentences` evaluation units (seeded, stratified by predicted label) with each method's concept."""
    if n_sentences < 1:
        raise UserError(f"the number of sentences must be at least 1, got {n_sentences}")
    methods = list(dict.fromkeys(methods))
    store = ActivationStore(run.require("extract"))
    tokens = store.tokens("eval")
    assignments = {}
    for method in methods:
        ids = np.load(concept_folder(run, method) / "assignments.npy", mmap_mode="r")
        if len(ids) != len(tokens):
            raise UserError(
                f"concepts of {method!r} cover {len(ids)} tokens but the activation cache has {len(tokens)}: "
                f"rerun `clvq-judge concepts --run {run.name} --method {method} --force`"
            )
        assignments[method] = ids
    explanations = explanation_tokens(store.saliency, tokens, top_k=1)
    if explanations.empty:
        raise UserError(f"run {run.name!r} has no evaluation sentences with saliency: rerun `clvq-judge extract --run {run.name}`")
    rows = explanations["row"].to_numpy()
    preds = tokens["prediction"].to_numpy()[rows]
    keep = np.ones(len(rows), dtype=bool)
    for ids in assignments.values():
        keep &= np.asarray(ids[rows]) >= 0
    explanations, preds = explanations[keep].reset_index(drop=True), preds[keep]
    pick = stratified_sample(preds, n_sentences, seed)
    chosen = explanations.iloc[pick]
    names = label_names(run)
    from .classifier import load_sentences

    texts = load_sentences(run).set_index("sentence")["text"]
    words = tokens["word"].astype(str).to_numpy()
    labels = tokens["label"].to_numpy()
    units = []
    for sentence, position, row, pred in zip(chosen["sentence"], chosen["position"], chosen["row"], preds[pick]):
        text = str(texts.loc[int(sentence)])
        span = (0, 0)
        if position > 0:
            _, starts, ends = split_words(text)
            if position <= len(starts):
                span = (int(starts[position - 1]), int(ends[position - 1]))
        units.append(
            Unit(
                sentence=int(sentence), text=text, span=span, position=int(position), word=str(words[row]), row=int(row),
                prediction=int(pred), prediction_label=names[int(pred)], label=int(labels[row]),
                concepts={m: int(assignments[m][row]) for m in methods},
            )
        )
    return units


def units_frame(units: list[Unit]) -> pd.DataFrame:
    """One row per (unit, method): sentence, position, word, prediction_label, method, concept."""
    return pd.DataFrame(
        [
            {"sentence": u.sentence, "position": u.position, "word": u.word, "prediction": u.prediction,
             "prediction_label": u.prediction_label, "method": m, "concept": c}
            for u in units for m, c in u.concepts.items()
        ]
    )
