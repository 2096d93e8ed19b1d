"""Statistics of blinded judge comparisons (pure functions, no I/O).

The unit of analysis is an *outcome*: one judge's combined verdict on one pair of concepts for one
sentence, over every order it was asked in. An outcome table has the columns

    judge, sentence, method_a, method_b, score, inconsistent, soft

`score` is method_a's result (1 win, 0.5 tie, 0 loss, NaN when an answer could not be parsed),
`inconsistent` marks verdicts that changed with the order, `soft` is the order-averaged probability the
judge gave method_a (NaN without log-probabilities). Confidence intervals resample whole sentences
(`core.stats.cluster_resamples`), because all comparisons of one sentence share its difficulty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from clvq_judge.core.stats import cluster_mean_ci, cluster_resamples, krippendorff_alpha, percentile_interval

OUTCOME_COLUMNS = ["judge", "sentence", "method_a", "method_b", "score", "inconsistent", "soft"]


def combine_votes(votes: Sequence[float | None]) -> tuple[float, bool]:
    """Combine per-order votes (1 = method_a preferred, 0 = method_b, None = unparsed) into one outcome.

    The majority decides; an even split is a tie (a vote of 0.5 is a tie answer). An outcome is
    position-inconsistent when one order prefers method_a and another method_b. One unparsed order makes the
    whole outcome unparsed: it is counted, never guessed.
    """
    if not votes or any(v is None for v in votes):
        return float("nan"), False
    mean = float(np.mean(votes))
    score = 1.0 if mean > 0.5 else 0.0 if mean < 0.5 else 0.5
    return score, (1.0 in votes and 0.0 in votes)


def position_bias(positions: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean log-odds of the first-listed option over every two-option answer with log-probabilities (0 = no
    preference for a position), with a cluster-bootstrap CI over sentences."""
    if positions is None or positions.empty:
        return float("nan"), float("nan"), float("nan")
    values = positions["first_logodds"].to_numpy(dtype=np.float64)
    low, high = cluster_mean_ci(positions["sentence"].to_numpy(), values, n_boot, seed)
    return float(values.mean()), low, high


def perspective(outcomes: pd.DataFrame, method: str) -> pd.DataFrame:
    """The rows involving `method`, with score/soft seen from its side and `other` the opponent."""
    as_a = outcomes[outcomes["method_a"] == method]
    as_b = outcomes[outcomes["method_b"] == method]
    return pd.concat(
        [
            pd.DataFrame({"judge": as_a["judge"], "sentence": as_a["sentence"], "other": as_a["method_b"],
                          "score": as_a["score"], "inconsistent": as_a["inconsistent"], "soft": as_a["soft"]}),
            pd.DataFrame({"judge": as_b["judge"], "sentence": as_b["sentence"], "other": as_b["method_a"],
                          "score": 1 - as_b["score"], "inconsistent": as_b["inconsistent"], "soft": 1 - as_b["soft"]}),
        ],
        ignore_index=True,
    )


def win_tie_loss(scores: np.ndarray) -> tuple[int, int, int]:
    scores = np.asarray(scores, dtype=np.float64)
    return int((scores == 1).sum()), int((scores == 0.5).sum()), int((scores == 0).sum())


def win_rate(scores: np.ndarray) -> float:
    """Share of parsed outcomes won, ties counting half (NaN when none parsed)."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    return float(scores.mean()) if len(scores) else float("nan")


def nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def position_inconsistency(outcomes: pd.DataFrame) -> float:
    """Share of parsed outcomes whose verdict changed with the order of the options."""
    parsed = outcomes[np.isfinite(outcomes["score"].to_numpy(dtype=np.float64))]
    return float(parsed["inconsistent"].astype(bool).mean()) if len(parsed) else float("nan")


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test of wins against losses (ties left out); NaN without decisive outcomes."""
    if wins + losses == 0:
        return float("nan")
    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def win_matrix(outcomes: pd.DataFrame, methods: Sequence[str]) -> np.ndarray:
    """[M, M] matrix: entry (i, j) = outcomes method i won against method j, ties counting half to each."""
    index = {m: i for i, m in enumerate(methods)}
    wins = np.zeros((len(methods), len(methods)))
    for a, b, score in zip(outcomes["method_a"], outcomes["method_b"], outcomes["score"]):
        if not np.isfinite(score) or a not in index or b not in index:
            continue
        wins[index[a], index[b]] += score
        wins[index[b], index[a]] += 1 - score
    return wins


def bradley_terry(wins: np.ndarray, max_iter: int = 1000, tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths (summing to 1) from a win matrix, by the MM algorithm (Hunter 2004).

    Model: P(i beats j) = p_i / (p_i + p_j). Update p_i <- W_i / sum_j n_ij / (p_i + p_j), with W_i the
    total wins of i and n_ij the comparisons of i and j. A method that never wins goes to 0 and one that
    never loses towards 1: that is the maximum-likelihood answer, reported as it is. Methods never
    compared to anyone get NaN. `wins` may carry leading batch dimensions ([..., M, M]), so bootstrap
    replicates are fitted together.
    """
    wins = np.asarray(wins, dtype=np.float64)
    games = wins + np.swapaxes(wins, -1, -2)
    total = wins.sum(-1)
    played = games.sum(-1) > 0
    p = played / np.maximum(played.sum(-1, keepdims=True), 1)
    for _ in range(max_iter):
        pair = p[..., :, None] + p[..., None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = np.where(games > 0, games / pair, 0.0).sum(-1)
            new = np.where((denom > 0) & played, total / denom, 0.0)
        norm = new.sum(-1, keepdims=True)
        new = np.where(norm > 0, new / np.where(norm > 0, norm, 1), p)
        done = np.abs(new - p).max() < tol
        p = new
        if done:
            break
    return np.where(played, p, np.nan)


def _draws(sentences: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster index of each row and the seeded resamples [n_boot, n_clusters] of `core.stats`
    (the draws `bootstrap_statistic` makes), so that sums per sentence can be resampled at once."""
    ids, inverse = np.unique(np.asarray(sentences), return_inverse=True)
    draws = np.array(list(cluster_resamples(len(ids), n_boot, seed)), dtype=np.int64).reshape(n_boot, len(ids))
    return inverse, draws


def bradley_terry_ci(outcomes: pd.DataFrame, methods: Sequence[str], n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[M, 2] 95% intervals of the Bradley-Terry strengths, resampling whole sentences (seeded)."""
    if outcomes.empty or n_boot < 1:
        return np.full((len(methods), 2), np.nan)
    inverse, draws = _draws(outcomes["sentence"].to_numpy(), n_boot, seed)
    per_sentence = np.stack([win_matrix(outcomes.iloc[np.flatnonzero(inverse == c)], methods)
                             for c in range(draws.shape[1])])
    strengths = bradley_terry(per_sentence[draws].sum(1))
    return np.array([percentile_interval(strengths[:, i]) for i in range(len(methods))])


def _mean_ci(frame: pd.DataFrame, column: str, n_boot: int, seed: int) -> tuple[float, float]:
    return cluster_mean_ci(frame["sentence"].to_numpy(), frame[column].to_numpy(dtype=np.float64), n_boot, seed)


def pair_summary(outcomes: pd.DataFrame, a: str, b: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Win/tie/loss of `a` against `b`, win rate (ties half) and CI, soft preference and CI, sign test,
    position inconsistency and the number of unparsed outcomes."""
    rows = perspective(outcomes, a)
    rows = rows[rows["other"] == b]
    scores = rows["score"].to_numpy(dtype=np.float64)
    wins, ties, losses = win_tie_loss(scores)
    wr_low, wr_high = _mean_ci(rows, "score", n_boot, seed)
    soft_low, soft_high = _mean_ci(rows, "soft", n_boot, seed)
    return {
        "method_a": a, "method_b": b, "n": int(np.isfinite(scores).sum()), "wins": wins, "ties": ties, "losses": losses,
        "unparsed": int((~np.isfinite(scores)).sum()), "win_rate": win_rate(scores), "win_rate_low": wr_low,
        "win_rate_high": wr_high, "soft_pref": nanmean(rows["soft"]), "soft_low": soft_low, "soft_high": soft_high,
        "p_value": sign_test(wins, losses), "position_inconsistency": position_inconsistency(rows),
    }


def first_place_pairwise(outcomes: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Per sentence (and judge), whether each method beat every other method outright.

    Only sentences whose comparisons were all parsed count. Returns judge, sentence, method, first (0/1).
    """
    records = []
    for (judge, sentence), group in outcomes.groupby(["judge", "sentence"], sort=True):
        if not np.isfinite(group["score"].to_numpy(dtype=np.float64)).all():
            continue
        for method in methods:
            mine = perspective(group, method)
            if len(mine) == 0:
                continue
            records.append({"judge": judge, "sentence": sentence, "method": method,
                            "first": float((mine["score"] == 1).all() and len(mine) == len(methods) - 1)})
    return pd.DataFrame(records, columns=["judge", "sentence", "method", "first"])


def first_place_listwise(rankings: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """From parsed listwise rankings (columns judge, sentence, ranking = methods best first, None when
    unparsed): one row per (ranking, method) with first = 1 when the method was ranked first."""
    records = []
    for judge, sentence, ranking in zip(rankings["judge"], rankings["sentence"], rankings["ranking"]):
        if ranking is None or (isinstance(ranking, float) and np.isnan(ranking)):
            continue
        for method in methods:
            records.append({"judge": judge, "sentence": sentence, "method": method, "first": float(ranking[0] == method)})
    return pd.DataFrame(records, columns=["judge", "sentence", "method", "first"])


def method_summary(
    outcomes: pd.DataFrame,
    firsts: pd.DataFrame,
    methods: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per method: win rate against all others (ties half), first-place rate, Bradley-Terry strength, soft
    preference, each with a sentence-bootstrap 95% CI, and the position inconsistency of its outcomes."""
    bt = bradley_terry(win_matrix(outcomes, methods))
    bt_ci = bradley_terry_ci(outcomes, methods, n_boot, seed)
    records = []
    for i, method in enumerate(methods):
        rows = perspective(outcomes, method)
        scores = rows["score"].to_numpy(dtype=np.float64)
        wins, ties, losses = win_tie_loss(scores)
        mine = firsts[firsts["method"] == method]
        records.append({
            "method": method, "n": int(np.isfinite(scores).sum()), "wins": wins, "ties": ties, "losses": losses,
            "unparsed": int((~np.isfinite(scores)).sum()),
            "win_rate": win_rate(scores),
            **_ci("win_rate", _mean_ci(rows, "score", n_boot, seed)),
            "first_place_rate": nanmean(mine["first"]),
            **_ci("first_place", _mean_ci(mine, "first", n_boot, seed)),
            "bt_score": float(bt[i]),
            "bt_low": bt_ci[i, 0], "bt_high": bt_ci[i, 1],
            "soft_pref": nanmean(rows["soft"]),
            **_ci("soft", _mean_ci(rows, "soft", n_boot, seed)),
            "position_inconsistency": position_inconsistency(rows),
        })
    return pd.DataFrame(records)


def known_answer_summary(outcomes: pd.DataFrame, n_boot: int = 1000, seed: int = 0, chance: float = 0.5) -> dict:
    """Known-answer control: outcomes of a method's true concept (method_a) against a random concept of
    the same method. Accuracy = win rate of the true concept, ties half, so a judge that always picks the
    same position scores exactly 0.5. Informative when the CI's lower bound is above chance."""
    scores = outcomes["score"].to_numpy(dtype=np.float64)
    low, high = _mean_ci(outcomes, "score", n_boot, seed)
    soft_low, soft_high = _mean_ci(outcomes, "soft", n_boot, seed)
    return {
        "known_answer_n": int(np.isfinite(scores).sum()),
        "known_answer_accuracy": win_rate(scores), "known_answer_low": low, "known_answer_high": high,
        "known_answer_soft": nanmean(outcomes["soft"]), "known_answer_soft_low": soft_low,
        "known_answer_soft_high": soft_high,
        "known_answer_position_inconsistency": position_inconsistency(outcomes),
        "informative": bool(np.isfinite(low) and low > chance),
    }


def judge_agreement(outcomes: pd.DataFrame) -> float:
    """Krippendorff's alpha (nominal) of the judges' outcomes (a wins / tie / b wins) on the same
    comparisons; NaN with fewer than two judges or nothing pairable."""
    judges = sorted(outcomes["judge"].unique())
    if len(judges) < 2:
        return float("nan")
    keyed = outcomes.assign(item=list(zip(outcomes["sentence"], outcomes["method_a"], outcomes["method_b"])))
    table = keyed.pivot_table(index="judge", columns="item", values="score", aggfunc="first", dropna=False)
    table = table.reindex(judges)
    # Codes 0/1/2 for loss/tie/win; NaN stays missing.
    return krippendorff_alpha(table.to_numpy(dtype=np.float64) * 2)


def _ci(prefix: str, interval: tuple[float, float]) -> dict[str, float]:
    return {f"{prefix}_low": interval[0], f"{prefix}_high": interval[1]}
