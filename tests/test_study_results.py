"""Study statistics against hand-computed values and the `krippendorff` package; the results command."""

import json
import re

import krippendorff
import numpy as np
import pandas as pd
import pytest

from clvq_judge.cli.main import main
from clvq_judge.human_eval import schema
from clvq_judge.human_eval.results import accuracy_with_ci, compute_from, informative, rating_matrix
from clvq_judge.human_eval.store import Store

LABELS = ["neg", "pos"]


def tables():
    """Two methods (a, b), two sentences each, three annotators, one attention check.

    Method a: item 1 (truth neg) answered neg, neg, pos; item 2 (truth pos) answered pos, pos, can't tell.
    Method b: item 3 (truth neg) answered pos, pos; item 4 (truth pos) answered pos; one assigned answer missing.
    Attention item 5 (truth pos): annotators 1 and 2 answered pos, annotator 3 neg.
    """
    items = [(1, "task", "concept", 0, "a", 7, "neg"), (2, "task", "concept", 1, "a", 8, "pos"),
             (3, "task", "concept", 0, "b", 1, "neg"), (4, "task", "concept", 1, "b", 2, "pos"),
             (5, "attention", None, None, None, None, "pos")]
    annotators = [(1, "ann-1", "human"), (2, "ann-2", "human"), (3, "ann-3", "human")]
    o = '["neg", "pos"]'
    answers = [
        (1, 1, "neg", 4, o, 2.0, 0.0), (2, 1, "neg", 3, o, 3.0, 0.0), (3, 1, "pos", 2, o, 4.0, 0.0),
        (1, 2, "pos", 5, o, 1.0, 0.0), (2, 2, "pos", 5, o, 1.0, 0.0), (3, 2, None, 1, o, 9.0, 0.0),
        (1, 3, "pos", 2, o, 2.0, 0.0), (2, 3, "pos", 2, o, 2.0, 0.0),
        (3, 4, "pos", 3, o, 2.0, 0.0),
        (1, 5, "pos", 5, o, 1.0, 0.0), (2, 5, "pos", 5, o, 1.0, 0.0), (3, 5, "neg", 5, '["pos", "neg"]', 1.0, 0.0),
    ]
    assignments = [(a, i, p) for p, (a, i, *_rest) in enumerate(answers)] + [(1, 4, 99)]
    return {"items": items, "annotators": annotators, "answers": answers, "assignments": assignments}


META = {"name": "t", "run": "r", "labels": LABELS, "methods": ["a", "b"], "conditions": ["concept"]}


def test_hand_computed_alpha_and_package_agree():
    # rater 1: [0, 0, 1, 1], rater 2: [0, 1, 1, 1]. Coincidences: o00 = 2, o01 = o10 = 1, o11 = 4; n0 = 3, n1 = 5,
    # n = 8. Nominal alpha = 1 - (n - 1) * (o01 + o10) / (2 * n0 * n1) = 1 - 7 * 2 / 30 = 16 / 30.
    matrix = np.array([[0, 0, 1, 1], [0, 1, 1, 1]], dtype=float)
    from clvq_judge.core.stats import krippendorff_alpha

    assert krippendorff_alpha(matrix) == pytest.approx(16 / 30)
    assert krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal") == pytest.approx(16 / 30)


def test_rating_matrix_places_answers_and_leaves_nan():
    m = rating_matrix(np.array([1, 2, 2]), np.array([10, 10, 30]), np.array([0.0, 1.0, 0.0]), [1, 2, 3], [10, 20, 30])
    expected = np.array([[0, np.nan, np.nan], [1, np.nan, 0], [np.nan, np.nan, np.nan]])
    assert np.array_equal(np.isnan(m), np.isnan(expected)) and np.array_equal(m[~np.isnan(m)], expected[~np.isnan(expected)])


def test_accuracy_and_cluster_bootstrap_interval():
    acc, low, high = accuracy_with_ci(np.array([1, 1, 0, 1]), np.array([1, 1, 2, 2]), n_boot=2000, seed=0)
    assert acc == 0.75
    # resampling two items: each replicate is item 1 twice (1.0), item 2 twice (0.5) or both (0.75)
    assert low == pytest.approx(0.5) and high == pytest.approx(1.0)
    acc, low, high = accuracy_with_ci(np.array([1, 1, 1]), np.array([1, 2, 3]))
    assert (acc, low, high) == (1.0, 1.0, 1.0)


def test_fast_interval_equals_the_shared_cluster_bootstrap():
    from clvq_judge.core.stats import bootstrap_statistic

    rng = np.random.default_rng(4)
    items = rng.integers(0, 40, size=300)
    correct = (rng.random(300) < 0.6).astype(float)
    _, low, high = accuracy_with_ci(correct, items, n_boot=300, seed=9)
    assert (low, high) == pytest.approx(bootstrap_statistic(items, lambda rows: correct[rows].mean(), n_boot=300, seed=9))


def test_results_from_tables_match_hand_values():
    r = compute_from(tables(), META, n_boot=500, seed=0)
    assert list(r.conditions.columns) == schema.CONDITIONS and list(r.answers.columns) == schema.ANSWERS
    assert list(r.annotators.columns) == schema.ANNOTATORS and set(r.summary) == set(schema.SUMMARY)
    assert set(r.conditions["kind"]) == {"human"} and set(r.conditions["condition"]) == {"concept"}
    m = r.conditions.set_index("method")
    # a: correct = neg/neg/pos on item 1 -> 2 of 3; pos/pos/can't tell on item 2 -> 2 of 3: 4 of 6
    assert m.loc["a", "accuracy"] == pytest.approx(4 / 6)
    assert m.loc["a", "cant_tell_rate"] == pytest.approx(1 / 6)
    assert m.loc["a", "accuracy_decided"] == pytest.approx(4 / 5)
    # b: pos, pos on a neg item, pos on a pos item: 1 of 3
    assert m.loc["b", "accuracy"] == pytest.approx(1 / 3)
    assert m.loc["a", "ci_low"] <= m.loc["a", "accuracy"] <= m.loc["a", "ci_high"]
    # alpha of method a on [annotators x items] with can't tell as NaN, vs the package on the same matrix
    matrix_a = np.array([[0, 1], [0, 1], [1, np.nan]])
    assert m.loc["a", "alpha"] == pytest.approx(krippendorff.alpha(reliability_data=matrix_a, level_of_measurement="nominal"))
    overall = np.array([[0, 1, 1, np.nan], [0, 1, 1, np.nan], [1, np.nan, np.nan, 1]])
    assert r.summary["alpha_overall"] == pytest.approx(krippendorff.alpha(reliability_data=overall, level_of_measurement="nominal"))
    # attention checks: 2 of 3 passed, and never counted as a method's answer
    assert r.summary["attention_pass_rate"] == pytest.approx(2 / 3)
    assert m["answers"].sum() == 9
    ann = r.annotators.set_index("name")
    assert ann.loc["ann-3", "attention_pass_rate"] == 0 and ann.loc["ann-1", "attention_pass_rate"] == 1
    assert ann.loc["ann-1", "assigned"] == 5 and ann.loc["ann-1", "answered"] == 4
    assert ann.loc["ann-3", "median_seconds"] == pytest.approx(3.0)  # of 4, 9, 2 and 1 seconds
    # ann-3 passed 0 of 1 attention checks: flagged, and so is every row it answered in
    assert not ann.loc["ann-3", "informative"] and "attention" in ann.loc["ann-3", "flag"]
    assert ann.loc["ann-1", "informative"] and not m.loc["a", "informative"] and m.loc["a", "flagged_annotators"] == 1
    assert m.loc["a", "chance"] == 0.5 and m.loc["a", "majority_baseline"] == 0.5
    # the recorded order: ann-3's attention answer "neg" sat second in ["pos", "neg"]
    check = r.answers[(r.answers["annotator"] == 3) & (r.answers["item"] == 5)].iloc[0]
    assert check["options"] == "pos | neg" and check["answer_position"] == 1


def added_value_tables():
    """Conditions both and sentence, one method a, three sentences, two human answers per item (truth pos).

    both (items 1-3):     s0 2 of 2 right, s1 1 of 2, s2 2 of 2  -> 5/6
    sentence (items 4-6): s0 1 of 2 right, s1 0 of 2, s2 2 of 2  -> 3/6
    """
    items = [(1 + k, "task", "both", k, "a", k, "pos") for k in range(3)] + \
            [(4 + k, "task", "sentence", k, None, None, "pos") for k in range(3)]
    annotators = [(a, f"ann-{a}", "human") for a in range(1, 13)]
    right = {1: [1, 1], 2: [1, 0], 3: [1, 1], 4: [1, 0], 5: [0, 0], 6: [1, 1]}
    answers, a = [], 1
    for item, marks in right.items():
        for ok in marks:
            answers.append((a, item, "pos" if ok else "neg", 3, '["neg", "pos"]', 1.0, 0.0))
            a += 1
    assignments = [(x[0], x[1], 0) for x in answers]
    return {"items": items, "annotators": annotators, "answers": answers, "assignments": assignments}


def test_added_value_matches_a_hand_computed_case():
    meta = {"name": "t", "run": "r", "labels": LABELS, "methods": ["a"], "conditions": ["sentence", "both"]}
    r = compute_from(added_value_tables(), meta, n_boot=4000, seed=0)
    row = r.added_value.iloc[0]
    assert row["kind"] == "human" and row["method"] == "a" and row["sentences"] == 3 and row["shared_sentences"] == 3
    assert row["accuracy_both"] == pytest.approx(5 / 6) and row["accuracy_sentence"] == pytest.approx(3 / 6)
    assert row["added_value"] == pytest.approx(1 / 3)
    # Per sentence the difference is +1/2, +1/2, 0 (equal counts), so a replicate is k/6 for k of 3 draws from
    # {s0, s1}: P(k = 0) = 1/27 > 2.5% puts the low end at 0, P(k = 3) = 8/27 > 2.5% the high end at 1/2.
    assert row["ci_low"] == pytest.approx(0.0) and row["ci_high"] == pytest.approx(0.5)
    cells = r.conditions.set_index(["condition", "method"])
    assert cells.loc[("sentence", "none"), "accuracy"] == pytest.approx(0.5)
    assert cells.loc[("both", "a"), "items"] == 3


def test_informative_rule():
    assert informative(1.0, 30, 0.5, 0.4) == (True, "")
    assert not informative(0.5, 30, 0.5, 0.4)[0]  # half the attention checks failed
    ok, why = informative(1.0, 30, 0.85, 0.3)
    assert not ok and "one label" in why
    ok, why = informative(None, 30, 0.3, 0.9)
    assert not ok and "option place" in why
    assert informative(1.0, 5, 1.0, 1.0)[0]  # too few answers to call a collapse


def test_results_command_writes_tidy_csvs(make_study, tmp_path, capsys):
    path = make_study(items=4, overlap=1, annotators=3, attention_checks=1)
    store = Store.open(path)
    labels = store.labels()
    for annotator in (1, 2):
        item, _ = store.next_item(annotator)
        store.record_answer(annotator, item, labels[0], 3)
    out = tmp_path / "out"
    assert main(["study", "results", "--study", str(path), "--out", str(out), "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    # only rows with answers are printed (no table of zeros); every row says who answered
    assert "humans: 2 of" in printed and "alpha overall" in printed and len(re.findall(r"^human +concept ", printed, re.M)) == 2
    answers = pd.read_csv(out / "answers.csv")
    assert len(answers) == 2 and list(answers.columns) == schema.ANSWERS
    conditions = pd.read_csv(out / "conditions.csv")
    assert set(conditions["method"]) == {"clvq", "kmeans", "sae"} and set(conditions["condition"]) == {"concept"}
    assert len(pd.read_csv(out / "annotators.csv")) == 3
    assert json.loads((out / "summary.json").read_text())["answers"] == 2
    # the copy inside the run, where `clvq-judge export` looks
    in_run = path.parent / path.stem / "results"
    assert (in_run / "conditions.csv").exists() and (in_run / "summary.json").exists()


def test_results_of_a_missing_study_is_one_line(tmp_path, capsys):
    assert main(["study", "results", "--study", str(tmp_path / "nope.sqlite")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
