"""The study's SQLite file: config, frozen items, annotators, assignments and answers.

Every call opens its own connection (WAL journal, busy timeout), so Streamlit sessions, threads and the
results command can read and write at once without sharing a connection object across threads. The
schema version sits in `PRAGMA user_version`; a file from another version is refused with one line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clvq_judge.core.errors import UserError

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('task', 'attention')),
    condition TEXT,
    sentence INTEGER,
    method TEXT,
    concept INTEGER,
    truth TEXT NOT NULL,
    display TEXT NOT NULL
);
CREATE TABLE annotators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'human'
);
CREATE TABLE assignments (
    annotator INTEGER NOT NULL REFERENCES annotators(id),
    item INTEGER NOT NULL REFERENCES items(id),
    position INTEGER NOT NULL,
    shown_at REAL,
    PRIMARY KEY (annotator, item),
    UNIQUE (annotator, position)
);
CREATE TABLE answers (
    id INTEGER PRIMARY KEY,
    annotator INTEGER NOT NULL,
    item INTEGER NOT NULL,
    answer TEXT,
    confidence INTEGER,
    options TEXT,
    seconds REAL,
    answered_at REAL NOT NULL,
    UNIQUE (annotator, item),
    FOREIGN KEY (annotator, item) REFERENCES assignments(annotator, item)
);
"""
# `answers.answer` is a label name, or NULL for "can't tell"; `answers.options` the JSON list of the labels in
# the order they were offered (can't tell, when offered, always last); `items.condition` NULL for attention checks.


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    kind: str


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int

    @property
    def done(self) -> bool:
        return self.answered >= self.total


class Store:
    """One study file. Cheap to construct; holds a path, never a connection."""

    def __init__(self, path: str | Path, timeout: float = 30.0):
        self.path = Path(path)
        self.timeout = timeout

    # --- connections --------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error."""
        conn = self._connect()
        try:
            # IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout instead of
            # one failing halfway through with "database is locked".
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # --- creation -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path) -> Store:
        """A new, empty study file at `path` (which must not exist)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript("BEGIN;" + SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        finally:
            conn.close()
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """An existing study file, checked for the schema version this code understands."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"study file {path} not found: create it with `clvq-judge study create` or pass the right --study")
        store = cls(path)
        try:
            with store.read() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError:
            raise UserError(f"{path} is not a study file (not SQLite): pass the .sqlite file `study create` wrote") from None
        if version != SCHEMA_VERSION:
            raise UserError(
                f"{path} has study schema version {version}, this clvq-judge reads version {SCHEMA_VERSION}: "
                f"use the clvq-judge version that created it, or recreate the study"
            )
        return store

    def fill(self, meta: dict[str, Any], items: list[dict], annotators: list[dict], assignments: list[tuple[int, int, int]]) -> None:
        """Write a whole study design in one transaction (items carry their own ids)."""
        with self.write() as conn:
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
            conn.executemany(
                "INSERT INTO items (id, kind, condition, sentence, method, concept, truth, display) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(i["id"], i["kind"], i.get("condition"), i.get("sentence"), i.get("method"), i.get("concept"), i["truth"],
                  json.dumps(i["display"], ensure_ascii=False)) for i in items],
            )
            conn.executemany(
                "INSERT INTO annotators (id, name, token, kind) VALUES (?, ?, ?, ?)",
                [(a["id"], a["name"], a["token"], a.get("kind", "human")) for a in annotators],
            )
            conn.executemany("INSERT INTO assignments (annotator, item, position) VALUES (?, ?, ?)", assignments)

    # --- reading ------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        with self.read() as conn:
            return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}

    def labels(self) -> list[str]:
        return list(self.meta()["labels"])

    def annotator_by_token(self, token: str) -> Annotator | None:
        if not token:
            return None
        with self.read() as conn:
            row = conn.execute("SELECT id, name, kind FROM annotators WHERE token = ?", (token,)).fetchone()
        return Annotator(*row) if row else None

    def invites(self) -> list[tuple[str, str]]:
        """(name, token) of every human annotator, in id order (simulated ones have nobody to invite)."""
        with self.read() as conn:
            return list(conn.execute("SELECT name, token FROM annotators WHERE kind = 'human' ORDER BY id"))

    def progress(self, annotator: int) -> Progress:
        with self.read() as conn:
            total, answered = conn.execute(
                "SELECT COUNT(*), COUNT(a.id) FROM assignments s "
                "LEFT JOIN answers a ON a.annotator = s.annotator AND a.item = s.item WHERE s.annotator = ?",
                (annotator,),
            ).fetchone()
        return Progress(answered=answered, total=total)

    def next_item(self, annotator: int) -> tuple[int, dict] | None:
        """(item id, frozen display content) of the annotator's first unanswered item, or None when done.

        Only the display content leaves the store here: the method and the truth stay in the database.
        """
        pending = self.pending_items(annotator, limit=1)
        return pending[0] if pending else None

    def annotators(self) -> list[Annotator]:
        with self.read() as conn:
            return [Annotator(*row) for row in conn.execute("SELECT id, name, kind FROM annotators ORDER BY id")]

    def pending_items(self, annotator: int, limit: int = -1) -> list[tuple[int, dict]]:
        """(item id, frozen display content) of the annotator's unanswered items, in their order (at most
        `limit`; -1 = all)."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT s.item, i.display FROM assignments s JOIN items i ON i.id = s.item "
                "LEFT JOIN answers a ON a.annotator = s.annotator AND a.item = s.item "
                "WHERE s.annotator = ? AND a.id IS NULL ORDER BY s.position LIMIT ?",
                (annotator, limit),
            ).fetchall()
        return [(int(item), json.loads(display)) for item, display in rows]

    def option_order(self, annotator: int, item: int) -> list[str]:
        """The seeded order this annotator is offered this item's labels in (the same on every reload)."""
        from .display import option_order

        meta = self.meta()
        return option_order(list(meta["labels"]), int(meta.get("order_seed", 0)), annotator, item)

    def widget_key(self, annotator: int, item: int) -> str:
        """An opaque name for the widgets of one (annotator, item): keyed by a secret of the study that never
        leaves the server, so the page source says nothing about the item's id, method or place in the numbering
        (the annotator's own token would not do: they hold it and could recompute the keys)."""
        secret = self.meta().get("key_secret")
        if not secret:
            raise ValueError("study file has no key_secret")
        return hmac.new(bytes.fromhex(secret), f"{annotator}:{item}".encode(), hashlib.sha256).hexdigest()[:16]

    # --- writing ------------------------------------------------------------------------------------
    def add_annotator_like(self, name: str, kind: str, like: int) -> Annotator:
        """An extra annotator (e.g. a simulated one) given the same items, in the same order, as annotator `like`.

        Idempotent by name, so a rerun finds the annotator it added before (and its answers) instead of
        adding another; a name taken by an annotator of another kind is a bug in the caller.
        """
        with self.write() as conn:
            row = conn.execute("SELECT id, name, kind FROM annotators WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row[2] != kind:
                    raise ValueError(f"annotator {name!r} exists with kind {row[2]!r}, not {kind!r}")
                return Annotator(*row)
            new = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM annotators").fetchone()[0]
            conn.execute("INSERT INTO annotators (id, name, token, kind) VALUES (?, ?, ?, ?)",
                         (new, name, secrets.token_urlsafe(24), kind))
            conn.execute("INSERT INTO assignments (annotator, item, position) "
                         "SELECT ?, item, position FROM assignments WHERE annotator = ?", (new, like))
        return Annotator(new, name, kind)

    def clear_answers(self, annotator: int) -> int:
        """Delete every answer of one annotator (a simulated one being redone); return how many."""
        with self.write() as conn:
            return conn.execute("DELETE FROM answers WHERE annotator = ?", (annotator,)).rowcount

    def set_meta(self, key: str, value: Any) -> None:
        with self.write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def mark_shown(self, annotator: int, item: int, now: float | None = None) -> float:
        """Record when the annotator first saw the item (kept across reloads); return that time."""
        now = time.time() if now is None else now
        with self.write() as conn:
            conn.execute(
                "UPDATE assignments SET shown_at = ? WHERE annotator = ? AND item = ? AND shown_at IS NULL",
                (now, annotator, item),
            )
            row = conn.execute("SELECT shown_at FROM assignments WHERE annotator = ? AND item = ?", (annotator, item)).fetchone()
        return float(row[0]) if row and row[0] is not None else now

    def record_answer(
        self, annotator: int, item: int, answer: str | None, confidence: int | None, seconds: float | None = None,
        now: float | None = None, options: list[str] | None = None,
    ) -> bool:
        """Store one answer in one transaction; True if stored, False if this item was already answered.

        `seconds` defaults to the time since the item was first shown; `options` is the order the labels were
        offered in (see `display.option_order`). An item outside the annotator's assignment, an answer that is
        not a label name or an order that is not a permutation of the labels is a bug in the caller: it raises.
        """
        now = time.time() if now is None else now
        with self.write() as conn:
            shown = conn.execute(
                "SELECT shown_at FROM assignments WHERE annotator = ? AND item = ?", (annotator, item)
            ).fetchone()
            if shown is None:
                raise ValueError(f"item {item} is not assigned to annotator {annotator}")
            labels = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'labels'").fetchone()[0])
            if answer is not None and answer not in labels:
                raise ValueError(f"answer {answer!r} is not one of the study's labels")
            if options is not None and sorted(options) != sorted(labels):
                raise ValueError(f"option order {options!r} is not an order of the study's labels")
            if seconds is None and shown[0] is not None:
                seconds = max(0.0, now - float(shown[0]))
            cur = conn.execute(
                "INSERT OR IGNORE INTO answers (annotator, item, answer, confidence, options, seconds, answered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (annotator, item, answer, confidence, None if options is None else json.dumps(list(options)), seconds, now),
            )
            return cur.rowcount == 1

    def answers_fingerprint(self) -> str:
        """Changes with every answer stored or deleted: results computed from other answers are outdated."""
        with self.read() as conn:
            n, last, total = conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(SUM(answered_at), 0) FROM answers").fetchone()
            people = conn.execute("SELECT COUNT(*) FROM annotators").fetchone()[0]
        return f"{n}-{last}-{total:.6f}-{people}"

    # --- the tables, for results --------------------------------------------------------------------
    def tables(self) -> dict[str, list[tuple]]:
        """Items, annotators, assignments and answers as rows, read in one snapshot."""
        with self.read() as conn:
            conn.execute("BEGIN")
            out = {
                "items": list(conn.execute(
                    "SELECT id, kind, condition, sentence, method, concept, truth FROM items ORDER BY id")),
                "annotators": list(conn.execute("SELECT id, name, kind FROM annotators ORDER BY id")),
                "assignments": list(conn.execute("SELECT annotator, item, position FROM assignments")),
                "answers": list(conn.execute(
                    "SELECT annotator, item, answer, confidence, options, seconds, answered_at FROM answers ORDER BY id")),
            }
            conn.execute("COMMIT")
        return out
