"""Atomic file writes: a reader never sees a half-written artifact."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to `target`; on success rename it onto `target`.

    The temp file lives in the same directory so the final `os.replace` is atomic on POSIX.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600 files; artifacts are meant to be shared like any file the user writes.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_with(target: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Call `writer(tmp_path)` and atomically move the result onto `target`.

    `suffix` matters for writers that append an extension (np.save adds ".npy" unless present).
    """
    with atomic_path(target, suffix=suffix) as tmp:
        writer(tmp)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
