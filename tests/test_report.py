"""`clvq-judge report`: one self-contained HTML page from whatever stages a run has finished."""

import re
import shutil

import pandas as pd
import pytest

from clvq_judge.cli.main import main


@pytest.fixture(scope="module")
def report_run(study_runs, tmp_path_factory):
    """A copy of the tiny run with three methods' concepts and a hand-written ablation table."""
    runs = tmp_path_factory.mktemp("report_runs")
    shutil.copytree(study_runs / "tiny", runs / "tiny", ignore=shutil.ignore_patterns("studies", "report"))
    ablation = runs / "tiny" / "ablation"
    ablation.mkdir()
    rows = [("clvq", c, a) for c, a in [("original", 0.9), ("concept", 0.45), ("random", 0.88), ("random_energy", 0.85)]]
    pd.DataFrame([{"method": m, "k": 1, "label": m, "protocol": "model", "condition": c, "accuracy": a, "std": 0.01,
                   "n": 40, "relative_drop": (0.9 - a) / 0.9, "flip_rate": 0.1, "ci_low": a - 0.05, "ci_high": a + 0.05}
                  for m, c, a in rows]).to_csv(ablation / "results.csv", index=False)
    assert main(["report", "--run", "tiny", "--runs-dir", str(runs)]) == 0
    return runs / "tiny" / "report"


def test_report_holds_every_finished_stage_and_says_what_did_not_run(report_run):
    page = (report_run / "index.html").read_text()
    flat = " ".join(page.split())
    # Setup, the three methods' concept rows and the headline against the paper's.
    assert "minilm" in page and "news" in page
    for method in ("clvq", "kmeans", "sae"):
        assert re.search(rf"<td>{method}</td>", page)
    assert "0.900 → 0.450 (50.0% relative drop)" in flat
    assert "random energy control 0.850" in flat
    assert "93.5%" in page and "66.7%" in page and "78%" in page
    # The judge and the study have not run: said, not invented.
    assert page.count("not run") >= 2
    assert "<script" not in page.lower()  # nothing executable; no network needed to open it
    assert not re.search(r"(src|href)=\"https?://", page)
    concepts = pd.read_csv(report_run / "concepts.csv")
    assert set(concepts["method"]) == {"clvq", "kmeans", "sae"}
    assert (report_run / "ablation.csv").exists()


def test_report_renders_in_a_browser_without_console_errors(report_run, study_browser):
    page = study_browser.new_page()
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto((report_run / "index.html").as_uri())
    assert page.locator("h1").inner_text().startswith("clvq-judge report")
    assert page.locator("table").count() >= 3
    assert errors == []
    page.close()
