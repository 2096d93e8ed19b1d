"""Concept cards: each method's most used concepts, linked to the explorer when it is served (--explorer-url),
else exported into the page (words, examples, description, what the judge and the annotators made of it)."""

from __future__ import annotations

from urllib.parse import urlencode

from clvq_judge.human_eval.display import marked_example

from ..concept_index import ConceptIndex
from .base import Block, Context, esc, fmt


def explorer_link(base: str, run: str, method: str, concept: int) -> str:
    query = urlencode({"run": run, "view": "concept", "method": method, "concept": concept})
    return f"{base.rstrip('/')}/?{query}"


def card_html(index: ConceptIndex, ctx: Context, method: str, card: dict) -> str:
    words = ", ".join(f"{esc(w)} ({int(n)})" for w, n in card.get("top_words", [])[:10]) or "–"
    examples = "".join(f"<li>{marked_example(ex['text'])}</li>" for ex in card.get("examples", [])[:3])
    row = index.overview(method).set_index("concept")
    facts = []
    description = index.description(method, card["id"])
    if description:
        facts.append(f"<i>“{esc(description)}”</i>")
    if card["id"] in row.index:
        r = row.loc[card["id"]]
        if r["judge answers"]:
            facts.append(f"judge chose it in {fmt(r['judge score'], 2)} of {int(r['judge answers'])} answers")
        if r["study answers"]:
            facts.append(f"annotators right {fmt(r['study accuracy'], 2)} of {int(r['study answers'])} answers")
    title = f"concept {card['id']}"
    if ctx.explorer_url:
        href = explorer_link(ctx.explorer_url, ctx.results.run.name, method, card["id"])
        title = f"<a href='{esc(href)}'>{title}</a>"
    return (f"<div class='card'><b>{title}</b> · {int(card['count'])} tokens<br><span class='words'>{words}</span>"
            f"{'<br>' + ' · '.join(facts) if facts else ''}<ul>{examples}</ul></div>")


class Cards:
    name = "cards"

    def build(self, ctx: Context) -> Block | None:
        index = ConceptIndex(ctx.results)
        if not index.methods:
            return None
        body = []
        for method in index.methods:
            top = sorted(ctx.results.cards(method), key=lambda c: -c["count"])[: ctx.cards]
            body.append(f"<h3>{esc(method)}</h3><div class='cards'>{''.join(card_html(index, ctx, method, c) for c in top)}</div>")
        how = ("each links to its page in the explorer" if ctx.explorer_url else
               "for every concept, `clvq-judge explore --run RUN` shows its members, contexts and verdicts")
        return Block(title="Concept cards (most used concepts per method)", lead_html=f"<p>{esc(how)}.</p>",
                     body_html="".join(body))


SECTION = Cards()
