"""Bar chart of the ablation results: one panel per protocol, bars per condition, 95% CI whiskers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_with

COLORS = {"original": "#4c72b0", "concept": "#c44e52", "random": "#8c8c8c", "other_concept": "#dd8452"}
TITLES = {"paper": "Paper protocol: MLP probe on the sentence vector at L_in",
          "model": "Model-level protocol: the classifier's own accuracy"}


def plot_results(results: pd.DataFrame, path: str | Path) -> None:
    """Write `results` (the tidy ablation table) as a PNG bar chart at `path`."""
    # The object-oriented Figure API renders with Agg and never touches pyplot's global state or a display.
    from matplotlib.figure import Figure

    protocols = [p for p in ("paper", "model") if p in set(results["protocol"])]
    labels = list(dict.fromkeys(results["label"]))
    conditions = [c for c in COLORS if c in set(results["condition"])]
    fig = Figure(figsize=(max(6.0, 1.3 * len(labels) + 2), 3.6 * len(protocols)), layout="constrained")
    axes = fig.subplots(len(protocols), 1, squeeze=False)[:, 0]
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(conditions))
    for ax, protocol in zip(axes, protocols):
        sub = results[results["protocol"] == protocol]
        for j, condition in enumerate(conditions):
            part = sub[sub["condition"] == condition].set_index("label").reindex(labels)
            acc = part["accuracy"].to_numpy(dtype=float)
            err = np.vstack([acc - part["ci_low"].to_numpy(dtype=float), part["ci_high"].to_numpy(dtype=float) - acc])
            ax.bar(x - 0.4 + width * (j + 0.5), acc, width, yerr=np.clip(np.nan_to_num(err), 0, None),
                   capsize=2, color=COLORS[condition], label=condition.replace("_", " "))
        ax.set_xticks(x, labels)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("accuracy")
        ax.set_title(TITLES[protocol], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", fontsize=8, ncols=len(conditions))
    write_with(path, lambda p: fig.savefig(p, format="png", dpi=120), suffix=".png")
