"""`clvq-judge export`: gather a run's results into one folder of CSVs ready for a paper.

Reads only what earlier stages wrote, through `clvq_judge.pipeline.collect` (the one read path):

- ranking: `runs/<run>/judge/{methods,pairs,comparisons,agreement}.csv` (`clvq-judge rank`)
- faithfulness: `runs/<run>/ablation/results.csv` (`clvq-judge ablate`)
- human study: `runs/<run>/studies/<study>/results/*.csv` (`clvq-judge study results`), when present

Writes each under a prefixed name (`judge_methods.csv`, `ablation_results.csv`,
`human_<study>_conditions.csv`, ...), a `summary.csv` with one row per method putting the three axes side by
side, and `manifest.json` naming every source file and the stage record it came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clvq_judge.core.atomic import write_json, write_text
from clvq_judge.core.config import to_dict
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import NON_RESULT_FIELDS, Run, RunOptions
from clvq_judge.human_eval import schema
from clvq_judge.pipeline.collect import Results, raw_tables

log = logging.getLogger(__name__)

RECORD = "export"


@dataclass
class ExportConfig(RunOptions):
    """Options of `clvq-judge export`."""

    out: str = "results"
    """Folder to write the paper-ready CSVs to (created if missing)."""


def gather(run: Run) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Output name -> (source file, table) for every result file the run has, read through the one collector
    (copied as they are: the summaries below use the columns they find)."""
    return raw_tables(Results(run, strict=False))


def judge_summary(methods: pd.DataFrame) -> pd.DataFrame:
    """Per method: the pooled judge row when there are several judges, else the single judge's."""
    if methods.empty or "method" not in methods:
        return pd.DataFrame(columns=["method"])
    rows = methods[methods["judge"] == "pooled"] if (methods["judge"] == "pooled").any() else methods
    keep = {"win_rate": "judge_win_rate", "win_rate_low": "judge_win_rate_low", "win_rate_high": "judge_win_rate_high",
            "first_place_rate": "judge_first_place_rate", "bt_score": "judge_bt", "bt_low": "judge_bt_low",
            "bt_high": "judge_bt_high", "soft_pref": "judge_soft_pref", "soft_low": "judge_soft_low",
            "soft_high": "judge_soft_high", "position_inconsistency": "judge_position_inconsistency",
            "judge_known_answer_accuracy": "judge_known_answer_accuracy", "informative": "judge_informative"}
    present = [c for c in keep if c in rows]
    return rows[["method", *present]].rename(columns=keep)


def ablation_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per method and protocol: accuracy before and after removing the concept, and with a random direction
    removed (for the SAE, its smallest k)."""
    needed = {"method", "protocol", "condition", "accuracy"}
    if results.empty or not needed <= set(results.columns):
        return pd.DataFrame(columns=["method"])
    frame = results
    if "k" in frame:
        smallest = frame.groupby("method")["k"].transform("min")
        frame = frame[frame["k"] == smallest]
    out = None
    for protocol, block in frame.groupby("protocol", sort=True):
        wide = block.pivot_table(index="method", columns="condition", values="accuracy", aggfunc="first")
        part = pd.DataFrame(index=wide.index)
        for condition, label in (("original", "before"), ("concept", "after"), ("random", "random")):
            if condition in wide:
                part[f"ablation_{protocol}_{label}"] = wide[condition]
        if "relative_drop" in block:
            drops = block[block["condition"] == "concept"].set_index("method")["relative_drop"]
            part[f"ablation_{protocol}_relative_drop"] = drops
        out = part if out is None else out.join(part, how="outer")
    return pd.DataFrame(columns=["method"]) if out is None else out.reset_index()


def human_summary(found: dict[str, tuple[Path, pd.DataFrame]]) -> pd.DataFrame:
    """Per method: human annotators' accuracy in each study's concept condition (the paper's protocol)."""
    out = pd.DataFrame(columns=["method"])
    for name, (_, table) in found.items():
        if not (name.startswith("human_") and name.endswith("_conditions")) or not {"method", "accuracy"} <= set(table):
            continue
        study = name[len("human_"):-len("_conditions")]
        rows = table[(table["kind"] == schema.HUMAN) & (table["condition"] == "concept")]
        cols = {"accuracy": f"human_{study}_accuracy", "ci_low": f"human_{study}_low", "ci_high": f"human_{study}_high"}
        part = rows[["method", *[c for c in cols if c in rows]]].rename(columns=cols)
        out = part if out.empty else out.merge(part, on="method", how="outer")
    return out


def summary_table(found: dict[str, tuple[Path, pd.DataFrame]]) -> pd.DataFrame:
    parts = []
    if "judge_methods" in found:
        parts.append(judge_summary(found["judge_methods"][1]))
    if "ablation_results" in found:
        parts.append(ablation_summary(found["ablation_results"][1]))
    parts.append(human_summary(found))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["method"])
    table = parts[0]
    for part in parts[1:]:
        table = table.merge(part, on="method", how="outer")
    return table


def export(config: ExportConfig) -> str:
    run = Run.open(config.runs_dir, config.run)
    found = gather(run)
    if not found:
        raise UserError(
            f"run {run.name!r} has no results to export yet: run `clvq-judge rank --run {run.name}`, "
            f"`clvq-judge ablate --run {run.name}` or `clvq-judge study results` first"
        )
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --out {out} ({exc.strerror}): pass a writable folder") from None
    # Where the CSVs go is part of the result here: another --out is another export (redone, never refused).
    hashed = {**to_dict(config), "out": str(out.resolve())}
    records = Results(run, strict=False).records()
    if not run.begin(RECORD, hashed, config.force, NON_RESULT_FIELDS, records, on_change="redo"):
        return f"exported CSVs of run {run.name!r} in {out} are up to date (nothing they come from was redone since)"
    summary = summary_table(found)
    tables = {**{name: table for name, (_, table) in found.items()}, "summary": summary}
    for name, table in tables.items():
        write_text(out / f"{name}.csv", table.to_csv(index=False))
    # The done hash of every stage result the CSVs come from: a reader can tell which results they are.
    write_json(out / "manifest.json", {
        "run": run.name,
        "files": {f"{name}.csv": str(path.relative_to(run.root)) for name, (path, _) in found.items()}
                 | {"summary.csv": "(built here)"},
        "stage_hashes": run.input_hashes(records),
    })
    run.finish(RECORD, hashed, NON_RESULT_FIELDS, outputs=tuple(out / f"{name}.csv" for name in tables) + (out / "manifest.json",))
    lines = [f"exported {len(tables)} CSVs of run {run.name!r} to {out}:"]
    lines += [f"  {name}.csv ({len(table)} rows)" for name, table in tables.items()]
    if len(summary):
        lines.append(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return "\n".join(lines)
