"""`clvq-judge study create`: sample items from a run, design who annotates what, write the study file.

Design. `items` evaluation sentences are sampled by `core.units.sample_units` (seeded, stratified by the
model's predicted label). Each sentence becomes one item per *cell*: a (condition, method) pair for a
condition that shows a concept (`concept`, `both`), and one (condition, no method) item for a condition that
does not (`sentence`, the same page whatever the method). Each item is answered by `overlap` annotators, and
nobody meets one sentence twice, in any condition or method (they would compare, or carry what one page
told them to the next), so a sentence needs `cells x overlap` different annotators. Sentences are handed
out greedily to the least-loaded annotators (seeded tie-breaks) and, within a sentence, cells are matched
to annotators by an optimal assignment that favours the cell each has seen least, which keeps both the
load and the conditions x methods per annotator balanced to within one item in practice (the tests check it).

Attention checks are instructed-response items: the sentence reads "Attention check: please select
<label>", with no concept; each annotator gets all of them at seeded random places in their sequence
(never first), and their label cycles through the label names. Their answer is known, so results report
the pass rate per annotator; they never enter accuracy or agreement.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clvq_judge.core.config import to_dict
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import NON_RESULT_FIELDS, Run, RunOptions
from clvq_judge.core.stages import record_key
from clvq_judge.core.units import concept_folder, load_cards, sample_units

from .conditions import cells, condition_names, get_condition
from .display import attention_display
from .store import Store

log = logging.getLogger(__name__)

PBKDF2_ROUNDS = 200_000


@dataclass
class CreateConfig(RunOptions):
    """Options of `clvq-judge study create`."""

    method: tuple[str, ...] = ("clvq", "kmeans", "sae")
    """Concept methods to compare (each needs finished `concepts`); repeat the option or list several."""
    condition: tuple[str, ...] = ("concept",)
    """What an item shows: concept (the concept's card only, the paper's protocol), sentence (the sentence with
    its explanation word highlighted, no concept: the control) or both; repeat the option for several."""
    items: int = 60
    """Evaluation sentences to sample; each is shown once per method."""
    overlap: int = 3
    """Annotators per item; (condition x method cells) x overlap must not exceed the annotator count."""
    annotators: int = 9
    """Number of annotators (one invite link each)."""
    attention_checks: int = 4
    """Instructed-response items per annotator (known answer, excluded from accuracy and agreement)."""
    name: str | None = None
    """Study name (file runs/<run>/studies/<name>.sqlite); none = study-<seed>."""
    seed: int = 0
    """Seed for the sentence sample, the assignment, the item order and each item's label order."""
    base_url: str = "http://localhost:8501"
    """Address annotators open; each invite link is <base-url>/?token=..."""
    admin_password_env: str | None = None
    """Environment variable holding the results password to store (salted hash) in the study; the app also
    accepts CLVQ_STUDY_ADMIN_PASSWORD at serve time."""
    top_words: int = 12
    """Words (with counts) shown per concept."""
    examples: int = 3
    """Example sentences shown for a concept dominated by sentence-start tokens."""
    replace_outdated: bool = False
    """Rebuild the study, without --force, when it was built with other options or from concepts redone since
    (its answers are lost: for a study nobody answered yet, such as the demo's); without it that is refused."""


def study_path(runs_dir: str | os.PathLike, run: str, name: str) -> Path:
    return Path(runs_dir) / run / "studies" / f"{name}.sqlite"


def check_design(n_cells: int, overlap: int, annotators: int, what: str = "") -> None:
    if annotators < 1 or overlap < 1 or n_cells < 1:
        raise UserError("--annotators, --overlap and the number of --method and --condition values must be at least 1")
    if overlap > annotators:
        raise UserError(f"--overlap {overlap} is above --annotators {annotators}: each item needs that many different annotators")
    if n_cells * overlap > annotators:
        raise UserError(
            f"{what or f'{n_cells} methods'} x overlap {overlap} needs at least {n_cells * overlap} annotators so that "
            f"nobody meets a sentence twice, got --annotators {annotators}: raise --annotators, lower --overlap or "
            f"drop a --condition or --method"
        )


def assign(n_sentences: int, n_cells: int, annotators: int, overlap: int, seed: int) -> list[list[tuple[int, int]]]:
    """Per annotator, the (sentence, cell) items they answer, in presentation order.

    Every item gets exactly `overlap` annotators; no annotator gets a sentence twice (in any cell).
    """
    from scipy.optimize import linear_sum_assignment

    check_design(n_cells, overlap, annotators)
    rng = np.random.default_rng(seed)
    load = np.zeros(annotators, dtype=np.int64)
    seen = np.zeros((annotators, n_cells), dtype=np.int64)
    slots = np.repeat(np.arange(n_cells), overlap)
    per: list[list[tuple[int, int]]] = [[] for _ in range(annotators)]
    for sentence in range(n_sentences):
        # least loaded first; a fresh random key breaks ties so no annotator is always last in line
        chosen = np.lexsort((rng.random(annotators), load))[: len(slots)]
        cost = seen[chosen][:, slots]
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            a, m = int(chosen[r]), int(slots[c])
            per[a].append((sentence, m))
            seen[a, m] += 1
            load[a] += 1
    for items in per:
        order = rng.permutation(len(items))
        items[:] = [items[i] for i in order]
    return per


def attention_positions(n_items: int, n_checks: int, rng: np.random.Generator) -> list[int]:
    """Sorted places (0-based, in the final sequence of n_items + n_checks) of the checks, never first."""
    if n_checks == 0:
        return []
    total = n_items + n_checks
    return sorted(int(p) for p in rng.choice(np.arange(1, total), size=min(n_checks, total - 1), replace=False))


def hash_password(password: str, salt: bytes | None = None) -> dict:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS)
    return {"algorithm": "pbkdf2_sha256", "rounds": PBKDF2_ROUNDS, "salt": salt.hex(), "hash": digest.hex()}


def create_study(config: CreateConfig) -> str:
    methods = list(dict.fromkeys(config.method))
    if not methods:
        raise UserError("no --method given: name at least one method with finished concepts, e.g. --method clvq")
    from clvq_judge.core.methods import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown --method {' '.join(unknown)}: use some of {', '.join(METHODS)}")
    conditions = list(dict.fromkeys(config.condition))
    if not conditions:
        raise UserError(f"no --condition given: name at least one of {', '.join(condition_names())}")
    for condition in conditions:
        get_condition(condition)  # an unknown name fails here with the list of known ones
    design = cells(conditions, methods)
    what = " + ".join(f"{c} ({len(methods) if get_condition(c).per_method else 1} item{'s' if get_condition(c).per_method and len(methods) > 1 else ''})"
                      for c in conditions)
    check_design(len(design), config.overlap, config.annotators, f"{len(design)} items per sentence [{what}]")
    if config.items < 1:
        raise UserError(f"--items must be at least 1, got {config.items}")
    if config.attention_checks < 0:
        raise UserError(f"--attention-checks must be 0 or more, got {config.attention_checks}")
    name = config.name or f"study-{config.seed}"
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"invalid study name {name!r}: use a plain name such as 'pilot'")
    password = None
    if config.admin_password_env:
        password = os.environ.get(config.admin_password_env)
        if not password:
            raise UserError(f"environment variable {config.admin_password_env} is empty or unset: export the results password in it")

    run = Run.open(config.runs_dir, config.run)
    path = study_path(config.runs_dir, config.run, name)
    record = record_key("study create", name=name)
    for m in methods:
        concept_folder(run, m)  # a method without concepts: the one-line hint naming `clvq-judge concepts`
    inputs = tuple(f"concepts/{m}" for m in methods)
    if path.exists() and not config.force and not run.is_done(record):
        raise UserError(f"study {name!r} already exists at {path}: pass --force to replace it (its answers are lost) or another --name")
    # A study holds people's answers: other options or redone concepts are refused (--force replaces it, or
    # --replace-outdated when it is known to hold none, as the demo's), never silently rebuilt.
    policy = "redo" if config.replace_outdated else "refuse"
    if not run.begin(record, config, config.force, CREATE_EXCLUDE, inputs, on_change=policy, on_outdated=policy):
        log.info("study %s already built with these options from the same concepts", name)
        return invite_text(path, config.base_url)

    units = sample_units(run, methods, config.items, config.seed)
    if len(units) < config.items:
        raise UserError(
            f"run {run.name!r} has only {len(units)} evaluation sentences with concepts for every method, "
            f"--items asks for {config.items}: lower --items"
        )
    from clvq_judge.core.units import label_names

    labels = label_names(run)
    cards = {m: load_cards(run, m) for m in methods}

    # Item ids follow sentence x cell; they never reach the page (widget keys are opaque, see Store.widget_key).
    items: list[dict] = []
    item_id: dict[tuple[int, int], int] = {}
    for s, unit in enumerate(units):
        for c, (condition, method) in enumerate(design):
            concept = unit.concepts[method] if method is not None else None
            card = cards[method][concept] if method is not None else None
            item_id[(s, c)] = len(items) + 1
            items.append({
                "id": len(items) + 1, "kind": "task", "condition": condition, "sentence": unit.sentence, "method": method,
                "concept": concept, "truth": unit.prediction_label,
                "display": get_condition(condition).display(unit.sentence, unit.text, unit.span, unit.word, card,
                                                       config.top_words, config.examples),
            })
    rng = np.random.default_rng(config.seed + 1)
    check_labels = [labels[i] for i in rng.permutation(len(labels))]
    checks = []
    for k in range(config.attention_checks):
        label = check_labels[k % len(check_labels)]
        checks.append(len(items) + 1)
        items.append({"id": len(items) + 1, "kind": "attention", "truth": label, "display": attention_display(label)})

    per = assign(len(units), len(design), config.annotators, config.overlap, config.seed)
    annotators, assignments = [], []
    width = len(str(config.annotators))
    for a, seq in enumerate(per):
        annotators.append({"id": a + 1, "name": f"annotator-{a + 1:0{width}d}", "token": secrets.token_urlsafe(24)})
        order = [item_id[x] for x in seq]
        for pos in attention_positions(len(order), len(checks), rng):
            order.insert(pos, -1)
        shuffled_checks = iter(rng.permutation(checks).tolist())
        order = [next(shuffled_checks) if i == -1 else i for i in order]
        assignments.extend((a + 1, int(item), p) for p, item in enumerate(order))

    meta = {
        "name": name, "run": run.name, "run_root": str(run.root.resolve()), "labels": labels, "methods": methods,
        "conditions": conditions, "order_seed": int(config.seed), "key_secret": secrets.token_hex(16),
        "config": {k: v for k, v in to_dict(config).items() if k != "admin_password_env"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "admin_password": hash_password(password) if password else None,
    }
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        Store.create(tmp).fill(meta, items, annotators, assignments)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        # The whole study appears at once: a half-built file is never at the final path.
        os.replace(tmp, path)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    run.finish(record, config, CREATE_EXCLUDE, outputs=(path,))
    log.info("study %s: %d items (%d sentences x %d condition/method cells) + %d attention checks, %d annotators",
             name, len(items) - len(checks), len(units), len(design), len(checks), len(annotators))
    return invite_text(path, config.base_url)


CREATE_EXCLUDE = (*NON_RESULT_FIELDS, "base_url", "admin_password_env", "replace_outdated")


def invite_links(path: str | os.PathLike, base_url: str = "http://localhost:8501") -> list[tuple[str, str]]:
    store = Store.open(path)
    return [(name, f"{base_url.rstrip('/')}/?token={token}") for name, token in store.invites()]


def invite_text(path: Path, base_url: str) -> str:
    lines = [f"study written to {path}", "invite links (one per annotator; keep them private):"]
    lines += [f"  {name}  {url}" for name, url in invite_links(path, base_url)]
    lines.append(f"serve it with: clvq-judge study serve --study {path}")
    return "\n".join(lines)
