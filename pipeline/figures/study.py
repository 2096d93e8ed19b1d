"""Human evaluation: per study, condition and method, how often annotators recover the model's prediction, with
CIs, the simulated annotators beside the people, and what the concept adds to the sentence."""

from __future__ import annotations

import pandas as pd

from ..collect import Results
from .base import Block, Context, bar_chart, esc, fmt, with_ci

PAPER = "annotators recover the prediction 78% of the time with CLVQ-VAE concepts vs 54% with clustering"


def summary_table(conditions: pd.DataFrame) -> pd.DataFrame:
    """One row per annotator kind x condition x method, as `study results` wrote it."""
    rows = []
    for r in conditions.to_dict("records"):
        rows.append({
            "who": r["kind"], "condition": r["condition"], "method": r["method"], "answers": r["answers"],
            "accuracy": with_ci(r["accuracy"], r["ci_low"], r["ci_high"]), "can't tell": fmt(r["cant_tell_rate"]),
            "alpha": fmt(r["alpha"]), "chance": fmt(r["chance"]), "majority baseline": fmt(r["majority_baseline"]),
            "informative": "yes" if r["informative"] in (True, 1, "True") else "NOT INFORMATIVE",
        })
    return pd.DataFrame(rows)


def chart_data(conditions: pd.DataFrame) -> pd.DataFrame:
    answered = conditions[conditions["answers"] > 0]
    return pd.DataFrame({"group": answered["condition"] + " / " + answered["method"].astype(str),
                         "series": answered["kind"], "value": answered["accuracy"], "low": answered["ci_low"],
                         "high": answered["ci_high"]}).reset_index(drop=True)


def added_value_html(added: pd.DataFrame | None) -> str:
    if added is None or added.empty:
        return ""
    items = [f"<li>{esc(r['kind'])}, {esc(r['method'])}: accuracy(both) - accuracy(sentence) = "
             f"{esc(with_ci(r['added_value'], r['ci_low'], r['ci_high']))} over {esc(r['sentences'])} sentences</li>"
             for r in added.to_dict("records")]
    return "<p>What the concept adds to the sentence:</p><ul>" + "".join(items) + "</ul>"


def lead(summary: dict) -> str:
    sim = summary.get("simulated") or {}
    people = (f"{summary.get('annotators', 0)} annotators gave {summary.get('answers', 0)} answers "
              f"(alpha {fmt(summary.get('alpha_overall'))}, attention checks passed {fmt(summary.get('attention_pass_rate'))})"
              if summary.get("answers") else "no person has answered yet")
    text = f"{people}; chance {fmt(summary.get('chance'))}"
    if sim:
        text += (f"; {sim.get('annotators')} simulated annotators gave {sim.get('answers')} answers (kind "
                 f"'simulated', never counted as people)")
    return f"<p>{esc(text)}.</p>"


def study_block(r: Results, study: str) -> Block | None:
    conditions, summary = r.study_table(study, "conditions"), r.study_summary(study) or {}
    if conditions is None:
        return None
    csvs = {f"study_{study}_{name}": frame for name in ("conditions", "added_value", "answers", "annotators")
            if (frame := r.study_table(study, name)) is not None}
    data = chart_data(conditions)
    return Block(title=f"Study “{study}”", lead_html=lead(summary) + added_value_html(r.study_table(study, "added_value")),
                 summary=summary_table(conditions), chart_data=data,
                 chart=None if data.empty else bar_chart(data, "accuracy", summary.get("chance")), csvs=csvs)


class Study:
    name = "study"

    def build(self, ctx: Context) -> Block:
        blocks = [b for s in ctx.results.studies if (b := study_block(ctx.results, s)) is not None]
        if not blocks:
            return Block(title="Human evaluation", paper=PAPER, missing="no study results yet (`clvq-judge study results`)")
        if len(blocks) == 1:
            b = blocks[0]
            b.title, b.paper = f"Human evaluation: {b.title}", PAPER
            return b
        # Several studies: the first one leads; the others are listed by their CSVs (one chart per axis).
        first, rest = blocks[0], blocks[1:]
        first.title, first.paper = f"Human evaluation: {first.title}", PAPER
        for b in rest:
            first.csvs.update(b.csvs)
        return first


SECTION = Study()
