"""`clvq-judge explore`: the concept explorer of a finished run (Streamlit), until interrupted.

A researcher's page beside the study app, never part of the blinded annotator pages: it names the methods.
It reads the run only through `pipeline.collect` (see `pipeline/explorer_app.py` for the views).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clvq_judge.core.runs import Run, RunOptions
from clvq_judge.human_eval.serve import run_server

log = logging.getLogger(__name__)


@dataclass
class ExploreConfig(RunOptions):
    """Options of `clvq-judge explore`."""

    port: int = 8502
    """Port of the explorer (the study app uses 8501); `clvq-judge report --explorer-url http://localhost:PORT`
    links the report's concept cards to it."""
    address: str = "localhost"
    """Interface to listen on (the explorer shows method names: keep it away from annotators)."""


def app_path() -> Path:
    return Path(str(resources.files("clvq_judge.pipeline") / "explorer_app.py"))


def explorer_command(runs_dir: str, run: str, port: int, address: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app_path()), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal", "--", "--runs-dir", str(Path(runs_dir).resolve()), "--run", run]


def explore(config: ExploreConfig) -> str:
    run = Run.open(config.runs_dir, config.run)  # a missing run fails here with one line, not inside the server
    log.info("explorer of run %s on http://%s:%d ; Ctrl-C stops it", run.name, config.address, config.port)
    return run_server(explorer_command(config.runs_dir, config.run, config.port, config.address), "explorer")
