"""No tracked file may name a path of a developer's machine: such a path is useless to every other reader."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# An absolute path under a machine's work, root or home folder: `/work/x`, `/root/x`, `/home/user/x`.
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|root)/[\w.-]|(?<![\w.~])/home/[a-z_][\w-]*/")
# This file spells the patterns out to test them.
ALLOWED = {"tests/test_repo_hygiene.py"}


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def test_pattern_catches_machine_paths():
    for text in ("see /work/runs7/demo", "`/root/.cache/x`", "PYTHONPATH=/home/alice/snap"):
        assert MACHINE_PATH.search(text), text
    for text in ("runs/demo", "RUNS/e2", "https://example.org/work/x", "~/work/x", "docs/evidence/x.json"):
        assert not MACHINE_PATH.search(text), text


def test_no_tracked_file_names_a_machine_path():
    hits = []
    for name in tracked_files():
        if name in ALLOWED:
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not hits, "paths of a developer's machine in tracked files (use a placeholder such as RUNS):\n" + "\n".join(hits)
