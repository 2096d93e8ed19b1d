"""Simulated annotators: the embedded judge answers a tiny study through the annotator's view, stored as its own
kind, resumable, and compared with the humans in the results.

Model calls: the simulate test sends 9 (6 task items + the attention check of each of the three simulated
annotators, whose label orders differ); its rerun sends none.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest

from clvq_judge.cli.main import main
from clvq_judge.human_eval.display import WORDS_CAPTION, attention_display, item_view
from clvq_judge.human_eval.results import compute, kind_agreement
from clvq_judge.human_eval.simulate import (
    SimulateConfig,
    annotator_messages,
    confidence_bucket,
    letter_choices,
    read_answer,
    simulate_study,
)
from clvq_judge.human_eval.store import Store
from clvq_judge.judge.client import Completion


def test_prompt_shows_the_annotator_view_of_each_condition_and_neither_method_nor_prediction(make_study):
    path = make_study(items=3, overlap=1, annotators=7, attention_checks=1, condition=("concept", "sentence", "both"))
    store = Store.open(path)
    with store.read() as conn:
        rows = conn.execute("SELECT id, kind, condition, method, truth, display FROM items ORDER BY id").fetchall()
    methods = {m for *_, m, _, _ in rows if m}
    seen = set()
    for item, kind, condition, _method, truth, display in rows:
        display = json.loads(display)
        order = store.option_order(1, item)
        view = item_view(display, order, allow_cant_tell=False)
        text = "\n".join(content for _, content in annotator_messages(display, order))
        if kind == "attention":
            assert display["text"] in text
            continue
        seen.add(condition)
        assert view.question in text  # the page's own instruction, per condition
        # the sentence with its marked word exactly when the page shows it; the concept's words likewise
        if display["text"] is None:
            assert condition == "concept"
        else:
            start, end = display["span"]
            if end > start:
                assert display["text"][:start] + "[[" + display["text"][start:end] + "]]" in text
        if view.top_words is None:
            assert WORDS_CAPTION not in text and condition == "sentence"
        elif not view.examples_html:
            assert WORDS_CAPTION in text
            for word, count in view.top_words:
                assert f"- {word} ({count})" in text
        # every label behind a letter, in the offered order
        choice_lines = [f"{letter}: {label}" for letter, label in letter_choices(order)]
        assert all(line in text for line in choice_lines) and "can't tell" not in text
        assert [line for line in text.splitlines() if line in choice_lines] == choice_lines
        # never the method; the prediction only as one of the choices (or where the content itself holds it)
        assert not any(re.search(rf"\b{re.escape(m)}\b", text, re.I) for m in methods)
        rest = "\n".join(line for line in text.splitlines() if line not in choice_lines)
        shown = " ".join([display["text"] or "", *(w for w, _ in view.top_words or []), *display["examples"], view.question,
                          WORDS_CAPTION])
        assert (truth in rest) == (truth in shown)
    assert seen == {"concept", "sentence", "both"}


def test_answers_are_read_as_letters_with_bucketed_confidence():
    choices = letter_choices(["World", "Sports", "Business", "Sci/Tech"])
    sure = Completion("B", choice_logprobs={"A": -9.0, "B": -0.01, "C": -8.0, "D": -7.0})
    answer = read_answer(sure, choices, "verdict", None)
    assert (answer.label, answer.confidence) == ("Sports", 5)
    flat = Completion("A", choice_logprobs={c: np.log(0.25) for c in "ABCD"})
    assert read_answer(flat, choices, "verdict", None).confidence == 1
    assert [confidence_bucket(p, 2) for p in (0.5, 0.61, 0.75, 0.95, 1.0)] == [1, 2, 3, 5, 5]
    # a backend without log-probabilities: its letter, no confidence; a reply naming no letter is "can't tell"
    assert read_answer(Completion("C"), choices, "verdict", None).label == "Business"
    assert read_answer(Completion("maybe"), choices, "verdict", None).label is None
    # the judge's strict parser: a letter that explains itself on the same line is not an answer
    assert read_answer(Completion("(D)"), choices, "verdict", None).label == "Sci/Tech"
    assert read_answer(Completion("A because"), choices, "verdict", None).label is None
    # sampling draws from the judge's probabilities, reproducibly per seed
    draws = {read_answer(flat, choices, "sample", np.random.default_rng(s)).label for s in range(40)}
    assert draws == {"World", "Sports", "Business", "Sci/Tech"}


def test_attention_item_prompt_is_its_instruction_only():
    text = annotator_messages(attention_display("Sports"), ["World", "Sports"])[-1][1]
    assert "please select \u201cSports\u201d" in text and "relied on most" not in text
    assert "A: World" in text and "B: Sports" in text


def test_kind_agreement_pairs_every_human_with_every_simulated_answer():
    human = pd.DataFrame({"item": [1, 1, 2, 3], "answer": ["a", "b", "a", None]})
    sim = pd.DataFrame({"item": [1, 2, 3, 4], "answer": ["a", "a", "b", "a"]})
    pairs, rate, alpha = kind_agreement(human, sim, {"a": 0, "b": 1})
    # pairs: (a,a) (b,a) on item 1, (a,a) on item 2, (None,b) on item 3; decided 3, agreeing 2
    assert pairs == 4 and rate == pytest.approx(2 / 3)
    import krippendorff

    expected = krippendorff.alpha(reliability_data=np.array([[0, 1, 0, np.nan], [0, 0, 0, 1]]),
                                  level_of_measurement="nominal")
    assert alpha == pytest.approx(expected, nan_ok=True)


@pytest.mark.slow
def test_simulate_stores_a_simulated_kind_resumes_and_results_compare(make_study, embedded_judge_dir, tmp_path, capsys):
    path = make_study(items=2, overlap=1, annotators=3, attention_checks=1)
    store = Store.open(path)
    labels = store.labels()
    humans = store.annotators()
    # the humans answer everything: the first label throughout (the attention check correctly)
    for h in humans:
        for item, display in store.pending_items(h.id):
            store.record_answer(h.id, item, display["instruction"] or labels[0], 3, seconds=1.0)

    config = SimulateConfig(study=str(path), annotators=3, device="cpu", batch_size=8)
    first = simulate_study(config)
    assert "9 requests sent" in first, first

    tables = store.tables()
    sims = [a for a in store.annotators() if a.kind == "simulated"]
    assert [a.name for a in sims] == ["sim-embedded-1", "sim-embedded-2", "sim-embedded-3"]
    assigned = {(a, i) for a, i, _ in tables["assignments"]}
    answered = [(a, i) for a, i, *_ in tables["answers"] if a in {s.id for s in sims}]
    # every assigned item answered once, and each simulated annotator has exactly its human's items
    assert sorted(answered) == sorted((a, i) for a, i in assigned if a in {s.id for s in sims})
    for sim, human in zip(sims, humans):
        assert {i for a, i in assigned if a == sim.id} == {i for a, i in assigned if a == human.id}
    answers = {(a, i): (ans, conf) for a, i, ans, conf, *_ in tables["answers"] if a in {s.id for s in sims}}
    assert all(ans in labels and 1 <= conf <= 5 for ans, conf in answers.values())
    # each answer carries the order its annotator was offered, the same seeded order a person gets
    for a, i, _, _, options, *_ in tables["answers"]:
        if a in {s.id for s in sims}:
            assert json.loads(options) == store.option_order(a, i)
    assert store.meta()["simulations"]["sim-embedded-2"]["takes_items_of"] == humans[1].name

    # a rerun asks nothing and adds nothing
    rows = len(tables["answers"])
    again = simulate_study(config)
    assert "already answered this study with these options" in again, again  # its record: no judge opened
    assert len(store.tables()["answers"]) == rows
    # --force records the simulated answers again, from the judge cache: same answers, still no request
    redone = simulate_study(SimulateConfig(study=str(path), annotators=3, device="cpu", force=True))
    assert "9 answers stored (0 requests sent, 9 from cache" in redone, redone
    assert {(a, i): (ans, conf) for a, i, ans, conf, *_ in store.tables()["answers"] if a in {s.id for s in sims}} == answers

    results = compute(store, n_boot=100)
    s = results.summary
    assert s["answers"] == 9 and s["attention_pass_rate"] == 1.0  # humans only: 3 x (2 items + 1 check)
    assert s["simulated"]["answers"] == 9 and s["simulated"]["human_pairs"] == 6
    assert s["simulated"]["attention_pass_rate"] in (0.0, 1 / 3, 2 / 3, 1.0)
    c = results.conditions.set_index(["kind", "method"])
    assert (c.loc["simulated", "answers"] == 2).all() and (c.loc["human", "answers"] == 2).all()
    assert (c.loc["simulated", "human_pairs"] == 2).all()
    # a flagged simulated annotator marks every row it answered in
    ann = results.annotators.set_index("annotator")
    for (kind, method), row in c.iterrows():
        who = set(results.answers.loc[(results.answers["method"] == method) & (results.answers["annotator_kind"] == kind),
                                      "annotator"])
        assert row["informative"] == all(ann.loc[a, "informative"] for a in who)

    assert main(["study", "results", "--study", str(path), "--out", str(tmp_path / "out"), "--n-boot", "100"]) == 0
    printed = capsys.readouterr().out
    assert len(re.findall(r"^simulated +concept ", printed, re.M)) == 3 and re.search(r"^human +concept ", printed, re.M)
    kinds = pd.read_csv(tmp_path / "out" / "annotators.csv")["kind"].value_counts().to_dict()
    assert kinds == {"human": 3, "simulated": 3}
    print(first)


def test_more_simulated_annotators_than_human_slots_is_one_line(make_study, capsys):
    path = make_study(items=2, overlap=1, annotators=3, attention_checks=0)
    assert main(["study", "simulate", "--study", str(path), "--annotators", "4", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--annotators 4" in err
