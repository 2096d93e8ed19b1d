"""`clvq-judge study serve`: run the installed study app under Streamlit until interrupted."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clvq_judge.core.runs import RunOptions

from .results import resolve_study
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class StudyServeConfig(RunOptions):
    """Options of `clvq-judge study serve`."""

    study: str | None = None
    """Study file (.sqlite); none = <runs-dir>/<run>/studies/<name>.sqlite."""
    name: str | None = None
    """Study name inside the run, when --study is not given."""
    port: int = 8501
    """Port of the app (invite links say http://localhost:8501 unless created with another --base-url)."""
    address: str = "localhost"
    """Interface to listen on; 0.0.0.0 lets other machines reach it (put it behind HTTPS for real annotators)."""


def app_path() -> Path:
    return Path(str(resources.files("clvq_judge.human_eval") / "app.py"))


def streamlit_command(study: Path, port: int, address: str) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port), "--server.address", address, "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        # annotators get no developer menu (rerun, settings, deploy)
        "--client.toolbarMode", "viewer", "--", "--study", str(study.resolve()),
    ]


def serve_study(config: StudyServeConfig) -> str:
    path = resolve_study(config.study, config.runs_dir, config.run, config.name)
    Store.open(path)  # a missing or foreign file fails here with one line, not inside the server
    log.info("study app on http://%s:%d (annotators: /?token=..., results: /?admin=1); Ctrl-C stops it",
             config.address, config.port)
    return run_server(streamlit_command(path, config.port, config.address), "study app")


def run_server(command: list[str], what: str) -> str:
    """Run a Streamlit server in the foreground until it exits or we are stopped; it never outlives us."""
    proc = subprocess.Popen(command, env=os.environ.copy())
    # A service manager stops us with SIGTERM: treat it as Ctrl-C so the server never outlives us.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return f"{what} stopped" if code is None else f"{what} exited with code {code}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt
