"""`clvq-judge judges`: a calibration table of every judge that has answered in a run (after AlpacaEval's
evaluator analysis): per judge and protocol, its known-answer control with CI and whether it clears chance,
its position bias and inconsistency where the protocol has an option order, agreement with the other judges
of the same ranking (Krippendorff's alpha), seconds, prompt tokens and cost per request.

It reads every ranking `rank` kept under `judge/results/`. Agreement with the study's annotators is not a
column: annotators predict the model's label from one concept while judges compare concepts, so the two
answer different questions and no alpha between them would mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvq_judge.core.atomic import read_json, write_text
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import Run, RunOptions

from .protocols.comparison import POOLED, fmt
from .rank import results_dir

COLUMNS = ["judge", "protocol", "show", "sentences", "known_answer_accuracy", "known_answer_low", "known_answer_high",
           "informative", "position_bias", "position_bias_low", "position_bias_high", "position_inconsistency",
           "agreement_alpha", "requests", "seconds_per_request", "prompt_tokens_per_request", "cost_usd", "ranking"]
"""judge/judges.csv."""


@dataclass
class JudgesConfig(RunOptions):
    """Options of `clvq-judge judges`."""


def calibration_table(run: Run) -> pd.DataFrame:
    rows = []
    folder = results_dir(run)
    for done_path in sorted(folder.glob("*/done.json")) if folder.exists() else []:
        record, here = read_json(done_path), done_path.parent
        methods = pd.read_csv(here / "methods.csv")
        pairs = pd.read_csv(here / "pairs.csv") if (here / "pairs.csv").exists() else pd.DataFrame()
        agreement = pd.read_csv(here / "agreement.csv") if (here / "agreement.csv").exists() else pd.DataFrame()
        alpha = agreement["alpha"].iloc[0] if len(agreement) and "alpha" in agreement else np.nan
        for judge, block in methods[methods["judge"] != POOLED].groupby("judge", sort=False):
            head = block.iloc[0]
            usage = record.get("usage", {}).get(judge, {})
            sent = max(1, int(usage.get("requests_sent", 0) or 0))
            mine = pairs[pairs["judge"] == judge] if len(pairs) and "judge" in pairs else pd.DataFrame()
            rows.append({
                "judge": judge, "protocol": record.get("protocol", "pairwise"),
                "show": record.get("config", {}).get("show"), "sentences": record.get("n_units"),
                "known_answer_accuracy": head.get("judge_known_answer_accuracy", np.nan),
                "known_answer_low": head.get("judge_known_answer_low", np.nan),
                "known_answer_high": head.get("judge_known_answer_high", np.nan),
                "informative": head.get("informative", np.nan),
                "position_bias": head.get("position_bias", np.nan),
                "position_bias_low": head.get("position_bias_low", np.nan),
                "position_bias_high": head.get("position_bias_high", np.nan),
                "position_inconsistency": (float(mine["position_inconsistency"].mean())
                                           if "position_inconsistency" in mine and len(mine) else np.nan),
                "agreement_alpha": alpha,
                "requests": int(usage.get("requests_sent", 0) or 0),
                "seconds_per_request": float(usage.get("seconds", 0.0) or 0.0) / sent,
                "prompt_tokens_per_request": float(usage.get("prompt_tokens", 0) or 0) / sent,
                "cost_usd": usage.get("cost_usd", np.nan), "ranking": here.name,
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def judges(config: JudgesConfig) -> str:
    run = Run.open(config.runs_dir, config.run)
    table = calibration_table(run)
    if table.empty:
        raise UserError(f"no judge has answered in run {run.name!r} yet: run `clvq-judge rank --run {run.name}` first")
    path = run.stage_dir("judge") / "judges.csv"
    write_text(path, table.to_csv(index=False))
    lines = [f"judges that answered in run {run.name!r} (known-answer control: the true concept against a decoy):",
             f"  {'judge':<34}{'protocol':<12}{'known-answer [95% CI]':<24}{'pos. bias [CI]':<24}{'pos.incons.':<12}"
             f"{'alpha':<7}{'s/req':<7}{'tok/req':<8}cost"]
    for row in table.to_dict("records"):
        flag = "" if row["informative"] is True or row["informative"] == 1 else "  NOT INFORMATIVE"
        cost = f"${row['cost_usd']:.4f}" if np.isfinite(row["cost_usd"]) else "-"
        lines.append(
            f"  {row['judge'][:33]:<34}{row['protocol']:<12}"
            f"{fmt(row['known_answer_accuracy'], row['known_answer_low'], row['known_answer_high']):<24}"
            f"{fmt(row['position_bias'], row['position_bias_low'], row['position_bias_high']):<24}"
            f"{fmt(row['position_inconsistency']):<12}{fmt(row['agreement_alpha']):<7}"
            f"{row['seconds_per_request']:<7.2f}{row['prompt_tokens_per_request']:<8.0f}{cost}{flag}")
    lines.append(f"-> {path}")
    return "\n".join(lines)
