"""The concept explorer: `streamlit run pipeline/explorer_app.py -- --runs-dir DIR --run RUN` (or `clvq-judge explore`).

A researcher's page, not part of the blinded annotator app: method names are shown. Three views, chosen by the
address (so the report's concept cards can link to them): the concept lists with search (`?view=concepts`), one
concept (`?view=concept&method=clvq&concept=17`) and one evaluation sentence side by side
(`?view=sentence&sentence=88`). Every text from the run is escaped before it is put into HTML.
Absolute imports, so the same file runs from a checkout and from the installed package.
"""

from __future__ import annotations

import argparse
import html
import sys
import threading
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

from clvq_judge.pipeline.collect import Results
from clvq_judge.pipeline.concept_index import SORTS, ConceptIndex

LIST_ROWS = 25
CONTEXTS_PER_PAGE = 10
CSS = """<style>
.xp-table { border-collapse: collapse; font-size: 13px; margin: .3rem 0 1rem; }
.xp-table th, .xp-table td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
.xp-table th { background: #f5f5f5; }
.xp-context { margin: .2rem 0; } mark { background: #ffe08a; padding: 0 2px; }
.xp-sentence { font-size: 1.1rem; margin: .5rem 0 1rem; }
</style>"""


def args_from(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="explorer")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--run", required=True)
    return parser.parse_args(argv)


@st.cache_resource(show_spinner=False)
def index_for(runs_dir: str, run: str) -> ConceptIndex:
    return ConceptIndex(Results.open(runs_dir, run))


@st.cache_resource(show_spinner=False)
def warm_in_background(runs_dir: str, run: str) -> threading.Thread:
    """Once per server, after the first page: load the top layer for the concept pages (a second of work on a
    large run that would otherwise land on the first concept page a researcher opens)."""
    thread = threading.Thread(target=index_for(runs_dir, run).warm, name="explorer-warm", daemon=True)
    thread.start()
    return thread


def href(**params) -> str:
    return "?" + urlencode(params)


def link(text: str, **params) -> str:
    return f"<a href='{html.escape(href(**params))}' target='_self'>{html.escape(str(text))}</a>"


def cell(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    return html.escape(str(value))


def table(frame: pd.DataFrame, raw: tuple[str, ...] = (), testid: str = "") -> str:
    """An HTML table of `frame`, every cell escaped except the columns in `raw` (links built here)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{v if c in raw else cell(v)}</td>" for c, v in zip(frame.columns, row)) + "</tr>"
        for row in frame.itertuples(index=False, name=None))
    return f"<table class='xp-table' data-testid='{testid}'><tr>{head}</tr>{body}</table>"


def show(markup: str) -> None:
    st.markdown(markup, unsafe_allow_html=True)  # only markup built here, every run text escaped


def nav(index: ConceptIndex) -> None:
    show(" · ".join([link("concepts", view="concepts"), link("sentences side by side", view="sentence")]))


def concept_links(frame: pd.DataFrame, method_column: str | None = None, method: str | None = None) -> pd.DataFrame:
    methods = frame[method_column] if method_column else [method] * len(frame)
    return frame.assign(concept=[link(c, view="concept", method=m, concept=int(c)) for m, c in zip(methods, frame["concept"])])


def list_page(index: ConceptIndex) -> None:
    st.header("Concepts")
    word = st.text_input("Which concepts hold a word? (member words, any case)", key="search")
    by = st.selectbox("Sort by", SORTS, key="sort")
    if word.strip():
        found = index.search(word)
        st.subheader(f"Concepts holding “{word.strip()}”")
        if found.empty:
            st.info("no concept of any method has this word among its members")
        else:
            keep = ["method", "concept", "occurrences", "size", "top words", "judge score"]
            show(table(concept_links(found[keep], method_column="method"), raw=("concept",), testid="search-results"))
    for method in index.methods:
        frame = index.sorted_overview(method, by)
        st.subheader(f"{method}: {len(frame)} concepts in use")
        keep = ["concept", "size", "top words", "sentences explained", "ablation effect", "judge score", "judge answers",
                "study accuracy", "study answers"]
        show(table(concept_links(frame[keep].head(LIST_ROWS), method=method), raw=("concept",), testid=f"list-{method}"))
    if index.ablation_sentences is None:
        st.caption("ablation effect per concept needs ablate's per-sentence results (ablation/sentences.csv); "
                   "this run has none (its ablate predates it: `clvq-judge ablate --run <run> --force` writes it), "
                   "so that column is empty")


def concept_page(index: ConceptIndex, method: str, concept: int, page: int) -> None:
    try:
        card = index.card(method, concept)
    except (KeyError, FileNotFoundError):
        st.error(f"no concept {concept} of method {method!r} in this run")
        return
    st.header(f"{method} · concept {concept}")
    description = index.description(method, concept)
    show(f"<p><b>{int(card['count'])} evaluation tokens</b> · description: "
         + (f"“{html.escape(description)}”" if description else "none written") + "</p>")
    st.caption("descriptions are written by `clvq-judge describe` for the concepts the judged sentences use")
    left, right = st.columns([1, 2])
    with left:
        st.subheader("Member words")
        show(table(index.member_words(method, concept).head(40), testid="members"))
    with right:
        contexts, total = index.contexts(method, concept, page, CONTEXTS_PER_PAGE)
        pages = max(1, -(-total // CONTEXTS_PER_PAGE))
        st.subheader(f"Contexts (page {page + 1} of {pages})")
        show("".join(f"<p class='xp-context' data-testid='context'>{markup} <small>(sentence {s})</small></p>"
                     for s, markup in contexts))
        steps = [link("previous", view="concept", method=method, concept=concept, page=page - 1)] if page > 0 else []
        steps += [link("next", view="concept", method=method, concept=concept, page=page + 1)] if page + 1 < pages else []
        show(" · ".join(steps))
    st.subheader("L_in → L_out")
    view = index.l_out_view(method, concept)
    if view is None:
        st.write("no activation cache or no members")
    else:
        st.markdown(f"At L_out (layer {view.layer}) this concept's members leave **{view.share:.4f}** of the top layer's "
                    f"variance unexplained by their mean (its part of the lookup FVU {view.lookup_fvu:.3f} on the "
                    f"evaluation tokens); their spread around their own mean is {view.within_share:.3f} of their "
                    "spread around the global mean.")
        near = pd.DataFrame([{"concept": c, "cosine (centred L_out means)": cos,
                              "top words": ", ".join(str(w) for w, _ in index.card(method, c).get("top_words", [])[:6])}
                             for c, cos in view.nearest])
        if len(near):
            st.caption("nearest concepts of the same method by their mean top-layer vectors")
            show(table(concept_links(near, method=method), raw=("concept",), testid="nearest"))
    st.subheader("Removing it (ablation)")
    explained = int(index.explained_counts(method).get(concept, 0))
    rows = index.method_ablation(method)
    drops = index.concept_drops(method)
    if drops is not None and concept in drops.index:
        st.markdown(f"Over the {int(drops.loc[concept, 'n'])} sentences whose explanation word it holds, removing it "
                    f"costs **{drops.loc[concept, 'drop']:.3f}** accuracy.")
    else:
        st.markdown(f"It holds the explanation word of {explained} evaluation sentences; a per-concept drop needs "
                    "ablate's per-sentence results (ablation/sentences.csv), which this run does not have "
                    "(`clvq-judge ablate --force` on it writes them).")
    if rows is not None:
        show(f"<p><small>the method as a whole ({html.escape(str(rows['label'].iloc[0]))}, "
             f"{html.escape(str(rows['protocol'].iloc[0]))} protocol)</small></p>")
        show(table(rows[["condition", "accuracy", "ci_low", "ci_high", "n"]], testid="ablation"))
    st.subheader("Judge verdicts it took part in")
    judge = index.judge_record(method, concept)
    if judge.empty:
        st.write("none")
    else:
        shown = judge.assign(outcome=judge["chosen"].map({1.0: "chosen", 0.0: "not chosen"}).fillna("unparsed"))
        show(table(shown[["judge", "kind", "sentence", "word", "role", "opponents", "outcome", "raw_answer"]]
                   .assign(sentence=[link(s, view="sentence", sentence=int(s)) for s in shown["sentence"]]),
                   raw=("sentence",), testid="judge"))
    st.subheader("Study answers it took part in")
    study = index.study_record(method, concept)
    if study.empty:
        st.write("none")
    else:
        show(table(study, testid="study"))


def sentence_page(index: ConceptIndex, sentence: int | None) -> None:
    st.header("One evaluation sentence, every method side by side")
    if not index.units:
        st.info("no judged sentences in this run yet (`clvq-judge describe` samples them)")
        return
    ids = sorted(index.units)
    chosen = sentence if sentence in index.units else ids[0]
    picked = st.selectbox("Sentence", ids, index=ids.index(chosen), key="sentence_pick",
                          format_func=lambda s: f"{s}: {str(index.units[s]['text'])[:80]}")
    unit = index.units[picked]
    show(f"<div class='xp-sentence' data-testid='sentence'>{index.unit_html(picked)}</div>")
    show(f"<p><small>model's prediction: {html.escape(str(unit.get('prediction_label')))} · explanation word: "
         f"{html.escape(str(unit.get('word')))}</small></p>")
    views = index.side_by_side(picked)
    for column, v in zip(st.columns(max(1, len(views))), views):
        with column:
            title = link(f"concept {v['concept']}", view="concept", method=v["method"], concept=v["concept"])
            show(f"<h4>{html.escape(v['method'])} · {title}</h4>")
            show("<p>description: " + (f"“{html.escape(v['description'])}”" if v["description"] else "none") + "</p>")
            show(table(pd.DataFrame(v["top_words"], columns=["word", "count"]), testid="side-words"))
            judge = v["judge"]
            if len(judge):
                outcome = judge["chosen"].map({1.0: "chosen", 0.0: "not chosen"}).fillna("unparsed")
                show(table(judge.assign(outcome=outcome)[["judge", "kind", "opponents", "outcome"]], testid="side-judge"))
            study = v["study"]
            if len(study):
                show(table(study[["annotator_kind", "answer", "truth", "correct"]], testid="side-study"))


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def main(argv: list[str] | None = None) -> None:
    args = args_from(sys.argv[1:] if argv is None else argv)
    st.set_page_config(page_title=f"explorer: {args.run}", layout="wide")
    show(CSS)
    index = index_for(args.runs_dir, args.run)
    st.title(f"Concept explorer · run “{args.run}”")
    nav(index)
    q = st.query_params
    view = q.get("view", "concepts")
    if view == "concept":
        methods = index.methods
        method = q.get("method", methods[0] if methods else "")
        concept_page(index, method, _int(q.get("concept"), 0), max(0, _int(q.get("page"), 0)))
    elif view == "sentence":
        sentence_page(index, _int(q.get("sentence")))
    else:
        list_page(index)
    warm_in_background(args.runs_dir, args.run)


main()
