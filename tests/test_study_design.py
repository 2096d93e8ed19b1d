"""Study design and display, as pure functions: assignment properties, escaping, passwords, arguments."""

import html

import numpy as np
import pytest

from clvq_judge.core.errors import UserError
from clvq_judge.human_eval.builder import assign, attention_positions, check_design, hash_password
from clvq_judge.human_eval.conditions import cells, get_condition
from clvq_judge.human_eval.display import (
    CANT_TELL,
    MISSING_NOTE,
    START_MARKER,
    attention_display,
    highlight,
    item_view,
    marked_example,
    option_order,
    readable_word,
)
from clvq_judge.human_eval.throttle import Throttle
from clvq_judge.human_eval.views import password_ok, study_path_from, words_html


@pytest.mark.parametrize("sentences,methods,annotators,overlap", [(60, 3, 9, 3), (60, 3, 6, 2), (40, 3, 7, 2), (13, 2, 5, 2), (7, 3, 3, 1)])
def test_assignment_overlap_no_repeat_and_balance(sentences, methods, annotators, overlap):
    per = assign(sentences, methods, annotators, overlap, seed=3)
    assert len(per) == annotators
    counts: dict = {}
    for seq in per:
        # nobody sees one sentence under two methods
        assert len({s for s, _ in seq}) == len(seq)
        for pair in seq:
            counts[pair] = counts.get(pair, 0) + 1
    assert set(counts) == {(s, m) for s in range(sentences) for m in range(methods)}
    assert set(counts.values()) == {overlap}
    loads = [len(seq) for seq in per]
    assert max(loads) - min(loads) <= 1
    per_method = np.array([[sum(m == k for _, m in seq) for k in range(methods)] for seq in per])
    assert (per_method.max(1) - per_method.min(1)).max() <= 1


def test_assignment_is_seeded():
    assert assign(20, 3, 6, 2, seed=1) == assign(20, 3, 6, 2, seed=1)
    assert assign(20, 3, 6, 2, seed=1) != assign(20, 3, 6, 2, seed=2)


def test_design_errors_are_one_line():
    with pytest.raises(UserError, match="above --annotators"):
        check_design(3, 4, 3)
    with pytest.raises(UserError, match="needs at least 9 annotators") as err:
        check_design(3, 3, 6)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("sentences,cells_,annotators,overlap", [(30, 7, 21, 3), (30, 7, 7, 1), (12, 5, 10, 2)])
def test_no_annotator_meets_a_sentence_twice_across_conditions_and_methods(sentences, cells_, annotators, overlap):
    per = assign(sentences, cells_, annotators, overlap, seed=0)
    for seq in per:
        assert len({s for s, _ in seq}) == len(seq)
    per_cell = np.array([[sum(c == k for _, c in seq) for k in range(cells_)] for seq in per])
    assert (per_cell.max(1) - per_cell.min(1)).max() <= 1 and set(per_cell.sum(0)) == {sentences * overlap}


def test_attention_checks_never_first_and_distinct():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pos = attention_positions(10, 3, rng)
        assert len(set(pos)) == 3 and min(pos) >= 1 and max(pos) <= 12


def test_sentence_markup_renders_literally():
    text = 'Bad <script>alert("x")</script> & <b>bold</b> news'
    start = text.index("<script>")
    out = highlight(text, (start, start + 8))
    assert "<script>" not in out and "<b>" not in out
    assert out == html.escape(text[:start]) + "<mark>&lt;script&gt;</mark>" + html.escape(text[start + 8:])
    assert marked_example("a [[<i>x</i>]] <img src=x onerror=1>") == "a <mark>&lt;i&gt;x&lt;/i&gt;</mark> &lt;img src=x onerror=1&gt;"
    assert "<b>" not in words_html([("<b>w</b>", 2)])
    # the start token (empty span) is shown as a readable marked placeholder ahead of the sentence
    assert highlight("Some text", (0, 0), "[CLS]") == f"<mark>{START_MARKER}</mark> Some text"


def test_model_internal_tokens_are_shown_as_a_marker():
    assert readable_word("[CLS]") == readable_word("<s>") == START_MARKER
    assert readable_word("[SEP]") != "[SEP]" and readable_word("<|endoftext|>") != "<|endoftext|>"
    assert readable_word("banks") == "banks" and readable_word("<b>") == "<b>"
    assert marked_example("[[[CLS]]] the [[bank]] rose") == f"<mark>{START_MARKER}</mark> the <mark>bank</mark> rose"
    card = {"top_words": [["[CLS]", 9], ["bank", 2]], "examples": [], "is_start_dominated": False}
    view = item_view(get_condition("concept").display(0, "t", (0, 1), "t", card, 12, 3), ["a", "b"])
    assert view.top_words == [(START_MARKER, 9), ("bank", 2)]


def both(*args):
    return get_condition("both").display(7, *args, 12, 3)


def test_display_has_words_and_examples_only_for_start_dominated_concepts():
    card = {"top_words": [["a", 3], ["b", 1]], "examples": [{"text": "x [[y]] z", "sentence": 1}], "is_start_dominated": False}
    d = both("hello world", (6, 11), "world", card)
    assert d["top_words"] == [["a", 3], ["b", 1]] and d["examples"] == []
    d = both("hello world", (6, 11), "world", {**card, "is_start_dominated": True})
    assert d["examples"] == ["x [[y]] z"]
    view = item_view(d, ["neg", "pos"])
    assert view.choices == ["neg", "pos", CANT_TELL]
    assert view.plain()["sentence"] == "hello [[world]]" and view.plain()["examples"] == ["x [[y]] z"]
    check = item_view(attention_display("pos"), ["neg", "pos"])
    assert check.is_instruction and "pos" in check.sentence_html and "confidence" in check.sentence_html


def test_each_condition_shows_only_its_part():
    card = {"top_words": [["dull", 3], ["slow", 1]], "is_start_dominated": True,
            "examples": [{"text": "the [[plot]] was dull", "sentence": 7}, {"text": "[[a]] film", "sentence": 8}]}
    views = {name: item_view(get_condition(name).display(7, "the plot was dull", (4, 8), "plot", card, 12, 3), ["a", "b"])
             for name in ("concept", "sentence", "both")}
    # concept: the card only, and never the evaluation sentence among its examples
    assert views["concept"].sentence_html is None and views["concept"].top_words is not None
    assert views["concept"].plain()["examples"] == ["[[a]] film"]
    assert "cannot see" in views["concept"].question
    assert views["sentence"].top_words is None and "<mark>plot</mark>" in views["sentence"].sentence_html
    assert views["both"].top_words is not None and views["both"].sentence_html is not None
    assert len({v.question for v in views.values()}) == 3
    # the sentence control is one item per sentence whatever the method; the others one per method
    assert cells(["concept", "sentence", "both"], ["m1", "m2"]) == [
        ("concept", "m1"), ("concept", "m2"), ("sentence", None), ("both", "m1"), ("both", "m2")]


def test_a_highlighted_word_missing_from_its_concept_is_explained():
    card = {"top_words": [["Smith", 4], ["Jones", 2]], "examples": [], "is_start_dominated": False}
    assert item_view(both("a dour man", (2, 6), "dour", card), ["a", "b"]).word_missing_note == MISSING_NOTE
    assert item_view(both("a Smith man", (2, 7), "Smith", card), ["a", "b"]).word_missing_note is None


def test_option_order_is_seeded_per_annotator_and_item_and_spreads_the_first_place():
    labels = ["business", "entertainment", "politics", "sport", "tech"]
    assert option_order(labels, 0, 1, 5) == option_order(labels, 0, 1, 5)
    firsts = [option_order(labels, 0, a, i)[0] for a in range(1, 6) for i in range(1, 41)]
    assert all(sorted(option_order(labels, 0, 2, i)) == labels for i in range(10))
    share = {label: firsts.count(label) / len(firsts) for label in labels}
    assert max(share.values()) < 0.3 and min(share.values()) > 0.1, share


def test_wrong_passwords_wait_longer_each_time_until_a_right_one():
    now, slept = [0.0], []
    t = Throttle(base=1.0, cap=8.0, window=100.0, clock=lambda: now[0], sleep=slept.append)
    delays = []
    for _ in range(7):
        delays.append(t.wait())
        t.failed()
    assert delays == [0, 0, 1, 2, 4, 8, 8] and slept == [1, 2, 4, 8, 8]
    t.succeeded()
    assert t.delay() == 0
    t.failed(), t.failed(), t.failed()
    now[0] = 500.0  # a quiet window forgets
    assert t.delay() == 0


def test_password_from_env_or_stored_hash():
    stored = {"admin_password": hash_password("s3cret")}
    assert password_ok("s3cret", stored, {})
    assert not password_ok("wrong", stored, {})
    assert not password_ok("", stored, {})
    assert password_ok("envpw", {}, {"CLVQ_STUDY_ADMIN_PASSWORD": "envpw"})
    assert not password_ok("x", {}, {"CLVQ_STUDY_ADMIN_PASSWORD": "envpw"})
    assert not password_ok("anything", {}, {})  # nothing configured: nothing opens


def test_study_path_from_arguments_or_env():
    assert study_path_from(["--study", "a.sqlite"], {}) == "a.sqlite"
    assert study_path_from(["--study=b.sqlite"], {"CLVQ_STUDY": "c"}) == "b.sqlite"
    assert study_path_from(["-q"], {"CLVQ_STUDY": "c.sqlite"}) == "c.sqlite"
    assert study_path_from([], {}) is None
