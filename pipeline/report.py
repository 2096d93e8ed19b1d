"""`clvq-judge report`: one self-contained HTML page of a run (charts inlined, no network needed).

Per evaluation axis one summary table with 95% intervals and one chart, then concept cards; every raw table is
a CSV beside `index.html`, linked, never inlined. The page is assembled from the sections of
`pipeline/figures/` (one module each) and reads only through `pipeline.collect`: a stage that has not run is
shown as "not run", never guessed. The paper's headline figures are printed beside ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from clvq_judge.core.atomic import write_text, write_with
from clvq_judge.core.runs import NON_RESULT_FIELDS, RunOptions

from .collect import Results
from .figures import Context, sections
from .figures.base import table_html

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
RECORD = "report"


@dataclass
class ReportConfig(RunOptions):
    """Options of `clvq-judge report`."""

    focus: str = "clvq"
    """Method whose headline figures are compared with the paper's."""
    cards: int = 3
    """Concept cards shown per method (the most used concepts)."""
    explorer_url: str | None = None
    """Address of a running `clvq-judge explore` (e.g. http://localhost:8502): concept cards link to its pages."""


def build_report(config: ReportConfig) -> str:
    """Write `runs/<run>/report/index.html` and its CSVs; returns where it is."""
    import jinja2

    results = Results.open(config.runs_dir, config.run)
    run, folder = results.run, results.run.stage_dir(RECORD)
    target = folder / "index.html"
    if not run.begin(RECORD, config, config.force, NON_RESULT_FIELDS, results.records(), on_change="redo"):
        return f"report: {target} (up to date: nothing it reads was redone since)"
    ctx = Context(results=results, focus=config.focus, cards=config.cards, explorer_url=config.explorer_url)
    blocks = []
    for section in sections():
        block = section.build(ctx)
        if block is None:
            continue
        links = []
        for name, frame in block.csvs.items():
            write_with(folder / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False), suffix=".csv")
            links.append(f"{name}.csv")
        blocks.append({**block.__dict__, "id": section.name, "links": links,
                       "table_html": table_html(block.summary) if block.summary is not None else ""})
    env = jinja2.Environment(loader=jinja2.PackageLoader("clvq_judge.pipeline", "templates"), autoescape=True)
    page = env.get_template(TEMPLATE).render(run=results.run.name, blocks=blocks)
    write_text(target, page)
    run.finish(RECORD, config, NON_RESULT_FIELDS, outputs=(target,))
    return f"report: {target} (tables as CSV beside it)"
