"""The run directory: every stage reads earlier stages' artifacts from `runs/<name>/` and writes its own folder.

A stage writes `done.json` (its config and hash) last and atomically, so "finished" and "half-written"
are never confused; a rerun of a finished stage with the same config is a no-op.

`done.json` also records a *done hash* (config hash + a nonce drawn at finish, so even a forced redo with
the same options is a new result) and the done hashes of the stages it read (`inputs`). A stage whose
inputs were redone since is outdated: `begin` redoes it (one log line says why) and `require` refuses to
hand it to a later stage, naming the command to rerun.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import secrets
import shutil
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .atomic import read_json, write_json
from .config import config_hash, to_dict, validate
from .errors import UserError
from .stages import STAGE_DIRS, command_for

log = logging.getLogger(__name__)

DONE = "done.json"

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
        path = self.stage_dir(stage) / DONE
        try:
            record = read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path} is corrupted: {rerun_hint(self.name, stage)} --force") from None
        if not isinstance(record, dict) or "config_hash" not in record:
            raise UserError(f"{path} is not a stage record: {rerun_hint(self.name, stage)} --force")
        if "done_hash" not in record:
            # Written by an older clvq-judge: no done hash, no inputs. Migrated on read: the hash stands for
            # this very finish (config and file time) and its inputs stay unknown (see `outdated_inputs`).
            record["done_hash"] = f"{record['config_hash']}-legacy{path.stat().st_mtime_ns}"
        if not all(isinstance(h, str) for h in record.get("inputs", {}).values()):
            record.pop("inputs")  # an older rank's {"concepts": ..., "prompts": ...}: not stage done hashes
        return record

    def done_hash(self, stage: str) -> str | None:
        """Identifies one finished result of `stage` (None when unfinished); a redo always changes it."""
        return self.done_record(stage)["done_hash"] if self.is_done(stage) else None

    def outdated_inputs(self, stage: str, inputs: tuple[str, ...] | None = None) -> list[str]:
        """Inputs of a finished `stage` that were redone (or removed) after it read them.

        Recorded inputs are compared by done hash. A record from an older clvq-judge names no inputs; when
        the caller knows them (`inputs`), an input that finished after it counts as redone.
        """
        record = self.done_record(stage)
        if "inputs" in record:
            return [s for s, h in record["inputs"].items() if self.done_hash(s) != h]
        mine = (self.stage_dir(stage) / DONE).stat().st_mtime_ns
        return [s for s in inputs or () if not self.is_done(s) or (self.stage_dir(s) / DONE).stat().st_mtime_ns > mine]

    def require(self, stage: str, _seen: frozenset[str] = frozenset()) -> Path:
        """The folder of a finished, up-to-date earlier stage, or a clear error saying what to run.

        Up to date means: every stage it read (recursively) is still the result it read, so results made
        from an outdated input are never served.
        """
        if not self.is_done(stage):
            raise UserError(f"run {self.name!r} has no finished '{stage}' stage: {rerun_hint(self.name, stage)} first")
        stale = self.outdated_inputs(stage)
        if stale:
            raise UserError(
                f"'{stage}' of run {self.name!r} is outdated: its input '{stale[0]}' was redone after it; "
                f"{rerun_hint(self.name, stage)}"
            )
        for upstream in self.done_record(stage).get("inputs", {}):
            if upstream not in _seen:
                self.require(upstream, _seen | {stage})
        return self.stage_dir(stage)

    def input_hashes(self, inputs: tuple[str, ...]) -> dict[str, str]:
        """Done hashes of the stages a stage reads; each must be finished and up to date."""
        for stage in inputs:
            self.require(stage)
        return {stage: self.done_hash(stage) for stage in inputs}

    def begin(
        self, stage: str, config: Any, force: bool = False, exclude: tuple[str, ...] = (), inputs: tuple[str, ...] = (),
        *, on_change: str = "refuse", on_outdated: str = "redo", clear: bool = True,
    ) -> bool:
        """Prepare a stage; return False when it already finished with this config from the same inputs and
        every output it recorded is still there.

        `inputs` names the stages it reads (e.g. ("extract", "methods/clvq")); their done hashes are recorded
        by `finish`. Two policies differ between stages, so they are arguments, not conventions:

        - `on_change`: a finished stage run again with other options is refused ("refuse": the model stages,
          whose results other stages build on, and a study that holds people's answers) or simply redone
          ("redo": the judge, diagnostics, simulated annotators, results, report and export, whose work is
          cached or cheap).
        - `on_outdated`: a finished stage whose inputs were redone since is redone with one log line ("redo"),
          or refused with the command to rerun ("refuse": a study, which a redo would empty of its answers).

        `--force` and a redo clear the stage folder (`clear=False` for a stage that shares its folder with
        others' files, such as rank in judge/: only its own records are removed then). A half-finished stage
        folder is kept so the stage can resume from it, unless it was started on other options or inputs.
        """
        folder = self.stage_dir(stage)
        digest = config_hash(config, exclude)
        current = self.input_hashes(tuple(inputs))
        if folder.exists() and force:
            self._clear(stage, clear)
        if self.is_done(stage):
            record = self.done_record(stage)
            stale = self.outdated_inputs(stage, tuple(inputs))
            # A redo-on-change stage also redoes when it now reads other stages (e.g. rank after a describe).
            changed = record.get("config_hash") != digest or (
                on_change == "redo" and set(record.get("inputs", current)) != set(current))
            missing = [o for o in record.get("outputs", []) if not (self.root / o).exists()]
            if stale and on_outdated == "refuse":
                raise UserError(
                    f"'{stage}' of run {self.name!r} was built from '{stale[0]}', which was redone since: "
                    f"{rerun_hint(self.name, stage)} --force to rebuild it"
                )
            if record.get("config_hash") != digest and on_change == "refuse":
                raise UserError(
                    f"stage '{stage}' of run {self.name!r} already finished with other options: "
                    f"pass --force to redo it, or use a new --run name"
                )
            if not (stale or changed or missing):
                return False
            if stale:
                log.warning("%s: input %s of run %r was redone since this stage finished; redoing it",
                            stage, ", ".join(f"'{s}'" for s in stale), self.name)
            else:
                why = f"its output {missing[0]} is missing" if missing else "other options or inputs than last time"
                log.warning("%s of run %r: %s; redoing it", stage, self.name, why)
            self._clear(stage, clear)
        started = folder / "started.json"
        if started.exists():
            before = read_json(started)
            if before.get("config_hash") != digest or before.get("inputs", current) != current:
                # A half-finished stage with other options or inputs cannot be resumed; start it over.
                self._clear(stage, clear)
        folder.mkdir(parents=True, exist_ok=True)
        if not started.exists():  # a resumed stage keeps its marker untouched
            write_json(started, {"config_hash": digest, "config": to_dict(config), "inputs": current})
        return True

    def _clear(self, stage: str, everything: bool) -> None:
        folder = self.stage_dir(stage)
        if everything:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for marker in (DONE, "started.json"):
                (folder / marker).unlink(missing_ok=True)

    def finish(
        self, stage: str, config: Any, exclude: tuple[str, ...] = (), inputs: tuple[str, ...] | None = None,
        outputs: tuple[str | os.PathLike, ...] = (), **extra: Any
    ) -> None:
        """Mark a stage finished. Its inputs are those given to `begin` (or `inputs`, read again now); its
        `outputs` (files it wrote, inside the run or not) are checked by the next `begin`: one gone is redone."""
        started = self.stage_dir(stage) / "started.json"
        if inputs is not None:
            recorded = self.input_hashes(tuple(inputs))
        elif started.exists():
            recorded = read_json(started).get("inputs", {})
        else:
            recorded = {}
        digest = config_hash(config, exclude)
        write_json(
            self.stage_dir(stage) / DONE,
            {
                "config_hash": digest,
                # The nonce makes a forced redo with the same options a different result to its readers.
                "done_hash": f"{digest}-{secrets.token_hex(4)}",
                "inputs": recorded,
                "outputs": [_relative(self.root, o) for o in outputs],
                "config": to_dict(config),
                **extra,
            },
        )


def _relative(root: Path, path: str | os.PathLike) -> str:
    """A path inside the run as relative to it (the run folder can move); one outside it stays absolute."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def rerun_hint(run: str, stage: str) -> str:
    """The command that (re)makes a stage's folder, for error messages (from the stage table)."""
    return command_for(run, stage)


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

    def __post_init__(self) -> None:
        # Every stage config is checked on construction, so a bad value fails before any work.
        validate(self)


# Fields that never change a stage's results, so they are left out of its config hash.
NON_RESULT_FIELDS = ("run", "runs_dir", "force", "device")


def derive_seed(seed: int, *parts: object) -> int:
    """A stable per-purpose seed from the run's seed (Python's hash() is salted per process, crc32 is not);
    every stage derives its seeds here, so one run seed gives the same numbers everywhere."""
    return zlib.crc32(":".join(map(str, (seed, *parts))).encode())


def run_seed(run: Run, seed: int | None) -> int:
    """A stage's `--seed` when given, else the run's own seed (run.json), else 0."""
    return int(seed if seed is not None else run.info().get("seed", 0) or 0)

