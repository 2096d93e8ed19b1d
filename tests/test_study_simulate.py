"""Simulated annotators: the embedded judge answers a tiny study through the annotator's view, stored as its own
kind, resumable, and compared with the humans in the results.

Model calls: the simulate test sends 7 (6 task items + 1 attention check shared by the three simulated
annotators); its rerun sends none.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest

from clvq_judge.cli.main import main
from clvq_judge.human_eval.display import attention_display
from clvq_judge.human_eval.results import compute, kind_agreement
from clvq_judge.human_eval.simulate import (
    SimulateConfig,
    annotator_messages,
    confidence_bucket,
    letter_choices,
    ordered_labels,
    read_answer,
    simulate_study,
)
from clvq_judge.human_eval.store import Store
from clvq_judge.judge.client import Completion


def test_prompt_shows_the_annotator_view_and_neither_method_nor_prediction(make_study):
    path = make_study(items=3, overlap=1, annotators=3, attention_checks=1)
    store = Store.open(path)
    labels = store.labels()
    with store.read() as conn:
        rows = conn.execute("SELECT kind, method, truth, display FROM items ORDER BY id").fetchall()
    methods = {m for _, m, _, _ in rows if m}
    for kind, _method, truth, display in rows:
        display = json.loads(display)
        text = "\n".join(content for _, content in annotator_messages(display, labels))
        if kind == "attention":
            assert display["text"] in text
            continue
        # the sentence with its marked word, the concept's words with counts, every label behind a letter
        start, end = display["span"]
        if end > start:
            assert display["text"][:start] + "[[" + display["text"][start:end] + "]]" in text
        for word, count in display["top_words"]:
            assert f"- {word} ({count})" in text
        choice_lines = [f"{letter}: {label}" for letter, label in letter_choices(labels)]
        assert all(line in text for line in choice_lines) and "can't tell" not in text
        # never the method; the prediction only as one of the choices (or where the content itself holds it)
        assert not any(re.search(rf"\b{re.escape(m)}\b", text, re.I) for m in methods)
        rest = "\n".join(line for line in text.splitlines() if line not in choice_lines)
        shown = " ".join([display["text"], *(w for w, _ in display["top_words"]), *display["examples"]])
        assert (truth in rest) == (truth in shown)


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
    # sampling draws from the judge's probabilities, reproducibly per seed
    draws = {read_answer(flat, choices, "sample", np.random.default_rng(s)).label for s in range(40)}
    assert draws == {"World", "Sports", "Business", "Sci/Tech"}


def test_shuffled_choice_order_is_a_seeded_permutation_per_item():
    labels = ["a", "b", "c", "d", "e"]
    assert ordered_labels(labels, "study", 0, 7) == labels
    orders = [ordered_labels(labels, "shuffled", 0, item) for item in range(20)]
    assert all(sorted(o) == labels for o in orders) and len({tuple(o) for o in orders}) > 5
    assert ordered_labels(labels, "shuffled", 0, 3) == orders[3]
    assert {o[0] for o in orders} == set(labels)  # every label gets the first letter somewhere


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
    assert "7 requests sent" in first, first

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
    assert store.meta()["simulations"]["sim-embedded-2"]["takes_items_of"] == humans[1].name

    # a rerun asks nothing and adds nothing
    rows = len(tables["answers"])
    again = simulate_study(config)
    assert "0 answers stored (0 requests sent" in again, again
    assert len(store.tables()["answers"]) == rows
    # --force records the simulated answers again, from the judge cache: same answers, still no request
    redone = simulate_study(SimulateConfig(study=str(path), annotators=3, device="cpu", force=True))
    assert "9 answers stored (0 requests sent, 9 from cache" in redone, redone
    assert {(a, i): (ans, conf) for a, i, ans, conf, *_ in store.tables()["answers"] if a in {s.id for s in sims}} == answers

    results = compute(store, n_boot=100)
    s = results.summary
    assert s["answers"] == 9 and s["attention_pass_rate"] == 1.0  # humans only: 3 x (2 items + 1 check)
    assert s["simulated"]["answers"] == 9 and s["simulated"]["human_pairs"] == 6
    assert s["simulated"]["attention_pass_rate"] in (0.0, 1.0)
    m = results.methods.set_index("method")
    assert (m["sim_answers"] == 2).all() and (m["answers"] == 2).all()
    # the humans always said labels[0]: a method's agreement is the share of simulated answers that did too
    for method, row in m.iterrows():
        items = set(results.answers.loc[results.answers["method"] == method, "item"])
        sim_said = [answers[(a, i)][0] for a, i in answers if i in items]
        assert row["sim_human_agreement"] == pytest.approx(np.mean([x == labels[0] for x in sim_said]))

    assert main(["study", "results", "--study", str(path), "--out", str(tmp_path / "out"), "--n-boot", "100"]) == 0
    printed = capsys.readouterr().out
    assert "simulated" in printed and "alpha sim vs human" in printed
    methods_csv = pd.read_csv(tmp_path / "out" / "methods.csv")
    assert {"accuracy", "sim_accuracy", "sim_human_alpha"} <= set(methods_csv.columns)
    kinds = pd.read_csv(tmp_path / "out" / "annotators.csv")["kind"].value_counts().to_dict()
    assert kinds == {"human": 3, "simulated": 3}
    print(first)


def test_more_simulated_annotators_than_human_slots_is_one_line(make_study, capsys):
    path = make_study(items=2, overlap=1, annotators=3, attention_checks=0)
    assert main(["study", "simulate", "--study", str(path), "--annotators", "4", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--annotators 4" in err
