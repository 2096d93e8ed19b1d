"""`clvq-judge describe`: an explainer LLM writes a one-line description of each concept it will be asked
about, from the concept's card alone (it is never told which method made the concept).

Only the concepts that the sampled evaluation units use are described, plus the random concepts of the
known-answer control. The units are sampled here (seeded, stratified by predicted label, through
`core.units.sample_units`) and stored in `runs/<run>/judge/units.jsonl`, so that `rank` judges the same
sentences. Descriptions go to `runs/<run>/judge/descriptions/<method>.jsonl`, one row per concept with
the explainer's name and the prompt's name and hash. Every answer is cached as it arrives
(`judge/cache.sqlite`), so a killed run resumes and a rerun asks nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from clvq_judge.core.atomic import read_json, write_json, write_text
from clvq_judge.core.config import to_dict
from clvq_judge.core.device import resolve_device
from clvq_judge.core.errors import UserError
from clvq_judge.core.methods import METHODS
from clvq_judge.core.runs import NON_RESULT_FIELDS, Run, RunOptions, derive_seed, run_seed
from clvq_judge.core.units import Unit, concept_folder, load_cards, sample_units

from .backends import NON_RESULT_JUDGE_FIELDS, JudgeOptions, explainer_spec, judge_specs, open_judges
from .backends.local import resolve_precision
from .client import Request
from .render import EXPLAINER, EXPLAINER_WORDS, REDESCRIBE, card_words, explainer_messages, prompt

log = logging.getLogger(__name__)

STAGE = "judge"
MAX_DESCRIPTION_CHARS = 120


@dataclass
class SampleOptions:
    sentences: int = 20
    """Evaluation sentences to judge (seeded sample, stratified by the model's predicted label)."""
    seed: int | None = None
    """Seed of the sentence sample, the label order and the known-answer controls; none = the run's seed."""
    known_answer: bool = True
    """Known-answer control: also pit each method's true concept against a random concept of the same method."""


@dataclass
class DescribeConfig(SampleOptions, JudgeOptions, RunOptions):
    """Options of `clvq-judge describe`."""

    method: tuple[str, ...] = ()
    """Methods whose concepts to describe (repeatable); none = every method with finished concepts."""


@dataclass
class JudgeUnit:
    unit: Unit
    control: dict[str, int]
    """Known-answer control: a random other concept of each method (seeded); absent when none exists."""


def finished_methods(run: Run) -> list[str]:
    return [m for m in METHODS if run.is_done(f"concepts/{m}")]


def resolve_methods(run: Run, requested: tuple[str, ...] | list[str]) -> list[str]:
    """The requested methods in the given order, checked; none requested = every finished one."""
    unknown = [m for m in requested if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {', '.join(unknown)}: use some of {', '.join(METHODS)}")
    if not requested:
        found = finished_methods(run)
        if not found:
            raise UserError(
                f"run {run.name!r} has no finished concepts: run `clvq-judge train --run {run.name} --method clvq` "
                f"and `clvq-judge concepts --run {run.name} --method clvq` first"
            )
        return found
    for m in requested:
        concept_folder(run, m)  # one-line hint when a method has no concepts yet
    return list(dict.fromkeys(requested))


def concepts_version(run: Run, method: str) -> str:
    """Identifies the concept cards a unit or description was made from: a retrained method reuses concept
    ids for new concepts, so older descriptions must not be shown for them."""
    return str(run.done_hash(f"concepts/{method}"))  # changes with every redo of the concepts, same options or not


CONTROL = "same-word-or-size.v2"
"""How the known-answer decoys are drawn (stored with the units, so a change redraws them)."""


def control_concepts(unit: Unit, cards: dict[str, list[dict]], seed: int) -> dict[str, int]:
    """For each method, a decoy concept other than the unit's own that string matching cannot tell apart:
    a used concept of the same method that also has the unit's word among its member words where one exists,
    else one of the closest size (member count). Ties are broken at random, seeded per sentence."""
    out = {}
    word = unit.word.casefold()
    for method, concept in unit.concepts.items():
        rng = np.random.default_rng(derive_seed(seed, "known-answer", method, unit.sentence))
        used = [c for c in cards[method] if c["count"] > 0 and c["id"] != concept]
        if not used:
            continue
        same_word = [c["id"] for c in used if any(str(w).casefold() == word for w, _ in c.get("top_words", []))]
        if same_word:
            out[method] = int(rng.choice(same_word))
            continue
        size = cards[method][concept]["count"]
        gaps = np.array([abs(c["count"] - size) for c in used])
        closest = [c["id"] for c, gap in zip(used, gaps) if gap == gaps.min()]
        out[method] = int(rng.choice(closest))
    return out


def units_path(run: Run) -> Path:
    return run.stage_dir(STAGE) / "units.jsonl"


def prepare_units(run: Run, methods: list[str], sentences: int, seed: int) -> list[JudgeUnit]:
    """The stored sample when it was drawn with this seed and size and covers `methods`; otherwise a new
    sample, stored for the next stage. Descriptions are per concept, so a new sample keeps them valid."""
    path, meta_path = units_path(run), run.stage_dir(STAGE) / "units.json"
    if path.exists() and meta_path.exists():
        meta = read_json(meta_path)
        versions = meta.get("concepts", {})
        if (meta.get("seed") == seed and meta.get("sentences") == sentences and meta.get("control") == CONTROL
                and all(versions.get(m) == concepts_version(run, m) for m in methods)):
            return read_units(path)
    if sentences < 1:
        raise UserError(f"--sentences must be at least 1, got {sentences}")
    units = sample_units(run, methods, sentences, seed)
    if len(units) < sentences:
        log.warning("run %s has only %d usable evaluation sentences; judging all of them instead of %d",
                    run.name, len(units), sentences)
    cards = {m: load_cards(run, m) for m in methods}
    judged = [JudgeUnit(u, control_concepts(u, cards, seed)) for u in units]
    # The record goes first and comes back last, so a crash in between never pairs it with other units.
    meta_path.unlink(missing_ok=True)
    write_text(path, "".join(json.dumps({**j.unit.to_dict(), "control": j.control}) + "\n" for j in judged))
    write_json(meta_path, {"seed": seed, "sentences": sentences, "control": CONTROL, "methods": methods, "n_units": len(judged),
                           "concepts": {m: concepts_version(run, m) for m in methods}})
    return judged


def read_units(path: Path) -> list[JudgeUnit]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            data = json.loads(line)
            control = {k: int(v) for k, v in data.pop("control").items()}
            out.append(JudgeUnit(Unit.from_dict(data), control))
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path} line {i} is malformed: delete {path} and rerun to sample the units again") from None
    return out


def descriptions_path(run: Run, method: str) -> Path:
    return run.stage_dir(STAGE) / "descriptions" / f"{method}.jsonl"


def read_descriptions(run: Run, method: str) -> list[dict]:
    path = descriptions_path(run, method)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            int(row["concept"]), str(row["description"]), row["judge"], row["prompt_sha"]
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"{path} line {i} is malformed: delete {path} and rerun `clvq-judge describe --run {run.name}` "
                "(cached answers make it quick)"
            ) from None
        rows.append(row)
    return rows


def descriptions_for(run: Run, method: str, judge: str) -> dict[int, str]:
    """Concept id -> description written by `judge` with the current explainer prompt."""
    sha, version = prompt(EXPLAINER).sha, concepts_version(run, method)
    return {int(r["concept"]): r["description"] for r in read_descriptions(run, method)
            if r["judge"] == judge and r["prompt_sha"] == sha and r.get("concepts") == version}


_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)])\s+")
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "*": "*"}


def _unwrap(line: str) -> str:
    """Drop quotes (or emphasis) that wrap the whole line, never a quote that belongs to the text."""
    changed = True
    while changed and len(line) >= 2:
        changed = False
        for left, right in _QUOTES.items():
            if line.startswith(left) and line.endswith(right):
                inner = line[len(left):-len(right)].strip()
                if left == right and inner.count(left) % 2:  # `"Pronoun "it"`-like: the last quote is the text's
                    continue
                line, changed = inner, True
    return line


def echoes_card(text: str, card: dict) -> bool:
    """Whether an answer only copies the card's word list back ("w1 (3), w2 (2), ...", or most of its words)."""
    words = [str(w) for w, _ in card_words(card, EXPLAINER_WORDS)]
    if not words:
        return False
    if sum(f"{w} ({n})" in text for w, n in card_words(card, EXPLAINER_WORDS)) >= 2:
        return True
    if len(re.findall(r"\w \(\d+\)", text)) >= 2 or text.casefold().startswith("group (word"):
        return True  # the card's "word (count)" format copied back, counts or not
    tokens = [t.casefold() for t in re.findall(r"[\w'-]+", text)]
    if not tokens:
        return False
    listed = {w.casefold() for w in words}
    return len(tokens) >= 2 and sum(t in listed for t in tokens) / len(tokens) >= 0.75 and "," in text


def clean_description(text: str, card: dict | None = None) -> str:
    """The first non-empty line of the answer, without a list marker or wrapping quotes, cut to a short phrase.

    An answer that only copies the card's word list back describes nothing: it becomes empty (the caller
    re-asks once), and the judge then sees the words themselves with "(no description)" instead of twice."""
    for line in (text or "").splitlines():
        line = _unwrap(_LIST_MARKER.sub("", line).strip())
        line = re.sub(r"^(?i:theme)\s*:\s*", "", line).strip()
        line = _unwrap(line)
        if line:
            if card is not None and echoes_card(line, card):
                return ""
            return line[:MAX_DESCRIPTION_CHARS].rstrip(". ")
    return ""


def needed_concepts(units: list[JudgeUnit], method: str, known_answer: bool) -> list[int]:
    ids = {u.unit.concepts[method] for u in units}
    if known_answer:
        ids |= {u.control[method] for u in units if method in u.control}
    return sorted(ids)


def explainer_key(options: JudgeOptions, device: str) -> str:
    """The name descriptions are stored under: the first judge, plus the precision its weights run in where
    that is not the reference float32 (other precisions write slightly different descriptions)."""
    spec = explainer_spec(options)
    if spec != "embedded" and not spec.startswith("transformers:"):
        return spec
    precision = resolve_precision(options.precision, str(device))
    return spec if precision == "float32" else f"{spec}@{precision}"


def describe_units(
    run: Run,
    units: list[JudgeUnit],
    methods: list[str],
    explainer_name: str,
    open_explainer: Callable[[], object],
    known_answer: bool,
    max_tokens: int,
) -> dict[str, dict[int, str]]:
    """Describe every concept the units need that this explainer has not described yet; return all of
    them. The explainer is opened (its model loaded) only when something is missing."""
    sha = prompt(EXPLAINER).sha
    have = {m: descriptions_for(run, m, explainer_name) for m in methods}
    todo = []
    cards_by = {m: load_cards(run, m) for m in methods}
    for m in methods:
        cards = cards_by[m]
        todo += [(m, c, explainer_messages(cards[c])) for c in needed_concepts(units, m, known_answer) if c not in have[m]]
    if not todo:
        return have
    explainer = open_explainer()
    log.info("describing %d concepts with %s", len(todo), explainer_name)
    requests = [Request(messages=msgs, max_tokens=max_tokens) for _, _, msgs in todo]
    answers = explainer.complete(requests, desc="describe")
    texts = [clean_description(a.text, cards_by[m][c]) for (m, c, _), a in zip(todo, answers)]
    # An answer that is empty or echoes the word list is asked once more, then kept empty and marked.
    retry = [i for i, t in enumerate(texts) if not t]
    reasked: dict[int, str] = {}
    if retry:
        follow = [Request(messages=(*requests[i].messages, ("assistant", answers[i].text), *prompt(REDESCRIBE).messages()),
                          max_tokens=max_tokens) for i in retry]
        for i, again in zip(retry, explainer.complete(follow, desc="describe (re-ask)")):
            reasked[i] = again.text
            m, c, _ = todo[i]
            texts[i] = clean_description(again.text, cards_by[m][c])
    new: dict[str, list[dict]] = {m: [] for m in methods}
    for i, ((m, c, _), answer) in enumerate(zip(todo, answers)):
        new[m].append({"concept": c, "description": texts[i], "raw": answer.text, "reask": reasked.get(i),
                       "not_a_description": not texts[i], "judge": explainer_name,
                       "model": getattr(explainer, "model", ""), "prompt": EXPLAINER, "prompt_sha": sha,
                       "concepts": concepts_version(run, m)})
        have[m][c] = texts[i]
    for m, rows in new.items():
        if rows:
            replaced = {(r["concept"], r["judge"], r["prompt_sha"], r["concepts"]) for r in rows}
            kept = [r for r in read_descriptions(run, m)
                    if (int(r["concept"]), r["judge"], r["prompt_sha"], r.get("concepts")) not in replaced]
            write_text(descriptions_path(run, m), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept + rows))
    return have


RECORD = "describe"
"""describe's record in the run (core/stages.py: judge/descriptions/done.json, beside the descriptions)."""
EXCLUDE = (*NON_RESULT_FIELDS, *NON_RESULT_JUDGE_FIELDS)


def describe(config: DescribeConfig) -> str:
    """Sample (or reuse) the evaluation units and describe every concept they use."""
    run = Run.open(config.runs_dir, config.run)
    methods = resolve_methods(run, config.method)
    seed = run_seed(run, config.seed)
    specs = judge_specs(config)
    device = resolve_device(config.device)
    name = explainer_key(config, device)
    sha = prompt(EXPLAINER).sha
    hashed = {**to_dict(config), "explainer_key": name, "prompt_sha": sha, "control": CONTROL}
    inputs = tuple(f"concepts/{m}" for m in methods)
    # Redone, never refused, on other options: descriptions accumulate per explainer and every answer is cached.
    up_to_date = not run.begin(RECORD, hashed, config.force, EXCLUDE, inputs, on_change="redo", clear=False)
    if config.force:
        for m in methods:
            descriptions_path(run, m).unlink(missing_ok=True)
    units = prepare_units(run, methods, config.sentences, seed)
    writer = explainer_spec(config)
    if len(specs) > 1 and not config.explainer:
        log.info("descriptions are written by the first --judge (%s); the others judge in `rank` only", writer)
    opened = []

    def open_explainer():
        config_one = replace(config, judge=(writer,), model=None, explainer=None)
        opened.extend(open_judges(config_one, run.stage_dir(STAGE) / "cache.sqlite", device))
        return opened[0]

    described = describe_units(run, units, methods, name, open_explainer, config.known_answer, config.max_tokens)
    lines = [f"descriptions of the concepts {len(units)} sentences use, by {name} (prompt {EXPLAINER} {sha}):"]
    shares = {}
    for m in methods:
        needed = needed_concepts(units, m, config.known_answer)
        empty = sum(1 for c in needed if not described[m].get(c))
        shares[m] = share = empty / len(needed) if needed else 0.0
        lines.append(f"  {m}: {len(needed)} concepts -> {descriptions_path(run, m)}; not a description after one "
                     f"re-ask (empty or the word list echoed): {empty} ({share:.0%})")
    usage = opened[0].usage if opened else {"requests_sent": 0}
    lines.append(f"requests sent: {usage.get('requests_sent', 0)}")
    if not up_to_date:
        summary = {"methods": methods, "seed": seed, "sentences": config.sentences, "n_units": len(units),
                   "explainer": name, "prompt": EXPLAINER, "prompt_sha": sha, "usage": usage,
                   "not_a_description_share": shares}
        write_json(run.stage_dir(STAGE) / "describe.json", summary)
        run.finish(RECORD, hashed, EXCLUDE, outputs=tuple(descriptions_path(run, m) for m in methods), **summary)
    return "\n".join(lines)
