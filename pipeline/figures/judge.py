"""The LLM judge: per judge and method, win rate, first place, Bradley-Terry and known-answer accuracy with CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..collect import Results
from .base import Block, Context, bar_chart, esc, fmt, with_ci

PAPER = "CLVQ-VAE's concept ranked first in 66.7% of comparisons"


def summary_table(methods: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in methods.to_dict("records"):
        rows.append({
            "judge": r["judge"], "method": r["method"], "n": r["n"],
            "win rate": with_ci(r["win_rate"], r["win_rate_low"], r["win_rate_high"]),
            "first place": with_ci(r["first_place_rate"], r["first_place_low"], r["first_place_high"]),
            "Bradley-Terry": with_ci(r["bt_score"], r["bt_low"], r["bt_high"]),
            "soft preference": with_ci(r["soft_pref"], r["soft_low"], r["soft_high"]),
            "known answer": with_ci(r.get("known_answer_accuracy"), r.get("known_answer_low"), r.get("known_answer_high")),
            "position inconsistency": fmt(r["position_inconsistency"]), "unparsed": r["unparsed"],
        })
    return pd.DataFrame(rows)


def chart_data(methods: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"group": methods["method"], "series": methods["judge"], "value": methods["win_rate"],
                         "low": methods["win_rate_low"], "high": methods["win_rate_high"]}).reset_index(drop=True)


def lead(methods: pd.DataFrame) -> str:
    lines = []
    for judge, block in methods.groupby("judge", sort=False):
        head = block.iloc[0]
        informative = head.get("informative", np.nan)
        if informative is None or (isinstance(informative, float) and np.isnan(informative)):
            verdict = "no known-answer control was run"
        else:
            accuracy = with_ci(head.get("judge_known_answer_accuracy"), head.get("judge_known_answer_low"),
                               head.get("judge_known_answer_high"))
            flag = "informative: its CI clears 0.5" if bool(informative) else "not informative: its CI does not clear 0.5"
            verdict = f"known-answer accuracy {accuracy} ({flag})"
        lines.append(f"<li>judge {esc(judge)}: {esc(verdict)}</li>")
    return f"<ul>{''.join(lines)}</ul>"


class Judge:
    name = "judge"

    def build(self, ctx: Context) -> Block:
        r: Results = ctx.results
        methods = r.judge_table("methods")
        csvs = {f"judge_{name}": frame for name in ("methods", "pairs", "comparisons", "agreement", "concepts")
                if (frame := r.judge_table(name)) is not None}
        if methods is None or methods.empty:
            return Block(title="LLM judge: blinded ranking of the methods' concepts", paper=PAPER, csvs=csvs,
                         missing="not run (`clvq-judge rank`)")
        if r.judge_protocol == "detection":
            data = pd.DataFrame({"group": methods["method"], "series": methods["judge"],
                                 "value": methods["detection_auc"], "low": methods["detection_auc_low"],
                                 "high": methods["detection_auc_high"]}).reset_index(drop=True)
            summary = pd.DataFrame([{
                "judge": m["judge"], "method": m["method"], "concepts": m["n"],
                "detection AUC": with_ci(m["detection_auc"], m["detection_auc_low"], m["detection_auc_high"]),
                "accuracy": with_ci(m["detection_accuracy"], m["detection_accuracy_low"], m["detection_accuracy_high"]),
                "known answer": with_ci(m["known_answer_accuracy"], m["known_answer_low"], m["known_answer_high"]),
                "word-on-card AUC": fmt(m["string_match_auc"]), "unparsed": m["unparsed"]}
                for m in methods.to_dict("records")])
            return Block(title="LLM judge: detection of each method's concepts", paper=PAPER, lead_html=lead(methods),
                         summary=summary, chart_data=data, csvs=csvs,
                         chart=bar_chart(data, "detection AUC (chance 0.5)", reference=0.5))
        data = chart_data(methods)
        return Block(title="LLM judge: blinded ranking of the methods' concepts", paper=PAPER, lead_html=lead(methods),
                     summary=summary_table(methods), chart_data=data, csvs=csvs,
                     chart=bar_chart(data, "win rate (ties = 1/2)", reference=0.5))


SECTION = Judge()
