"""`clvq-judge explore`: the concept explorer on a tiny run with every axis, driven by headless Chromium against a
real Streamlit server (one per session), and its per-concept views checked directly."""

import re
import sys

import numpy as np
import pytest
from fixtures_study import free_port, start_streamlit, stop_process
from results_run import HOSTILE, build_results_run
from test_study_browser import shoot

from clvq_judge.pipeline.collect import Results
from clvq_judge.pipeline.concept_index import ConceptIndex
from clvq_judge.pipeline.explorer import explorer_command

pytestmark = pytest.mark.slow
TIMEOUT_MS = 60_000


@pytest.fixture(scope="session")
def results_runs(study_runs, tmp_path_factory):
    return build_results_run(study_runs, tmp_path_factory.mktemp("results_runs"))


@pytest.fixture(scope="session")
def explorer_server(results_runs):
    port = free_port()
    command = explorer_command(str(results_runs), "tiny", port, "127.0.0.1")
    assert command[:3] == [sys.executable, "-m", "streamlit"]
    server = start_streamlit(command, port)
    yield f"http://127.0.0.1:{port}"
    stop_process(server)


def test_index_finds_words_and_aggregates_verdicts(results_runs):
    index = ConceptIndex(Results.open(results_runs, "tiny"))
    tokens = index.tokens
    word = tokens["word"][tokens["position"] > 0].value_counts().index[0]
    found = index.search(word.upper())
    assert set(found["method"]) == {"clvq", "kmeans", "sae"}
    rows = np.flatnonzero(tokens["word"].str.lower() == word.lower())
    for method, block in found.groupby("method"):
        assert block["occurrences"].sum() == (index.assignments(method)[rows] >= 0).sum()
    # clvq's concepts on the judged sentences won 5 of 6 against each opponent, in both orders.
    judged = index.overview("clvq").dropna(subset=["judge score"])
    answers = index.judge_answers[(index.judge_answers["method"] == "clvq")]
    assert judged["judge answers"].sum() == len(answers) == 6 * 2 * 2
    assert (judged["judge score"] * judged["judge answers"]).sum() == pytest.approx(answers["chosen"].sum()) == 20
    assert index.sorted_overview("clvq", "judge score")["judge score"].iloc[0] == judged["judge score"].max()
    assert index.study_answers["method"].isin(["clvq", "kmeans", "sae"]).all() and len(index.study_answers) > 0
    unit = next(iter(index.units.values()))
    view = index.l_out_view("clvq", unit["concepts"]["clvq"])
    assert 0 < view.share < view.lookup_fvu <= 1.0 + 1e-9
    assert len(view.nearest) >= 1 and all(-1.0 <= c <= 1.0 + 1e-9 for _, c in view.nearest)
    total = sum(index.l_out_view("clvq", c).share for c in index.overview("clvq")["concept"])
    assert total == pytest.approx(view.lookup_fvu)


def test_explorer_search_concept_and_side_by_side_in_a_browser(explorer_server, results_runs, study_browser, tmp_path):
    index = ConceptIndex(Results.open(results_runs, "tiny"))
    unit = next(iter(index.units.values()))
    context = study_browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: (errors.append(f"dialog {d.message}"), d.dismiss()))
    page.goto(explorer_server + "/")
    page.locator("[data-testid='list-clvq']").wait_for(timeout=TIMEOUT_MS)
    shoot(page, tmp_path, "explorer-list.png")

    word = unit["word"]
    box = page.get_by_label(re.compile("Which concepts hold a word"))
    box.fill(word)
    box.press("Enter")
    results = page.locator("[data-testid='search-results']")
    results.wait_for(timeout=TIMEOUT_MS)
    assert results.locator("tr").count() >= 2
    shoot(page, tmp_path, "explorer-search.png")

    concept = unit["concepts"]["clvq"]
    page.goto(f"{explorer_server}/?view=concept&method=clvq&concept={concept}")
    page.get_by_text(f"clvq · concept {concept}").wait_for(timeout=TIMEOUT_MS)
    page.locator("[data-testid='context'] mark").first.wait_for(timeout=TIMEOUT_MS)
    page.locator("[data-testid='judge']").wait_for(timeout=TIMEOUT_MS)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "<script>alert('d')</script> names of firms" in body  # the hostile description, as text
    assert HOSTILE in body  # a hostile judge answer, as text
    assert page.locator("script:has-text(\"alert('d')\")").count() == 0
    shoot(page, tmp_path, "explorer-concept.png")

    page.goto(f"{explorer_server}/?view=sentence&sentence={unit['sentence']}")
    sentence = page.locator("[data-testid='sentence']")
    sentence.wait_for(timeout=TIMEOUT_MS)
    assert HOSTILE in sentence.inner_text()  # the markup shown as text ...
    assert sentence.locator("img, b").count() == 0  # ... never as elements
    assert sentence.locator("mark").count() == 1
    page.locator("[data-testid='side-judge']").first.wait_for(timeout=TIMEOUT_MS)
    page.locator("[data-testid='side-words']").nth(2).wait_for(timeout=TIMEOUT_MS)  # one column per method
    shoot(page, tmp_path, "explorer-side-by-side.png")
    assert errors == []
    context.close()


def test_ablation_effect_per_concept_from_per_sentence_results(results_runs, tmp_path):
    """With ablate's per-sentence table, a concept's effect is the accuracy drop over the sentences it explains."""
    import shutil

    import pandas as pd

    shutil.copytree(results_runs / "tiny", tmp_path / "tiny")
    index = ConceptIndex(Results.open(tmp_path, "tiny"))
    explained = index.explanations
    concept_of = index.assignments("clvq")[explained["row"].to_numpy()]
    target = int(pd.Series(concept_of).value_counts().index[0])
    rows = []
    for sentence, concept in zip(explained["sentence"], concept_of):
        rows.append({"label": "clvq", "protocol": "model", "condition": "original", "sentence": sentence, "correct": 1})
        rows.append({"label": "clvq", "protocol": "model", "condition": "concept", "sentence": sentence,
                     "correct": 0 if concept == target else 1})
    pd.DataFrame(rows).to_csv(tmp_path / "tiny" / "ablation" / "sentences.csv", index=False)
    index = ConceptIndex(Results.open(tmp_path, "tiny"))
    drops = index.concept_drops("clvq")
    assert drops.loc[target, "drop"] == 1.0 and drops.loc[target, "n"] == (concept_of == target).sum()
    assert (drops.drop(index=target)["drop"] == 0).all()
    assert index.sorted_overview("clvq", "ablation effect")["concept"].iloc[0] == target
