"""`clvq-judge study results`: accuracy per method, agreement, progress and attention checks.

Accuracy of a method = the share of its answers that name the label the model predicted; a "can't tell"
counts as not recovering the prediction (the share of those is reported next to it, with the accuracy
over decided answers). The 95% interval is a cluster bootstrap over items, so the several answers to one
item move together. Agreement is Krippendorff's alpha (nominal) on a [annotators x items] matrix of label
ids where "can't tell" and unanswered items are missing (NaN). Attention checks enter neither figure.

Simulated annotators (`clvq-judge study simulate`) never enter the human figures: their accuracy per
method stands beside the humans' (`sim_*` columns), and their agreement with the humans is Krippendorff's
alpha over every (human answer, simulated answer) pair on the same task item: each pair is one unit rated
by two raters, the human and the simulator, so alpha asks whether the simulator answers as the person who
saw the same screen did, and the humans' agreement among themselves does not enter it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clvq_judge.core.atomic import write_json, write_with
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import RunOptions
from clvq_judge.core.stats import cluster_resamples, krippendorff_alpha, percentile_interval

from .store import Store

log = logging.getLogger(__name__)

SIMULATED = "simulated"
SIM_COLUMNS = ["sim_answers", "sim_accuracy", "sim_ci_low", "sim_ci_high", "sim_mean_confidence", "sim_human_pairs",
               "sim_human_agreement", "sim_human_alpha"]

ANSWER_COLUMNS = ["annotator", "annotator_name", "annotator_kind", "item", "item_kind", "sentence", "method", "concept",
                  "truth", "answer", "cant_tell", "correct", "confidence", "seconds", "answered_at"]


@dataclass
class ResultsConfig(RunOptions):
    """Options of `clvq-judge study results`."""

    study: str | None = None
    """Study file (.sqlite); none = <runs-dir>/<run>/studies/<name>.sqlite."""
    name: str | None = None
    """Study name inside the run, when --study is not given."""
    out: str | None = None
    """Folder for answers.csv, methods.csv, annotators.csv and summary.json; none = only the run's copy."""
    n_boot: int = 1000
    """Bootstrap resamples for the accuracy intervals."""
    seed: int = 0
    """Seed of the bootstrap."""


@dataclass
class Results:
    answers: pd.DataFrame
    methods: pd.DataFrame
    annotators: pd.DataFrame
    summary: dict


# --- pure statistics ------------------------------------------------------------------------------------


def rating_matrix(raters: np.ndarray, units: np.ndarray, values: np.ndarray, rater_ids, unit_ids) -> np.ndarray:
    """[len(rater_ids), len(unit_ids)] matrix with `values[k]` at (raters[k], units[k]); NaN elsewhere."""
    rater_index = {r: i for i, r in enumerate(rater_ids)}
    unit_index = {u: j for j, u in enumerate(unit_ids)}
    matrix = np.full((len(rater_ids), len(unit_ids)), np.nan)
    rows = np.fromiter((rater_index[r] for r in raters), dtype=np.int64, count=len(raters))
    cols = np.fromiter((unit_index[u] for u in units), dtype=np.int64, count=len(units))
    matrix[rows, cols] = np.asarray(values, dtype=np.float64)
    return matrix


def accuracy_with_ci(correct: np.ndarray, items: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of `correct` and its 95% cluster-bootstrap interval (clusters = items).

    The same draws and numbers as `core.stats.bootstrap_statistic` with the mean as statistic (a test
    checks it): the mean of the rows of resampled items is the ratio of their summed correct answers to
    their summed answer counts, so each replicate costs one gather over items instead of a concatenation
    of rows, which keeps 10,000 answers well under a second.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) == 0:
        return float("nan"), float("nan"), float("nan")
    _, inverse = np.unique(np.asarray(items), return_inverse=True)
    sums = np.bincount(inverse, weights=correct)
    counts = np.bincount(inverse).astype(np.float64)
    replicates = np.array([sums[draw].sum() / counts[draw].sum() for draw in cluster_resamples(len(sums), n_boot, seed)])
    low, high = percentile_interval(replicates)
    return float(correct.mean()), low, high


def majority_baseline(truth: pd.Series) -> float:
    """Accuracy of always answering the most frequent prediction among these answers (a floor to beat)."""
    return float(truth.value_counts(normalize=True).iloc[0]) if len(truth) else float("nan")


def kind_agreement(human: pd.DataFrame, simulated: pd.DataFrame, label_id: dict[str, int]) -> tuple[int, float, float]:
    """(pairs, share of decided pairs that agree, alpha) over every (human, simulated) answer pair on one item.

    Frames hold `item` and `answer` (a label name, or None for "can't tell", which is missing for alpha).
    """
    pairs = human[["item", "answer"]].merge(simulated[["item", "answer"]], on="item", suffixes=("_h", "_s"))
    if pairs.empty:
        return 0, float("nan"), float("nan")
    h = pairs["answer_h"].map(label_id).astype("float64").to_numpy()
    s = pairs["answer_s"].map(label_id).astype("float64").to_numpy()
    decided = np.isfinite(h) & np.isfinite(s)
    rate = float((h[decided] == s[decided]).mean()) if decided.any() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = krippendorff_alpha(np.vstack([h, s]), "nominal")
    return len(pairs), rate, alpha


# --- tables --------------------------------------------------------------------------------------------


def answers_frame(tables: dict[str, list[tuple]]) -> pd.DataFrame:
    items = pd.DataFrame(tables["items"], columns=["item", "item_kind", "sentence", "method", "concept", "truth"])
    annotators = pd.DataFrame(tables["annotators"], columns=["annotator", "annotator_name", "annotator_kind"])
    answers = pd.DataFrame(tables["answers"], columns=["annotator", "item", "answer", "confidence", "seconds", "answered_at"])
    df = answers.merge(items, on="item", how="left").merge(annotators, on="annotator", how="left")
    df["cant_tell"] = df["answer"].isna()
    df["correct"] = (df["answer"] == df["truth"]) & ~df["cant_tell"]
    df["sentence"] = df["sentence"].astype("Int64")
    df["concept"] = df["concept"].astype("Int64")
    return df[ANSWER_COLUMNS]


def compute(store: Store, n_boot: int = 1000, seed: int = 0) -> Results:
    meta = store.meta()
    return compute_from(store.tables(), meta, n_boot=n_boot, seed=seed)


def compute_from(tables: dict[str, list[tuple]], meta: dict, n_boot: int = 1000, seed: int = 0) -> Results:
    labels = list(meta["labels"])
    label_id = {name: i for i, name in enumerate(labels)}
    answers = answers_frame(tables)
    simulated = answers["annotator_kind"] == SIMULATED
    # The human figures are the humans' alone; simulated answers get their own columns below.
    task = answers[(answers["item_kind"] == "task") & ~simulated]
    sim_task = answers[(answers["item_kind"] == "task") & simulated]
    items = pd.DataFrame(tables["items"], columns=["item", "kind", "sentence", "method", "concept", "truth"])
    task_items = items[items["kind"] == "task"]
    annotator_ids = [a[0] for a in tables["annotators"] if a[2] != SIMULATED]
    values = task["answer"].map(label_id).astype("float64").to_numpy()

    def alpha_of(frame: pd.DataFrame, unit_ids) -> float:
        if frame.empty:
            return float("nan")
        matrix = rating_matrix(frame["annotator"].to_numpy(), frame["item"].to_numpy(),
                               values[task.index.get_indexer(frame.index)], annotator_ids, unit_ids)
        # the package divides 0 by 0 for some degenerate matrices; that NaN is "n/a", not a problem
        with np.errstate(invalid="ignore", divide="ignore"):
            return krippendorff_alpha(matrix, "nominal")

    rows = []
    for k, method in enumerate(meta["methods"]):
        sub = task[task["method"] == method]
        acc, low, high = accuracy_with_ci(sub["correct"].to_numpy(), sub["item"].to_numpy(), n_boot, seed + k)
        decided = sub[~sub["cant_tell"]]
        rows.append({
            "method": method,
            "items": int((task_items["method"] == method).sum()),
            "answers": len(sub),
            "accuracy": acc, "ci_low": low, "ci_high": high,
            "cant_tell_rate": float(sub["cant_tell"].mean()) if len(sub) else float("nan"),
            "accuracy_decided": float(decided["correct"].mean()) if len(decided) else float("nan"),
            "majority_baseline": majority_baseline(sub["truth"]),
            "alpha": alpha_of(sub, task_items.loc[task_items["method"] == method, "item"].tolist()),
            "mean_confidence": float(sub["confidence"].mean()) if len(sub) else float("nan"),
            **simulated_columns(sub, sim_task[sim_task["method"] == method], label_id, n_boot, seed + k),
        })
    methods = pd.DataFrame(rows, columns=["method", "items", "answers", "accuracy", "ci_low", "ci_high", "cant_tell_rate",
                                          "accuracy_decided", "majority_baseline", "alpha", "mean_confidence",
                                          *SIM_COLUMNS])

    assigned = pd.DataFrame(tables["assignments"], columns=["annotator", "item", "position"]).merge(
        items[["item", "kind"]], on="item")
    ann = pd.DataFrame(tables["annotators"], columns=["annotator", "name", "kind"])
    ann["assigned"] = ann["annotator"].map(assigned.groupby("annotator").size()).fillna(0).astype(int)
    ann["answered"] = ann["annotator"].map(answers.groupby("annotator").size()).fillna(0).astype(int)
    ann["progress"] = ann["answered"] / ann["assigned"].where(ann["assigned"] > 0)
    all_checks = answers[answers["item_kind"] == "attention"]
    checks = all_checks[~simulated.loc[all_checks.index]]
    sim_checks = all_checks[simulated.loc[all_checks.index]]
    ann["attention_assigned"] = ann["annotator"].map(assigned[assigned["kind"] == "attention"].groupby("annotator").size()).fillna(0).astype(int)
    ann["attention_answered"] = ann["annotator"].map(all_checks.groupby("annotator").size()).fillna(0).astype(int)
    ann["attention_passed"] = ann["annotator"].map(all_checks.groupby("annotator")["correct"].sum()).fillna(0).astype(int)
    ann["attention_pass_rate"] = ann["attention_passed"] / ann["attention_answered"].where(ann["attention_answered"] > 0)
    all_task = answers[answers["item_kind"] == "task"]
    ann["accuracy"] = ann["annotator"].map(all_task.groupby("annotator")["correct"].mean())
    ann["median_seconds"] = ann["annotator"].map(answers.groupby("annotator")["seconds"].median())

    is_human = ann["kind"] != SIMULATED
    summary = {
        "study": meta.get("name"), "run": meta.get("run"), "labels": labels, "methods": list(meta["methods"]),
        # counts of the human annotators; the simulated ones are counted under "simulated"
        "annotators": int(is_human.sum()), "answers": int((~simulated).sum()), "task_answers": len(task),
        "assigned": int(ann.loc[is_human, "assigned"].sum()),
        "alpha_overall": alpha_of(task, task_items["item"].tolist()),
        "attention_pass_rate": float(checks["correct"].mean()) if len(checks) else None,
        "chance": 1.0 / len(labels) if labels else None,
        "accuracy": {r["method"]: r["accuracy"] for r in rows},
        "n_boot": n_boot, "seed": seed,
        "simulated": None,
    }
    if (~is_human).any():
        pairs, rate, alpha = kind_agreement(task, sim_task, label_id)
        summary["simulated"] = _finite({
            "annotators": int((~is_human).sum()), "answers": int(simulated.sum()),
            "assigned": int(ann.loc[~is_human, "assigned"].sum()),
            "task_answers": len(sim_task), "accuracy": {r["method"]: r["sim_accuracy"] for r in rows},
            "attention_pass_rate": float(sim_checks["correct"].mean()) if len(sim_checks) else None,
            "human_pairs": pairs, "human_agreement": rate, "human_alpha": alpha,
        })
    summary = _finite(summary)
    return Results(answers=answers, methods=methods, annotators=ann, summary=summary)


def simulated_columns(human: pd.DataFrame, sim: pd.DataFrame, label_id: dict[str, int], n_boot: int, seed: int) -> dict:
    """The `sim_*` columns of one method: the simulated annotators' accuracy, and their agreement with the humans."""
    acc, low, high = accuracy_with_ci(sim["correct"].to_numpy(), sim["item"].to_numpy(), n_boot, seed)
    pairs, rate, alpha = kind_agreement(human, sim, label_id)
    return {"sim_answers": len(sim), "sim_accuracy": acc, "sim_ci_low": low, "sim_ci_high": high,
            "sim_mean_confidence": float(sim["confidence"].mean()) if len(sim) else float("nan"),
            "sim_human_pairs": pairs, "sim_human_agreement": rate, "sim_human_alpha": alpha}


def _finite(d: dict) -> dict:
    """NaN becomes None, so summary.json holds null rather than an invalid NaN token."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else
                _finite(v) if isinstance(v, dict) else v) for k, v in d.items()}


# --- the stage -----------------------------------------------------------------------------------------


def resolve_study(study: str | None, runs_dir: str, run: str, name: str | None) -> Path:
    if study:
        return Path(study)
    if not name:
        raise UserError("say which study: pass --study PATH, or --run RUN with --name NAME")
    return Path(runs_dir) / run / "studies" / f"{name}.sqlite"


def run_results_dir(path: Path) -> Path | None:
    """`runs/<run>/studies/<name>/results/` when the study file sits inside a run, else None."""
    path = path.resolve()
    if path.parent.name == "studies" and (path.parent.parent / "run.json").exists():
        return path.parent / path.stem / "results"
    return None


def write_results(results: Results, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("answers", results.answers), ("methods", results.methods), ("annotators", results.annotators)):
        write_with(folder / f"{name}.csv", lambda tmp, f=frame: f.to_csv(tmp, index=False), suffix=".csv")
    write_json(folder / "summary.json", results.summary)


def table_text(results: Results) -> str:
    def fmt(x: float) -> str:
        return "  n/a" if x is None or not np.isfinite(x) else f"{x:5.3f}"

    lines = [f"{'method':<14}{'answers':>8}  accuracy  95% CI           can't tell  alpha"]
    for r in results.methods.itertuples():
        lines.append(f"{r.method:<14}{r.answers:>8}  {fmt(r.accuracy)}     [{fmt(r.ci_low)}, {fmt(r.ci_high)}]   "
                     f"{fmt(r.cant_tell_rate)}       {fmt(r.alpha)}")
    s = results.summary
    pass_rate = s["attention_pass_rate"]
    lines.append(f"alpha overall {fmt(s['alpha_overall'])}; attention checks passed {fmt(pass_rate)}; "
                 f"answers {s['answers']} of {s['assigned']} assigned")
    sim = s.get("simulated")
    if sim:
        lines.append("")
        lines.append(f"{'method':<14}{'human':>8}{'simulated':>11}  95% CI (simulated)  pairs  agree  alpha (sim vs human)")
        for r in results.methods.itertuples():
            lines.append(f"{r.method:<14}{fmt(r.accuracy):>8}{fmt(r.sim_accuracy):>11}  [{fmt(r.sim_ci_low)}, "
                         f"{fmt(r.sim_ci_high)}]  {r.sim_human_pairs:>5}  {fmt(r.sim_human_agreement)}  "
                         f"{fmt(r.sim_human_alpha)}")
        lines.append(f"simulated: {sim['annotators']} annotators, {sim['answers']} answers; attention checks passed "
                     f"{fmt(sim['attention_pass_rate'])} (humans {fmt(pass_rate)}); alpha sim vs human "
                     f"{fmt(sim['human_alpha'])} over {sim['human_pairs']} pairs, agreement {fmt(sim['human_agreement'])}")
    return "\n".join(lines)


def study_results(config: ResultsConfig) -> str:
    path = resolve_study(config.study, config.runs_dir, config.run, config.name)
    store = Store.open(path)
    results = compute(store, n_boot=config.n_boot, seed=config.seed)
    written = []
    for folder in (Path(config.out) if config.out else None, run_results_dir(path)):
        if folder is not None and folder.resolve() not in {w.resolve() for w in written}:
            write_results(results, folder)
            written.append(folder)
    where = ", ".join(str(w) for w in written) or "nowhere (pass --out DIR)"
    return table_text(results) + f"\nCSVs written to {where}"

