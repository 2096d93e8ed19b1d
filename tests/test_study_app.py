"""The Streamlit app driven by `streamlit.testing.v1.AppTest`: a whole annotation session, the results view."""

import html
import re

from fixtures_study import APP, STUDY_METHODS
from streamlit.testing.v1 import AppTest

from clvq_judge.human_eval.display import CANT_TELL
from clvq_judge.human_eval.store import Store


def app(study, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("CLVQ_STUDY", str(study))
    at = AppTest.from_file(str(APP), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def page_text(at: AppTest) -> str:
    """Everything the page shows: markdown/HTML, widget labels and options, alerts."""
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [s.value for s in at.success]
    for radio in at.radio:
        parts += [radio.label, *radio.options]
    parts += [s.label for s in at.slider]
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
        # the shown sentence is the frozen one, with the explanation token marked
        assert any(display["text"][: display["span"][0]].replace("&", "&amp;")[:20] in m.value for m in at.markdown)
        if display["instruction"]:
            choice = display["instruction"]
        else:
            choice = CANT_TELL if submitted == 1 else at.radio[0].options[submitted % 5]
        if submitted == 2:
            # a submit without a choice is refused and records nothing
            at.button[0].click().run()
            assert at.warning and store.progress(1).answered == submitted
        at.radio[0].set_value(choice)
        at.slider[0].set_value(4)
        at.button[0].click().run()
        submitted += 1
        assert store.progress(1).answered == submitted
        if submitted == 3:
            # a fresh session (reload, another device) resumes at the first unanswered item
            again = app(study, monkeypatch, token=token)
            assert progress_value(again) == submitted * 100 // total
            nxt, shown = store.next_item(1)
            assert any(shown["text"][:15].replace("&", "&amp;") in m.value for m in again.markdown)
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
    methods = at.dataframe[0].value
    assert set(methods["method"]) == set(STUDY_METHODS) and methods["answers"].sum() == 1
    assert "1 / " in at.metric[0].value
    assert len(at.get("download_button")) == 3 and at.get("vega_lite_chart")
    assert "letmein" not in "\n".join(m.value for m in at.markdown)
    # an annotator's token does not open the results
    token = store.invites()[0][1]
    annotator = app(study, monkeypatch, token=token)
    assert not annotator.dataframe


def test_missing_study_is_a_page_error(tmp_path, monkeypatch):
    at = app(tmp_path / "none.sqlite", monkeypatch, token="x")
    assert at.error and "not found" in at.error[0].value
