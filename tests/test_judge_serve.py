"""`clvq-judge serve` and the HTTP judge backend, against real server processes (no mock)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from fixtures_judge import free_port, get_json

from clvq_judge.core.errors import UserError
from clvq_judge.judge.backends import JudgeOptions, open_judges
from clvq_judge.judge.client import Request

SYSTEM = ("system", "You answer with one letter.")


def verdicts(n: int, tag: str) -> list[Request]:
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum"]
    return [Request(messages=(SYSTEM, ("user", f"Which word names a fruit?\nA: {words[i % 8]}\nB: truck\n"
                                               f"Answer A or B. ({tag} {i})")), choices=("A", "B")) for i in range(n)]


def post(base_url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_models_and_openai_error_bodies(judge_server):
    models = get_json(f"{judge_server}/models")
    assert [m["id"] for m in models["data"]] == ["embedded"]
    status, body = post(judge_server, {"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    status, body = post(judge_server, {"model": "embedded", "messages": []})
    assert status == 400 and body["error"]["param"] == "messages"


def test_http_verdict_equals_in_process(judge_server, judge_engine, tmp_path, monkeypatch):
    secret = "sk-test-SECRET-never-stored-1234"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    requests = verdicts(2, "same")
    [local] = open_judges(JudgeOptions(), tmp_path / "local.sqlite")
    [remote] = open_judges(JudgeOptions(base_url=judge_server, model="embedded", concurrency=2), tmp_path / "http.sqlite")
    assert (remote.name, remote.backend) == ("openai:embedded", "openai")
    expected = local.complete(requests)
    got = remote.complete(requests)
    for e, g in zip(expected, got):
        assert g.text == e.text == "A" and g.extra["parsed"]
        for label in ("A", "B"):
            assert g.choice_logprobs[label] == pytest.approx(e.choice_logprobs[label], abs=2e-3)
        assert g.prompt_tokens == e.prompt_tokens and g.extra["model_seconds"] > 0

    # A rerun sends nothing: the server's own counter does not move.
    before = get_json(judge_server.removesuffix("/v1") + "/stats")["requests"]
    again = remote.complete(requests)
    assert all(a.cached for a in again) and remote.usage["requests_sent"] == 2
    assert get_json(judge_server.removesuffix("/v1") + "/stats")["requests"] == before

    # The key was sent (loopback servers accept any) but is nowhere on disk.
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_free_text_over_http(judge_server, tmp_path):
    [remote] = open_judges(JudgeOptions(base_url=judge_server, model="embedded"), tmp_path / "c.sqlite")
    [answer] = remote.complete([Request(messages=(("user", "Reply with exactly the word: yes"),), max_tokens=4)])
    assert "yes" in answer.text.lower() and 1 <= answer.completion_tokens <= 4
    status, body = post(judge_server, {"model": "embedded", "max_tokens": 1, "temperature": 0,
                                       "guided_choice": ["A", "B"], "logprobs": True, "top_logprobs": 5,
                                       "messages": [{"role": "user", "content": "Pick B. Answer A or B."}]})
    assert status == 200 and body["choices"][0]["message"]["content"] in ("A", "B")
    assert len(body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_unreachable_server_and_wrong_model(judge_server, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(UserError) as exc:
        open_judges(JudgeOptions(base_url=dead, model="embedded", max_retries=0), tmp_path / "c.sqlite")
    assert "cannot reach" in one_line(exc)
    with pytest.raises(UserError) as exc:
        open_judges(JudgeOptions(base_url=judge_server, model="gpt-5"), tmp_path / "c.sqlite")
    assert "not served" in one_line(exc) and "embedded" in str(exc.value)


@pytest.mark.slow
def test_flaky_server_loses_no_request(flaky_server, tmp_path):
    """Every 3rd request fails with HTTP 500 and every 5th is garbled: retries recover every answer."""
    requests = verdicts(4, "flaky")
    [judge] = open_judges(JudgeOptions(base_url=flaky_server, model="embedded", concurrency=3), tmp_path / "c.sqlite")
    answers = judge.complete(requests)
    assert [a.text for a in answers] == ["A"] * 4 and all(a.choice_logprobs["A"] is not None for a in answers)
    stats = get_json(flaky_server.removesuffix("/v1") + "/stats")
    assert stats["answered"] == 4 and stats["injected_failures"] >= 2 and stats["injected_garbled"] >= 1
    assert judge.usage["requests_sent"] == 4


def test_garbled_body_is_one_line(garbling_server, tmp_path):
    [judge] = open_judges(JudgeOptions(base_url=garbling_server, model="embedded"), tmp_path / "c.sqlite")
    with pytest.raises(UserError) as exc:
        judge.complete(verdicts(1, "garbled"))
    assert "not valid JSON" in one_line(exc)
    assert judge.usage["requests_sent"] == 0
