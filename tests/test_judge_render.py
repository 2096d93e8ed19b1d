"""Prompt rendering (blinding, seeded label order, marked token, recorded prompt hash) and strict verdict parsing."""

import numpy as np
import pytest

from clvq_judge.core.units import Unit
from clvq_judge.judge import render
from clvq_judge.judge.describe import JudgeUnit, clean_description
from clvq_judge.judge.labels import parse_choice, parse_ranking
from clvq_judge.judge.protocols import PROTOCOLS, Context
from clvq_judge.prompts import load_template

METHODS = ["clvq", "sae", "kmeans"]


def plan(units, methods, protocol, permutations, known_answer, seed):
    ctx = Context(run=None, units=units, methods=list(methods), cards={}, descriptions={}, show="card", seed=seed,
                  known_answer=known_answer, permutations=permutations, n_boot=20)
    return PROTOCOLS[protocol]().plan(ctx)


def context(units, seed=0, n_boot=50):
    return Context(run=None, units=units, methods=list(METHODS), cards={}, descriptions={}, show="card", seed=seed,
                   n_boot=n_boot)
NAMES = ["clvq", "sae", "kmeans", "vqvae", "agglomerative", "cluster", "autoencoder", "method"]


def card(i, words, start=False):
    return {
        "id": i, "count": 10, "top_words": [[w, 10 - k] for k, w in enumerate(words)],
        "examples": [{"sentence": 1, "position": 2, "text": f"shares of the firm [[{words[0]}]] sharply on monday"}],
        "start_share": 1.0 if start else 0.0, "is_start_dominated": start,
    }


def unit(sentence=7):
    text = "Stocks fell sharply after the bank cut its forecast"
    start = text.index("fell")
    return Unit(sentence=sentence, text=text, span=(start, start + 4), position=2, word="fell", row=3, prediction=0,
                prediction_label="business", label=0, concepts={"clvq": 1, "sae": 2, "kmeans": 3})


def test_comparison_prompt_is_blind_and_marks_the_token():
    options = [render.Option(card(1, ["fell", "rose", "dropped"]), "market movement"),
               render.Option(card(2, ["[CLS]"], start=True), "sentence openings")]
    for show in render.SHOW:
        for template in (render.PAIRWISE, render.LISTWISE):
            messages = render.comparison_messages(unit(), options, show, template)
            text = "\n".join(content for _, content in messages).lower()
            assert not any(name in text for name in NAMES), text
            assert "stocks [[fell]] sharply" in text and '"business"' in text
            assert "a: " in text and "b: " in text
    both = "\n".join(c for _, c in render.comparison_messages(unit(), options, "both"))
    # The judge sees counts, as the explainer did, and the description exactly as written.
    assert "market movement; member words (occurrences): fell (10), rose (9), dropped (8); 10 occurrences in all" in both
    assert '"market movement"' not in both
    # A start-dominated concept is shown by its examples, not by its "[CLS]" word list.
    assert "examples, concept word in [[ ]]: shares of the firm [[[CLS]]]" in both
    assert "Equal" in both and "may be wrong" in both
    card_only = "\n".join(c for _, c in render.comparison_messages(unit(), options, "card"))
    assert "market movement" not in card_only
    with pytest.raises(ValueError):
        render.comparison_messages(unit(), options, "everything")


def test_explainer_prompt_shows_counts_and_examples_but_no_method():
    messages = render.explainer_messages(card(1, ["fell", "rose"]))
    text = "\n".join(content for _, content in messages)
    assert "fell (10), rose (9)" in text and "[[fell]]" in text
    assert not any(name in text.lower() for name in NAMES)
    start = "\n".join(c for _, c in render.explainer_messages(card(2, ["[CLS]"], start=True)))
    assert "[CLS] (10)" not in start and "[[[CLS]]]" in start


def test_prompt_hash_covers_included_templates():
    pairwise = render.prompt(render.PAIRWISE)
    assert len(pairwise.sha) == 12 and pairwise.sha != render.prompt(render.LISTWISE).sha
    assert "option.v2.j2" in load_template(render.PAIRWISE)
    assert "option.v2.j2" in load_template(render.DETECTION)


def test_labels_follow_a_seeded_order_and_both_orders_are_asked():
    units = [JudgeUnit(unit(s), {"clvq": 0, "sae": 0, "kmeans": 0}) for s in range(20)]
    asks = plan(units, METHODS, "pairwise", 3, True, seed=5)
    again = plan(units, METHODS, "pairwise", 3, True, seed=5)
    other = plan(units, METHODS, "pairwise", 3, True, seed=6)
    first = [a.shown[0][0] for a in asks if a.kind == "pairwise" and a.order == 0]
    assert first == [a.shown[0][0] for a in again if a.kind == "pairwise" and a.order == 0]
    assert first != [a.shown[0][0] for a in other if a.kind == "pairwise" and a.order == 0]
    # The seeded first order is not always the registry order: each method is shown first sometimes.
    assert {"clvq", "sae", "kmeans"} <= set(first)
    pairwise = [a for a in asks if a.kind == "pairwise"]
    assert len(pairwise) == 20 * 3 * 2
    by_group = {}
    for a in pairwise:
        by_group.setdefault(a.group, []).append(a)
    assert all(len(g) == 2 and g[0].shown == g[1].shown[::-1] for g in by_group.values())
    known = [a for a in asks if a.kind == "known_answer"]
    assert len(known) == 20 * 3 * 2 and all({role for _, _, role in a.shown} == {"true", "random"} for a in known)
    listwise = plan(units, METHODS, "listwise", 3, False, seed=5)
    assert len(listwise) == 20 * 3
    per_unit = [tuple(m for m, _, _ in a.shown) for a in listwise if a.unit.unit.sentence == 0]
    assert len(set(per_unit)) == 3 and all(sorted(p) == sorted(METHODS) for p in per_unit)


@pytest.mark.parametrize("text,expected", [
    ("A", "A"), (" B.", "B"), ("(A)", "A"), ("**B**", "B"), ("Answer: A", "A"), ("The answer is B", "B"),
    ("a", "A"), ("B\nBecause it mentions markets.", "B"),
    ("C", None), ("A or B", None), ("A because it is better", None), ("", None), ("I think both", None),
])
def test_parse_choice_is_strict(text, expected):
    assert parse_choice(text, ["A", "B"]) == expected


@pytest.mark.parametrize("text,expected", [
    ("B>A>C", ("B", "A", "C")), ("B > A > C", ("B", "A", "C")), ("C, A, B", ("C", "A", "B")), ("BAC", ("B", "A", "C")),
    ("A>B", None), ("A>A>B", None), ("A>B>D", None), ("the best is A", None),
])
def test_parse_ranking_is_strict(text, expected):
    assert parse_ranking(text, ["A", "B", "C"]) == expected


def test_clean_description_keeps_one_short_line():
    assert clean_description('"Stock market moves."\nMore text') == "Stock market moves"
    assert clean_description("- words about sport") == "words about sport"
    assert clean_description("   ") == ""
    assert len(clean_description("x" * 500)) <= 120
    # An answer that copies the card's word list back is no description.
    words = card(1, ["fell", "rose", "dropped"])
    assert clean_description("Group (word and count): fell (10), rose (9)", words) == ""
    assert clean_description("Market moves", words) == "Market moves"


def test_a_judge_that_always_answers_a_is_all_ties_and_not_informative():
    """The bookkeeping from per-order verdicts to outcomes, tables and flags (answers written by hand)."""
    units = [JudgeUnit(unit(s), {"clvq": 0, "sae": 0, "kmeans": 0}) for s in range(10)]
    ctx = context(units)
    protocol = PROTOCOLS["pairwise"]()
    asks = protocol.plan(ctx)
    records = [{"raw": "A", "verdict": "A", "soft": {"A": 0.6, "B": 0.3, "Equal": 0.1}, "reask": None} for _ in asks]
    records[0] = {"raw": "maybe", "verdict": None, "soft": None, "reask": "still unsure"}
    tables = protocol.tables("j", asks, records, ctx)
    comparisons = tables["comparisons"]
    assert comparisons["parse_failed"].sum() == 1 and comparisons.loc[0, "reask_answer"] == "still unsure"
    outcomes, known = tables["outcomes"], tables["known"]
    assert len(outcomes) == 10 * 3 and len(known) == 10 * 3
    parsed = outcomes.dropna(subset=["score"])
    assert len(parsed) == 29 and (parsed["score"] == 0.5).all() and parsed["inconsistent"].all()
    # Order-averaged soft preference of a purely positional judge: (2/3 + 1/3) / 2.
    assert np.allclose(parsed["soft"], 0.5)
    frames = protocol.summarise(tables, ctx)
    pairs, methods = frames["pairs"], frames["methods"]
    assert methods["informative"].eq(False).all() and (methods["judge_known_answer_accuracy"] == 0.5).all()
    # Its bias: log(0.6 / 0.3) in favour of the first-listed option, on every answer.
    assert methods["position_bias"].iloc[0] == pytest.approx(np.log(2))
    assert pairs["unparsed"].sum() == 1
    table = protocol.format(frames)
    ranking_lines = [line for line in table.splitlines() if line.startswith("  ") and not line.startswith("  method")]
    assert ranking_lines and all(line.endswith("NOT INFORMATIVE") for line in ranking_lines)
    assert "1 unparseable" in table


def test_listwise_rankings_become_pairwise_outcomes_and_first_places():
    units = [JudgeUnit(unit(s), {}) for s in range(4)]
    ctx = context(units)
    protocol = PROTOCOLS["listwise"]()
    asks = protocol.plan(ctx)
    # A judge that always ranks clvq first and kmeans last, whatever the labels.
    records = []
    for ask in asks:
        label_of = {m: render.LABELS[i] for i, (m, _, _) in enumerate(ask.shown)}
        ranking = tuple(label_of[m] for m in ("clvq", "sae", "kmeans"))
        records.append({"raw": ">".join(ranking), "verdict": ranking, "soft": None, "reask": None})
    tables = protocol.tables("j", asks, records, ctx)
    outcomes, known, rankings = tables["outcomes"], tables["known"], tables["rankings"]
    assert known.empty and len(rankings) == 12 and len(outcomes) == 4 * 3
    assert (outcomes.set_index(["method_a", "method_b"])["score"] == 1).all()
    assert not outcomes["inconsistent"].any()
    assert (tables["comparisons"]["verdict"] == "clvq>sae>kmeans").all()
    by = protocol.summarise(tables, ctx)["methods"].set_index("method")
    assert by.loc["clvq", "first_place_rate"] == 1 and by.loc["kmeans", "first_place_rate"] == 0
    assert by.loc["clvq", "win_rate"] == 1 and by.loc["kmeans", "win_rate"] == 0


def test_two_judges_are_reported_apart_and_pooled():
    import pandas as pd

    units = [JudgeUnit(unit(s), {"clvq": 0, "sae": 0, "kmeans": 0}) for s in range(6)]
    ctx = context(units, n_boot=20)
    protocol = PROTOCOLS["pairwise"]()
    asks = protocol.plan(ctx)

    def prefer(method):
        out = []
        for ask in asks:
            names = [m if role != "random" else "random" for m, _, role in ask.shown]
            pick = names.index(method) if method in names else names.index("random") if "random" in names else 0
            if ask.kind == "known_answer":
                pick = next(i for i, (_, _, role) in enumerate(ask.shown) if role == "true")
            out.append({"raw": "AB"[pick], "verdict": "AB"[pick], "soft": None, "reask": None})
        return out

    parts = [protocol.tables(name, asks, prefer(m), ctx) for name, m in (("j1", "clvq"), ("j2", "sae"))]
    tables = {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in parts[0]}
    frames = protocol.summarise(tables, ctx)
    methods = frames["methods"]
    assert list(dict.fromkeys(methods["judge"])) == ["j1", "j2", "pooled"]
    by = methods.set_index(["judge", "method"])
    assert by.loc[("j1", "clvq"), "win_rate"] == 1 and by.loc[("j2", "sae"), "win_rate"] == 1
    assert by.loc[("pooled", "clvq"), "n"] == 2 * by.loc[("j1", "clvq"), "n"]
    assert methods["informative"].all()  # both always pick the true concept
    alpha = frames["agreement"].set_index("comparisons")["alpha"]
    assert alpha["methods"] < 0.5
