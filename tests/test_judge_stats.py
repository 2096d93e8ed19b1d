"""Judge statistics against hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest

from clvq_judge.judge import stats
from clvq_judge.judge.labels import normalise_choice


def outcomes(rows, judge="j"):
    """rows: (sentence, method_a, method_b, score, inconsistent, soft)."""
    frame = pd.DataFrame(rows, columns=["sentence", "method_a", "method_b", "score", "inconsistent", "soft"])
    frame.insert(0, "judge", judge)
    return frame


def test_combine_votes_majority_ties_and_unparsed():
    assert stats.combine_votes([1, 1]) == (1.0, False)
    assert stats.combine_votes([0, 0]) == (0.0, False)
    # Flips with the order: a tie, and position-inconsistent.
    assert stats.combine_votes([1, 0]) == (0.5, True)
    # Listwise, three permutations: the majority wins but the disagreement is recorded.
    assert stats.combine_votes([1, 0, 1]) == (1.0, True)
    score, inconsistent = stats.combine_votes([1, None])
    assert math.isnan(score) and not inconsistent


def test_soft_preference_is_renormalised_over_offered_labels():
    probs = normalise_choice({"A": math.log(0.3), "B": math.log(0.1), "C": math.log(0.6)}, ["A", "B"])
    assert probs["A"] == pytest.approx(0.75) and probs["B"] == pytest.approx(0.25)
    assert normalise_choice({"A": -1.0}, ["A", "B"]) is None
    assert normalise_choice(None, ["A", "B"]) is None


def test_win_rate_counts_ties_half_and_ignores_unparsed():
    scores = np.array([1, 0.5, 0, 1, np.nan])
    assert stats.win_tie_loss(scores) == (2, 1, 1)
    assert stats.win_rate(scores) == pytest.approx(2.5 / 4)
    assert math.isnan(stats.win_rate(np.array([np.nan])))


def test_perspective_flips_scores_and_soft():
    frame = outcomes([(1, "x", "y", 1.0, False, 0.7), (2, "y", "x", 1.0, False, 0.6)])
    mine = stats.perspective(frame, "x")
    assert sorted(mine["score"]) == [0.0, 1.0]
    assert sorted(np.round(mine["soft"], 6)) == [0.4, 0.7]


def test_pair_summary_hand_computed():
    rows = [(s, "x", "y", 1.0, False, 0.8) for s in range(8)]
    rows += [(8, "y", "x", 1.0, False, 0.6), (9, "x", "y", 0.0, False, 0.3)]  # two losses of x
    rows += [(10, "x", "y", 0.5, True, 0.5), (11, "x", "y", np.nan, False, np.nan)]
    summary = stats.pair_summary(outcomes(rows), "x", "y", n_boot=200, seed=1)
    assert (summary["wins"], summary["ties"], summary["losses"], summary["unparsed"]) == (8, 1, 2, 1)
    assert summary["n"] == 11
    assert summary["win_rate"] == pytest.approx(8.5 / 11)
    # Sign test: 8 wins, 2 losses -> 2 * (C(10,8) + C(10,9) + C(10,10)) / 2^10.
    assert summary["p_value"] == pytest.approx(2 * (45 + 10 + 1) / 1024)
    assert summary["position_inconsistency"] == pytest.approx(1 / 11)
    assert summary["soft_pref"] == pytest.approx((8 * 0.8 + 0.4 + 0.3 + 0.5) / 11)
    assert summary["win_rate_low"] <= summary["win_rate"] <= summary["win_rate_high"]


def test_bradley_terry_two_methods_and_ties_as_half():
    # 3 wins to 1: p_x / p_y = 3 exactly.
    assert stats.bradley_terry(np.array([[0, 3], [1, 0]])) == pytest.approx([0.75, 0.25])
    frame = outcomes([(0, "x", "y", 1.0, False, np.nan), (1, "x", "y", 1.0, False, np.nan),
                      (2, "x", "y", 0.5, True, np.nan), (3, "y", "x", 0.5, True, np.nan)])
    wins = stats.win_matrix(frame, ["x", "y"])
    assert wins.tolist() == [[0.0, 3.0], [1.0, 0.0]]
    assert stats.bradley_terry(wins) == pytest.approx([0.75, 0.25])


def test_bradley_terry_three_methods_known_solution():
    # Observed shares equal the model's for p = (4, 2, 1) / 7: x-y 2:1 (4/6), x-z 4:1 (4/5), y-z 2:1 (2/3),
    # so the likelihood equations W_i = sum_j n_ij p_i / (p_i + p_j) hold exactly at that p.
    wins = np.array([[0, 2, 4], [1, 0, 2], [1, 1, 0]], dtype=float)
    assert stats.bradley_terry(wins) == pytest.approx([4 / 7, 2 / 7, 1 / 7], abs=1e-6)
    # A method never compared has no score.
    padded = np.zeros((4, 4))
    padded[:3, :3] = wins
    strengths = stats.bradley_terry(padded)
    assert math.isnan(strengths[3]) and strengths[:3] == pytest.approx([4 / 7, 2 / 7, 1 / 7], abs=1e-6)


def test_position_inconsistency_over_parsed_outcomes():
    frame = outcomes([(0, "x", "y", 0.5, True, np.nan), (1, "x", "y", 1.0, False, np.nan),
                      (2, "x", "y", 0.0, False, np.nan), (3, "x", "y", 1.0, False, np.nan),
                      (4, "x", "y", np.nan, False, np.nan)])
    assert stats.position_inconsistency(frame) == pytest.approx(0.25)


def test_first_place_pairwise_and_listwise():
    frame = outcomes([
        (0, "x", "y", 1.0, False, np.nan), (0, "x", "z", 1.0, False, np.nan), (0, "y", "z", 1.0, False, np.nan),
        (1, "x", "y", 0.5, True, np.nan), (1, "x", "z", 1.0, False, np.nan), (1, "z", "y", 0.0, False, np.nan),
        (2, "x", "y", np.nan, False, np.nan), (2, "x", "z", 1.0, False, np.nan), (2, "y", "z", 1.0, False, np.nan),
    ])
    firsts = stats.first_place_pairwise(frame, ["x", "y", "z"])
    # Sentence 0: x beats both. Sentence 1: x ties y, so nobody is first. Sentence 2 has an unparsed outcome.
    by = firsts.groupby("method")["first"].mean()
    assert sorted(firsts["sentence"].unique()) == [0, 1]
    assert by["x"] == 0.5 and by["y"] == 0 and by["z"] == 0
    rankings = pd.DataFrame({"judge": "j", "sentence": [0, 0, 1, 1],
                             "ranking": [("x", "y", "z"), ("y", "x", "z"), ("x", "z", "y"), None]})
    lw = stats.first_place_listwise(rankings, ["x", "y", "z"]).groupby("method")["first"].mean()
    assert lw["x"] == pytest.approx(2 / 3) and lw["y"] == pytest.approx(1 / 3) and lw["z"] == 0


def test_method_summary_and_bootstrap_determinism():
    rng = np.random.default_rng(0)
    rows = []
    for s in range(30):
        rows.append((s, "x", "y", float(rng.random() < 0.8), False, 0.7))
        rows.append((s, "x", "z", float(rng.random() < 0.6), False, 0.6))
        rows.append((s, "y", "z", 0.5, True, 0.5))
    frame = outcomes(rows)
    firsts = stats.first_place_pairwise(frame, ["x", "y", "z"])
    one = stats.method_summary(frame, firsts, ["x", "y", "z"], n_boot=100, seed=3)
    two = stats.method_summary(frame, firsts, ["x", "y", "z"], n_boot=100, seed=3)
    pd.testing.assert_frame_equal(one, two)
    x = one.set_index("method").loc["x"]
    assert x["win_rate_low"] <= x["win_rate"] <= x["win_rate_high"]
    assert x["bt_low"] <= x["bt_score"] <= x["bt_high"]
    assert x["soft_pref"] == pytest.approx(0.65)
    assert one["bt_score"].sum() == pytest.approx(1.0)
    assert one.set_index("method")["bt_score"].idxmax() == "x"
    other = stats.method_summary(frame, firsts, ["x", "y", "z"], n_boot=100, seed=4)
    assert (other["win_rate_low"] != one["win_rate_low"]).any() or (other["win_rate_high"] != one["win_rate_high"]).any()


def test_known_answer_flags_a_position_biased_judge():
    always_first = outcomes([(s, "m", "m:random", 0.5, True, 0.5) for s in range(20)])
    biased = stats.known_answer_summary(always_first, n_boot=200)
    assert biased["known_answer_accuracy"] == 0.5 and not biased["informative"]
    assert biased["known_answer_position_inconsistency"] == 1.0
    good = outcomes([(s, "m", "m:random", 1.0 if s % 10 else 0.0, False, 0.9) for s in range(20)])
    sharp = stats.known_answer_summary(good, n_boot=200)
    assert sharp["known_answer_accuracy"] == pytest.approx(0.9) and sharp["informative"]
    assert sharp["known_answer_low"] > 0.5


def test_judge_agreement():
    rows = [(s, "x", "y", [1.0, 0.0, 0.5][s % 3], False, np.nan) for s in range(9)]
    same = pd.concat([outcomes(rows, "j1"), outcomes(rows, "j2")])
    assert stats.judge_agreement(same) == pytest.approx(1.0)
    flipped = [(s, a, b, 1 - score, i, soft) for s, a, b, score, i, soft in rows]
    assert stats.judge_agreement(pd.concat([outcomes(rows, "j1"), outcomes(flipped, "j2")])) < 0.5
    assert math.isnan(stats.judge_agreement(outcomes(rows, "j1")))
