"""`clvq-judge rank`: blinded LLM judging of concept methods, with each protocol's own control.

For every sampled unit (sentence, prediction, explanation token; see `judge.describe`) the judge is asked
about the concepts that the methods assign to the token, behind neutral labels in a seeded random order,
through one registered protocol (`judge/protocols/`, `--protocol`):

- pairwise (default): every pair of methods, asked in both orders, with a tie answer; orders that disagree
  give a tie and count as position-inconsistent.
- calibrated: the pairwise questions read from label log-probabilities with the position bias removed.
- listwise: all methods at once, ranked best first, under `--permutations` seeded orders.
- detection: one concept and one sentence at a time, "is the marked word an instance?", scored by AUC.

Every protocol reports its known-answer control (the true concept against a decoy of the same method: one
that also contains the unit's word where the method has one, else one of the closest size); a judge whose
control's 95% CI does not clear 0.5 is flagged "not informative" on every line.

Descriptions missing for `--show description|both` are written on the fly by the first judge, exactly as
`clvq-judge describe` would (the log and the printed result say so). Results go to `runs/<run>/judge/`
(comparisons.csv, pairs.csv, methods.csv, agreement.csv, done.json) and to `--out`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd

from clvq_judge.core.atomic import write_json, write_text
from clvq_judge.core.config import config_hash, to_dict
from clvq_judge.core.device import resolve_device
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import Run, RunOptions
from clvq_judge.core.units import load_cards

from .backends import JudgeOptions, explainer_spec, open_judges
from .describe import EXCLUDE as DESCRIBE_EXCLUDE
from .describe import (
    STAGE,
    SampleOptions,
    describe_units,
    explainer_key,
    finished_methods,
    prepare_units,
    resolve_methods,
    run_seed,
)
from .protocols import PROTOCOLS, Context, ask_judge, get_protocol
from .render import EXPLAINER, prompt

log = logging.getLogger(__name__)

RECORD = "rank"
"""rank's record in the run (core/stages.py: its done.json is judge/done.json)."""

DEFAULT_PROTOCOL = "calibrated"
"""Chosen from docs/judges.md: with the embedded judge no protocol clears its control; calibrated costs what
pairwise costs and removes the first-position preference that makes plain pairwise all ties."""


@dataclass
class RankConfig(SampleOptions, JudgeOptions, RunOptions):
    """Options of `clvq-judge rank`."""

    method: str = "clvq"
    """The focus method; it is compared with every --vs method (and those with each other)."""
    vs: tuple[str, ...] = ()
    """Methods to compare with (repeatable); none = every other method with finished concepts."""
    protocol: str = DEFAULT_PROTOCOL
    """Judge protocol (judge/protocols/): calibrated (the default: pairwise questions read from
    log-probabilities with the position bias removed), pairwise (every pair in both orders, with a tie answer),
    listwise (all methods ranked at once under several orders) or detection (is the marked word of a sentence
    an instance of the concept?). docs/judges.md has each one's measured control."""
    permutations: int = 3
    """Listwise: seeded orders of the methods per sentence."""
    items: int = 4
    """Detection: member sentences per concept (and as many non-members)."""
    show: Literal["both", "description", "card"] = "both"
    """What the judge sees of a concept: its description, its card's top words, or both (default: adds about 15 tokens per option, and a 0.5B explainer's description alone can be empty or vague)."""
    bootstrap: int = 1000
    """Bootstrap resamples of sentences for the 95% confidence intervals."""
    out: str | None = None
    """Folder to write the result CSVs to as well (the run keeps them in judge/)."""


EXCLUDE = (*DESCRIBE_EXCLUDE, "out")


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
    if config.protocol not in PROTOCOLS:
        raise UserError(f"unknown --protocol {config.protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if config.items < 1:
        raise UserError(f"--items must be at least 1, got {config.items}")
    if config.permutations < 1:
        raise UserError(f"--permutations must be at least 1, got {config.permutations}")
    if config.bootstrap < 0:
        raise UserError(f"--bootstrap must be 0 or more, got {config.bootstrap}")
    return methods


def results_dir(run: Run) -> Path:
    return run.stage_dir(STAGE) / "results"


def write_results(folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        write_text(folder / f"{name}.csv", frame.to_csv(index=False))


def stage_inputs(run: Run, methods: list[str]) -> tuple[str, ...]:
    """The records rank reads: every compared method's concepts, and describe's when it ran (rank writes any
    missing description itself, so describe is not required)."""
    return (*(f"concepts/{m}" for m in methods), *(("describe",) if run.is_done("describe") else ()))


def hashed_config(config: RankConfig, template: str) -> dict:
    """What besides the options decides the results: the prompt texts (a changed prompt is a new ranking)."""
    return {**to_dict(config), "prompts": {p.name: p.sha for p in (prompt(template), prompt(EXPLAINER))}}


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
    protocol = get_protocol(config.protocol)
    seed = run_seed(run, config.seed)
    folder = run.stage_dir(STAGE)
    hashed = hashed_config(config, protocol.template)
    digest = config_hash(hashed, EXCLUDE)
    inputs = stage_inputs(run, methods)
    # Redone, not refused, on other options: every answer is cached, so another protocol or judge costs only
    # what it has not asked yet. judge/ also holds describe's files, so only rank's own records are cleared.
    if not run.begin(RECORD, hashed, config.force, EXCLUDE, inputs, on_change="redo", clear=False):
        record = run.done_record(RECORD)
        frames = {Path(f).stem: pd.read_csv(folder / f) for f in record["files"]}
        log.info("rank already finished with these options from the same concepts; results read from %s", folder)
        return protocol.format(frames) + "\n" + _publish(folder, frames, config.out)
    units = prepare_units(run, methods, config.sentences, seed)
    device = resolve_device(config.device)
    judges = open_judges(config, folder / "cache.sqlite", device)
    note = ""
    described: dict[str, dict[int, str]] = {m: {} for m in methods}
    if config.show != "card":
        wrote = []
        writer = explainer_spec(config)

        def explainer():
            wrote.append(True)
            same = [j for j in judges if j.name == writer]
            if same:
                return same[0]
            return open_judges(replace(config, judge=(writer,), model=None, explainer=None), folder / "cache.sqlite",
                               device)[0]

        described = describe_units(run, units, methods, explainer_key(config, device), explainer, config.known_answer,
                                   config.max_tokens)
        if wrote:
            note = (f"descriptions were missing: written on the fly by {writer}, "
                    "as `clvq-judge describe` would")
            log.info(note)
    ctx = Context(run=run, units=units, methods=methods, cards={m: load_cards(run, m) for m in methods},
                  descriptions=described, show=config.show, seed=seed, known_answer=config.known_answer,
                  permutations=config.permutations, items=config.items, n_boot=config.bootstrap)
    asks = protocol.plan(ctx)
    requests = [protocol.request(ask, ctx) for ask in asks]
    per_judge: dict[str, list[pd.DataFrame]] = {}
    for judge in judges:
        for name, table in protocol.tables(judge.name, asks, ask_judge(judge, protocol, asks, requests), ctx).items():
            per_judge.setdefault(name, []).append(table)
    tables = {name: pd.concat(parts, ignore_index=True) for name, parts in per_judge.items()}
    frames = protocol.summarise(tables, ctx)
    files = [f"{name}.csv" for name in frames]
    extra = {"protocol": protocol.name, "methods": methods, "seed": seed, "n_units": len(units), "files": files,
             "usage": {j.name: j.usage for j in judges}}
    # Every finished ranking is also kept apart, so `clvq-judge judges` can compare all judges and protocols
    # that ever answered in this run; the top-level files are the latest ranking.
    archive = results_dir(run) / f"{protocol.name}-{digest[:10]}"
    write_results(archive, frames)
    write_json(archive / "done.json", {"config_hash": digest, "config": to_dict(config),
                                       "inputs": run.input_hashes(inputs), **extra})
    write_results(folder, frames)
    run.finish(RECORD, hashed, EXCLUDE, outputs=tuple(folder / f for f in files), **extra)
    return protocol.format(frames, note) + "\n" + _publish(folder, frames, config.out)
