"""The llama.cpp backend on the real embedded GGUF (extra `llamacpp`, installed by .ci/run): verdicts from
label log-probabilities that agree with the transformers backend on the same weights, a prefix-reusing KV
cache that changes numbers only at rounding level, free text, its own cache keys, one-line errors, and a real
`clvq-judge serve --model llamacpp:embedded` that answers concurrent requests as the in-process backend does."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fixtures_judge import get_json, start_server, stop_server

from clvq_judge.core.errors import UserError
from clvq_judge.judge.backends import JudgeOptions, open_judges
from clvq_judge.judge.client import Request

if os.environ.get("CI") != "true":
    pytest.importorskip("llama_cpp")

FRUIT = Request(messages=(("system", "You answer with one letter."),
                          ("user", "Which word names a fruit?\nA: apple\nB: truck\nAnswer A or B.")),
                choices=("A", "B"))
TRUCK = Request(messages=(("system", "You answer with one letter."),
                          ("user", "Which word names a vehicle?\nA: apple\nB: truck\nAnswer A or B.")),
                choices=("A", "B"))
YES_NO = Request(messages=(("system", "You answer Yes or No."),
                           ("user", "Is Paris a city? Answer Yes or No.")), choices=("Yes", "No"))
NOT_FRUIT = Request(messages=(("system", "You answer Yes or No."),
                              ("user", "Is a truck a fruit? Answer Yes or No.")), choices=("Yes", "No"))
HELLO = Request(messages=(("user", "Reply with exactly the word: yes"),), max_tokens=4)


@pytest.fixture(scope="module")
def llama_judge(tmp_path_factory):
    [judge] = open_judges(JudgeOptions(judge=("llamacpp:embedded",)), tmp_path_factory.mktemp("llama") / "c.sqlite")
    return judge


def test_verdicts_carry_label_logprobs_and_are_cached(llama_judge):
    fruit, truck, yes = llama_judge.complete([FRUIT, TRUCK, YES_NO])
    for answer, labels in ((fruit, ("A", "B")), (truck, ("A", "B")), (yes, ("Yes", "No"))):
        assert set(answer.choice_logprobs) == set(labels)
        assert all(np.isfinite(v) and v <= 0 for v in answer.choice_logprobs.values())
        assert answer.text in labels and answer.prompt_tokens > 10
    assert yes.text == "Yes"
    sent = llama_judge.usage["requests_sent"]
    again = llama_judge.complete([FRUIT])[0]
    assert llama_judge.usage["requests_sent"] == sent and again.choice_logprobs == fruit.choice_logprobs
    assert llama_judge.backend == "llamacpp"


def test_prefix_reuse_changes_numbers_only_at_rounding_level(llama_judge):
    engine = llama_judge.inner.engine
    first = engine.render(FRUIT.chat())
    second = engine.render(TRUCK.chat())
    ids = engine.label_tokens(("A", "B"))
    engine.llm.reset()
    cold = engine.score(first, ids)
    engine.score(second, ids)  # shares the system prompt and most of the question with `first`
    warm = engine.score(first, ids)
    engine.llm.reset()
    fresh = engine.score(first, ids)
    # A fresh pass repeats itself exactly; a pass that reuses a cached prefix splits the prompt into two
    # batches, which llama.cpp's kernels round differently (measured: about 0.03 nats).
    assert np.allclose(cold, fresh, atol=1e-6)
    assert np.allclose(cold, warm, atol=0.1) and np.argmax(cold) == np.argmax(warm)


def test_agrees_with_the_transformers_backend_on_the_same_weights(llama_judge, judge_engine):
    from clvq_judge.judge.backends.inprocess import verdict

    for request in (FRUIT, TRUCK, YES_NO):
        mine = llama_judge.inner.complete([request])[0].choice_logprobs
        scored = judge_engine.score([judge_engine.render(request.chat())])[0]
        theirs = verdict(judge_engine, scored, request.choices).choice_logprobs
        # The same Q4_K_M weights: llama.cpp computes in its quantised kernels, transformers in float32 after
        # dequantising, so the numbers differ a little, never by much.
        for label in request.choices:
            assert abs(mine[label] - theirs[label]) < 0.5, (request.choices, mine, theirs)


def test_free_text_stops_at_the_end_of_turn(llama_judge):
    answer = llama_judge.complete([HELLO])[0]
    assert answer.text and 1 <= answer.completion_tokens <= 4


def test_bad_gguf_path_is_one_line(tmp_path):
    with pytest.raises(UserError) as exc:
        open_judges(JudgeOptions(judge=(f"llamacpp:{tmp_path / 'none.gguf'}",)), tmp_path / "c.sqlite")
    assert "is not a .gguf file" in str(exc.value) and "\n" not in str(exc.value)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """Base URL of a real `clvq-judge serve --model llamacpp:embedded` process."""
    process, base_url, _ = start_server(tmp_path_factory.mktemp("llama_server"), "--model", "llamacpp:embedded")
    yield base_url
    stop_server(process)


def test_serve_fronts_llamacpp_with_the_in_process_logprobs(llama_judge, llama_server, tmp_path):
    # Sent at once, with two label sets and opposite Yes/No answers: a reply crossed between requests sharing
    # the one llama.cpp model would show as a wrong or missing label.
    requests = [FRUIT, TRUCK, YES_NO, NOT_FRUIT]
    [remote] = open_judges(JudgeOptions(judge=("openai:llamacpp:embedded",), base_url=llama_server,
                                        concurrency=len(requests)), tmp_path / "c.sqlite")
    got = remote.complete(requests)
    expected = llama_judge.inner.complete(requests)
    assert [e.text for e in expected[2:]] == ["Yes", "No"]
    for request, e, g in zip(requests, expected, got):
        assert g.text == e.text and g.extra["parsed"] and g.prompt_tokens == e.prompt_tokens
        for label in request.choices:
            assert g.choice_logprobs[label] is not None
            # Up to rounding: which prefix the KV cache reuses differs between the two processes.
            assert abs(g.choice_logprobs[label] - e.choice_logprobs[label]) < 0.5, (request.choices, g, e)
    assert get_json(llama_server.removesuffix("/v1") + "/stats")["answered"] == len(requests)
    [hello] = remote.complete([HELLO])
    assert hello.text and 1 <= hello.completion_tokens <= 4
