"""`clvq-judge report`: one self-contained HTML page (charts inlined, no network needed) with every table of a
run, and the same tables as CSVs beside it.

The report only reads files that earlier stages wrote (`run.json`, `classifier/metrics.json`,
`activations/manifest.json`, `concepts/<method>/summary.json`, `ablation/`, `judge/*.csv`,
`studies/<name>/results/*.csv`); a stage that has not run is shown as "not run", never guessed. The paper's
headline figures are printed beside ours so a reader sees both at once.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import read_json, write_text, write_with
from .runs import Run, RunOptions

log = logging.getLogger(__name__)

# The paper's headline figures (Garg et al.), shown beside ours; never used in any computation.
PAPER = {
    "ablation": "0.895 -> 0.058 accuracy, a 93.5% relative drop (random direction: 0.831); ERASER-Movie, RoBERTa, probe protocol",
    "judge": "CLVQ-VAE's concept ranked first in 66.7% of comparisons",
    "human": "annotators recover the prediction 78% of the time with CLVQ-VAE concepts vs 54% with clustering",
}

TEMPLATE = "report.html.j2"


@dataclass
class ReportConfig(RunOptions):
    """Options of `clvq-judge report`."""

    focus: str = "clvq"
    """Method whose headline figures are compared with the paper's."""
    cards: int = 3
    """Concept cards shown per method (the most used concepts)."""


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _json(path: Path) -> dict | None:
    return read_json(path) if path.exists() else None


def _png_data_uri(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.exists() else None


def _figure_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _table_html(frame: pd.DataFrame | None, floats: str = "{:.3f}") -> str:
    if frame is None or frame.empty:
        return "<p class='missing'>not run</p>"
    return frame.to_html(index=False, float_format=floats.format, na_rep="–", border=0, classes="table", escape=True)


def concept_table(run: Run) -> pd.DataFrame | None:
    """Method × metric table from each method's concepts summary."""
    rows = []
    for folder in sorted((run.root / "concepts").glob("*/summary.json")):
        s = read_json(folder)
        rows.append({
            "method": s.get("method", folder.parent.name),
            "concepts": s.get("n_concepts"),
            "used (eval)": s.get("used_concepts"),
            "perplexity": s.get("perplexity"),
            "L_out lookup FVU": s.get("l_out_lookup_fvu"),
            "own reconstruction FVU": s.get("eval_reconstruction_fvu"),
            "reconstructed layer": s.get("reconstruction_layer"),
        })
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    for column in ("concepts", "used (eval)", "reconstructed layer"):
        frame[column] = frame[column].astype("Int64")  # integers stay integers beside missing values
    return frame


def _shown(value):
    return f"{value:.3f}" if isinstance(value, float) else value


def ablation_headline(results: pd.DataFrame | None, summary: dict | None, focus: str) -> dict | None:
    """The focus method's model-level drop, each control beside it, and (when `ablate` computed it) the paired
    drop against the energy-matched control with its CI."""
    if results is None:
        return None
    part = results[(results["method"] == focus) & (results["protocol"] == "model") & (results["k"] == 1)]
    if part.empty:
        return None
    acc = dict(zip(part["condition"], part["accuracy"]))
    out = {"protocol": "model", "n": int(part["n"].iloc[0]), **{f"accuracy_{k}": float(v) for k, v in acc.items()},
           "relative_drop": float(part.set_index("condition").loc["concept", "relative_drop"])}
    fair = ((summary or {}).get("methods", {}).get(focus, {}).get("model", {}) or {}).get("drop_vs_energy_control")
    if fair:
        out["drop_vs_energy_control"] = fair
    return out


def study_tables(run: Run) -> dict[str, dict[str, pd.DataFrame]]:
    """Per study: its result CSVs (written by `clvq-judge study results`)."""
    out = {}
    for folder in sorted((run.root / "studies").glob("*/results")):
        out[folder.parent.name] = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}
    return out


def card_html(card: dict) -> str:
    words = ", ".join(f"{html.escape(str(w))} ({n})" for w, n in card.get("top_words", [])[:10])
    examples = "".join(
        "<li>" + html.escape(ex["text"]).replace("[[", "<mark>").replace("]]", "</mark>") + "</li>"
        for ex in card.get("examples", [])[:3]
    )
    return (f"<div class='card'><b>concept {card['id']}</b> · {card['count']} tokens<br>"
            f"<span class='words'>{words or '–'}</span><ul>{examples}</ul></div>")


def concept_cards(run: Run, per_method: int) -> dict[str, str]:
    out = {}
    for path in sorted((run.root / "concepts").glob("*/concepts.jsonl")):
        with open(path, encoding="utf-8") as fh:
            cards = [json.loads(line) for line in fh if line.strip()]
        top = sorted(cards, key=lambda c: -c["count"])[:per_method]
        out[path.parent.name] = "".join(card_html(c) for c in top)
    return out


def judge_chart(methods: pd.DataFrame | None) -> str | None:
    """Win rate per method and judge with its CI, when `rank` wrote one."""
    if methods is None or "win_rate" not in methods.columns:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.2), layout="constrained")
    ax = fig.subplots()
    judges = list(dict.fromkeys(methods["judge"])) if "judge" in methods.columns else ["judge"]
    names = list(dict.fromkeys(methods["method"]))
    width = 0.8 / max(1, len(judges))
    for j, judge in enumerate(judges):
        part = methods[methods["judge"] == judge] if "judge" in methods.columns else methods
        part = part.set_index("method").reindex(names)
        y = part["win_rate"].to_numpy(dtype=float)
        err = None
        if {"win_rate_ci_low", "win_rate_ci_high"} <= set(part.columns):
            err = [y - part["win_rate_ci_low"].to_numpy(dtype=float), part["win_rate_ci_high"].to_numpy(dtype=float) - y]
        ax.bar([i - 0.4 + width * (j + 0.5) for i in range(len(names))], y, width, yerr=err, capsize=2, label=str(judge))
    ax.axhline(0.5, color="#888", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate (ties = 1/2)")
    ax.legend(fontsize=7)
    return _figure_data_uri(fig)


def build_report(config: ReportConfig) -> str:
    """Write `runs/<run>/report/index.html` and its CSVs; returns where it is."""
    import jinja2

    run = Run.open(config.runs_dir, config.run)
    folder = run.stage_dir("report")
    info = run.info()
    manifest = _json(run.root / "activations" / "manifest.json") or {}
    classifier = _json(run.root / "classifier" / "metrics.json") or {}
    concepts = concept_table(run)
    ablation = _csv(run.root / "ablation" / "results.csv")
    judge_methods = _csv(run.root / "judge" / "methods.csv")
    judge_pairs = _csv(run.root / "judge" / "pairs.csv")
    studies = study_tables(run)

    tables = {"concepts": concepts, "ablation": ablation, "judge_methods": judge_methods, "judge_pairs": judge_pairs}
    for study, frames in studies.items():
        for name, frame in frames.items():
            tables[f"study_{study}_{name}"] = frame
    for name, frame in tables.items():
        if frame is not None:
            write_with(folder / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False), suffix=".csv")

    env = jinja2.Environment(loader=jinja2.PackageLoader("clvq_judge.core", "templates"), autoescape=True)
    page = env.get_template(TEMPLATE).render(
        run=run.name,
        info=info,
        setup={k: _shown(v) for k, v in {
            "dataset": info.get("dataset"), "model": info.get("model"), "seed": info.get("seed"),
            "layers": manifest.get("layers"), "training words": manifest.get("selections", {}).get("train", {}).get("n_tokens"),
            "evaluation words": manifest.get("selections", {}).get("eval", {}).get("n_tokens"),
            "dev accuracy": classifier.get("dev_accuracy"), "majority baseline": classifier.get("majority_baseline"),
        }.items()},
        versions=info.get("versions", {}),
        paper=PAPER,
        focus=config.focus,
        ablation_headline=ablation_headline(ablation, _json(run.root / "ablation" / "summary.json"), config.focus),
        concepts_html=_table_html(concepts),
        ablation_html=_table_html(ablation),
        ablation_png=_png_data_uri(run.root / "ablation" / "ablation.png"),
        judge_methods_html=_table_html(judge_methods),
        judge_pairs_html=_table_html(judge_pairs),
        judge_png=judge_chart(judge_methods),
        studies_html={s: {n: _table_html(f) for n, f in frames.items()} for s, frames in studies.items()},
        cards=concept_cards(run, config.cards),
    )
    target = folder / "index.html"
    write_text(target, page)
    return f"report: {target} (tables as CSV beside it)"
