"""Session fixtures of the human-evaluation tests (a study from a tiny run, a browser)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "human_eval" / "app.py"
STUDY_METHODS = ("clvq", "kmeans", "sae")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def study_runs(minilm_run, tmp_path_factory):
    """A copy of the tiny MiniLM run (so other tests' stages never collide with ours) with three methods'
    concepts, trained tiny: the runs folder; the run is called "tiny"."""
    from clvq_judge.core.concepts import ConceptsConfig, concepts
    from clvq_judge.core.train import TrainConfig, train

    source, _ = minilm_run
    runs = tmp_path_factory.mktemp("study_runs")
    keep = {"run.json", "data", "classifier", "activations"}
    (runs / "tiny").mkdir()
    for entry in (source / "tiny").iterdir():
        if entry.name in keep:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, runs / "tiny" / entry.name)
    for method in STUDY_METHODS:
        train(TrainConfig(run="tiny", runs_dir=str(runs), method=method, n_concepts=16, decoder_layers=1, decoder_ff=32,
                          sae_latents=32, sae_topk=8, batch_sentences=32, epochs=1, progress=False))
        concepts(ConceptsConfig(run="tiny", runs_dir=str(runs), method=method, examples=3))
    return runs


_names = itertools.count()


@pytest.fixture(scope="session")
def make_study(study_runs):
    """make_study(**CreateConfig options) -> path of a fresh study on the tiny run (a new name each call)."""
    from clvq_judge.human_eval.builder import CreateConfig, create_study, study_path

    def make(**options):
        name = options.pop("name", f"s{next(_names)}")
        config = CreateConfig(run="tiny", runs_dir=str(study_runs), name=name, **{
            "method": STUDY_METHODS, "items": 8, "overlap": 2, "annotators": 6, "attention_checks": 2, **options})
        create_study(config)
        return study_path(study_runs, "tiny", name)

    return make


@pytest.fixture
def handmade_study(tmp_path):
    """handmade_study(texts, labels=..., truths=..., condition=...) -> a study file written straight through the
    store, one method "clvq", one condition and one annotator per call: app tests with chosen sentences, no run
    needed."""
    from clvq_judge.human_eval.conditions import get_condition
    from clvq_judge.human_eval.store import Store

    def make(texts, labels=("negative", "positive"), truths=None, annotators=1, token_prefix="tok", condition="both"):
        path = tmp_path / f"hand-{next(_names)}.sqlite"
        truths = truths or [labels[i % len(labels)] for i in range(len(texts))]
        card = {"top_words": [["<b>bold</b>", 3], ["plain", 1]], "examples": [], "is_start_dominated": False}
        items = [
            {"id": i + 1, "kind": "task", "sentence": i, "method": "clvq", "concept": 0, "truth": truths[i],
             "condition": condition, "display": get_condition(condition).display(i, t, (0, min(4, len(t))), t[:4], card, 12, 3)}
            for i, t in enumerate(texts)
        ]
        people = [{"id": a + 1, "name": f"annotator-{a + 1}", "token": f"{token_prefix}{a + 1}"} for a in range(annotators)]
        assignments = [(a + 1, i + 1, i) for a in range(annotators) for i in range(len(texts))]
        meta = {"name": "hand", "run": None, "labels": list(labels), "methods": ["clvq"], "conditions": [condition],
                "config": {}, "admin_password": None, "order_seed": 0, "key_secret": "00" * 16}
        Store.create(path).fill(meta, items, people, assignments)
        return path

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_streamlit(command: list[str], port: int, env: dict | None = None, timeout: float = 60) -> subprocess.Popen:
    """Start a server process (own process group) and wait until Streamlit answers its health check."""
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_process(proc)
    raise RuntimeError(f"streamlit did not answer on port {port} within {timeout}s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def streamlit_run_command(study: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
            "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer", "--", "--study", str(study)]


@pytest.fixture(scope="session")
def study_browser():
    """Headless Debian Chromium through Playwright. Missing: a skip locally, a failure under CI=true."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} not found (apt-get install -y chromium)"
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser test cannot run under CI: {missing}")
        pytest.skip(missing)
    # Playwright gives every launch a fresh temporary profile (what offline.md asks of --user-data-dir).
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
