"""The study store under concurrent writers: nothing lost, a double submit records one answer."""

import json
import sqlite3
import threading

import pytest

from clvq_judge.core.errors import UserError
from clvq_judge.human_eval.store import Store


def test_concurrent_annotators_lose_nothing(handmade_study):
    path = handmade_study([f"sentence {i}" for i in range(12)], annotators=8)
    store = Store.open(path)
    barrier = threading.Barrier(16)
    results: dict = {}
    errors = []

    def annotate(annotator: int, copy: int):
        try:
            mine = Store(path)  # each thread its own handle, as each Streamlit session has
            barrier.wait()
            for item in range(1, 13):
                # two threads per annotator submit every item at the same moment: a double submit
                stored = mine.record_answer(annotator, item, "positive" if item % 2 else "negative", copy + 1)
                results[(annotator, item, copy)] = stored
        except Exception as exc:  # surfaced below with the thread's context
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(a, c)) for a in range(1, 9) for c in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    conn = sqlite3.connect(path)
    answers = conn.execute("SELECT annotator, item, answer FROM answers").fetchall()
    conn.close()
    assert len(answers) == 8 * 12  # every (annotator, item) once
    assert {(a, i) for a, i, _ in answers} == {(a, i) for a in range(1, 9) for i in range(1, 13)}
    # exactly one of each pair of simultaneous submits was stored
    for a in range(1, 9):
        for i in range(1, 13):
            assert results[(a, i, 0)] != results[(a, i, 1)]
    assert all(store.progress(a).done for a in range(1, 9))


def test_resume_order_and_time_spent(handmade_study):
    path = handmade_study(["one", "two", "three"])
    store = Store.open(path)
    item, display = store.next_item(1)
    assert item == 1 and display["text"] == "one"
    shown = store.mark_shown(1, 1, now=100.0)
    assert store.mark_shown(1, 1, now=150.0) == shown == 100.0  # a reload keeps the first view time
    assert store.record_answer(1, 1, "negative", 4, now=112.5)
    assert not store.record_answer(1, 1, "positive", 1)  # second submit ignored
    assert store.next_item(1)[0] == 2 and store.progress(1).answered == 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT answer, confidence, seconds FROM answers").fetchall() == [("negative", 4, 12.5)]
    conn.close()
    assert store.record_answer(1, 2, None, 2)  # "can't tell" is stored as NULL
    with pytest.raises(ValueError):
        store.record_answer(1, 3, "not-a-label", 3)
    with pytest.raises(ValueError):
        store.record_answer(1, 99, "negative", 3)  # not assigned to this annotator
    assert store.annotator_by_token("tok1").id == 1 and store.annotator_by_token("tok2") is None


def test_the_offered_order_is_recorded_and_checked(handmade_study):
    path = handmade_study(["one", "two"], labels=("a", "b", "c"))
    store = Store.open(path)
    order = store.option_order(1, 1)
    assert sorted(order) == ["a", "b", "c"] and store.option_order(1, 1) == order
    assert store.record_answer(1, 1, "b", 3, options=order)
    conn = sqlite3.connect(path)
    assert json.loads(conn.execute("SELECT options FROM answers").fetchone()[0]) == order
    conn.close()
    with pytest.raises(ValueError, match="option order"):
        store.record_answer(1, 2, "a", 3, options=["a", "b"])


def test_widget_keys_are_opaque_and_stable(handmade_study):
    store = Store.open(handmade_study(["one", "two", "three"], annotators=2))
    keys = {(a, i): store.widget_key(a, i) for a in (1, 2) for i in (1, 2, 3)}
    assert len(set(keys.values())) == 6 and keys[(1, 2)] == store.widget_key(1, 2)
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in keys.values())


def test_foreign_or_future_files_are_refused(tmp_path, handmade_study):
    bogus = tmp_path / "bogus.sqlite"
    bogus.write_text("not a database at all, just text" * 10)
    with pytest.raises(UserError, match="not a study file"):
        Store.open(bogus)
    path = handmade_study(["x"])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(UserError, match="schema version 99"):
        Store.open(path)
    with pytest.raises(UserError, match="not found"):
        Store.open(tmp_path / "missing.sqlite")
