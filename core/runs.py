"""The run directory: every stage reads earlier stages' artifacts from `runs/<name>/` and writes its own folder.

A stage writes `done.json` (its config and hash) last and atomically, so "finished" and "half-written"
are never confused; a rerun of a finished stage with the same config is a no-op.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .atomic import read_json, write_json
from .config import config_hash, to_dict
from .errors import UserError

DONE = "done.json"

# Stage name -> folder inside the run directory.
STAGE_DIRS = {
    "finetune": "classifier",
    "extract": "activations",
    "ablate": "ablation",
}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("clvq-judge", "torch", "transformers", "numpy", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class Run:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @classmethod
    def open(cls, runs_dir: str | os.PathLike, name: str, create: bool = False) -> Run:
        if not name or "/" in name or name in (".", ".."):
            raise UserError(f"invalid run name {name!r}: use a plain folder name such as 'demo'")
        root = Path(runs_dir) / name
        if create:
            try:
                root.mkdir(parents=True, exist_ok=True)
                probe = root / ".write-test"
                probe.write_text("ok")
                probe.unlink()
            except OSError as exc:
                raise UserError(
                    f"cannot write to run directory {root} ({exc.strerror}): pass a writable --runs-dir"
                ) from None
        elif not (root / "run.json").exists():
            raise UserError(
                f"run {name!r} not found in {Path(runs_dir).resolve()}: start it with "
                f"`clvq-judge finetune --run {name}` or pass the right --runs-dir"
            )
        return cls(root)

    # --- run.json: what the run is about (dataset, model, seed) -------------------------------------
    @property
    def info_path(self) -> Path:
        return self.root / "run.json"

    def info(self) -> dict[str, Any]:
        return read_json(self.info_path) if self.info_path.exists() else {}

    def write_info(self, info: dict[str, Any]) -> None:
        write_json(self.info_path, {**info, "versions": package_versions()})

    # --- stages -------------------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.root / STAGE_DIRS.get(stage, stage)

    def is_done(self, stage: str) -> bool:
        return (self.stage_dir(stage) / DONE).exists()

    def done_record(self, stage: str) -> dict[str, Any]:
        return read_json(self.stage_dir(stage) / DONE)

    def require(self, stage: str) -> Path:
        """The folder of a finished earlier stage, or a clear error saying how to produce it."""
        if not self.is_done(stage):
            raise UserError(
                f"run {self.name!r} has no finished '{stage}' stage: run `clvq-judge {stage} --run {self.name}` first"
            )
        return self.stage_dir(stage)

    def begin(self, stage: str, config: Any, force: bool = False, exclude: tuple[str, ...] = ()) -> bool:
        """Prepare a stage; return False when it already finished with this config (nothing to do).

        A finished stage with different options needs `--force`; `--force` clears the stage folder.
        A half-finished stage folder is kept so the stage can resume from it.
        """
        folder = self.stage_dir(stage)
        digest = config_hash(config, exclude)
        if folder.exists() and force:
            shutil.rmtree(folder)
        if self.is_done(stage):
            if self.done_record(stage).get("config_hash") == digest:
                return False
            raise UserError(
                f"stage '{stage}' of run {self.name!r} already finished with other options: "
                f"pass --force to redo it, or use a new --run name"
            )
        started = folder / "started.json"
        if started.exists() and read_json(started).get("config_hash") != digest:
            # A half-finished stage with other options cannot be resumed; start it over.
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(started, {"config_hash": digest, "config": to_dict(config)})
        return True

    def finish(self, stage: str, config: Any, exclude: tuple[str, ...] = (), **extra: Any) -> None:
        write_json(
            self.stage_dir(stage) / DONE,
            {"config_hash": config_hash(config, exclude), "config": to_dict(config), **extra},
        )


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


@dataclass
class RunOptions:
    """Options every stage shares; stage configs inherit them."""

    run: str = "demo"
    """Run name: artifacts go to <runs-dir>/<run>/ and later stages find them by this name."""
    runs_dir: str = "runs"
    """Folder holding all runs."""
    force: bool = False
    """Redo the stage even if it already finished (clears its folder)."""
    device: str = "auto"
    """Where to compute: auto (CUDA when available), cpu or cuda."""


# Fields that never change a stage's results, so they are left out of its config hash.
NON_RESULT_FIELDS = ("run", "runs_dir", "force", "device")
