"""`clvq-judge study simulate`: LLM annotators answer a study through exactly what a person sees.

Each item is turned into the annotator's view by `display.item_view` (the same call the app makes, with the
same seeded label order `Store.option_order` gives a person) and its `plain()` text is all the prompt
(`prompts/annotator.v2.j2`) receives: the condition's question, the sentence with its marked word when the
condition shows it, the concept's words with counts or its example sentences when it shows one (with the
page's captions), and the label choices in the offered order; never the method, the condition's name or
the model's prediction (those stay in the study file). The order is recorded with each answer.

Design. Simulated annotator i takes the assignment of human annotator i (same items, same order, the
attention checks included), so the simulated answers inherit the study's balance (conditions x methods
per annotator, no sentence met twice) and every simulated answer has human answers to the same item to agree
with. The answer is a verdict over letter labels (A, B, ...) mapped to the label names, since label names
may share a first token: read from the letters' log-probabilities renormalised over the offered letters
(`judge.stats.normalise_choice`) when the backend gives them, else parsed from the reply's text by the
judge's strict parser (`judge.verdicts.parse_choice`; an unparseable reply is stored as can't tell). "Can't
tell" is never offered: a log-probability judge always has a most likely label, so the option would be
dead. Confidence 1-5 buckets the soft probability of the answer between chance (1) and certainty (5).
Answers go through `Store.record_answer`, the app's own path, one transaction
each; a rerun reuses the judge cache and the store's idempotent submits, so it sends and adds nothing.

With a deterministic verdict, simulated annotators that share an item give the same answer; `--answer
sample` instead draws each annotator's answer from the judge's probabilities (seeded per annotator and
item), a population of readers with the judge's beliefs. A small judge prefers the first letter whatever
the content (the embedded 0.5B judge puts about 40% on "A" across five labels): the seeded order spreads
that bias over the labels, and `study results` flags a simulated annotator whose attention checks fail or
whose answers collapse on one label or one option place as not informative.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from clvq_judge.core.config import option
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import NON_RESULT_FIELDS, RunOptions
from clvq_judge.judge.backends import NON_RESULT_JUDGE_FIELDS, JudgeOptions, open_judges
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import normalise_choice, parse_choice
from clvq_judge.judge.render import prompt

from .display import EXAMPLES_CAPTION, WORDS_CAPTION, item_view, option_order
from .results import resolve_study, simulate_record, study_in_run, study_record
from .store import Store

log = logging.getLogger(__name__)

TEMPLATE = "annotator.v2.j2"
KIND = "simulated"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CHUNK = 64


@dataclass
class SimulateConfig(JudgeOptions, RunOptions):
    """Options of `clvq-judge study simulate` (--force deletes the simulated annotators' answers and records them
    again; the judge cache answers prompts it has seen)."""

    study: str | None = None
    """Study file (.sqlite); none = <runs-dir>/<run>/studies/<name>.sqlite."""
    name: str | None = None
    """Study name inside the run, when --study is not given."""
    annotators: int = option(3, ge=1)
    """Simulated annotators per judge; simulated annotator i answers the items of human annotator i."""
    answer: Literal["verdict", "sample"] = "verdict"
    """verdict: the judge's most likely label; sample: a draw from its label probabilities, seeded per annotator
    and item (annotators sharing an item then differ as readers would)."""
    seed: int = 0
    """Seed of the draws of --answer sample (the label order is the study's own, seeded per annotator and item)."""


@dataclass(frozen=True)
class Answer:
    label: str | None
    """A label name, or None when the judge's reply named no offered letter."""
    confidence: int | None
    probability: float | None


# --- pure pieces ----------------------------------------------------------------------------------------


def letter_choices(labels: list[str]) -> list[tuple[str, str]]:
    if len(labels) > len(LETTERS):
        raise UserError(f"the study has {len(labels)} labels; simulated annotators answer with letters, at most {len(LETTERS)}")
    return list(zip(LETTERS, labels))


def annotator_messages(display: dict, labels: list[str]) -> tuple[tuple[str, str], ...]:
    """The prompt of one item, from the annotator's view only (its choices in the order of `labels`)."""
    view = item_view(display, labels, allow_cant_tell=False)
    plain = view.plain()
    return prompt(TEMPLATE).messages(
        question=plain["question"], sentence=plain["sentence"], top_words=plain["top_words"],
        examples=plain["examples"], note=plain["note"], words_caption=WORDS_CAPTION,
        examples_caption=EXAMPLES_CAPTION, choices=letter_choices(plain["choices"]), instruction=view.is_instruction,
    )


def confidence_bucket(p: float, n_choices: int) -> int:
    """1-5 from the answer's probability: 1 at chance (1/n) or below, 5 at certainty, even steps between."""
    if n_choices < 2:
        return 5
    chance = 1.0 / n_choices
    share = (p - chance) / (1.0 - chance)
    return int(min(5, max(1, 1 + math.floor(5 * share))))


def read_answer(completion: Completion, choices: list[tuple[str, str]], mode: str, rng: np.random.Generator | None) -> Answer:
    letters = [c for c, _ in choices]
    label_of = dict(choices)
    soft = normalise_choice(completion.choice_logprobs, letters)
    if soft is not None:
        p = np.array([soft[c] for c in letters])
        k = int(rng.choice(len(letters), p=p)) if mode == "sample" and rng is not None else int(np.argmax(p))
        return Answer(label_of[letters[k]], confidence_bucket(float(p[k]), len(letters)), float(p[k]))
    # A backend without log-probabilities: the letter it wrote (strictly parsed), at no stated confidence.
    letter = parse_choice(completion.text or "", letters)
    return Answer(label_of.get(letter), None, None)


def judge_slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-").lower() or "judge"


def item_seed(seed: int, annotator: int, item: int) -> np.random.Generator:
    return np.random.default_rng([seed, annotator, item])


# --- the stage -------------------------------------------------------------------------------------------


SIMULATE_EXCLUDE = (*NON_RESULT_FIELDS, "study", "name", *NON_RESULT_JUDGE_FIELDS)


def simulate_study(config: SimulateConfig) -> str:
    path = resolve_study(config.study, config.runs_dir, config.run, config.name)
    store = Store.open(path)
    labels = store.labels()
    letter_choices(labels)  # more labels than letters fails here, before any model loads
    humans = [a for a in store.annotators() if a.kind == "human"]
    if config.annotators > len(humans):
        raise UserError(f"--annotators {config.annotators} is above the study's {len(humans)} human annotators, "
                        f"whose assignments the simulated ones take: lower --annotators")
    from clvq_judge.core.device import resolve_device

    found = study_in_run(path)
    stage = None
    if found is not None:
        run, name = found
        stage = simulate_record(name)
        # Redone on other options (more annotators, another judge: it only adds what is missing), refused when
        # the study was built from concepts redone after it (`require`, through begin's inputs).
        if not run.begin(stage, config, config.force, SIMULATE_EXCLUDE, (study_record(name),), on_change="redo"):
            return (f"the simulated annotators already answered this study with these options: "
                    f"{run.done_record(stage).get('summary', '')}\n"
                    f"see the comparison with the humans: clvq-judge study results --study {Path(path)}")
    judges = open_judges(config, path.with_name(f"{path.stem}.simulate-cache.sqlite"), resolve_device(config.device))
    template = prompt(TEMPLATE)
    meta = store.meta()
    lines, record, order_seed = [], meta.get("simulations") or {}, int(meta.get("order_seed", 0))
    try:
        for judge in judges:
            sims = [store.add_annotator_like(f"sim-{judge_slug(judge.name)}-{i + 1}", KIND, humans[i].id)
                    for i in range(config.annotators)]
            if config.force:
                # The judge cache still answers prompts it has seen: --force re-reads answers, it does not re-pay.
                cleared = sum(store.clear_answers(sim.id) for sim in sims)
                log.info("--force: %d earlier answers of %s's simulated annotators deleted", cleared, judge.name)
            for i, sim in enumerate(sims):
                record[sim.name] = {"judge": judge.name, "model": judge.cache_model, "takes_items_of": humans[i].name,
                                    "answer": config.answer, "option_order": "the study's, seeded per annotator and item",
                                    "seed": config.seed,
                                    "prompt": template.name, "prompt_sha": template.sha}
            store.set_meta("simulations", record)
            pending = [(sim, item, display) for sim in sims for item, display in store.pending_items(sim.id)]
            stored = unparsed = 0
            # In chunks, so a long simulation lands in the study as it goes (the cache keeps the rest).
            for at in range(0, len(pending), CHUNK):
                chunk = pending[at:at + CHUNK]
                shown = [option_order(labels, order_seed, sim.id, item) for sim, item, _ in chunk]
                requests = [Request(messages=annotator_messages(display, order), max_tokens=2,
                                    choices=tuple(LETTERS[:len(order)]))
                            for (_, _, display), order in zip(chunk, shown)]
                completions = judge.complete(requests, desc=f"simulate {judge.name}")
                for (sim, item, _), order, completion in zip(chunk, shown, completions):
                    answer = read_answer(completion, letter_choices(order), config.answer,
                                         item_seed(config.seed, sim.id, item))
                    unparsed += answer.label is None
                    stored += store.record_answer(sim.id, item, answer.label, answer.confidence, options=order,
                                                  seconds=0.0 if completion.cached else completion.seconds)
            usage = judge.usage
            lines.append(f"{judge.name}: {len(sims)} simulated annotators, {stored} answers stored "
                         f"({usage['requests_sent']} requests sent, {usage['cache_hits']} from cache"
                         + (f", {unparsed} replies named no label and count as can't tell" if unparsed else "") + ")")
            log.info(lines[-1])
    finally:
        for judge in judges:
            judge.close()
    if stage is not None:
        run.finish(stage, config, SIMULATE_EXCLUDE, summary="; ".join(lines), outputs=(path,))
    return "\n".join([*lines, f"see the comparison with the humans: clvq-judge study results --study {Path(path)}"])
