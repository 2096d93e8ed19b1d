"""What a report section gets (`Context`) and gives back (`Block`), and the helpers sections share: a table of
values with their 95% intervals, and one bar chart with error bars."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from ..collect import Results


@dataclass
class Context:
    results: Results
    focus: str = "clvq"
    cards: int = 3
    explorer_url: str | None = None


@dataclass
class Block:
    """One section of the page: a lead paragraph, one summary table, one chart, and raw tables as CSVs."""

    title: str
    lead_html: str = ""
    """Trusted HTML built by the section (every value in it escaped)."""
    paper: str | None = None
    summary: pd.DataFrame | None = None
    chart: str | None = None
    """PNG data URI."""
    chart_data: pd.DataFrame | None = None
    """What the chart drew (group, series, value, low, high): kept so tests can check the error bars."""
    csvs: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Raw tables written beside index.html and linked, never inlined."""
    body_html: str = ""
    """Extra trusted HTML (concept cards)."""
    missing: str | None = None
    """Said instead of the content when the stage has not run."""


class Section(Protocol):
    name: str

    def build(self, ctx: Context) -> Block | None: ...


def esc(value) -> str:
    return html.escape(str(value))


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def with_ci(value, low, high, digits: int = 3) -> str:
    """"0.450 [0.400, 0.500]"; the value alone when the interval is missing."""
    if fmt(value, digits) == "–":
        return "–"
    if fmt(low, digits) == "–" or fmt(high, digits) == "–":
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def table_html(frame: pd.DataFrame | None) -> str:
    if frame is None or frame.empty:
        return "<p class='missing'>not run</p>"
    return "<div class='scroll'>" + frame.to_html(index=False, na_rep="–", border=0, classes="table", escape=True) + "</div>"


def bar_chart(data: pd.DataFrame, ylabel: str, reference: float | None = None, ylim: tuple[float, float] | None = (0, 1)) -> str:
    """Grouped bars (x = group, one colour per series) with asymmetric 95% error bars from low/high."""
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys(data["group"]))
    series = list(dict.fromkeys(data["series"]))
    fig = Figure(figsize=(max(5.0, min(10.0, 1.1 * len(groups) * max(1, len(series)) ** 0.5 + 2)), 3.2),
                 layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    for j, name in enumerate(series):
        part = data[data["series"] == name].set_index("group").reindex(groups)
        y = part["value"].to_numpy(dtype=float)
        low, high = part["low"].to_numpy(dtype=float), part["high"].to_numpy(dtype=float)
        err = np.vstack([np.where(np.isfinite(low), y - low, 0), np.where(np.isfinite(high), high - y, 0)])
        ax.bar([i - 0.4 + width * (j + 0.5) for i in range(len(groups))], y, width, yerr=err, capsize=2, label=str(name))
    if reference is not None:
        ax.axhline(reference, color="#888", lw=0.8, ls="--")
    ax.set_xticks(range(len(groups)), [str(g) for g in groups], fontsize=8, rotation=20 if len(groups) > 5 else 0)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
