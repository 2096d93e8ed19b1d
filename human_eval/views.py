"""The pages of the study app: annotate (by invite token) and results (behind the admin password).

State lives in the study file, not in Streamlit's session: every render asks the store for the
annotator's first unanswered item, so a reload, another device or a server restart resumes there.
Everything user-visible that came from data (sentences, words, names) is escaped before it reaches HTML.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import sys
from collections.abc import Mapping, Sequence

import streamlit as st

from clvq_judge.core.errors import UserError

from .display import CANT_TELL, ItemView, item_view
from .store import Store

ADMIN_ENV = "CLVQ_STUDY_ADMIN_PASSWORD"
STUDY_ENV = "CLVQ_STUDY"

CSS = """
<style>
.study-sentence { font-size: 1.15rem; line-height: 1.7; padding: .6rem .8rem; border-radius: .4rem;
                 background: rgba(127,127,127,.08); }
.study-sentence mark, .study-example mark { background: #ffd54f; color: #000; padding: 0 .15rem; border-radius: .2rem; }
.study-words { list-style: none; padding: 0; margin: 0; }
.study-words li { display: flex; align-items: center; gap: .5rem; margin: .1rem 0; }
.study-words .w { min-width: 9rem; font-family: monospace; }
.study-words .bar { height: .8rem; background: #64b5f6; border-radius: .2rem; }
.study-words .n { color: #888; font-size: .85rem; }
.study-example { margin: .3rem 0; }
</style>
"""


def study_path_from(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The study file from `--study PATH` (the script's arguments after `--`) or the CLVQ_STUDY variable."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--study" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--study="):
            return arg.split("=", 1)[1]
    return environ.get(STUDY_ENV) or None


def password_ok(candidate: str, meta: Mapping, environ: Mapping[str, str]) -> bool:
    """True when `candidate` matches CLVQ_STUDY_ADMIN_PASSWORD or the hash stored at create time."""
    if not candidate:
        return False
    ok = False
    expected = environ.get(ADMIN_ENV)
    if expected:
        ok |= hmac.compare_digest(candidate.encode(), expected.encode())
    stored = meta.get("admin_password")
    if stored:
        derived = hashlib.pbkdf2_hmac("sha256", candidate.encode(), bytes.fromhex(stored["salt"]), int(stored["rounds"]))
        ok |= hmac.compare_digest(derived.hex(), stored["hash"])
    return ok


def password_configured(meta: Mapping, environ: Mapping[str, str]) -> bool:
    return bool(environ.get(ADMIN_ENV)) or bool(meta.get("admin_password"))


# --- annotate ------------------------------------------------------------------------------------------


def words_html(top_words: list[tuple[str, int]]) -> str:
    if not top_words:
        return ""
    most = max(n for _, n in top_words) or 1
    rows = "".join(
        f'<li><span class="w">{html.escape(w)}</span><span class="bar" style="width:{int(8 + 192 * n / most)}px"></span>'
        f'<span class="n">{int(n)}</span></li>'
        for w, n in top_words
    )
    return f'<ul class="study-words">{rows}</ul>'


def render_item(view: ItemView) -> None:
    st.markdown(CSS, unsafe_allow_html=True)
    if view.is_instruction:
        st.markdown(f'<div class="study-sentence">{view.sentence_html}</div>', unsafe_allow_html=True)
        return
    st.markdown("**The sentence.** The highlighted word is the one the model relied on most.")
    st.markdown(f'<div class="study-sentence">{view.sentence_html}</div>', unsafe_allow_html=True)
    st.markdown("**The concept of the highlighted word.** Words that share this concept, with how often they do:")
    st.markdown(words_html(view.top_words), unsafe_allow_html=True)
    if view.examples_html:
        st.markdown("Sentences where this concept occurs (its word highlighted):")
        for example in view.examples_html:
            st.markdown(f'<div class="study-example">{example}</div>', unsafe_allow_html=True)


def annotate_page(store: Store, token: str) -> None:
    annotator = store.annotator_by_token(token)
    if annotator is None:
        st.title("Concept study")
        st.error("This link is not valid. Please open the invite link you were sent.")
        return
    progress = store.progress(annotator.id)
    st.progress(progress.answered / max(progress.total, 1), text=f"{progress.answered} of {progress.total} answered")
    current = store.next_item(annotator.id)
    if current is None:
        st.success("All done. Thank you! You can close this page.")
        return
    item, display = current
    view = item_view(display, store.labels())
    store.mark_shown(annotator.id, item)
    st.markdown("Which label did the model predict for this sentence? Judge from the highlighted word and its concept.")
    render_item(view)
    with st.form(f"item-{item}", clear_on_submit=True):
        st.radio("The model's prediction", view.choices, index=None, key=f"answer-{item}")
        st.slider("Your confidence (1 = guess, 5 = sure)", min_value=1, max_value=5, value=3, key=f"confidence-{item}")
        # The answer is stored in the submit callback, which runs before the script: the same run then
        # draws the next item, so a submit costs one script run, not two.
        st.form_submit_button("Submit", on_click=submit_answer, args=(store, annotator.id, item))
    if st.session_state.pop(f"missing-{item}", False):
        st.warning("Please pick a label (or \u201ccan't tell\u201d) before submitting.")


def submit_answer(store: Store, annotator: int, item: int) -> None:
    choice = st.session_state.get(f"answer-{item}")
    if choice is None:
        st.session_state[f"missing-{item}"] = True
        return
    confidence = st.session_state.get(f"confidence-{item}")
    store.record_answer(annotator, item, None if choice == CANT_TELL else choice, None if confidence is None else int(confidence))


# --- results -------------------------------------------------------------------------------------------


def results_page(store: Store) -> None:
    from .results import compute

    st.title("Study results")
    meta = store.meta()
    if not password_configured(meta, os.environ):
        st.error(f"Results are locked: start the server with {ADMIN_ENV} set, or create the study with --admin-password-env.")
        return
    if not st.session_state.get("study_admin"):
        # clear_on_submit: the typed password must not stay in the page's input field
        with st.form("login", clear_on_submit=True):
            candidate = st.text_input("Admin password", type="password")
            submitted = st.form_submit_button("Show results")
        if not submitted:
            return
        if not password_ok(candidate, meta, os.environ):
            st.error("Wrong password.")
            return
        st.session_state["study_admin"] = True
        st.rerun()  # draw the results without the login form
    results = compute(store)
    s = results.summary
    st.caption(f"study {s['study']} \u00b7 run {s['run']} \u00b7 {s['answers']} of {s['assigned']} answers")
    cols = st.columns(3)
    cols[0].metric("Answers", f"{s['answers']} / {s['assigned']}")
    cols[1].metric("Alpha (overall)", "n/a" if s["alpha_overall"] is None else f"{s['alpha_overall']:.3f}")
    rate = s["attention_pass_rate"]
    cols[2].metric("Attention checks passed", "n/a" if rate is None else f"{rate:.0%}")
    st.subheader("Accuracy per method (agreement with the model's prediction)")
    st.dataframe(results.methods.round(3), hide_index=True)
    st.altair_chart(accuracy_chart(results.methods, s.get("chance")))
    st.subheader("Progress per annotator")
    st.dataframe(results.annotators.round(3), hide_index=True)
    for name, frame in (("answers", results.answers), ("methods", results.methods), ("annotators", results.annotators)):
        st.download_button(f"Download {name}.csv", frame.to_csv(index=False), file_name=f"{name}.csv", mime="text/csv")


def accuracy_chart(methods, chance: float | None):
    """Accuracy per method with its 95% interval on a fixed 0-1 axis, and the chance level as a rule."""
    import altair as alt
    import pandas as pd

    data = methods[["method", "accuracy", "ci_low", "ci_high"]].dropna(subset=["accuracy"])
    y = alt.Scale(domain=[0, 1])
    bars = alt.Chart(data).mark_bar(size=36).encode(
        x=alt.X("method:N", title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("accuracy:Q", scale=y, title="accuracy (95% CI)"))
    whiskers = alt.Chart(data).mark_rule(strokeWidth=2).encode(x="method:N", y=alt.Y("ci_low:Q", scale=y), y2="ci_high:Q")
    layers = bars + whiskers
    if chance:
        layers += alt.Chart(pd.DataFrame({"chance": [chance]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="chance:Q")
    return layers.properties(height=260)


# --- entry ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    st.set_page_config(page_title="Concept study", layout="centered")
    path = study_path_from(sys.argv[1:] if argv is None else argv, os.environ)
    if not path:
        st.error(f"No study given: start the app with `-- --study PATH` or set {STUDY_ENV}.")
        return
    try:
        store = Store.open(path)
    except UserError as exc:
        st.error(str(exc))
        return
    params = st.query_params
    if "admin" in params:
        results_page(store)
    else:
        annotate_page(store, params.get("token", ""))
