"""Faithfulness: accuracy after removing the explanation token's concept, against every control, with CIs."""

from __future__ import annotations

import pandas as pd

from ..collect import Results
from .base import Block, Context, bar_chart, esc, fmt, with_ci

PAPER = ("0.895 -> 0.058 accuracy, a 93.5% relative drop (random direction: 0.831); ERASER-Movie, RoBERTa, "
         "probe protocol")
CONDITIONS = {"original": "original", "concept": "concept removed", "random": "random",
              "random_energy": "random energy", "other_concept": "other concept"}


def headline(results: Results, focus: str) -> dict | None:
    """The focus method's model-level drop, each control beside it, and the paired drop against the
    energy-matched control with its CI (when `ablate` computed it)."""
    table = results.ablation_results()
    if table is None:
        return None
    part = table[(table["method"] == focus) & (table["protocol"] == "model") & (table["k"] == 1)]
    if part.empty:
        return None
    acc = dict(zip(part["condition"], part["accuracy"]))
    out = {"n": int(part["n"].iloc[0]), **{f"accuracy_{k}": float(v) for k, v in acc.items()},
           "relative_drop": float(part.set_index("condition").loc["concept", "relative_drop"])}
    fair = results.drop_vs_energy_control(str(part["label"].iloc[0]))
    if fair:
        out["drop_vs_energy_control"] = fair
    return out


def summary_table(results: Results) -> pd.DataFrame | None:
    """One row per ablated variant and protocol: accuracy [95% CI] under every condition, and the paired drop
    against the energy-matched control."""
    table = results.ablation_results()
    if table is None or table.empty:
        return None
    rows = []
    for (label, protocol), block in table.groupby(["label", "protocol"], sort=False):
        by = block.set_index("condition")
        row = {"method": label, "protocol": protocol, "n": int(block["n"].iloc[0])}
        for condition, name in CONDITIONS.items():
            if condition in by.index:
                r = by.loc[condition]
                row[name] = with_ci(r["accuracy"], r["ci_low"], r["ci_high"])
        fair = results.drop_vs_energy_control(str(label), str(protocol))
        row["drop vs energy control"] = with_ci(fair.get("value"), fair.get("ci_low"), fair.get("ci_high")) if fair else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def chart_data(results: Results) -> pd.DataFrame | None:
    table = results.ablation_results()
    if table is None or table.empty:
        return None
    protocol = "model" if (table["protocol"] == "model").any() else str(table["protocol"].iloc[0])
    part = table[table["protocol"] == protocol]
    return pd.DataFrame({"group": part["label"], "series": part["condition"].map(CONDITIONS).fillna(part["condition"]),
                         "value": part["accuracy"], "low": part["ci_low"], "high": part["ci_high"],
                         "protocol": protocol}).reset_index(drop=True)


def lead(h: dict | None, focus: str) -> str:
    if not h:
        return ""
    controls = "".join(f"; {esc(key[9:].replace('_', ' '))} control {fmt(value)}" for key, value in h.items()
                       if key.startswith("accuracy_") and key not in ("accuracy_original", "accuracy_concept"))
    text = (f"Ours ({esc(focus)}, model-level protocol, n = {h['n']}): accuracy {fmt(h.get('accuracy_original'))} → "
            f"{fmt(h.get('accuracy_concept'))} ({100 * h['relative_drop']:.1f}% relative drop){controls}.")
    fair = h.get("drop_vs_energy_control")
    if fair:
        text += (f" Against the energy-matched control the concept costs {fmt(fair.get('value'))} accuracy "
                 f"(paired, 95% CI [{fmt(fair.get('ci_low'))}, {fmt(fair.get('ci_high'))}]).")
    return f"<div class='ours'>{text}</div>"


class Ablation:
    name = "ablation"

    def build(self, ctx: Context) -> Block:
        r = ctx.results
        data = chart_data(r)
        raw = r.ablation_results()
        return Block(
            title="Faithfulness: removing the explanation token's concept", paper=PAPER,
            lead_html=lead(headline(r, ctx.focus), ctx.focus), summary=summary_table(r), chart_data=data,
            chart=None if data is None else bar_chart(data, f"accuracy ({data['protocol'].iloc[0]} protocol)"),
            csvs={"ablation": raw} if raw is not None else {},
            missing=None if raw is not None else "not run (`clvq-judge ablate`)")


SECTION = Ablation()
