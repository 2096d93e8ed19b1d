"""A tiny run with results on every axis, for the report and explorer tests (test-only helper, not installed).

From the study fixtures' tiny run (three methods' concepts): a hand-written ablation table (and per-sentence
table), judge outputs written by the judge's own summary code from chosen outcomes, a description, and a real
study answered through the store and summarised by `study results`. One sentence and one description hold
hostile markup, which every page must show as text.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

HOSTILE = "<img src=x onerror=alert(1)><b>bold</b>"
HOSTILE_DESCRIPTION = "<script>alert('d')</script> names of firms"
METHODS = ("clvq", "kmeans", "sae")
_built: dict[str, Path] = {}


def build_results_run(study_runs: Path, target: Path) -> Path:
    """The runs folder holding run "tiny" with ablation, judge and study results (built once per session)."""
    if "runs" in _built:
        return _built["runs"]
    from clvq_judge.core.runs import Run
    from clvq_judge.core.units import sample_units
    from clvq_judge.human_eval.builder import CreateConfig, create_study
    from clvq_judge.human_eval.results import ResultsConfig, study_results
    from clvq_judge.human_eval.store import Store
    from clvq_judge.judge import rank, schema, stats
    from clvq_judge.judge.protocols import comparison

    runs = target
    shutil.copytree(study_runs / "tiny", runs / "tiny", ignore=shutil.ignore_patterns("studies", "report", "judge"))
    run = Run.open(runs, "tiny")
    _ablation(run.root / "ablation")

    units = sample_units(run, METHODS, 6, seed=0)
    judge = run.root / "judge"
    (judge / "descriptions").mkdir(parents=True)
    lines = []
    for i, u in enumerate(units):
        data = {**u.to_dict(), "control": {m: (c + 1) % 16 for m, c in u.concepts.items()}}
        if i == 0:  # hostile markup in front of the sentence; the span moves with it
            data["text"] = f"{HOSTILE} {u.text}"
            shift = len(HOSTILE) + 1
            data["span"] = [u.span[0] + shift, u.span[1] + shift] if u.span[1] > u.span[0] else list(u.span)
        lines.append(json.dumps(data))
    (judge / "units.jsonl").write_text("\n".join(lines) + "\n")
    first = units[0]
    (judge / "descriptions" / "clvq.jsonl").write_text(json.dumps({
        "concept": first.concepts["clvq"], "description": HOSTILE_DESCRIPTION, "raw": HOSTILE_DESCRIPTION,
        "judge": "test", "model": "", "prompt": "explainer.v1.j2", "prompt_sha": "x",
        "concepts": str(run.done_hash("concepts/clvq"))}) + "\n")

    # Chosen outcomes: clvq wins 5 of 6 sentences against each other method, kmeans and sae tie.
    comparisons, outcomes, known = [], [], []
    for s, u in enumerate(units):
        for a, b in itertools.combinations(METHODS, 2):
            score = (1.0 if s < 5 else 0.0) if a == "clvq" else 0.5
            outcomes.append({"judge": "embedded", "sentence": u.sentence, "method_a": a, "method_b": b, "score": score,
                             "inconsistent": score == 0.5, "soft": np.nan})
            for order, (first_m, second_m) in enumerate(((a, b), (b, a))):
                pick = a if score == 1.0 else b if score == 0.0 else (first_m if order == 0 else second_m)
                label = "A" if pick == first_m else "B"
                comparisons.append({
                    "judge": "embedded", "kind": "pairwise", "sentence": u.sentence, "word": u.word,
                    "prediction": u.prediction_label, "order": order, "labels": "AB",
                    "shown": f"A={first_m};B={second_m}",
                    "concepts": f"A={u.concepts[first_m]};B={u.concepts[second_m]}", "true_label": "",
                    "raw_answer": f"{label} {HOSTILE}", "reask_answer": "", "verdict_label": label, "verdict": pick,
                    "parse_failed": False, "soft": "", "prompt": "pairwise.v1.j2", "prompt_sha": "x"})
        for m in METHODS:
            known.append({"judge": "embedded", "sentence": u.sentence, "method_a": m, "method_b": comparison.RANDOM,
                          "score": 1.0, "inconsistent": False, "soft": np.nan})
    outcomes_df = pd.DataFrame(outcomes, columns=stats.OUTCOME_COLUMNS)
    known_df = pd.DataFrame(known, columns=stats.OUTCOME_COLUMNS)
    frames = comparison.summarise({"outcomes": outcomes_df, "known": known_df,
                                   "rankings": pd.DataFrame(columns=["judge", "sentence", "ranking"]),
                                   "positions": pd.DataFrame(columns=["judge", "sentence", "kind", "first_logodds"])},
                                  list(METHODS), False, 200, 0)
    rank.write_results(judge, {"comparisons": pd.DataFrame(comparisons, columns=schema.COMPARISONS), **frames})

    create_study(CreateConfig(run="tiny", runs_dir=str(runs), name="s", method=METHODS, items=4, overlap=1,
                              annotators=3, attention_checks=1))
    store = Store.open(run.root / "studies" / "s.sqlite")
    labels = store.labels()
    for annotator in store.annotators():
        for n, (item, display) in enumerate(store.pending_items(annotator.id)):
            answer = display["instruction"] or labels[n % len(labels)]
            store.record_answer(annotator.id, item, answer, 3, seconds=1.0)
    study_results(ResultsConfig(run="tiny", runs_dir=str(runs), name="s", n_boot=200))
    _built["runs"] = runs
    return runs


def _ablation(folder: Path) -> None:
    folder.mkdir()
    rows = [("clvq", c, a) for c, a in [("original", 0.9), ("concept", 0.45), ("random", 0.88), ("random_energy", 0.85),
                                         ("other_concept", 0.8)]]
    pd.DataFrame([{"method": m, "k": 1, "label": m, "protocol": "model", "condition": c, "accuracy": a, "std": 0.01,
                   "n": 40, "relative_drop": (0.9 - a) / 0.9, "flip_rate": 0.1, "ci_low": a - 0.05, "ci_high": a + 0.05,
                   "energy_share": 0.1}
                  for m, c, a in rows]).to_csv(folder / "results.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"methods": {"clvq": {"model": {"drop_vs_energy_control": {
        "value": 0.4, "ci_low": 0.3, "ci_high": 0.5}}}}}))
