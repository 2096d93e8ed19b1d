"""`clvq-judge study results`: accuracy per condition x method, agreement, added value, progress, flags.

Accuracy of a (condition, method) cell = the share of its answers that name the label the model
predicted; a "can't tell" counts as not recovering the prediction (the share of those is reported next to
it, with the accuracy over decided answers). The 95% interval is a cluster bootstrap over items
(`core.stats.cluster_mean_ci`), so the several answers to one item move together. Agreement is
Krippendorff's alpha (nominal) on a [annotators x items] matrix of label ids where "can't tell" and
unanswered items are missing (NaN). Attention checks enter neither figure.

The concept's added value is accuracy(both) - accuracy(sentence): what a reader gains from the concept over
the sentence alone (the `sentence` control shows the same sentences without a concept). Its interval
resamples sentences, each with all its answers in both conditions (`core.stats.cluster_mean_difference_ci`).
Concept-only accuracy is read against chance (1 / labels) and the majority-label baseline (always naming
the most frequent prediction among the cell's items): `beats_chance` / `beats_majority` hold when the
interval's lower end is above them.

Human and simulated annotators (`clvq-judge study simulate`) are never pooled: every row says its kind. A
simulated row also gives its agreement with the humans (alpha over every (human, simulated) answer pair on
the same item: did the simulator answer as the person who saw the same screen did).

Not informative (`informative`): an annotator is flagged when they passed fewer than 75% of the attention
checks they answered, or, with at least 10 task answers, more than 80% of those name one label or sit at one
place of the offered order (a collapse on one option: the seeded label order makes both visible). A row of
the table is not informative when any annotator behind it is flagged; the flag is shown wherever the row is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clvq_judge.core.atomic import write_json, write_with
from clvq_judge.core.config import to_dict
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import NON_RESULT_FIELDS, Run, RunOptions
from clvq_judge.core.stages import record_key
from clvq_judge.core.stats import cluster_mean_ci, cluster_mean_difference_ci, krippendorff_alpha

from . import schema
from .conditions import cells
from .schema import HUMAN, NO_METHOD, SIMULATED
from .store import Store

log = logging.getLogger(__name__)

ATTENTION_MIN_PASS = 0.75
COLLAPSE_SHARE = 0.8
COLLAPSE_MIN_ANSWERS = 10
INFORMATIVE_RULE = (f"not informative: attention checks passed < {ATTENTION_MIN_PASS:.0%}, or (with >= "
                    f"{COLLAPSE_MIN_ANSWERS} task answers) > {COLLAPSE_SHARE:.0%} of them on one label or one option place")


@dataclass
class ResultsConfig(RunOptions):
    """Options of `clvq-judge study results`."""

    study: str | None = None
    """Study file (.sqlite); none = <runs-dir>/<run>/studies/<name>.sqlite."""
    name: str | None = None
    """Study name inside the run, when --study is not given."""
    out: str | None = None
    """Folder for answers.csv, conditions.csv, added_value.csv, annotators.csv and summary.json; none = only the
    run's copy."""
    n_boot: int = 1000
    """Bootstrap resamples for the intervals."""
    seed: int = 0
    """Seed of the bootstrap."""


@dataclass
class Results:
    answers: pd.DataFrame
    conditions: pd.DataFrame
    added_value: pd.DataFrame
    annotators: pd.DataFrame
    summary: dict

    def frames(self) -> dict[str, pd.DataFrame]:
        """The CSVs, by file name."""
        return {schema.ANSWERS_CSV: self.answers, schema.CONDITIONS_CSV: self.conditions,
                schema.ADDED_VALUE_CSV: self.added_value, schema.ANNOTATORS_CSV: self.annotators}


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
    """Mean of `correct` and its 95% cluster-bootstrap interval (clusters = items)."""
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = cluster_mean_ci(np.asarray(items), correct, n_boot, seed)
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


def informative(pass_rate: float | None, task_answers: int, top_label_share: float | None,
                top_position_share: float | None) -> tuple[bool, str]:
    """(informative, reason) of one annotator under the rule in the module docstring."""
    reasons = []
    if pass_rate is not None and np.isfinite(pass_rate) and pass_rate < ATTENTION_MIN_PASS:
        reasons.append(f"attention checks passed {pass_rate:.0%}")
    if task_answers >= COLLAPSE_MIN_ANSWERS:
        if top_label_share is not None and np.isfinite(top_label_share) and top_label_share > COLLAPSE_SHARE:
            reasons.append(f"{top_label_share:.0%} of answers on one label")
        if top_position_share is not None and np.isfinite(top_position_share) and top_position_share > COLLAPSE_SHARE:
            reasons.append(f"{top_position_share:.0%} of answers at one option place")
    return not reasons, "; ".join(reasons)


def added_value(both: pd.DataFrame, sentence: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, float, float]:
    """accuracy(both) - accuracy(sentence) and its 95% interval, resampling sentences (frames: sentence, correct)."""
    return cluster_mean_difference_ci(both["sentence"].to_numpy(), both["correct"].to_numpy(dtype=np.float64),
                                      sentence["sentence"].to_numpy(), sentence["correct"].to_numpy(dtype=np.float64),
                                      n_boot, seed)


# --- tables --------------------------------------------------------------------------------------------


def _position(row) -> float:
    if row["answer"] is None or not isinstance(row["answer"], str) or not row["_order"]:
        return float("nan")
    order = row["_order"]
    return float(order.index(row["answer"])) if row["answer"] in order else float("nan")


def answers_frame(tables: dict[str, list[tuple]]) -> pd.DataFrame:
    items = pd.DataFrame(tables["items"], columns=["item", "item_kind", "condition", "sentence", "method", "concept", "truth"])
    annotators = pd.DataFrame(tables["annotators"], columns=["annotator", "annotator_name", "annotator_kind"])
    answers = pd.DataFrame(tables["answers"],
                           columns=["annotator", "item", "answer", "confidence", "options", "seconds", "answered_at"])
    df = answers.merge(items, on="item", how="left").merge(annotators, on="annotator", how="left")
    df["answer"] = df["answer"].astype(object).where(df["answer"].notna(), None)
    df["cant_tell"] = df["answer"].isna()
    df["correct"] = (df["answer"] == df["truth"]) & ~df["cant_tell"]
    task = df["item_kind"] == "task"
    df.loc[task & df["method"].isna(), "method"] = NO_METHOD
    df["sentence"] = df["sentence"].astype("Int64")
    df["concept"] = df["concept"].astype("Int64")
    df["confidence"] = df["confidence"].astype("Int64")
    df["_order"] = [json.loads(o) if isinstance(o, str) else None for o in df["options"]]
    df["answer_position"] = pd.Series([_position(r) for _, r in df.iterrows()], index=df.index, dtype="float64").astype("Int64")
    df["options"] = [" | ".join(o) if o else None for o in df["_order"]]
    return df[schema.ANSWERS].reset_index(drop=True)


def compute(store: Store, n_boot: int = 1000, seed: int = 0) -> Results:
    return compute_from(store.tables(), store.meta(), n_boot=n_boot, seed=seed)


def _share_of_top(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.value_counts(normalize=True).iloc[0]) if len(values) else float("nan")


def annotators_frame(tables: dict, answers: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    assigned = pd.DataFrame(tables["assignments"], columns=["annotator", "item", "position"]).merge(
        items[["item", "kind"]], on="item")
    ann = pd.DataFrame(tables["annotators"], columns=["annotator", "name", "kind"])
    ann["assigned"] = ann["annotator"].map(assigned.groupby("annotator").size()).fillna(0).astype(int)
    ann["answered"] = ann["annotator"].map(answers.groupby("annotator").size()).fillna(0).astype(int)
    ann["progress"] = ann["answered"] / ann["assigned"].where(ann["assigned"] > 0)
    checks = answers[answers["item_kind"] == "attention"]
    ann["attention_assigned"] = ann["annotator"].map(
        assigned[assigned["kind"] == "attention"].groupby("annotator").size()).fillna(0).astype(int)
    ann["attention_answered"] = ann["annotator"].map(checks.groupby("annotator").size()).fillna(0).astype(int)
    ann["attention_passed"] = ann["annotator"].map(checks.groupby("annotator")["correct"].sum()).fillna(0).astype(int)
    ann["attention_pass_rate"] = ann["attention_passed"] / ann["attention_answered"].where(ann["attention_answered"] > 0)
    task = answers[answers["item_kind"] == "task"]
    grouped = task.groupby("annotator")
    ann["accuracy"] = ann["annotator"].map(grouped["correct"].mean())
    ann["median_seconds"] = ann["annotator"].map(answers.groupby("annotator")["seconds"].median())
    ann["top_label_share"] = ann["annotator"].map(grouped["answer"].agg(_share_of_top))
    ann["top_position_share"] = ann["annotator"].map(grouped["answer_position"].agg(_share_of_top))
    n_task = ann["annotator"].map(grouped.size()).fillna(0).astype(int)
    flags = [informative(r.attention_pass_rate, n, r.top_label_share, r.top_position_share)
             for r, n in zip(ann.itertuples(), n_task)]
    ann["informative"] = [f[0] for f in flags]
    ann["flag"] = [f[1] for f in flags]
    ann["kind"] = ann["kind"].where(ann["kind"] == SIMULATED, HUMAN)
    return ann[schema.ANNOTATORS]


def compute_from(tables: dict[str, list[tuple]], meta: dict, n_boot: int = 1000, seed: int = 0) -> Results:
    labels = list(meta["labels"])
    label_id = {name: i for i, name in enumerate(labels)}
    chance = 1.0 / len(labels) if labels else float("nan")
    answers = answers_frame(tables)
    items = pd.DataFrame(tables["items"], columns=["item", "kind", "condition", "sentence", "method", "concept", "truth"])
    items["method"] = items["method"].where(items["method"].notna() | (items["kind"] != "task"), NO_METHOD)
    task_items = items[items["kind"] == "task"]
    annotators = annotators_frame(tables, answers, items)
    kind_of = dict(zip(annotators["annotator"], annotators["kind"]))
    flagged = set(annotators.loc[~annotators["informative"], "annotator"])
    answers_kind = answers["annotator"].map(kind_of)
    task = answers[answers["item_kind"] == "task"]
    task_kind = answers_kind.loc[task.index]
    design = cells(list(meta.get("conditions") or ["both"]), list(meta["methods"]))

    def alpha_of(frame: pd.DataFrame, raters, unit_ids) -> float:
        if frame.empty:
            return float("nan")
        values = frame["answer"].map(label_id).astype("float64").to_numpy()
        matrix = rating_matrix(frame["annotator"].to_numpy(), frame["item"].to_numpy(), values, raters, unit_ids)
        # the package divides 0 by 0 for some degenerate matrices; that NaN is "n/a", not a problem
        with np.errstate(invalid="ignore", divide="ignore"):
            return krippendorff_alpha(matrix, "nominal")

    rows, added = [], []
    kinds = [k for k in (HUMAN, SIMULATED) if (annotators["kind"] == k).any()]
    for kind in kinds:
        raters = annotators.loc[annotators["kind"] == kind, "annotator"].tolist()
        mine = task[task_kind == kind]
        humans = task[task_kind == HUMAN]
        for k, (condition, method) in enumerate(design):
            method = method or NO_METHOD
            in_cell = (mine["condition"] == condition) & (mine["method"] == method)
            sub = mine[in_cell]
            cell_items = task_items.loc[(task_items["condition"] == condition) & (task_items["method"] == method), "item"]
            acc, low, high = accuracy_with_ci(sub["correct"].to_numpy(), sub["item"].to_numpy(), n_boot, seed + k)
            decided = sub[~sub["cant_tell"]]
            majority = majority_baseline(sub["truth"])
            who = set(sub["annotator"])
            pairs, _, h_alpha = (kind_agreement(humans[(humans["condition"] == condition) & (humans["method"] == method)],
                                                sub, label_id) if kind == SIMULATED else (None, None, float("nan")))
            rows.append({
                "kind": kind, "condition": condition, "method": method,
                "items": len(cell_items), "answers": len(sub), "annotators": len(who),
                "accuracy": acc, "ci_low": low, "ci_high": high,
                "cant_tell_rate": float(sub["cant_tell"].mean()) if len(sub) else float("nan"),
                "accuracy_decided": float(decided["correct"].mean()) if len(decided) else float("nan"),
                "alpha": alpha_of(sub, raters, cell_items.tolist()),
                "mean_confidence": float(sub["confidence"].astype("float64").mean()) if len(sub) else float("nan"),
                "chance": chance, "majority_baseline": majority,
                "beats_chance": bool(low > chance) if np.isfinite(low) else None,
                "beats_majority": bool(low > majority) if np.isfinite(low) and np.isfinite(majority) else None,
                "flagged_annotators": len(who & flagged), "informative": not (who & flagged),
                "human_pairs": pairs, "human_alpha": h_alpha,
            })
        if {"both", "sentence"} <= {c for c, _ in design}:
            control = mine[mine["condition"] == "sentence"]
            for k, method in enumerate(meta["methods"]):
                both = mine[(mine["condition"] == "both") & (mine["method"] == method)]
                value, low, high = added_value(both, control, n_boot, seed + 1000 + k)
                added.append({"kind": kind, "method": method,
                              "sentences": int(len(set(both["sentence"].dropna()) | set(control["sentence"].dropna()))),
                              "shared_sentences": int(len(set(both["sentence"].dropna()) & set(control["sentence"].dropna()))),
                              "accuracy_both": float(both["correct"].mean()) if len(both) else float("nan"),
                              "accuracy_sentence": float(control["correct"].mean()) if len(control) else float("nan"),
                              "added_value": value, "ci_low": low, "ci_high": high})
    conditions = pd.DataFrame(rows, columns=schema.CONDITIONS)
    added_frame = pd.DataFrame(added, columns=schema.ADDED_VALUE)

    is_human = annotators["kind"] == HUMAN
    human_task = task[task_kind == HUMAN]
    human_checks = answers[(answers["item_kind"] == "attention") & (answers_kind == HUMAN)]
    summary = {
        "study": meta.get("name"), "run": meta.get("run"), "labels": labels, "methods": list(meta["methods"]),
        "conditions": list(meta.get("conditions") or ["both"]),
        # counts of the human annotators; the simulated ones are counted under "simulated"
        "annotators": int(is_human.sum()), "answers": int((answers_kind == HUMAN).sum()), "task_answers": len(human_task),
        "assigned": int(annotators.loc[is_human, "assigned"].sum()),
        "alpha_overall": alpha_of(human_task, annotators.loc[is_human, "annotator"].tolist(), task_items["item"].tolist()),
        "attention_pass_rate": float(human_checks["correct"].mean()) if len(human_checks) else None,
        "chance": chance, "informative_rule": INFORMATIVE_RULE, "n_boot": n_boot, "seed": seed,
        "simulated": None,
    }
    if (~is_human).any():
        sim_task = task[task_kind == SIMULATED]
        sim_checks = answers[(answers["item_kind"] == "attention") & (answers_kind == SIMULATED)]
        pairs, rate, alpha = kind_agreement(human_task, sim_task, label_id)
        summary["simulated"] = _finite({
            "annotators": int((~is_human).sum()), "answers": int((answers_kind == SIMULATED).sum()),
            "assigned": int(annotators.loc[~is_human, "assigned"].sum()), "task_answers": len(sim_task),
            "attention_pass_rate": float(sim_checks["correct"].mean()) if len(sim_checks) else None,
            "not_informative": annotators.loc[~is_human & ~annotators["informative"], "name"].tolist(),
            "human_pairs": pairs, "human_agreement": rate, "human_alpha": alpha,
        })
    summary = _finite(summary)
    return Results(answers=answers, conditions=conditions, added_value=added_frame, annotators=annotators, summary=summary)


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


def study_in_run(path: Path) -> tuple[Run, str] | None:
    """The run and study name when the study file is `runs/<run>/studies/<name>.sqlite`, else None (a study
    copied elsewhere stands alone and keeps no stage records)."""
    path = Path(path).resolve()
    if path.parent.name == "studies" and (path.parent.parent / "run.json").exists():
        return Run(path.parent.parent), path.stem
    return None


def run_results_dir(path: Path) -> Path | None:
    """`runs/<run>/studies/<name>/results/` when the study file sits inside a run, else None."""
    found = study_in_run(path)
    return None if found is None else found[0].stage_dir(results_record(found[1]))


def study_record(name: str) -> str:
    return record_key("study create", name=name)


def results_record(name: str) -> str:
    return record_key("study results", name=name)


def simulate_record(name: str) -> str:
    return record_key("study simulate", name=name)


RESULTS_EXCLUDE = (*NON_RESULT_FIELDS, "study", "name", "out")


def write_results(results: Results, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in results.frames().items():
        write_with(folder / name, lambda tmp, f=frame: f.to_csv(tmp, index=False), suffix=".csv")
    write_json(folder / schema.SUMMARY_JSON, results.summary)


def _fmt(x) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:5.3f}"


def table_text(results: Results) -> str:
    """The per-condition table (rows with answers only), the added value, the flags, in one block."""
    s = results.summary
    shown = results.conditions[results.conditions["answers"] > 0]
    lines = []
    if shown.empty:
        lines.append("no answers yet")
    else:
        lines.append(f"{'who':<10}{'condition':<10}{'method':<9}{'answers':>7}  accuracy  95% CI          "
                     f"can't tell  alpha  chance  majority")
        for r in shown.itertuples():
            flag = "" if r.informative else f"  NOT INFORMATIVE ({r.flagged_annotators} of {r.annotators} annotators)"
            beats = "  > chance" if r.beats_chance else ""
            lines.append(f"{r.kind:<10}{r.condition:<10}{r.method:<9}{r.answers:>7}  {_fmt(r.accuracy)}     "
                         f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]  {_fmt(r.cant_tell_rate)}    {_fmt(r.alpha)}  "
                         f"{_fmt(r.chance)}  {_fmt(r.majority_baseline)}{beats}{flag}")
    for r in results.added_value[np.isfinite(results.added_value["added_value"].astype(float))].itertuples():
        lines.append(f"added value of the concept ({r.kind}, {r.method}): accuracy(both) {_fmt(r.accuracy_both)} - "
                     f"accuracy(sentence) {_fmt(r.accuracy_sentence)} = {r.added_value:+.3f} "
                     f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] over {r.sentences} sentences ({r.shared_sentences} seen in both)")
    ann = results.annotators
    for r in ann[~ann["informative"]].itertuples():
        lines.append(f"not informative: {r.name} ({r.kind}): {r.flag}")
    if s["answers"] == 0:
        lines.append(f"no person has answered yet ({s['annotators']} invite links)")
    else:
        lines.append(f"humans: {s['answers']} of {s['assigned']} answers, alpha overall {_fmt(s['alpha_overall'])}, "
                     f"attention checks passed {_fmt(s['attention_pass_rate'])}")
    sim = s.get("simulated")
    if sim:
        lines.append(f"simulated: {sim['annotators']} annotators, {sim['answers']} answers, attention checks passed "
                     f"{_fmt(sim['attention_pass_rate'])}; with the humans: alpha {_fmt(sim['human_alpha'])} over "
                     f"{sim['human_pairs']} pairs")
    return "\n".join(lines)


def study_results(config: ResultsConfig) -> str:
    """Compute and write the results. Inside a run they are a stage like any other: redone when answers arrived
    (or were deleted) since, and refused when the study was built from concepts that were redone after it."""
    path = resolve_study(config.study, config.runs_dir, config.run, config.name)
    store = Store.open(path)
    found = study_in_run(path)
    hashed = {**to_dict(config), "answers": store.answers_fingerprint()}
    record = None
    if found is not None:
        run, name = found
        record = results_record(name)
        inputs = tuple(s for s in (study_record(name), simulate_record(name)) if run.is_done(s))
        if not run.begin(record, hashed, config.force, RESULTS_EXCLUDE, inputs, on_change="redo"):
            text = run.done_record(record)["table"]
            if config.out:
                write_results(compute(store, n_boot=config.n_boot, seed=config.seed), Path(config.out))
            return text + f"\nno answer arrived since; CSVs in {run.stage_dir(record)}" + (
                f" and {config.out}" if config.out else "")
    results = compute(store, n_boot=config.n_boot, seed=config.seed)
    written = []
    for folder in (Path(config.out) if config.out else None, run_results_dir(path)):
        if folder is not None and folder.resolve() not in {w.resolve() for w in written}:
            write_results(results, folder)
            written.append(folder)
    text = table_text(results)
    if record is not None:
        run.finish(record, hashed, RESULTS_EXCLUDE, table=text,
                   outputs=tuple(run.stage_dir(record) / n for n in (*results.frames(), schema.SUMMARY_JSON)))
    where = ", ".join(str(w) for w in written) or "nowhere (pass --out DIR)"
    return text + f"\nCSVs written to {where}"
