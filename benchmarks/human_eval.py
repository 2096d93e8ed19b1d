"""Study benchmark: annotator page latency under 20 concurrent sessions, and results for 10,000 answers.

    python benchmarks/human_eval.py --out benchmarks/results/human_eval.json

Page latency. A real `streamlit run` server of the app (the command `clvq-judge study serve` runs) on a
real SQLite study with 20 annotators; 20 threads each open one session over Streamlit's websocket
protocol, exactly the messages a browser sends: a page view (rerun with the invite token), then answers
(rerun with the radio, slider and submit-button states). The time of a step runs from sending the message
until the server reports the script finished, all deltas received: what the server makes the annotator
wait for the next item. Not measured: the browser drawing the page (about the same for every item).

Results. A synthetic study (3 methods, 20 annotators, overlap 3) with 10,000 seeded answers in SQLite;
the time of `results.compute` (read all tables, accuracy with 1,000 cluster-bootstrap resamples per method,
Krippendorff's alpha overall and per method, per-annotator progress), median of 3 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

LABELS = ["business", "entertainment", "politics", "sports", "tech"]
METHODS = ["clvq", "kmeans", "sae"]


def synthetic_study(path: Path, sentences: int, annotators: int, overlap: int, seed: int = 0) -> Path:
    """A study file in the real format, with synthetic sentences and concept cards (no run needed)."""
    from clvq_judge.human_eval.builder import assign
    from clvq_judge.human_eval.display import item_display
    from clvq_judge.human_eval.store import Store

    rng = np.random.default_rng(seed)
    vocab = [f"word{i}" for i in range(400)]
    items, item_id = [], {}
    for s in range(sentences):
        words = rng.choice(vocab, size=20)
        text = " ".join(words)
        start = text.index(words[5])
        truth = LABELS[int(rng.integers(len(LABELS)))]
        for m, method in enumerate(METHODS):
            card = {"top_words": [[w, int(n)] for w, n in zip(rng.choice(vocab, 12), rng.integers(1, 50, 12))],
                    "examples": [], "is_start_dominated": False}
            item_id[(s, m)] = len(items) + 1
            items.append({"id": len(items) + 1, "kind": "task", "sentence": s, "method": method, "concept": int(rng.integers(400)),
                          "truth": truth, "display": item_display(text, (start, start + len(words[5])), words[5], card)})
    per = assign(sentences, len(METHODS), annotators, overlap, seed)
    people = [{"id": a + 1, "name": f"annotator-{a + 1}", "token": f"bench-token-{a + 1}"} for a in range(annotators)]
    assignments = [(a + 1, item_id[x], p) for a, seq in enumerate(per) for p, x in enumerate(seq)]
    meta = {"name": path.stem, "run": None, "labels": LABELS, "methods": METHODS, "config": {}, "admin_password": None}
    Store.create(path).fill(meta, items, people, assignments)
    return path


def server_command(study: Path, port: int) -> list[str]:
    from clvq_judge.human_eval.serve import streamlit_command

    return streamlit_command(study, port, "127.0.0.1")


def start_server(study: Path, port: int, timeout: float = 90) -> subprocess.Popen:
    proc = subprocess.Popen(server_command(study, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("the study server did not start")


class Session:
    """One annotator's page over Streamlit's own websocket protocol, as the browser speaks it."""

    def __init__(self, ws, token: str):
        self.ws = ws
        self.query = f"token={token}"
        self.widgets: dict = {}

    def rerun(self, states=()) -> None:
        """Send one rerun (a page view, or a submit with widget states); wait until the script finished."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        msg.rerun_script.widget_states.widgets.extend(states)
        self.ws.send(msg.SerializeToString())
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(self.ws.recv(timeout=120))
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                if element.WhichOneof("type") in ("radio", "slider", "button"):
                    self.widgets[element.WhichOneof("type")] = getattr(element, element.WhichOneof("type"))
            elif kind == "script_finished" and fwd.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                return

    def submit(self, label: str) -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        answer = WidgetState(id=self.widgets["radio"].id, string_value=label)
        confidence = WidgetState(id=self.widgets["slider"].id)
        confidence.double_array_value.data.append(3.0)
        button = WidgetState(id=self.widgets["button"].id, trigger_value=True)
        self.rerun([answer, confidence, button])



def connect(port: int):
    from websockets.sync.client import connect

    return connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"], max_size=None)


def page_latency(study: Path, sessions: int, answers_each: int, think_s: float = 0.0, seed: int = 0) -> dict:
    """`think_s` > 0: each session pauses a random 0.5-1.5 x think_s before each step (untimed), like a
    person reading the item; 0: every session fires its next step the moment the previous one finished."""
    from clvq_judge.human_eval.store import Store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(study, port)
    views, submits, errors = [], [], []
    lock = threading.Lock()
    barrier = threading.Barrier(sessions)

    def session(k: int):
        rng = np.random.default_rng([seed, k])

        def think():
            if think_s > 0:
                time.sleep(think_s * rng.uniform(0.5, 1.5))

        try:
            with connect(port) as ws:
                page = Session(ws, f"bench-token-{k + 1}")
                barrier.wait()
                think()
                t = time.perf_counter()
                page.rerun()  # opening the invite link (or a reload)
                with lock:
                    views.append(time.perf_counter() - t)
                for i in range(answers_each):
                    think()
                    t = time.perf_counter()
                    page.submit(LABELS[(k + i) % len(LABELS)])
                    with lock:
                        submits.append(time.perf_counter() - t)
        except Exception as exc:  # reported in the JSON; a benchmark with errors is not a result
            errors.append(repr(exc))

    try:
        with connect(port) as ws:  # the server's first script run imports the app: not a page view
            Session(ws, "bench-token-1").rerun()
        threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    stored = len(Store.open(study).tables()["answers"])
    ms = lambda xs: round(1000 * float(np.median(xs)), 1) if xs else None  # noqa: E731
    p90 = lambda xs: round(1000 * float(np.quantile(xs, 0.9)), 1) if xs else None  # noqa: E731
    return {
        "sessions": sessions, "answers_per_session": answers_each, "think_s": think_s, "errors": errors,
        "answers_stored": stored, "answers_expected": sessions * answers_each,
        "page_view_median_ms": ms(views), "page_view_p90_ms": p90(views),
        "submit_to_next_item_median_ms": ms(submits), "submit_to_next_item_p90_ms": p90(submits),
        "page_median_ms": ms(views + submits), "steps": len(views) + len(submits), "wall_s": round(wall, 2),
        "steps_per_s": round((len(views) + len(submits)) / wall, 1),
    }


def fill_answers(study: Path, n_answers: int, seed: int = 0) -> int:
    """Answer assignments in a seeded order until n_answers are stored (methods differ in accuracy)."""
    import sqlite3

    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(study)
    rows = conn.execute("SELECT s.annotator, s.item, i.method, i.truth FROM assignments s JOIN items i ON i.id = s.item").fetchall()
    skill = {"clvq": 0.7, "kmeans": 0.55, "sae": 0.45}
    picked = rng.permutation(len(rows))[:n_answers]
    data = []
    for k in picked:
        a, item, method, truth = rows[k]
        r = rng.random()
        answer = truth if r < skill[method] else (None if r > 0.95 else LABELS[int(rng.integers(len(LABELS)))])
        data.append((a, item, answer, int(rng.integers(1, 6)), float(rng.gamma(2, 5)), time.time()))
    conn.executemany("INSERT INTO answers (annotator, item, answer, confidence, seconds, answered_at) VALUES (?, ?, ?, ?, ?, ?)", data)
    conn.commit()
    conn.close()
    return len(data)


def results_time(study: Path, repeats: int = 3) -> dict:
    from clvq_judge.human_eval.results import compute
    from clvq_judge.human_eval.store import Store

    compute(Store.open(study), n_boot=50)  # imports (krippendorff, scipy) out of the timing
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        results = compute(Store.open(study), n_boot=1000, seed=0)
        times.append(time.perf_counter() - t)
    return {"answers": int(results.summary["answers"]), "n_boot": 1000, "median_s": round(statistics.median(times), 3),
            "times_s": [round(x, 3) for x in times], "alpha_overall": results.summary["alpha_overall"],
            "accuracy": {k: round(v, 3) for k, v in results.summary["accuracy"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/human_eval.json")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--answers-each", type=int, default=10)
    parser.add_argument("--results-answers", type=int, default=10_000)
    parser.add_argument("--think-s", type=float, default=1.0, help="mean pause before each step of the paced run")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        latency = {}
        for name, think in (("no_think_time", 0.0), ("paced", args.think_s)):
            study = synthetic_study(Path(tmp) / f"pages-{name}.sqlite", sentences=200, annotators=args.sessions, overlap=3)
            latency[name] = page_latency(study, args.sessions, args.answers_each, think_s=think)
        big = synthetic_study(Path(tmp) / "big.sqlite", sentences=1200, annotators=20, overlap=3)
        fill_answers(big, args.results_answers)
        results = results_time(big)
    report = {
        "benchmark": "human_eval", "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
        "python": platform.python_version(), "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "page_latency": {**latency, "target_median_ms": 300,
                         "measured": "real streamlit server; websocket clients speaking its protocol; time from sending "
                                     "the rerun to script_finished"},
        "results_10k": {**results, "target_s": 1.0},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
