"""The judge protocols' scoring on hand-made answers: the tie answer, the calibrated reading that removes a
position bias, detection's AUC and its known-answer control, and the harder known-answer decoys."""

import math

import numpy as np
import pandas as pd
import pytest

from clvq_judge.core.units import Unit
from clvq_judge.judge.describe import CONTROL, JudgeUnit, control_concepts
from clvq_judge.judge.labels import parse_choice
from clvq_judge.judge.protocols import PROTOCOLS, Context, get_protocol
from clvq_judge.judge.protocols.detection import auc, concept_scores, known_answer_items
from clvq_judge.judge.render import TIE

METHODS = ["clvq", "kmeans"]


def unit(sentence, word="fell", concepts=None):
    text = f"Stocks {word} sharply"
    return Unit(sentence=sentence, text=text, span=(7, 7 + len(word)), position=2, word=word, row=sentence,
                prediction=0, prediction_label="business", label=0, concepts=concepts or {"clvq": 1, "kmeans": 2})


def context(units, methods=METHODS):
    return Context(run=None, units=units, methods=list(methods), cards={}, descriptions={}, show="card", seed=3,
                   n_boot=200)


def soft(first, second, tie=0.0):
    total = first + second + tie
    return {"A": first / total, "B": second / total, TIE: tie / total}


def test_every_protocol_is_registered_and_unknown_ones_fail_in_one_line():
    assert {"pairwise", "calibrated", "listwise", "detection"} <= set(PROTOCOLS)
    with pytest.raises(Exception) as exc:
        get_protocol("nope")
    assert "unknown judge protocol 'nope'" in str(exc.value)


def test_word_labels_parse_without_case_and_stay_strict():
    assert parse_choice("equal", ("A", "B", TIE)) == TIE
    assert parse_choice("**Yes**", ("Yes", "No")) == "Yes"
    assert parse_choice("Yes, because", ("Yes", "No")) is None
    assert parse_choice("A because it is", ("A", "B")) is None


def _answers(asks, pick):
    """Records where `pick(ask)` gives the first-option probability p (the rest to B)."""
    out = []
    for ask in asks:
        p = pick(ask)
        s = soft(p, 1 - p)
        out.append({"raw": "A", "verdict": max(s, key=s.get), "soft": s, "reask": None})
    return out


def test_calibration_removes_a_position_bias_that_plain_pairwise_reads_as_ties():
    """A judge that truly prefers clvq a little but puts most of its mass on whatever is listed first: plain
    pairwise sees only ties (it answers A in both orders); calibrated reads the preference under the bias."""
    units = [JudgeUnit(unit(s), {"clvq": 5, "kmeans": 6}) for s in range(12)]
    ctx = context(units)

    def pick(ask):
        # log-odds of option A = bias 2.0 + 0.5 if the true/clvq concept is A, -0.5 if it is B.
        good = [i for i, (m, _, role) in enumerate(ask.shown) if role == "true" or (not role and m == "clvq")]
        signal = 0.5 if good == [0] else -0.5
        return 1 / (1 + math.exp(-(2.0 + signal)))

    plain, calibrated = PROTOCOLS["pairwise"](), PROTOCOLS["calibrated"]()
    asks = plain.plan(ctx)
    assert [a.shown for a in asks] == [a.shown for a in calibrated.plan(ctx)]
    records = _answers(asks, pick)
    plain_frames = plain.summarise(plain.tables("j", asks, records, ctx), ctx)
    cal_frames = calibrated.summarise(calibrated.tables("j", asks, records, ctx), ctx)
    plain_by = plain_frames["methods"].set_index("method")
    cal_by = cal_frames["methods"].set_index("method")
    assert plain_by.loc["clvq", "win_rate"] == 0.5 and plain_by.loc["clvq", "position_inconsistency"] == 1
    assert not bool(plain_by["informative"].iloc[0])
    assert cal_by.loc["clvq", "win_rate"] == 1 and cal_by.loc["kmeans", "win_rate"] == 0
    assert cal_by.loc["clvq", "judge_known_answer_accuracy"] == 1 and bool(cal_by["informative"].iloc[0])
    assert cal_by.loc["clvq", "position_bias"] == pytest.approx(2.0)


def test_a_tie_answer_is_a_tie_and_not_a_flip():
    units = [JudgeUnit(unit(s), {}) for s in range(3)]
    ctx = Context(run=None, units=units, methods=METHODS, cards={}, descriptions={}, show="card", seed=0,
                  known_answer=False, n_boot=20)
    protocol = PROTOCOLS["pairwise"]()
    asks = protocol.plan(ctx)
    records = []
    for ask in asks:  # order 0 says Equal, order 1 picks clvq
        if ask.order == 0:
            records.append({"raw": TIE, "verdict": TIE, "soft": soft(0.2, 0.2, 0.6), "reask": None})
        else:
            label = "AB"[[m for m, _, _ in ask.shown].index("clvq")]
            records.append({"raw": label, "verdict": label, "soft": None, "reask": None})
    tables = protocol.tables("j", asks, records, ctx)
    outcomes = tables["outcomes"]
    assert (outcomes["score"] == 1.0).all() and not outcomes["inconsistent"].any()
    assert (tables["comparisons"]["verdict"].iloc[::2] == "equal").all()


def test_detection_auc_accuracy_and_known_answer_on_hand_made_probabilities():
    assert auc([0.9, 0.8], [0.1, 0.8]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert math.isnan(auc([0.5], []))
    rows = []
    # Two sentences x two methods; clvq's members score 0.9 and its non-members 0.2; kmeans' are reversed.
    for sentence in (1, 2):
        for method, (pos, neg) in {"clvq": (0.9, 0.2), "kmeans": (0.3, 0.7)}.items():
            for item, member in enumerate([True, True, False, False]):
                rows.append({"judge": "j", "kind": "detection", "sentence": sentence, "method": method, "concept": 1,
                             "role": "true", "item": item, "member": member, "p_yes": pos if member else neg,
                             "on_card": member, "parse_failed": False})
                if member:  # the decoy scores 0.5 for every member
                    rows.append({"judge": "j", "kind": "detection_control", "sentence": sentence, "method": method,
                                 "concept": 9, "role": "random", "item": item, "member": member, "p_yes": 0.5,
                                 "on_card": False, "parse_failed": False})
    items = pd.DataFrame(rows)
    scores = concept_scores(items).set_index(["sentence", "method"])
    assert (scores.xs("clvq", level="method")["auc"] == 1).all()
    assert (scores.xs("kmeans", level="method")["auc"] == 0).all()
    control = known_answer_items(items)
    assert control.groupby("method")["correct"].mean().to_dict() == {"clvq": 1.0, "kmeans": 0.0}
    protocol = PROTOCOLS["detection"]()
    frames = protocol.summarise({"comparisons": items}, context([]))
    by = frames["methods"].set_index("method")
    assert by.loc["clvq", "detection_auc"] == 1 and by.loc["kmeans", "detection_auc"] == 0
    assert by.loc["clvq", "judge_known_answer_accuracy"] == 0.5
    # Every member's word is printed on its card and no non-member's: string matching alone would be perfect.
    assert by.loc["clvq", "string_match_auc"] == 1 and by.loc["clvq", "string_match_known_answer"] == 1
    pair = frames["pairs"].iloc[0]
    assert pair["auc_difference"] == 1 and pair["a_better"] == 2
    assert "detection AUC" in protocol.format(frames)


def test_known_answer_decoy_shares_the_word_or_matches_the_size():
    def card(i, words, count):
        return {"id": i, "count": count, "top_words": [[w, 1] for w in words]}

    cards = {"clvq": [card(0, ["fell"], 10), card(1, ["fell", "rose"], 50), card(2, ["cat"], 48), card(3, ["x"], 3)],
             "kmeans": [card(0, ["dog"], 20), card(1, ["fell"], 30), card(2, ["cow"], 29), card(3, ["y"], 5)]}
    u = unit(1, concepts={"clvq": 0, "kmeans": 1})
    decoys = control_concepts(u, cards, seed=0)
    assert decoys["clvq"] == 1  # the other concept that also holds "fell": string matching cannot pass
    assert decoys["kmeans"] == 2  # no other "fell": the closest size (29 vs 30)
    assert CONTROL


def test_clean_description_keeps_digits_and_inner_quotes():
    from clvq_judge.judge.describe import clean_description

    assert clean_description("24-hour news") == "24-hour news"
    assert clean_description("1990s music") == "1990s music"
    assert clean_description('Pronoun "it"') == 'Pronoun "it"'
    assert clean_description('"Pronoun "it""') == 'Pronoun "it"'
    assert clean_description("1. Sports teams") == "Sports teams"
    card = {"top_words": [["banks", 3], ["lender", 2], ["bank", 1]], "is_start_dominated": False}
    assert clean_description("banks, lender, bank", card) == ""
    assert clean_description("Banking", card) == "Banking"


def test_agreement_with_one_judge_says_so():
    from clvq_judge.judge.protocols.comparison import agreement_table

    frame = agreement_table(pd.DataFrame({"judge": ["j"]}), pd.DataFrame())
    assert len(frame) == 1 and "one judge" in frame["note"].iloc[0] and np.isnan(frame["alpha"].iloc[0])
