"""What the pairwise, calibrated and listwise protocols share: offering concepts side by side behind neutral
labels, one row per answer, the outcomes of each comparison over its orders, and the method tables."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from clvq_judge.judge import stats
from clvq_judge.judge.render import LABELS, TIE, Option, comparison_messages, prompt
from clvq_judge.judge.schema import COMPARISON_COLUMNS

from . import Ask, Context

RANDOM = "random"
"""Name of the known-answer control's opponent in the outcome tables."""
POOLED = "pooled"


def options_of(ask: Ask, ctx: Context) -> list[Option]:
    return [Option(ctx.cards[m][c], ctx.descriptions.get(m, {}).get(c)) for m, c, _ in ask.shown]


def known_answer_asks(ctx: Context, rng_for, kind: str = "known_answer") -> list[Ask]:
    """Each method's true concept against its decoy (same method), both orders, the first order seeded."""
    asks = []
    for ju in ctx.units:
        rng = rng_for(ju)
        for m in ctx.methods:
            if m not in ju.control:
                continue
            pair = [(m, ju.unit.concepts[m], "true"), (m, ju.control[m], RANDOM)]
            if rng.random() < 0.5:
                pair.reverse()
            for order, shown in enumerate((pair, pair[::-1])):
                asks.append(Ask(kind, ju, order, shown, (kind, ju.unit.sentence, m)))
    return asks


def comparison_rows(judge_name: str, asks: list[Ask], records: list[dict], template: str) -> pd.DataFrame:
    rows = []
    p = prompt(template)
    for ask, rec in zip(asks, records):
        labels = LABELS[: len(ask.shown)]
        by_label = dict(zip(labels, ask.shown))
        verdict = rec["verdict"]
        if ask.kind == "listwise":
            chosen = ">".join(verdict) if verdict else ""
            named = ">".join(by_label[v][0] for v in verdict) if verdict else ""
        elif verdict == TIE:
            chosen, named = TIE, TIE.lower()
        else:
            chosen = verdict or ""
            named = (by_label[verdict][0] + (f" ({by_label[verdict][2]})" if by_label[verdict][2] else "")) if verdict else ""
        u = ask.unit.unit
        rows.append({
            "judge": judge_name, "kind": ask.kind, "sentence": u.sentence, "word": u.word, "prediction": u.prediction_label,
            "order": ask.order, "labels": "".join(labels),
            "shown": ";".join(f"{lab}={m}" + (f" ({role})" if role else "") for lab, (m, _, role) in by_label.items()),
            "concepts": ";".join(f"{lab}={c}" for lab, (_, c, _) in by_label.items()),
            "true_label": next((lab for lab, (_, _, role) in by_label.items() if role == "true"), ""),
            "raw_answer": rec["raw"], "reask_answer": rec["reask"] if rec["reask"] is not None else "",
            "verdict_label": chosen, "verdict": named, "parse_failed": verdict is None,
            "soft": ";".join(f"{lab}={q:.4f}" for lab, q in rec["soft"].items()) if rec["soft"] else "",
            "seconds": rec.get("seconds", np.nan), "prompt": p.name, "prompt_sha": p.sha,
        })
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _reference_position(ask: Ask, key: tuple) -> int:
    """Position (0 = A) of the option whose side an outcome is scored from: the key's first method, or the
    true concept of a known-answer pair."""
    role = "true" if key[0].startswith("known_answer") else ""
    return 0 if (ask.shown[0][0], ask.shown[0][2]) == (key[2], role) else 1


def vote_of(verdict, ref_label: str) -> float | None:
    if verdict is None:
        return None
    return 0.5 if verdict == TIE else float(verdict == ref_label)


def calibrated_score(logits: list[float], ties: list[float]) -> float:
    """The order-averaged log-odds of the reference option (a judge's constant position bias cancels
    between the two orders); a tie where the judge gave "Equal" most of its mass on average."""
    if not logits or not np.isfinite(logits).all():
        return float("nan")
    if ties and float(np.mean(ties)) > 0.5:
        return 0.5
    mean = float(np.mean(logits))
    return 1.0 if mean > 0 else 0.0 if mean < 0 else 0.5


def outcomes_of(judge_name: str, asks: list[Ask], records: list[dict], methods: list[str],
                calibrated: bool = False) -> dict[str, pd.DataFrame]:
    """Combine the orders of each comparison: method outcomes, known-answer outcomes, listwise rankings and
    (with log-probabilities) each pairwise answer's log-odds of the first-listed option."""
    groups: dict[tuple, list[tuple[Ask, dict]]] = {}
    for ask, rec in zip(asks, records):
        groups.setdefault(ask.group, []).append((ask, rec))
    outcome_rows, known_rows, ranking_rows, position_rows = [], [], [], []
    for key, members in groups.items():
        kind, sentence = key[0], key[1]
        if kind == "listwise":
            rankings = []
            for ask, rec in members:
                by_label = {lab: m for lab, (m, _, _) in zip(LABELS, ask.shown)}
                ranking = tuple(by_label[v] for v in rec["verdict"]) if rec["verdict"] else None
                rankings.append(ranking)
                ranking_rows.append({"judge": judge_name, "sentence": sentence, "ranking": ranking})
            for a, b in itertools.combinations(methods, 2):
                votes = [None if r is None else float(r.index(a) < r.index(b)) for r in rankings]
                score, inconsistent = stats.combine_votes(votes)
                outcome_rows.append({"judge": judge_name, "sentence": sentence, "method_a": a, "method_b": b,
                                     "score": score, "inconsistent": inconsistent, "soft": np.nan})
            continue
        votes, softs, logits, ties = [], [], [], []
        for ask, rec in members:
            ref = _reference_position(ask, key)
            ref_label, other_label = LABELS[ref], LABELS[1 - ref]
            votes.append(vote_of(rec["verdict"], ref_label))
            soft = rec["soft"]
            if soft:
                pair = soft[ref_label] + soft[other_label]
                softs.append(soft[ref_label] / pair if pair > 0 else np.nan)
                logits.append(float(np.log(soft[ref_label]) - np.log(soft[other_label])))
                ties.append(soft.get(TIE, 0.0))
                position_rows.append({"judge": judge_name, "sentence": sentence, "kind": kind,
                                      "first_logodds": float(np.log(soft["A"]) - np.log(soft["B"]))})
            else:
                softs.append(np.nan)
        score, inconsistent = stats.combine_votes(votes)
        if calibrated and len(logits) == len(members):
            score = calibrated_score(logits, ties)
        soft_mean = float(np.mean(softs)) if np.isfinite(softs).all() else np.nan
        row = {"judge": judge_name, "sentence": sentence, "method_a": key[2],
               "method_b": RANDOM if kind == "known_answer" else key[3],
               "score": score, "inconsistent": inconsistent, "soft": soft_mean}
        (known_rows if kind == "known_answer" else outcome_rows).append(row)
    return {"outcomes": pd.DataFrame(outcome_rows, columns=stats.OUTCOME_COLUMNS),
            "known": pd.DataFrame(known_rows, columns=stats.OUTCOME_COLUMNS),
            "rankings": pd.DataFrame(ranking_rows, columns=["judge", "sentence", "ranking"]),
            "positions": pd.DataFrame(position_rows, columns=["judge", "sentence", "kind", "first_logodds"])}


def summarise(tables: dict[str, pd.DataFrame], methods: list[str], listwise: bool, n_boot: int,
              seed: int) -> dict[str, pd.DataFrame]:
    """pairs.csv and methods.csv rows for every judge and for all judges pooled, and agreement.csv."""
    outcomes, known, rankings, positions = (tables[k] for k in ("outcomes", "known", "rankings", "positions"))
    pair_rows, method_rows = [], []
    judges = list(dict.fromkeys(outcomes["judge"])) if len(outcomes) else []
    views = [(j, outcomes[outcomes["judge"] == j], known[known["judge"] == j], rankings[rankings["judge"] == j],
              positions[positions["judge"] == j]) for j in judges]
    if len(judges) > 1:
        views.append((POOLED, outcomes, known, rankings, positions))
    for judge, out, kn, rk, pos in views:
        judge_known = stats.known_answer_summary(kn, n_boot, seed) if len(kn) else {}
        bias = stats.position_bias(pos, n_boot, seed)
        for a, b in itertools.combinations(methods, 2):
            pair_rows.append({"judge": judge, **stats.pair_summary(out, a, b, n_boot, seed)})
        firsts = stats.first_place_listwise(rk, methods) if listwise else stats.first_place_pairwise(out, methods)
        table = stats.method_summary(out, firsts, methods, n_boot, seed)
        for row in table.to_dict("records"):
            mine = kn[kn["method_a"] == row["method"]]
            ka = stats.known_answer_summary(mine, n_boot, seed) if len(mine) else {}
            method_rows.append({
                "judge": judge, **row,
                **{k: v for k, v in ka.items() if k != "informative"},
                "method_informative": ka.get("informative", np.nan),
                "judge_known_answer_accuracy": judge_known.get("known_answer_accuracy", np.nan),
                "judge_known_answer_low": judge_known.get("known_answer_low", np.nan),
                "judge_known_answer_high": judge_known.get("known_answer_high", np.nan),
                "position_bias": bias[0], "position_bias_low": bias[1], "position_bias_high": bias[2],
                "informative": judge_known.get("informative", np.nan),
            })
    return {"pairs": pd.DataFrame(pair_rows), "methods": pd.DataFrame(method_rows),
            "agreement": agreement_table(outcomes, known)}


def agreement_table(outcomes: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """Krippendorff's alpha between judges; with one judge, one row saying so (not a bare header)."""
    judges = list(dict.fromkeys(outcomes["judge"]))
    if len(judges) < 2:
        return pd.DataFrame([{"judges": "+".join(judges), "comparisons": "methods", "alpha": np.nan,
                              "note": "one judge: agreement needs at least two (--judge repeated)"}])
    rows = [{"judges": "+".join(judges), "comparisons": "methods", "alpha": stats.judge_agreement(outcomes), "note": ""}]
    if len(known):
        rows.append({"judges": "+".join(judges), "comparisons": "known_answer", "alpha": stats.judge_agreement(known),
                     "note": ""})
    return pd.DataFrame(rows)


def fmt(value: float, low: float = np.nan, high: float = np.nan) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        return f"{value:.2f} [{low:.2f}, {high:.2f}]"
    return f"{value:.2f}"


def judge_flag(informative) -> tuple[str, str]:
    """(suffix for every table line, explanation for the judge's header) from the known-answer control."""
    if informative is None or (isinstance(informative, float) and np.isnan(informative)):
        return "  (no known-answer control)", "no known-answer control was run"
    if bool(informative):
        return "", "informative: its CI clears 0.5"
    return "  NOT INFORMATIVE", "not informative: its CI does not clear 0.5"


def format_table(frames: dict[str, pd.DataFrame], note: str = "") -> str:
    """A readable summary: one block per judge (and pooled), one line per method, the control beside it."""
    methods_csv, pairs_csv, comparisons = frames["methods"], frames["pairs"], frames["comparisons"]
    lines = [note] if note else []
    for judge, block in methods_csv.groupby("judge", sort=False):
        head = block.iloc[0]
        flag, why = judge_flag(head.get("informative"))
        accuracy = fmt(head.get("judge_known_answer_accuracy", np.nan), head.get("judge_known_answer_low", np.nan),
                       head.get("judge_known_answer_high", np.nan))
        bias = fmt(head.get("position_bias", np.nan), head.get("position_bias_low", np.nan),
                   head.get("position_bias_high", np.nan))
        lines.append(f"judge {judge}: known-answer accuracy {accuracy} ({why}); position bias (log-odds of the "
                     f"first option) {bias}")
        lines.append(f"  {'method':<14}{'win rate [95% CI]':<22}{'first':<7}{'Bradley-Terry [CI]':<22}"
                     f"{'soft pref [CI]':<22}{'known-answer [CI]':<22}{'pos.incons.':<12}{'unparsed':<9}")
        for row in block.to_dict("records"):
            known = fmt(row.get("known_answer_accuracy", np.nan), row.get("known_answer_low", np.nan),
                        row.get("known_answer_high", np.nan))
            lines.append(
                f"  {row['method']:<14}{fmt(row['win_rate'], row['win_rate_low'], row['win_rate_high']):<22}"
                f"{fmt(row['first_place_rate']):<7}{fmt(row['bt_score'], row['bt_low'], row['bt_high']):<22}"
                f"{fmt(row['soft_pref'], row['soft_low'], row['soft_high']):<22}{known:<22}"
                f"{fmt(row['position_inconsistency']):<12}{int(row['unparsed']):<9}{flag}"
            )
        for pair in pairs_csv[pairs_csv["judge"] == judge].to_dict("records"):
            p_value = f"{pair['p_value']:.3g}" if np.isfinite(pair["p_value"]) else "n/a"
            lines.append(
                f"    {pair['method_a']} vs {pair['method_b']}: {pair['wins']}-{pair['ties']}-{pair['losses']} (W-T-L), "
                f"win rate {fmt(pair['win_rate'], pair['win_rate_low'], pair['win_rate_high'])}, "
                f"soft {fmt(pair['soft_pref'], pair['soft_low'], pair['soft_high'])}, sign test p={p_value}{flag}"
            )
    failed = int(comparisons["parse_failed"].sum()) if len(comparisons) else 0
    lines.append(f"{len(comparisons)} answers, {failed} unparseable after one re-ask (counted, not guessed)")
    return "\n".join(lines)


def side_by_side_request(ask: Ask, ctx: Context, template: str, choices: tuple[str, ...] | None, max_tokens: int):
    from clvq_judge.judge.client import Request

    messages = comparison_messages(ask.unit.unit, options_of(ask, ctx), ctx.show, template)
    return Request(messages=messages, max_tokens=max_tokens, choices=choices)
