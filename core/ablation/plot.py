"""Figure of the ablation results, one row per protocol.

Left: accuracy per method and condition with 95% CI whiskers. Right: flip rate against the share of the
sentence's energy each removal took away, one point per method and condition (marker = condition) and
each method's least-squares line of per-sentence flips on removed energy. A concept point on its method's
line is an effect energy alone predicts; above it, more than energy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_with

COLORS = {"original": "#4c72b0", "concept": "#c44e52", "random": "#8c8c8c", "random_energy": "#55a868",
          "other_concept": "#dd8452"}
MARKERS = {"concept": "o", "random": "x", "random_energy": "s", "other_concept": "^"}
TITLES = {"paper": "Paper protocol: MLP probe on the sentence vector at L_in",
          "model": "Model-level protocol: the classifier's own accuracy"}


def plot_results(results: pd.DataFrame, path: str | Path,
                 fits: dict[tuple[str, str], tuple[float, float]] | None = None) -> None:
    """Write `results` (the tidy ablation table) as a PNG at `path`; `fits` maps (label, protocol) to the
    (slope, intercept) of that method's flip-vs-energy line."""
    # The object-oriented Figure API renders with Agg and never touches pyplot's global state or a display.
    from matplotlib.figure import Figure

    fits = fits or {}
    protocols = [p for p in ("paper", "model") if p in set(results["protocol"])]
    labels = list(dict.fromkeys(results["label"]))
    conditions = [c for c in COLORS if c in set(results["condition"])]
    fig = Figure(figsize=(max(6.0, 1.3 * len(labels) + 2) + 4.5, 3.6 * len(protocols)), layout="constrained")
    axes = fig.subplots(len(protocols), 2, squeeze=False, width_ratios=[max(6.0, 1.3 * len(labels) + 2), 4.5])
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(conditions))
    palette = [f"C{i}" for i in range(10)]
    for (ax, side), protocol in zip(axes, protocols):
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
        _energy_panel(side, sub, labels, palette, fits, protocol)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", fontsize=8, ncols=len(conditions))
    write_with(path, lambda p: fig.savefig(p, format="png", dpi=120), suffix=".png")


def _energy_panel(ax, sub: pd.DataFrame, labels: list[str], palette: list[str], fits: dict, protocol: str) -> None:
    top = 0.0
    if "energy_share" in sub.columns:
        for i, label in enumerate(labels):
            color = palette[i % len(palette)]
            rows = sub[(sub["label"] == label) & sub["condition"].isin(list(MARKERS))]
            for condition, share, flips in zip(rows["condition"], rows["energy_share"], rows["flip_rate"]):
                ax.scatter([share], [flips], marker=MARKERS[condition], color=color, s=28)
                top = max(top, float(np.nan_to_num(share)))
        grid = np.linspace(0.0, max(top, 1e-6) * 1.05, 20)
        for i, label in enumerate(labels):
            slope, intercept = fits.get((label, protocol), (float("nan"), float("nan")))
            if np.isfinite(slope) and np.isfinite(intercept):
                ax.plot(grid, intercept + slope * grid, color=palette[i % len(palette)], lw=1, label=label)
    ax.set_xlabel("share of sentence energy removed")
    ax.set_ylabel("flip rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("flips vs removed energy (marker = condition)", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")
