"""The pages of the study app: annotate (by invite token) and results (behind the admin password).

State lives in the study file, not in Streamlit's session: every render asks the store for the
annotator's first unanswered item, so a reload, another device or a server restart resumes there.
Everything user-visible that came from data (sentences, words, names) is escaped before it reaches HTML.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import sqlite3
import sys
from collections.abc import Mapping, Sequence

import streamlit as st
import streamlit.components.v1 as components

from clvq_judge.core.errors import UserError

from .display import CANT_TELL, EXAMPLES_CAPTION, WORDS_CAPTION, ItemView, item_view
from .store import Store
from .throttle import PASSWORDS

log = logging.getLogger(__name__)

ADMIN_ENV = "CLVQ_STUDY_ADMIN_PASSWORD"
STUDY_ENV = "CLVQ_STUDY"

CSS = """
<style>
.study-sentence { font-size: 1.15rem; line-height: 1.7; padding: .6rem .8rem; border-radius: .4rem;
                 background: rgba(127,127,127,.08); }
.study-sentence mark, .study-example mark { background: #ffd54f; color: #000; padding: 0 .15rem; border-radius: .2rem; }
.study-words { list-style: none; padding: 0; margin: 0; columns: 2; column-gap: 1.5rem; }
.study-words li { display: flex; align-items: center; gap: .5rem; margin: .05rem 0; break-inside: avoid; }
.study-words .w { min-width: 8rem; font-family: monospace; overflow-wrap: anywhere; }
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

CONFIDENCE = [1, 2, 3, 4, 5]

# Runs in the page (a components iframe of the same origin): while the server does not answer its health
# check, a banner says that nothing can be saved. The form is not cleared on submit (clear_on_submit=False),
# so the chosen answer stays in it until the server has stored it and drawn the next item.
CONNECTION_WATCH = """<script>
(function () {
  const doc = window.parent.document, id = "study-connection-banner";
  let banner = doc.getElementById(id);
  if (!banner) {
    banner = doc.createElement("div");
    banner.id = id;
    banner.setAttribute("role", "alert");
    banner.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:1000000;padding:.8rem 1rem;" +
      "background:#b71c1c;color:#fff;font:600 1rem sans-serif;text-align:center;display:none";
    banner.textContent = "Not saved \u2014 the connection to the study server is lost, reconnecting\u2026 " +
      "Your choice stays in the form: press Submit again once this message has gone.";
    doc.body.appendChild(banner);
  }
  const health = new URL("_stcore/health", window.parent.location.href).href;
  async function check() {
    let ok = false;
    try { ok = (await fetch(health, {cache: "no-store"})).ok; } catch (e) { ok = false; }
    banner.style.display = ok ? "none" : "block";
  }
  setInterval(check, 1000);
})();
</script>"""


def words_html(top_words: list[tuple[str, int]]) -> str:
    if not top_words:
        return '<p class="study-empty">(this concept has no words to show)</p>'
    most = max(n for _, n in top_words) or 1
    rows = "".join(
        f'<li><span class="w">{html.escape(w)}</span><span class="bar" style="width:{int(6 + 84 * n / most)}px"></span>'
        f'<span class="n">{int(n)}</span></li>'
        for w, n in top_words
    )
    return f'<ul class="study-words">{rows}</ul>'


def render_item(view: ItemView) -> None:
    st.markdown(CSS, unsafe_allow_html=True)
    if view.is_instruction:
        st.markdown(f'<div class="study-sentence">{view.sentence_html}</div>', unsafe_allow_html=True)
        return
    st.markdown(f"**{html.escape(view.question)}**")
    if view.sentence_html is not None:
        st.markdown(f'<div class="study-sentence">{view.sentence_html}</div>', unsafe_allow_html=True)
    if view.top_words is None:
        return
    if view.examples_html:
        st.markdown(EXAMPLES_CAPTION)
        for example in view.examples_html:
            st.markdown(f'<div class="study-example">{example}</div>', unsafe_allow_html=True)
    else:
        st.markdown(WORDS_CAPTION)
        st.markdown(words_html(view.top_words), unsafe_allow_html=True)
    if view.word_missing_note:
        st.caption(view.word_missing_note)


def show_notice() -> None:
    notice = st.session_state.pop("study_notice", None)
    if notice:
        kind, text = notice
        getattr(st, kind)(text)


def annotate_page(store: Store, token: str) -> None:
    annotator = store.annotator_by_token(token)
    if annotator is None:
        st.title("Concept study")
        st.error("This link is not valid. Please open the invite link you were sent.")
        return
    progress = store.progress(annotator.id)
    st.progress(progress.answered / max(progress.total, 1), text=f"{progress.answered} of {progress.total} answered")
    show_notice()
    current = store.next_item(annotator.id)
    if current is None:
        st.success("All done. Thank you! You can close this page.")
        return
    item, display = current
    order = store.option_order(annotator.id, item)
    view = item_view(display, order)
    key = store.widget_key(annotator.id, item)
    store.mark_shown(annotator.id, item)
    render_item(view)
    confidence = ("Your confidence: this is an attention check, so pick any value" if view.is_instruction
                  else "Your confidence (1 = a guess, 5 = sure)")
    with st.form(f"f-{key}", clear_on_submit=False, border=False):
        st.radio("The model's prediction", view.choices, index=None, key=f"a-{key}")
        st.radio(confidence, CONFIDENCE, index=None, horizontal=True, key=f"c-{key}")
        # The answer is stored in the submit callback, which runs before the script: the same run then
        # draws the next item, so a submit costs one script run, not two.
        st.form_submit_button("Submit", type="primary", on_click=submit_answer, args=(store, annotator.id, item, key, order))
    components.html(CONNECTION_WATCH, height=0)


def submit_answer(store: Store, annotator: int, item: int, key: str, order: list[str]) -> None:
    choice = st.session_state.get(f"a-{key}")
    confidence = st.session_state.get(f"c-{key}")
    if choice is None or confidence is None:
        missing = " and ".join(x for x, v in (("a label (or \u201ccan't tell\u201d)", choice), ("a confidence", confidence))
                               if v is None)
        st.session_state["study_notice"] = ("warning", f"Not saved yet: please pick {missing}, then press Submit.")
        return
    try:
        stored = store.record_answer(annotator, item, None if choice == CANT_TELL else choice, int(confidence),
                                     options=order)
    except (sqlite3.Error, ValueError):
        log.exception("answer of annotator %d not stored", annotator)
        st.session_state["study_notice"] = ("error", "Not saved: the study file could not store this answer. "
                                            "Please press Submit again; if this repeats, tell the study's organiser.")
        return
    if not stored:
        st.session_state["study_notice"] = ("info", "That item had already been answered (in another tab or window?): "
                                            "the first answer is kept and this one was not saved. Here is your next item.")


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
        PASSWORDS.wait()
        if not password_ok(candidate, meta, os.environ):
            PASSWORDS.failed()
            wait = PASSWORDS.delay()
            st.error("Wrong password." + (f" Repeated wrong passwords are slowed down: the next try waits {wait:.0f} s."
                                          if wait else ""))
            return
        PASSWORDS.succeeded()
        st.session_state["study_admin"] = True
        st.rerun()  # draw the results without the login form
    results = compute(store)
    s = results.summary
    st.caption(f"study {s['study']} \u00b7 run {s['run']} \u00b7 conditions {', '.join(s['conditions'])} \u00b7 "
               f"{s['answers']} of {s['assigned']} human answers")
    cols = st.columns(3)
    cols[0].metric("Answers", f"{s['answers']} / {s['assigned']}")
    cols[1].metric("Alpha (overall)", "n/a" if s["alpha_overall"] is None else f"{s['alpha_overall']:.3f}")
    rate = s["attention_pass_rate"]
    cols[2].metric("Attention checks passed", "n/a" if rate is None else f"{rate:.0%}")
    st.subheader("Accuracy per condition and method (agreement with the model's prediction)")
    st.caption("Human and simulated annotators are never pooled. Chance = 1 / labels; majority = always naming the "
               "most frequent prediction. " + s["informative_rule"] + ".")
    table = results.conditions.copy()
    table["informative"] = table["informative"].map({True: "yes", False: "NOT INFORMATIVE"})
    st.dataframe(table.round(3), hide_index=True)
    st.altair_chart(accuracy_chart(results.conditions, s.get("chance")))
    if not results.added_value.empty:
        st.subheader("What the concept adds: accuracy(both) \u2212 accuracy(sentence)")
        st.dataframe(results.added_value.round(3), hide_index=True)
    st.subheader("Annotators (progress, attention checks, informative)")
    st.dataframe(results.annotators.round(3), hide_index=True)
    for name, frame in results.frames().items():
        st.download_button(f"Download {name}", frame.to_csv(index=False), file_name=name, mime="text/csv")


def accuracy_chart(conditions, chance: float | None):
    """Accuracy per condition x method (one panel per annotator kind) with its 95% interval on a fixed 0-1
    axis, and the chance level as a rule."""
    import altair as alt

    data = conditions[["kind", "condition", "method", "accuracy", "ci_low", "ci_high"]].dropna(subset=["accuracy"]).copy()
    data["cell"] = data["condition"] + " \u00b7 " + data["method"]
    data["chance"] = chance or 0.0
    y = alt.Scale(domain=[0, 1])
    base = alt.Chart(data)
    bars = base.mark_bar(size=28).encode(
        x=alt.X("cell:N", title=None, sort=None, axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("accuracy:Q", scale=y, title="accuracy (95% CI)"), color=alt.Color("condition:N"))
    whiskers = base.mark_rule(strokeWidth=2).encode(x=alt.X("cell:N", sort=None), y=alt.Y("ci_low:Q", scale=y), y2="ci_high:Q")
    layers = bars + whiskers
    if chance:
        layers += base.mark_rule(strokeDash=[4, 4], color="gray").encode(y=alt.Y("mean(chance):Q", scale=y))
    return layers.properties(height=260).facet(column=alt.Column("kind:N", title=None))


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
