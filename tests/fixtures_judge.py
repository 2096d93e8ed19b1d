"""Session fixtures of the judge tests: the embedded judge model (converted once), one in-process judge engine,
and real `clvq-judge serve` processes (a healthy one, and a flaky one that fails every third request)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _wait_until_up(base_url: str, process: subprocess.Popen | None, log_path: Path | None) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"judge server exited early:\n{log_path.read_text() if log_path else ''}")
        try:
            get_json(f"{base_url}/models", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"judge server at {base_url} did not come up in {SERVER_START_S} s")


def start_server(log_dir: Path, *flags: str):
    """Start `clvq-judge serve` on a free port; return (process, base URL, log path) once it answers."""
    port = free_port()
    log_path = log_dir / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "clvq_judge.cli.main", "serve", "--port", str(port), *flags],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(base_url, process, log_path)
    except BaseException:
        process.kill()
        raise
    return process, base_url, log_path


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def embedded_judge_dir() -> Path:
    """The converted embedded judge (Qwen2.5-Coder-0.5B-Instruct safetensors), built once per machine."""
    from clvq_judge.judge.embedded import judge_dir

    return judge_dir()


@pytest.fixture(scope="session")
def judge_engine(embedded_judge_dir):
    """The in-process engine of the embedded judge (loaded once per session, shared by in-process judges)."""
    from clvq_judge.judge.backends.local import load_local

    return load_local("embedded")


@pytest.fixture(scope="session")
def judge_server(embedded_judge_dir, tmp_path_factory):
    """Base URL (http://127.0.0.1:PORT/v1) of a real `clvq-judge serve` process serving the embedded judge."""
    process, base_url, _ = start_server(tmp_path_factory.mktemp("judge_server"))
    yield base_url
    stop_server(process)


@pytest.fixture(scope="session")
def flaky_server(embedded_judge_dir, tmp_path_factory):
    """A real `clvq-judge serve --fail-every 3 --garble-every 5`: HTTP 500 on every third request and a
    non-JSON 200 body on every fifth."""
    process, base_url, _ = start_server(tmp_path_factory.mktemp("flaky_server"), "--fail-every", "3", "--garble-every", "5")
    yield base_url
    stop_server(process)


@pytest.fixture(scope="session")
def garbling_server(judge_engine):
    """A real uvicorn server on the already loaded engine (in a thread, to spare a third model load) whose every
    answer is a 200 with a non-JSON body."""
    import uvicorn

    from clvq_judge.judge.serve import ServeConfig, create_app

    port = free_port()
    app = create_app(judge_engine, ServeConfig(garble_every=1, port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}/v1"
    _wait_until_up(base_url, None, None)
    yield base_url
    server.should_exit = True
    thread.join(timeout=10)
