"""The one read path of a run's results: what the report, `export`, the demo's headline and the explorer read.

Every file is checked against the columns its writer declares (`core.schema`, `judge.schema`,
`human_eval.schema`), so a renamed column fails here with one line naming the file and the stage to rerun,
instead of a chart silently losing its error bars. A stage that has not run reads as None; nothing is
recomputed or guessed. Torch-free (the explorer imports it on its first page).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from clvq_judge.core import schema as core_schema
from clvq_judge.core.atomic import read_json
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import Run
from clvq_judge.core.stages import record_key
from clvq_judge.human_eval import schema as study_schema
from clvq_judge.judge import schema as judge_schema


def read_table(path: Path, required: Sequence[str], stage: str, strict: bool = True) -> pd.DataFrame | None:
    """A CSV a stage wrote, or None when it is missing; one line naming the fix when it is unreadable or (strict)
    lacks a column its writer always writes."""
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(required))
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV ({type(exc).__name__}): rerun `clvq-judge {stage}`") from None
    missing = [c for c in required if c not in frame.columns]
    if missing and strict:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)} its writer always writes: rerun "
                        f"`clvq-judge {stage}` with this version")
    return frame


def _json(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class Results:
    """Lazy, cached view of one run's result files (one instance per run and reader).

    `strict=False` only checks that tables are readable: for `export`, which copies them as they are and whose
    summaries use the columns they find."""

    def __init__(self, run: Run, strict: bool = True):
        self.run = run
        self.strict = strict
        self.root = run.root
        self._cards: dict[str, list[dict]] = {}
        self._tables: dict[tuple, pd.DataFrame | None] = {}

    @classmethod
    def open(cls, runs_dir: str | Path, name: str) -> Results:
        return cls(Run.open(runs_dir, name))

    # --- setup and the model axis ------------------------------------------------------------------

    @cached_property
    def info(self) -> dict:
        return self.run.info()

    @cached_property
    def manifest(self) -> dict | None:
        return _json(self.root / "activations" / "manifest.json")

    @cached_property
    def classifier_metrics(self) -> dict | None:
        return _json(self.root / "classifier" / "metrics.json")

    def concept_folder(self, method: str) -> Path:
        return self.root / core_schema.CONCEPTS_STAGE / method

    @cached_property
    def concept_methods(self) -> list[str]:
        """Methods whose concepts were written, in name order."""
        name = core_schema.CONCEPT_FILES["summary"]
        return sorted(p.parent.name for p in (self.root / core_schema.CONCEPTS_STAGE).glob(f"*/{name}"))

    def concept_summary(self, method: str) -> dict:
        return read_json(self.concept_folder(method) / core_schema.CONCEPT_FILES["summary"])

    def cards(self, method: str) -> list[dict]:
        """concepts.jsonl of a method, indexed by concept id."""
        if method not in self._cards:
            path = self.concept_folder(method) / core_schema.CONCEPT_FILES["cards"]
            cards = _jsonl(path)
            if any(card.get("id") != i for i, card in enumerate(cards)):
                raise UserError(f"{path} is not ordered by concept id: rerun `clvq-judge concepts --method {method} --force`")
            self._cards[method] = cards
        return self._cards[method]

    def assignments(self, method: str) -> np.ndarray:
        """Concept id of every evaluation token (row-aligned with the activation cache's eval tokens)."""
        return np.load(self.concept_folder(method) / core_schema.CONCEPT_FILES["assignments"], mmap_mode="r")

    def ablation_results(self) -> pd.DataFrame | None:
        return self._table(("ablation",), self.root / core_schema.ABLATION_STAGE / core_schema.ABLATION_FILES["results"],
                           core_schema.ABLATION_RESULTS, "ablate")

    @cached_property
    def ablation_summary(self) -> dict | None:
        return _json(self.root / core_schema.ABLATION_STAGE / core_schema.ABLATION_FILES["summary"])

    def drop_vs_energy_control(self, label: str, protocol: str = "model") -> dict | None:
        """The paired drop against the energy-matched control (value, ci_low, ci_high) of one ablated variant."""
        methods = (self.ablation_summary or {}).get("methods", {})
        return ((methods.get(label) or {}).get(protocol) or {}).get("drop_vs_energy_control")

    # --- the judge ---------------------------------------------------------------------------------

    @cached_property
    def judge_protocol(self) -> str | None:
        """The protocol of the latest ranking (None before `rank` ran)."""
        done = _json(self.root / judge_schema.STAGE / judge_schema.DONE)
        return (done or {}).get("protocol", "pairwise") if done else None

    def judge_table(self, name: str) -> pd.DataFrame | None:
        """`judge/<name>.csv` of the latest ranking, checked against its protocol's columns."""
        if name not in (*judge_schema.FILES, "concepts"):
            raise ValueError(f"unknown judge table {name!r}")
        columns = judge_schema.required(self.judge_protocol or "pairwise", name)
        if columns is None:
            return None
        return self._table(("judge", name), self.root / judge_schema.STAGE / f"{name}.csv", columns, "rank")

    def judge_path(self, name: str) -> Path:
        return self.root / judge_schema.STAGE / f"{name}.csv"

    @cached_property
    def judge_units(self) -> list[dict]:
        return _jsonl(self.root / judge_schema.STAGE / judge_schema.UNITS)

    def descriptions(self, method: str) -> dict[int, str]:
        """Concept id -> description written for the method's current concepts (the latest one when several
        explainers described it)."""
        version = str(self.run.done_hash(f"{core_schema.CONCEPTS_STAGE}/{method}"))
        rows = _jsonl(self.root / judge_schema.STAGE / judge_schema.DESCRIPTIONS / f"{method}.jsonl")
        return {int(r["concept"]): str(r["description"]) for r in rows if str(r.get("concepts")) == version}

    # --- the human studies -------------------------------------------------------------------------

    @cached_property
    def studies(self) -> list[str]:
        """Studies of the run with results written by `study results`."""
        folder = self.root / "studies"
        return sorted(p.parent.name for p in folder.glob(f"*/{study_schema.RESULTS}") if p.is_dir())

    def study_folder(self, study: str) -> Path:
        return self.root / "studies" / study / study_schema.RESULTS

    def study_table(self, study: str, name: str) -> pd.DataFrame | None:
        """`studies/<study>/results/<name>.csv` (name in `human_eval.schema.COLUMNS`)."""
        return self._table(("study", study, name), self.study_folder(study) / f"{name}.csv",
                           study_schema.COLUMNS[name], "study results")

    def study_summary(self, study: str) -> dict | None:
        return _json(self.study_folder(study) / "summary.json")

    # --- what a reader read ------------------------------------------------------------------------

    def records(self) -> tuple[str, ...]:
        """The finished stage records behind what this collector serves (concepts, ablation, the judge, the
        studies' results). A reader (report, export) records their done hashes, so it is redone when one of
        them is redone and refuses (through `Run.require`) to read one that is itself outdated."""
        keys = [record_key("concepts", method=m) for m in self.concept_methods]
        keys += ["ablate", "describe", "rank", *(record_key("study results", name=s) for s in self.studies)]
        return tuple(k for k in keys if self.run.is_done(k))

    # --- evaluation tokens -------------------------------------------------------------------------

    @cached_property
    def eval_tokens(self) -> pd.DataFrame:
        """sentence, position and word of every evaluation token (the row order of the activation cache)."""
        path = self.root / "activations" / "tokens.eval.parquet"
        if not path.exists():
            raise UserError(f"run {self.run.name!r} has no activation cache: run `clvq-judge extract --run {self.run.name}`")
        return pd.read_parquet(path, columns=["sentence", "position", "word"])

    def _table(self, key: tuple, path: Path, required: Sequence[str], stage: str) -> pd.DataFrame | None:
        if key not in self._tables:
            self._tables[key] = read_table(path, required, stage, self.strict)
        return self._tables[key]


def raw_tables(results: Results) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Every result table of the run under one flat name (`judge_methods`, `ablation_results`,
    `human_<study>_methods`, ...) with the file it came from: what `export` copies and the report links."""
    found: dict[str, tuple[Path, pd.DataFrame]] = {}
    for name in judge_schema.FILES:
        frame = results.judge_table(name)
        if frame is not None:
            found[f"judge_{name}"] = (results.judge_path(name), frame)
    ablation = results.ablation_results()
    if ablation is not None:
        found["ablation_results"] = (results.root / core_schema.ABLATION_STAGE / core_schema.ABLATION_FILES["results"],
                                     ablation)
    for study in results.studies:
        for name in study_schema.COLUMNS:
            frame = results.study_table(study, name)
            if frame is not None:
                found[f"human_{study}_{name}"] = (results.study_folder(study) / f"{name}.csv", frame)
    return found
