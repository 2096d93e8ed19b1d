"""On-disk cache of judge answers: one SQLite file (stdlib, WAL), keyed by `Request.key(backend, model)`.

A row holds the request's parameters and the answer (text, label log-probabilities, token counts), written
as soon as the answer arrives, so a killed run loses at most its in-flight requests and a rerun sends
nothing twice. API keys never reach a `Request`, so they can never reach this file.

A corrupted file is not repaired or moved aside silently: the user gets one line naming the file and
telling them to delete it (its answers are then simply requested again).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path

from clvq_judge.core.errors import UserError

from .client import Completion, Request

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class JudgeCache:
    """Thread-safe: one connection guarded by a lock (SQLite serialises writers anyway)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
            self._db.commit()
            ok = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise self._corrupted(exc) from None
        if ok != "ok":
            raise self._corrupted(ok)

    def _corrupted(self, why) -> UserError:
        return UserError(
            f"judge cache {self.path} is corrupted ({str(why).splitlines()[0]}): delete it "
            f"(rm {self.path}*) and rerun; its answers will be requested again"
        )

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        out: dict[str, Completion] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            try:
                for start in range(0, len(unique), 500):
                    chunk = unique[start:start + 500]
                    rows = self._db.execute(
                        f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk
                    ).fetchall()
                    for key, answer in rows:
                        out[key] = _completion(json.loads(answer))
            except sqlite3.DatabaseError as exc:
                raise self._corrupted(exc) from None
        return out

    def put(self, key: str, backend: str, model: str, request: Request, completion: Completion) -> None:
        answer = asdict(completion)
        answer.pop("cached")
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                    (key, backend, model, json.dumps(asdict(request)), json.dumps(answer), time.time()),
                )
                self._db.commit()
            except sqlite3.DatabaseError as exc:
                raise self._corrupted(exc) from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _completion(answer: dict) -> Completion:
    return Completion(**{**answer, "cached": True})
