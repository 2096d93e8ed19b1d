"""Study design and display, as pure functions: assignment properties, escaping, passwords, arguments."""

import html

import numpy as np
import pytest

from clvq_judge.core.errors import UserError
from clvq_judge.human_eval.builder import assign, attention_positions, check_design, hash_password
from clvq_judge.human_eval.display import (
    CANT_TELL,
    attention_display,
    highlight,
    item_display,
    item_view,
    marked_example,
)
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
    # the start token (empty span) is shown as a marked placeholder ahead of the sentence
    assert highlight("Some text", (0, 0), "[CLS]") == "<mark>[CLS]</mark> Some text"


def test_display_has_words_and_examples_only_for_start_dominated_concepts():
    card = {"top_words": [["a", 3], ["b", 1]], "examples": [{"text": "x [[y]] z"}], "is_start_dominated": False}
    d = item_display("hello world", (6, 11), "world", card)
    assert d["top_words"] == [["a", 3], ["b", 1]] and d["examples"] == []
    d = item_display("hello world", (6, 11), "world", {**card, "is_start_dominated": True})
    assert d["examples"] == ["x [[y]] z"]
    view = item_view(d, ["neg", "pos"])
    assert view.choices == ["neg", "pos", CANT_TELL]
    assert view.plain()["sentence"] == "hello [[world]]" and view.plain()["examples"] == ["x [[y]] z"]
    check = item_view(attention_display("pos"), ["neg", "pos"])
    assert check.is_instruction and "pos" in check.sentence_html


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
