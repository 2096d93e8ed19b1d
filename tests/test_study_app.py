"""The Streamlit app driven by `streamlit.testing.v1.AppTest`: a whole annotation session, the results view."""

import html
import json
import re

from fixtures_study import APP, STUDY_METHODS
from streamlit.testing.v1 import AppTest

from clvq_judge.human_eval.conditions import get_condition
from clvq_judge.human_eval.display import CANT_TELL, MISSING_NOTE, WORDS_CAPTION
from clvq_judge.human_eval.store import Store
from clvq_judge.human_eval.throttle import PASSWORDS


def app(study, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("CLVQ_STUDY", str(study))
    at = AppTest.from_file(str(APP), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def page_text(at: AppTest) -> str:
    """Everything the page shows: markdown/HTML, widget labels and options, alerts."""
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [s.value for s in at.success]
    parts += [c.value for c in at.caption] + [w.value for w in at.warning] + [i.value for i in at.info]
    for radio in at.radio:
        parts += [radio.label, *map(str, radio.options)]
    return "\n".join(parts)


def progress_value(at: AppTest) -> float:
    return at.get("progress")[0].proto.value


def test_whole_annotation_session_resumes_and_hides_method_and_prediction(make_study, monkeypatch):
    study = make_study(items=4, overlap=1, annotators=3, attention_checks=2)
    store = Store.open(study)
    token = store.invites()[0][1]
    total = store.progress(1).total
    at = app(study, monkeypatch, token=token)
    submitted = 0
    while not at.success:
        assert not at.exception
        text = page_text(at)
        for method in STUDY_METHODS:
            assert not re.search(rf"\b{method}\b", text, re.IGNORECASE), method
        assert "predicted label" not in text.lower()
        assert progress_value(at) == submitted * 100 // total
        item, display = store.next_item(1)
        # concept condition (the default): the card, never the evaluation sentence
        if display["instruction"]:
            choice = display["instruction"]
        else:
            assert display["text"] is None and (WORDS_CAPTION in text or "sentence starts" in text)
            assert not any(m.value.startswith('<div class="study-sentence"') for m in at.markdown)
            choice = CANT_TELL if submitted == 1 else at.radio[0].options[submitted % 5]
        # the labels in the seeded order of this annotator and item, can't tell last; nothing preselected
        assert at.radio[0].options == [*store.option_order(1, item), CANT_TELL]
        assert at.radio[0].value is None and at.radio[1].value is None
        if submitted == 2:
            # a submit without a choice is refused and records nothing
            at.button[0].click().run()
            assert at.warning and store.progress(1).answered == submitted
            # the confidence starts unset and is required too
            at.radio[0].set_value(choice)
            at.button[0].click().run()
            assert "a confidence" in at.warning[0].value and store.progress(1).answered == submitted
        at.radio[0].set_value(choice)
        at.radio[1].set_value(4)
        at.button[0].click().run()
        submitted += 1
        assert store.progress(1).answered == submitted
        assert json.loads(Store.open(study).tables()["answers"][-1][4]) == store.option_order(1, item)
        if submitted == 3:
            # a fresh session (reload, another device) resumes at the first unanswered item
            again = app(study, monkeypatch, token=token)
            assert progress_value(again) == submitted * 100 // total
            assert again.radio[0].options == [*store.option_order(1, store.next_item(1)[0]), CANT_TELL]
    assert submitted == total and "All done" in at.success[0].value
    rows = Store.open(study).tables()["answers"]
    assert len(rows) == total and sum(r[2] is None for r in rows) == 1 and {r[3] for r in rows} == {4}


def test_unknown_token_sees_nothing(make_study, monkeypatch):
    at = app(make_study(items=3, overlap=1, annotators=3), monkeypatch, token="guess-1")
    assert at.error and "not valid" in at.error[0].value and not at.radio


def test_sentence_markup_is_shown_as_text(handmade_study, monkeypatch):
    study = handmade_study(['<script>alert("pwned")</script> is <b>bold</b>'], token_prefix="t")
    at = app(study, monkeypatch, token="t1")
    blocks = [m.value for m in at.markdown if m.value.startswith(('<div class="study-sentence"', '<ul class="study-words"'))]
    assert len(blocks) == 2 and all("<script>" not in b and "<b>" not in b for b in blocks)
    sentence = re.sub(r"</?mark>|</?div[^>]*>", "", blocks[0])
    assert html.unescape(sentence) == '<script>alert("pwned")</script> is <b>bold</b>'
    assert "&lt;b&gt;bold&lt;/b&gt;" in blocks[1]  # a concept word holding markup


def test_results_need_the_password(make_study, monkeypatch):
    study = make_study(items=3, overlap=1, annotators=3)
    store = Store.open(study)
    item, _ = store.next_item(1)
    store.record_answer(1, item, store.labels()[0], 5)

    monkeypatch.delenv("CLVQ_STUDY_ADMIN_PASSWORD", raising=False)
    locked = app(study, monkeypatch, admin="1")
    assert "locked" in locked.error[0].value and not locked.text_input and not locked.dataframe

    monkeypatch.setenv("CLVQ_STUDY_ADMIN_PASSWORD", "letmein")
    at = app(study, monkeypatch, admin="1")
    assert at.text_input and not at.dataframe
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert at.error and "Wrong password" in at.error[0].value
    assert not at.dataframe and not at.metric and not at.get("download_button")

    at.text_input[0].input("letmein")
    at.button[0].click().run()
    assert not at.exception and not at.error and not at.text_input  # the login form is gone
    table = at.dataframe[0].value
    assert set(table["method"]) == set(STUDY_METHODS) and table["answers"].sum() == 1
    assert set(table["condition"]) == {"concept"} and set(table["kind"]) == {"human"}
    assert "1 / " in at.metric[0].value
    assert len(at.get("download_button")) == 4 and at.get("vega_lite_chart")
    assert "letmein" not in "\n".join(m.value for m in at.markdown)
    # an annotator's token does not open the results
    token = store.invites()[0][1]
    annotator = app(study, monkeypatch, token=token)
    assert not annotator.dataframe


def test_missing_study_is_a_page_error(tmp_path, monkeypatch):
    at = app(tmp_path / "none.sqlite", monkeypatch, token="x")
    assert at.error and "not found" in at.error[0].value


def test_each_condition_shows_its_part_and_its_instruction(handmade_study, monkeypatch):
    for condition in ("concept", "sentence", "both"):
        study = handmade_study(["the plot was dull"], condition=condition, token_prefix=condition)
        at = app(study, monkeypatch, token=f"{condition}1")
        text = page_text(at)
        sentence = [m.value for m in at.markdown if m.value.startswith('<div class="study-sentence"')]
        words = [m.value for m in at.markdown if m.value.startswith('<ul class="study-words"')]
        assert get_condition(condition).question in text
        assert bool(sentence) == (condition != "concept") and bool(words) == (condition != "sentence")
        assert (WORDS_CAPTION in text) == (condition != "sentence")
        # the fixture's card does not list the highlighted word: said on the page, where the word is shown
        assert (MISSING_NOTE in text) == (condition == "both")
        assert "Your confidence (1 = a guess, 5 = sure)" in text and not at.slider


def test_attention_check_says_how_to_answer_the_confidence(make_study, monkeypatch):
    study = make_study(items=1, overlap=1, annotators=3, attention_checks=1)
    store = Store.open(study)
    token = store.invites()[0][1]
    at = app(study, monkeypatch, token=token)
    while not store.next_item(1)[1]["instruction"]:
        at.radio[0].set_value(at.radio[0].options[0])
        at.radio[1].set_value(3)
        at.button[0].click().run()
    assert "attention check" in at.radio[1].label.lower() and "any value" in at.radio[1].label


def test_a_duplicate_submit_from_a_second_tab_is_said_on_the_page(handmade_study, monkeypatch):
    study = handmade_study(["first sentence", "second sentence"], token_prefix="dup")
    one, two = app(study, monkeypatch, token="dup1"), app(study, monkeypatch, token="dup1")
    for tab in (one, two):
        tab.radio[0].set_value("positive")
        tab.radio[1].set_value(2)
    one.button[0].click().run()
    assert not one.info
    two.button[0].click().run()
    assert two.info and "already been answered" in two.info[0].value and "not saved" in two.info[0].value
    assert len(Store.open(study).tables()["answers"]) == 1


def test_widget_keys_say_nothing_about_item_or_method(make_study, monkeypatch):
    study = make_study(items=3, overlap=1, annotators=2, method=("clvq", "kmeans"), attention_checks=0)
    store = Store.open(study)
    token = store.invites()[0][1]
    at = app(study, monkeypatch, token=token)
    keys = []
    while not at.success:
        item, _ = store.next_item(1)
        keys += [at.radio[0].key, at.radio[1].key]
        assert not re.search(rf"(^|\D){item}(\D|$)", at.radio[0].key.split("-", 1)[1].replace(store.widget_key(1, item), ""))
        assert re.fullmatch(r"[ac]-[0-9a-f]{16}", at.radio[0].key) and at.radio[0].key == f"a-{store.widget_key(1, item)}"
        at.radio[0].set_value(at.radio[0].options[0])
        at.radio[1].set_value(3)
        at.button[0].click().run()
    assert len(set(keys)) == len(keys)


def test_repeated_wrong_passwords_are_slowed_down(make_study, monkeypatch):
    study = make_study(items=1, overlap=1, annotators=3)
    monkeypatch.setenv("CLVQ_STUDY_ADMIN_PASSWORD", "right")
    monkeypatch.setattr(PASSWORDS, "base", 0.01)
    PASSWORDS.succeeded()
    try:
        at = app(study, monkeypatch, admin="1")
        messages = []
        for _ in range(3):
            at.text_input[0].input("wrong")
            at.button[0].click().run()
            messages.append(at.error[0].value)
        assert "slowed down" not in messages[0] and "slowed down" in messages[1] and PASSWORDS.delay() > 0
        at.text_input[0].input("right")
        at.button[0].click().run()
        assert at.dataframe and PASSWORDS.delay() == 0
    finally:
        PASSWORDS.succeeded()
