"""`clvq-judge report`: one self-contained HTML page from whatever stages a run has finished, read through the
collector; per axis a summary table with CIs and a chart, raw tables as linked CSVs."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from results_run import HOSTILE_DESCRIPTION, build_results_run

from clvq_judge.cli.main import main
from clvq_judge.core.errors import UserError
from clvq_judge.pipeline.collect import Results
from clvq_judge.pipeline.figures import judge as judge_section
from clvq_judge.pipeline.figures import study as study_section
from clvq_judge.pipeline.figures.base import Context


@pytest.fixture(scope="session")
def results_runs(study_runs, tmp_path_factory):
    return build_results_run(study_runs, tmp_path_factory.mktemp("results_runs"))


@pytest.fixture(scope="module")
def report_run(results_runs, tmp_path_factory):
    runs = tmp_path_factory.mktemp("report_runs")
    shutil.copytree(results_runs / "tiny", runs / "tiny", ignore=shutil.ignore_patterns("report"))
    assert main(["report", "--run", "tiny", "--runs-dir", str(runs), "--explorer-url", "http://localhost:8502"]) == 0
    return runs


def test_report_holds_every_axis_with_its_intervals(report_run):
    folder = report_run / "tiny" / "report"
    page = (folder / "index.html").read_text()
    flat = " ".join(page.split())
    assert "minilm" in page and "news" in page
    for method in ("clvq", "kmeans", "sae"):
        assert re.search(rf"<td>{method}</td>", page)
    # The model axis: the headline against the paper's, and the summary table's CIs from results.csv.
    assert "0.900 → 0.450 (50.0% relative drop)" in flat
    assert "random energy control 0.850" in flat
    assert "0.400 accuracy (paired, 95% CI [0.300, 0.500])" in flat
    assert "0.450 [0.400, 0.500]" in flat
    # The judge axis: the win rates and intervals methods.csv holds, as written by the judge's own code.
    methods = pd.read_csv(report_run / "tiny" / "judge" / "methods.csv")
    clvq = methods[methods["method"] == "clvq"].iloc[0]
    assert clvq["win_rate"] == pytest.approx(5 / 6)
    assert f"{clvq['win_rate']:.3f} [{clvq['win_rate_low']:.3f}, {clvq['win_rate_high']:.3f}]" in flat
    assert "informative: its CI clears 0.5" in flat
    # The study axis: the accuracy and interval `study results` wrote.
    study = pd.read_csv(report_run / "tiny" / "studies" / "s" / "results" / "conditions.csv")
    row = study[study["answers"] > 0].iloc[0]
    assert f"{row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in flat
    assert "93.5%" in page and "66.7%" in page and "78%" in page
    # Raw tables are CSVs beside the page, linked, not inlined.
    for name in ("ablation", "concepts", "judge_methods", "judge_comparisons", "study_s_answers"):
        assert (folder / f"{name}.csv").exists() and f'href="{name}.csv"' in page
    assert page.count("<table") <= 8  # setup, concepts, one summary per axis; no raw table
    assert "onerror" not in page.replace("onerror=alert", "") and "<script" not in page.lower()
    assert "&lt;script&gt;" in page or HOSTILE_DESCRIPTION not in page  # the description is escaped where shown
    assert not re.search(r"(src|href)=\"https?://", page)
    assert "http://localhost:8502/?run=tiny&amp;view=concept&amp;method=clvq&amp;concept=" in page


def test_judge_chart_draws_the_intervals_rank_wrote(report_run):
    """The bug the collector fixes: the chart looked for columns rank never writes, so it had no error bars."""
    results = Results.open(report_run, "tiny")
    block = judge_section.SECTION.build(Context(results=results))
    data, methods = block.chart_data, results.judge_table("methods")
    assert block.chart and block.chart.startswith("data:image/png;base64,")
    assert np.isfinite(data[["low", "high"]].to_numpy(dtype=float)).all()
    assert (data["high"] - data["low"] > 0).any()
    np.testing.assert_allclose(data["low"], methods["win_rate_low"])
    np.testing.assert_allclose(data["high"], methods["win_rate_high"])
    study = study_section.SECTION.build(Context(results=results))
    assert set(study.chart_data["series"]) == {"human"}
    assert np.isfinite(study.chart_data[["low", "high"]].to_numpy(dtype=float)).all()


def test_a_renamed_column_fails_with_one_line(report_run, tmp_path):
    shutil.copytree(report_run / "tiny", tmp_path / "tiny")
    path = tmp_path / "tiny" / "judge" / "methods.csv"
    pd.read_csv(path).rename(columns={"win_rate_low": "win_rate_ci_low"}).to_csv(path, index=False)
    with pytest.raises(UserError, match="lacks the column.*win_rate_low.*clvq-judge rank"):
        Results.open(tmp_path, "tiny").judge_table("methods")


def test_report_of_a_run_without_judge_or_study_says_not_run(study_runs, tmp_path):
    shutil.copytree(study_runs / "tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns("studies", "report", "judge"))
    assert main(["report", "--run", "tiny", "--runs-dir", str(tmp_path)]) == 0
    page = (tmp_path / "tiny" / "report" / "index.html").read_text()
    assert "not run (`clvq-judge rank`)" in page and "no study results yet" in page
    assert "not run (`clvq-judge ablate`)" in page


def test_report_fits_1280_px_without_console_errors(report_run, study_browser, tmp_path):
    context = study_browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: errors.append(f"dialog {d.message}"))
    page.goto((report_run / "tiny" / "report" / "index.html").as_uri())
    assert page.locator("h1").inner_text().startswith("clvq-judge report")
    assert page.locator("img").count() >= 3  # one chart per axis
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"the page overflows horizontally: {width}"
    from test_study_browser import shoot

    shoot(page, tmp_path, "report-1280.png")
    assert errors == []
    context.close()


def test_concept_table_reports_the_sae_sparsity_beside_the_other_methods(report_run):
    """Issue 17: the SAE's L0 and dead latents stand in the report's method table, as concepts' summary wrote them."""
    from clvq_judge.pipeline.figures.concepts import concept_table

    results = Results.open(report_run, "tiny")
    table = concept_table(Context(results=results)).set_index("method")
    sae = results.concept_summary("sae")
    assert table.loc["sae", "L0 (eval)"] == pytest.approx(sae["l0"]) and 0 < sae["l0"] <= sae["n_concepts"]
    assert table.loc["sae", "dead latents"] == sae["dead_latents"]
    assert pd.isna(table.loc["kmeans", "L0 (eval)"]) and pd.isna(table.loc["clvq", "dead latents"])
    page = (report_run / "tiny" / "report" / "index.html").read_text()
    assert "L0 (eval)" in page and "dead latents" in page
