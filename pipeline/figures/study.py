"""Human evaluation: per study and method, how often annotators recover the model's prediction, with CIs;
the simulated annotators beside the people."""

from __future__ import annotations

import pandas as pd

from ..collect import Results
from .base import Block, Context, bar_chart, esc, fmt, with_ci

PAPER = "annotators recover the prediction 78% of the time with CLVQ-VAE concepts vs 54% with clustering"


def summary_table(methods: pd.DataFrame, humans: bool, simulated: bool) -> pd.DataFrame:
    rows = []
    for r in methods.to_dict("records"):
        row = {"method": r["method"], "items": r["items"]}
        if humans:
            row.update({"answers": r["answers"], "accuracy": with_ci(r["accuracy"], r["ci_low"], r["ci_high"]),
                        "can't tell": fmt(r["cant_tell_rate"]), "alpha": fmt(r["alpha"]),
                        "majority baseline": fmt(r["majority_baseline"])})
        if simulated:
            row.update({"simulated answers": r["sim_answers"],
                        "simulated accuracy": with_ci(r["sim_accuracy"], r["sim_ci_low"], r["sim_ci_high"]),
                        "agreement with humans": fmt(r["sim_human_agreement"])})
        rows.append(row)
    return pd.DataFrame(rows)


def chart_data(methods: pd.DataFrame, humans: bool, simulated: bool) -> pd.DataFrame:
    parts = []
    if humans:
        parts.append(pd.DataFrame({"group": methods["method"], "series": "annotators", "value": methods["accuracy"],
                                   "low": methods["ci_low"], "high": methods["ci_high"]}))
    if simulated:
        parts.append(pd.DataFrame({"group": methods["method"], "series": "simulated", "value": methods["sim_accuracy"],
                                   "low": methods["sim_ci_low"], "high": methods["sim_ci_high"]}))
    return pd.concat(parts, ignore_index=True)


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
    methods, summary = r.study_table(study, "methods"), r.study_summary(study) or {}
    if methods is None:
        return None
    humans = bool(summary.get("answers"))
    simulated = bool(summary.get("simulated")) and "sim_accuracy" in methods
    csvs = {f"study_{study}_{name}": frame for name in ("methods", "answers", "annotators")
            if (frame := r.study_table(study, name)) is not None}
    data = chart_data(methods, humans, simulated) if humans or simulated else None
    return Block(title=f"Study “{study}”", lead_html=lead(summary), summary=summary_table(methods, humans, simulated),
                 chart_data=data, chart=None if data is None else bar_chart(data, "accuracy", summary.get("chance")),
                 csvs=csvs)


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
