"""`clvq-judge rank`: blinded LLM judging of concept methods, with a known-answer control.

For every sampled unit (sentence, prediction, explanation token; see `judge.describe`) the judge sees the
concepts that the methods assign to the token, as neutral labels in a seeded random order, and says which
better explains the prediction.

- pairwise (default): every pair of methods, asked in both orders. Agreeing orders give a win; orders that
  disagree give a tie and count as position-inconsistent.
- listwise: all methods at once, ranked best first, under `--permutations` seeded orders; each pair's
  outcome is the majority over the permutations.
- known-answer control: each method's true concept against a random concept of the same method, both
  orders. A judge whose accuracy's 95% CI does not clear 0.5 is flagged "not informative" on every line.
- soft preference: where the backend returns label log-probabilities (one forward pass, no sampling), the
  probability of each label renormalised over the offered labels, averaged over the orders.

Descriptions missing for `--show description|both` are written on the fly by the first judge, exactly as
`clvq-judge describe` would (the log and the printed result say so). Results go to `runs/<run>/judge/`
(comparisons.csv, pairs.csv, methods.csv, agreement.csv, done.json) and to `--out`.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from clvq_judge.core.atomic import read_json, write_json, write_text
from clvq_judge.core.config import config_hash, to_dict
from clvq_judge.core.device import resolve_device
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import NON_RESULT_FIELDS, Run, RunOptions
from clvq_judge.core.units import load_cards

from . import stats
from .backends import JudgeOptions, open_judges
from .client import Completion, Request
from .describe import (
    STAGE,
    JudgeUnit,
    SampleOptions,
    concepts_version,
    derive_seed,
    describe_units,
    explainer_key,
    finished_methods,
    prepare_units,
    resolve_methods,
    run_seed,
)
from .render import EXPLAINER, LABELS, LISTWISE, PAIRWISE, Option, comparison_messages, prompt, reask_messages
from .verdicts import parse_choice, parse_ranking

log = logging.getLogger(__name__)

RANDOM = "random"
"""Name of the known-answer control's opponent in the outcome tables."""
POOLED = "pooled"
CHOICE_TOKENS = 4
COLUMNS = {
    "comparisons": ["judge", "kind", "sentence", "word", "prediction", "order", "labels", "shown", "concepts",
                    "true_label", "raw_answer", "reask_answer", "verdict_label", "verdict", "parse_failed",
                    "soft", "prompt", "prompt_sha"],
}


@dataclass
class RankConfig(SampleOptions, JudgeOptions, RunOptions):
    """Options of `clvq-judge rank`."""

    method: str = "clvq"
    """The focus method; it is compared with every --vs method (and those with each other)."""
    vs: tuple[str, ...] = ()
    """Methods to compare with (repeatable); none = every other method with finished concepts."""
    mode: Literal["pairwise", "listwise"] = "pairwise"
    """pairwise: every pair in both orders; listwise: all methods ranked at once under several orders."""
    permutations: int = 3
    """Listwise mode: seeded orders of the methods per sentence."""
    show: Literal["both", "description", "card"] = "both"
    """What the judge sees of a concept: its description, its card's top words, or both (default: adds about 15 tokens per option, and a 0.5B explainer's description alone can be empty or vague)."""
    bootstrap: int = 1000
    """Bootstrap resamples of sentences for the 95% confidence intervals."""
    out: str | None = None
    """Folder to write the result CSVs to as well (the run keeps them in judge/)."""


EXCLUDE = (*NON_RESULT_FIELDS, "out", "concurrency", "batch_size", "api_key_env", "request_timeout", "max_retries",
           "price_table")


@dataclass
class Ask:
    """One question to a judge: a unit and the concepts in the order shown (labels A, B, ... by position)."""

    kind: str  # pairwise | listwise | known_answer
    unit: JudgeUnit
    order: int
    shown: list[tuple[str, int, str]]  # (method, concept, role: "true" | "random" | "")
    group: tuple = field(default_factory=tuple)
    """Asks with the same group are the orders of one comparison."""


def plan(units: list[JudgeUnit], methods: list[str], mode: str, permutations: int, known_answer: bool, seed: int) -> list[Ask]:
    """Every question, each comparison's first order seeded per sentence (the second is its mirror)."""
    asks: list[Ask] = []
    for ju in units:
        u = ju.unit
        rng = np.random.default_rng(derive_seed(seed, "rank", u.sentence))
        if mode == "pairwise":
            for a, b in itertools.combinations(methods, 2):
                pair = [(a, u.concepts[a], ""), (b, u.concepts[b], "")]
                if rng.random() < 0.5:
                    pair.reverse()
                for order, shown in enumerate((pair, pair[::-1])):
                    asks.append(Ask("pairwise", ju, order, shown, ("pairwise", u.sentence, a, b)))
        else:
            orders = list(itertools.permutations(methods))
            picks = rng.choice(len(orders), size=min(permutations, len(orders)), replace=False)
            for order, k in enumerate(picks):
                shown = [(m, u.concepts[m], "") for m in orders[k]]
                asks.append(Ask("listwise", ju, order, shown, ("listwise", u.sentence)))
        if known_answer:
            for m in methods:
                if m not in ju.control:
                    continue
                pair = [(m, u.concepts[m], "true"), (m, ju.control[m], RANDOM)]
                if rng.random() < 0.5:
                    pair.reverse()
                for order, shown in enumerate((pair, pair[::-1])):
                    asks.append(Ask("known_answer", ju, order, shown, ("known_answer", u.sentence, m)))
    return asks


def _validate(config: RankConfig, run: Run) -> list[str]:
    vs = list(config.vs) or [m for m in finished_methods(run) if m != config.method]
    if config.method in vs:
        raise UserError(f"--vs {config.method} is the focus method itself: compare it with other methods")
    if len(set(vs)) != len(vs):
        raise UserError(f"--vs names a method twice ({' '.join(vs)}): give each once")
    methods = resolve_methods(run, [config.method, *vs])
    if len(methods) < 2:
        raise UserError(f"run {run.name!r} has no other method with finished concepts to compare {config.method} with: "
                        "pass --vs METHOD after `clvq-judge concepts --method METHOD`")
    if config.permutations < 1:
        raise UserError(f"--permutations must be at least 1, got {config.permutations}")
    if config.bootstrap < 0:
        raise UserError(f"--bootstrap must be 0 or more, got {config.bootstrap}")
    return methods


def _request(ask: Ask, options: list[Option], show: str) -> Request:
    labels = tuple(LABELS[: len(ask.shown)])
    messages = comparison_messages(ask.unit.unit, options, show, "listwise" if ask.kind == "listwise" else "pairwise")
    if ask.kind == "listwise":
        return Request(messages=messages, max_tokens=4 * len(labels) + 2)
    return Request(messages=messages, max_tokens=CHOICE_TOKENS, choices=labels)


def _verdict(ask: Ask, completion: Completion) -> tuple[object, dict[str, float] | None]:
    """The parsed verdict (a label, or a ranking of labels for listwise) and the soft label probabilities."""
    labels = list(LABELS[: len(ask.shown)])
    if ask.kind == "listwise":
        return parse_ranking(completion.text, labels), None
    soft = stats.normalise_choice(completion.choice_logprobs, labels)
    if soft is not None:
        # Hard verdict = the most probable offered label (one forward pass, no sampling).
        return max(labels, key=lambda label: soft[label]), soft
    return parse_choice(completion.text, labels), None


def ask_judge(judge, asks: list[Ask], requests: list[Request]) -> list[dict]:
    """Ask every question; re-ask once, with a follow-up asking for just the letter(s), where the answer
    could not be parsed. Returns one record per ask: raw answers, verdict, soft probabilities."""
    answers = judge.complete(requests, desc=f"rank ({judge.name})")
    records = []
    for ask, answer in zip(asks, answers):
        verdict, soft = _verdict(ask, answer)
        records.append({"raw": answer.text, "verdict": verdict, "soft": soft, "reask": None})
    retry = [i for i, r in enumerate(records) if r["verdict"] is None]
    if retry:
        log.info("%s: %d answers could not be parsed; asking once more for just the letter", judge.name, len(retry))
        follow = [
            Request(messages=reask_messages(requests[i].messages, records[i]["raw"], requests[i].choices
                                            or tuple(LABELS[: len(asks[i].shown)]), asks[i].kind == "listwise"),
                    max_tokens=requests[i].max_tokens, choices=requests[i].choices)
            for i in retry
        ]
        for i, answer in zip(retry, judge.complete(follow, desc=f"re-ask ({judge.name})")):
            verdict, soft = _verdict(asks[i], answer)
            records[i].update(reask=answer.text, verdict=verdict, soft=soft if soft is not None else records[i]["soft"])
    return records


def comparison_rows(judge_name: str, asks: list[Ask], records: list[dict]) -> pd.DataFrame:
    rows = []
    for ask, rec in zip(asks, records):
        labels = LABELS[: len(ask.shown)]
        by_label = dict(zip(labels, ask.shown))
        verdict = rec["verdict"]
        if ask.kind == "listwise":
            chosen = ">".join(verdict) if verdict else ""
            named = ">".join(by_label[v][0] for v in verdict) if verdict else ""
        else:
            chosen = verdict or ""
            named = (by_label[verdict][0] + (f" ({by_label[verdict][2]})" if by_label[verdict][2] else "")) if verdict else ""
        u = ask.unit.unit
        p = prompt(LISTWISE if ask.kind == "listwise" else PAIRWISE)
        rows.append({
            "judge": judge_name, "kind": ask.kind, "sentence": u.sentence, "word": u.word, "prediction": u.prediction_label,
            "order": ask.order, "labels": "".join(labels),
            "shown": ";".join(f"{lab}={m}" + (f" ({role})" if role else "") for lab, (m, _, role) in by_label.items()),
            "concepts": ";".join(f"{lab}={c}" for lab, (_, c, _) in by_label.items()),
            "true_label": next((lab for lab, (_, _, role) in by_label.items() if role == "true"), ""),
            "raw_answer": rec["raw"], "reask_answer": rec["reask"] if rec["reask"] is not None else "",
            "verdict_label": chosen, "verdict": named, "parse_failed": verdict is None,
            "soft": ";".join(f"{lab}={q:.4f}" for lab, q in rec["soft"].items()) if rec["soft"] else "",
            "prompt": p.name, "prompt_sha": p.sha,
        })
    return pd.DataFrame(rows, columns=COLUMNS["comparisons"])


def outcomes_of(judge_name: str, asks: list[Ask], records: list[dict], methods: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Combine the orders of each comparison: (method outcomes, known-answer outcomes, listwise rankings)."""
    groups: dict[tuple, list[tuple[Ask, dict]]] = {}
    for ask, rec in zip(asks, records):
        groups.setdefault(ask.group, []).append((ask, rec))
    outcome_rows, known_rows, ranking_rows = [], [], []
    for key, members in groups.items():
        kind, sentence = key[0], key[1]
        if kind == "listwise":
            rankings = []
            for ask, rec in members:
                labels = LABELS[: len(ask.shown)]
                by_label = {lab: m for lab, (m, _, _) in zip(labels, ask.shown)}
                ranking = tuple(by_label[v] for v in rec["verdict"]) if rec["verdict"] else None
                rankings.append(ranking)
                ranking_rows.append({"judge": judge_name, "sentence": sentence, "ranking": ranking})
            for a, b in itertools.combinations(methods, 2):
                votes = [None if r is None else float(r.index(a) < r.index(b)) for r in rankings]
                score, inconsistent = stats.combine_votes(votes)
                outcome_rows.append({"judge": judge_name, "sentence": sentence, "method_a": a, "method_b": b,
                                     "score": score, "inconsistent": inconsistent, "soft": np.nan})
            continue
        # Pairwise and known answer: the reference option is the first of the key's pair (or the true concept).
        votes, softs = [], []
        for ask, rec in members:
            labels = LABELS[: len(ask.shown)]
            ref = 0 if (ask.shown[0][0], ask.shown[0][2]) == _reference(key, ask) else 1
            ref_label = labels[ref]
            votes.append(None if rec["verdict"] is None else float(rec["verdict"] == ref_label))
            softs.append(rec["soft"][ref_label] if rec["soft"] else np.nan)
        score, inconsistent = stats.combine_votes(votes)
        soft = float(np.mean(softs)) if np.isfinite(softs).all() else np.nan
        if kind == "known_answer":
            known_rows.append({"judge": judge_name, "sentence": sentence, "method_a": key[2], "method_b": RANDOM,
                               "score": score, "inconsistent": inconsistent, "soft": soft})
        else:
            outcome_rows.append({"judge": judge_name, "sentence": sentence, "method_a": key[2], "method_b": key[3],
                                 "score": score, "inconsistent": inconsistent, "soft": soft})
    return (pd.DataFrame(outcome_rows, columns=stats.OUTCOME_COLUMNS),
            pd.DataFrame(known_rows, columns=stats.OUTCOME_COLUMNS),
            pd.DataFrame(ranking_rows, columns=["judge", "sentence", "ranking"]))


def _reference(key: tuple, ask: Ask) -> tuple[str, str]:
    """(method, role) of the option whose side an outcome is scored from."""
    return (key[2], "true") if key[0] == "known_answer" else (key[2], "")


def summarise(outcomes: pd.DataFrame, known: pd.DataFrame, rankings: pd.DataFrame, methods: list[str], mode: str,
              n_boot: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """pairs.csv and methods.csv rows for every judge and for all judges pooled."""
    pair_rows, method_rows = [], []
    judges = list(dict.fromkeys(outcomes["judge"])) if len(outcomes) else []
    views = [(j, outcomes[outcomes["judge"] == j], known[known["judge"] == j], rankings[rankings["judge"] == j]) for j in judges]
    if len(judges) > 1:
        views.append((POOLED, outcomes, known, rankings))
    for judge, out, kn, rk in views:
        judge_known = stats.known_answer_summary(kn, n_boot, seed) if len(kn) else {}
        for a, b in itertools.combinations(methods, 2):
            pair_rows.append({"judge": judge, **stats.pair_summary(out, a, b, n_boot, seed)})
        if mode == "listwise":
            firsts = stats.first_place_listwise(rk, methods)
        else:
            firsts = stats.first_place_pairwise(out, methods)
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
                "informative": judge_known.get("informative", np.nan),
            })
    return pd.DataFrame(pair_rows), pd.DataFrame(method_rows)


def agreement_table(outcomes: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    judges = list(dict.fromkeys(outcomes["judge"]))
    if len(judges) < 2:
        return pd.DataFrame(columns=["judges", "comparisons", "alpha"])
    rows = [{"judges": "+".join(judges), "comparisons": "methods", "alpha": stats.judge_agreement(outcomes)}]
    if len(known):
        rows.append({"judges": "+".join(judges), "comparisons": "known_answer", "alpha": stats.judge_agreement(known)})
    return pd.DataFrame(rows)


def _fmt(value: float, low: float = np.nan, high: float = np.nan) -> str:
    if not np.isfinite(value):
        return "n/a"
    if np.isfinite(low) and np.isfinite(high):
        return f"{value:.2f} [{low:.2f}, {high:.2f}]"
    return f"{value:.2f}"


def _judge_flag(informative) -> tuple[str, str]:
    """(suffix for every table line, explanation for the judge's header) from the known-answer control."""
    if informative is None or (isinstance(informative, float) and np.isnan(informative)):
        return "  (no known-answer control)", "no known-answer control was run"
    if bool(informative):
        return "", "informative: its CI clears 0.5"
    return "  NOT INFORMATIVE", "not informative: its CI does not clear 0.5"


def format_table(methods_csv: pd.DataFrame, pairs_csv: pd.DataFrame, comparisons: pd.DataFrame, note: str = "") -> str:
    """A readable summary: one block per judge (and pooled), one line per method, the control beside it."""
    lines = [note] if note else []
    for judge, block in methods_csv.groupby("judge", sort=False):
        head = block.iloc[0]
        flag, why = _judge_flag(head.get("informative"))
        accuracy = _fmt(head.get("judge_known_answer_accuracy", np.nan), head.get("judge_known_answer_low", np.nan),
                        head.get("judge_known_answer_high", np.nan))
        lines.append(f"judge {judge}: known-answer accuracy {accuracy} ({why})")
        lines.append(f"  {'method':<14}{'win rate [95% CI]':<22}{'first':<7}{'Bradley-Terry [CI]':<22}"
                     f"{'soft pref [CI]':<22}{'known-answer [CI]':<22}{'pos.incons.':<12}{'unparsed':<9}")
        for row in block.to_dict("records"):
            known = _fmt(row.get("known_answer_accuracy", np.nan), row.get("known_answer_low", np.nan),
                         row.get("known_answer_high", np.nan))
            lines.append(
                f"  {row['method']:<14}{_fmt(row['win_rate'], row['win_rate_low'], row['win_rate_high']):<22}"
                f"{_fmt(row['first_place_rate']):<7}{_fmt(row['bt_score'], row['bt_low'], row['bt_high']):<22}"
                f"{_fmt(row['soft_pref'], row['soft_low'], row['soft_high']):<22}{known:<22}"
                f"{_fmt(row['position_inconsistency']):<12}{int(row['unparsed']):<9}{flag}"
            )
        for pair in pairs_csv[pairs_csv["judge"] == judge].to_dict("records"):
            p_value = f"{pair['p_value']:.3g}" if np.isfinite(pair["p_value"]) else "n/a"
            lines.append(
                f"    {pair['method_a']} vs {pair['method_b']}: {pair['wins']}-{pair['ties']}-{pair['losses']} (W-T-L), "
                f"win rate {_fmt(pair['win_rate'], pair['win_rate_low'], pair['win_rate_high'])}, "
                f"soft {_fmt(pair['soft_pref'], pair['soft_low'], pair['soft_high'])}, sign test p={p_value}{flag}"
            )
    failed = int(comparisons["parse_failed"].sum()) if len(comparisons) else 0
    lines.append(f"{len(comparisons)} answers, {failed} unparseable after one re-ask (counted, not guessed)")
    return "\n".join(lines)


def write_results(folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        write_text(folder / f"{name}.csv", frame.to_csv(index=False))


def _inputs(run: Run, methods: list[str]) -> dict:
    """What besides the config decides the results: the concept cards and the prompt texts."""
    return {"concepts": {m: concepts_version(run, m) for m in methods},
            "prompts": {p.name: p.sha for p in (prompt(PAIRWISE), prompt(LISTWISE), prompt(EXPLAINER))}}


def _publish(folder: Path, frames: dict[str, pd.DataFrame], out: str | None) -> str:
    names = ", ".join(f"{n}.csv" for n in frames)
    if not out:
        return f"wrote {names} to {folder}"
    try:
        write_results(Path(out), frames)
    except OSError as exc:
        raise UserError(f"cannot write to --out {out} ({exc.strerror}): pass a writable folder") from None
    return f"wrote {names} to {out} and {folder}"


def rank(config: RankConfig) -> str:
    """Judge the methods' concepts on the sampled units; write the CSVs; return the printed table."""
    run = Run.open(config.runs_dir, config.run)
    methods = _validate(config, run)
    seed = run_seed(run, config.seed)
    folder = run.stage_dir(STAGE)
    digest = config_hash(config, EXCLUDE)
    inputs = _inputs(run, methods)
    done = folder / "done.json"
    if not config.force and done.exists():
        record = read_json(done)
        if record.get("config_hash") == digest and record.get("inputs") == inputs and all(
            (folder / f).exists() for f in record.get("files", [])
        ):
            frames = {Path(f).stem: pd.read_csv(folder / f) for f in record["files"]}
            log.info("rank already finished with these options; results read from %s", folder)
            return format_table(frames["methods"], frames["pairs"], frames["comparisons"]) + "\n" + _publish(
                folder, frames, config.out)
    units = prepare_units(run, methods, config.sentences, seed)
    device = resolve_device(config.device)
    judges = open_judges(config, folder / "cache.sqlite", device)
    note = ""
    described: dict[str, dict[int, str]] = {m: {} for m in methods}
    if config.show != "card":
        wrote = []

        def explainer():
            wrote.append(True)
            return judges[0]

        described = describe_units(run, units, methods, explainer_key(config, device), explainer, config.known_answer,
                                   config.max_tokens)
        if wrote:
            note = (f"descriptions were missing: written on the fly by {judges[0].name}, "
                    "as `clvq-judge describe` would")
            log.info(note)
    cards = {m: load_cards(run, m) for m in methods}
    asks = plan(units, methods, config.mode, config.permutations, config.known_answer, seed)
    requests = [_request(ask, [Option(cards[m][c], described[m].get(c)) for m, c, _ in ask.shown], config.show)
                for ask in asks]
    comparisons, outcomes, known, rankings = [], [], [], []
    for judge in judges:
        records = ask_judge(judge, asks, requests)
        comparisons.append(comparison_rows(judge.name, asks, records))
        o, k, r = outcomes_of(judge.name, asks, records, methods)
        outcomes.append(o), known.append(k), rankings.append(r)
    comparisons_df = pd.concat(comparisons, ignore_index=True)
    outcomes_df, known_df, rankings_df = (pd.concat(x, ignore_index=True) for x in (outcomes, known, rankings))
    pairs_df, methods_df = summarise(outcomes_df, known_df, rankings_df, methods, config.mode,
                                     config.bootstrap, derive_seed(seed, "bootstrap"))
    frames = {"comparisons": comparisons_df, "pairs": pairs_df, "methods": methods_df,
              "agreement": agreement_table(outcomes_df, known_df)}
    write_results(folder, frames)
    write_json(done, {
        "config_hash": digest, "config": to_dict(config), "inputs": inputs, "methods": methods, "seed": seed,
        "n_units": len(units), "files": [f"{name}.csv" for name in frames],
        "usage": {j.name: j.usage for j in judges},
    })
    return format_table(methods_df, pairs_df, comparisons_df, note) + "\n" + _publish(folder, frames, config.out)
