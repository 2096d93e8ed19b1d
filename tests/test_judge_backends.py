"""Judge backends in process: the embedded judge's verdicts and free text, the on-disk cache, and the
one-line errors for everything a user can get wrong before a request is sent."""

from __future__ import annotations

import math
import sqlite3

import pytest

from clvq_judge.core.errors import UserError
from clvq_judge.judge.backends import JudgeOptions, judge_specs, open_judges
from clvq_judge.judge.cache import JudgeCache
from clvq_judge.judge.client import Completion, Request
from clvq_judge.judge.labels import label_logprobs, parse_choice

FRUIT = Request(messages=(("system", "You answer with one letter."),
                          ("user", "Which word names a fruit?\nA: apple\nB: truck\nAnswer A or B.")),
                choices=("A", "B"))
HELLO = Request(messages=(("user", "Reply with exactly the word: yes"),), max_tokens=4)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def test_assemble_refuses_a_wrong_checksum(tmp_path):
    from clvq_judge.judge.embedded import assemble

    part = tmp_path / "part"
    part.write_bytes(b"GGUF" + b"\0" * 100)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError) as exc:
        assemble(out, [part, part])
    assert "checksum" in one_line(exc) and "pip install" in str(exc.value)
    assert not list(out.iterdir())  # the bad file is not left behind


def test_converted_judge_keeps_its_chat_template(embedded_judge_dir):
    assert (embedded_judge_dir / ".complete").exists()
    assert not (embedded_judge_dir.parent / (embedded_judge_dir.name + ".partial")).exists()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_judge_dir)
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                             add_generation_prompt=True)


def test_in_process_verdict_text_and_cache(judge_engine, tmp_path):
    [judge] = open_judges(JudgeOptions(), tmp_path / "cache.sqlite")
    assert (judge.name, judge.backend) == ("embedded", "transformers")
    verdict, text = judge.complete([FRUIT, HELLO])
    assert verdict.text == "A"
    probs = {k: math.exp(v) for k, v in verdict.choice_logprobs.items()}
    assert probs["A"] > probs["B"] and sum(probs.values()) <= 1.0 + 1e-6
    assert verdict.prompt_tokens > 10 and verdict.completion_tokens == 1
    assert "yes" in text.text.lower() and 1 <= text.completion_tokens <= 4
    assert judge.usage["requests_sent"] == 2

    # Same requests again (and a duplicate): all from disk, nothing sent.
    again = judge.complete([FRUIT, HELLO, FRUIT])
    assert judge.usage["requests_sent"] == 2 and judge.usage["cache_hits"] == 3
    assert all(a.cached for a in again)
    assert again[0].choice_logprobs == verdict.choice_logprobs and again[1].text == text.text

    # A new process (a rerun) reads the same file.
    [rerun] = open_judges(JudgeOptions(), tmp_path / "cache.sqlite")
    assert rerun.complete([FRUIT])[0].text == "A" and rerun.usage["requests_sent"] == 0


def test_batched_scores_equal_single_scores(judge_engine):
    """Left padding and the shared-prefix KV cache must not change a prompt's verdict."""
    other = Request(messages=(FRUIT.messages[0], ("user", "Which is a colour?\nA: seven\nB: green, as in grass\nAnswer A or B.")),
                    choices=("A", "B"))
    prompts = [judge_engine.render(r.chat()) for r in (FRUIT, other)]
    together = judge_engine.score(prompts)
    alone = judge_engine.score(prompts[1:])
    assert float((together[1].logprobs - alone[0].logprobs).abs().max()) < 1e-3


def test_corrupted_cache_is_one_line(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not an sqlite file" * 200)
    with pytest.raises(UserError) as exc:
        JudgeCache(path)
    assert "corrupted" in one_line(exc) and f"rm {path}" in str(exc.value)


def test_cache_round_trip_under_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    cache = JudgeCache(tmp_path / "c.sqlite")
    reqs = [Request(messages=(("user", f"q{i}"),), choices=("A", "B")) for i in range(40)]

    def put(i):
        cache.put(reqs[i].key("t", "m"), "t", "m", reqs[i], Completion(text="A", choice_logprobs={"A": -0.1, "B": -2.0},
                                                                      prompt_tokens=i))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(40)))
    got = cache.get_many([r.key("t", "m") for r in reqs])
    assert len(got) == 40 and all(c.cached for c in got.values())
    assert got[reqs[7].key("t", "m")].prompt_tokens == 7
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("spec", ["gpt4", "openai:", "transformers", "llama:x"])
def test_unknown_judge_spec(spec, tmp_path):
    with pytest.raises(UserError) as exc:
        open_judges(JudgeOptions(judge=(spec,)), tmp_path / "c.sqlite")
    assert "unknown judge" in one_line(exc)


def test_missing_key_for_a_remote_url(tmp_path, monkeypatch):
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    options = JudgeOptions(base_url="https://judge.example.org/v1", model="gpt-x", api_key_env="MY_JUDGE_KEY")
    with pytest.raises(UserError) as exc:
        open_judges(options, tmp_path / "c.sqlite")
    assert "$MY_JUDGE_KEY" in one_line(exc)


def test_vllm_not_installed_is_one_line(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(UserError) as exc:
        open_judges(JudgeOptions(judge=("vllm:some/model",)), tmp_path / "c.sqlite")
    assert "clvq-judge[vllm]" in one_line(exc)


def test_model_shorthand_replaces_the_default_judge():
    assert judge_specs(JudgeOptions(model="m", base_url="http://127.0.0.1:1/v1")) == ["openai:m"]
    assert judge_specs(JudgeOptions(judge=("embedded", "openai:a"), model="b")) == ["embedded", "openai:a", "openai:b"]


def test_strict_parsing_and_top_logprob_reading():
    assert parse_choice(" B.", ("A", "B")) == "B"
    assert parse_choice("Answer: A", ("A", "B")) == "A"
    assert parse_choice("A or B", ("A", "B")) is None
    assert parse_choice("I think A", ("A", "B")) is None
    got = label_logprobs([("A", -0.2), (" B", -1.5), ("B", -1.9), ("C", -3.0)], ("A", "B", "D"))
    assert got == {"A": -0.2, "B": -1.9, "D": None}


def test_price_table_cost(tmp_path, judge_engine):
    table = tmp_path / "prices.json"
    table.write_text('{"embedded": {"prompt": 1.0, "completion": 2.0}}')
    [judge] = open_judges(JudgeOptions(price_table=str(table)), tmp_path / "c.sqlite")
    judge.complete([FRUIT])
    usage = judge.usage
    assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0) / 1e6)
    table.write_text("{not json")
    with pytest.raises(UserError) as exc:
        open_judges(JudgeOptions(price_table=str(table)), tmp_path / "c.sqlite")
    assert "price table" in one_line(exc)


def test_embedded_gguf_is_assembled_once_and_a_bad_checksum_is_refused(tmp_path, monkeypatch):
    """The chunked GGUF judges (the 1.5B one's 22 packages are an extra) assemble into the cache atomically."""
    import hashlib
    import sys
    import types

    from clvq_judge.judge import embedded

    monkeypatch.setenv("CLVQ_JUDGE_CACHE", str(tmp_path / "cache"))
    data = [b"GGUF" + b"a" * 50, b"b" * 30]
    for i, chunk in enumerate(data):
        (tmp_path / f"p{i}").write_bytes(chunk)
        module = types.ModuleType(f"fake_part{i}")
        module.get_part_path = lambda i=i: str(tmp_path / f"p{i}")
        monkeypatch.setitem(sys.modules, f"fake_part{i}", module)
    whole = b"".join(data)
    good = embedded.EmbeddedGGUF("x.gguf", ("fake_part0", "fake_part1"), len(whole),
                                 hashlib.sha256(whole).hexdigest(), "x")
    monkeypatch.setitem(embedded.GGUFS, "fake", good)
    path = embedded.gguf_path("fake")
    assert path.read_bytes() == whole and not list((path.parent / ".partial").iterdir())
    monkeypatch.setitem(embedded.GGUFS, "bad", embedded.EmbeddedGGUF("y.gguf", good.packages, good.size, "0" * 64, "x"))
    with pytest.raises(UserError) as exc:
        embedded.gguf_path("bad")
    assert "checksum" in one_line(exc) and not (path.parent / "y.gguf").exists()
    monkeypatch.setitem(embedded.GGUFS, "missing", embedded.EmbeddedGGUF("z.gguf", ("no_such_part",), 1, "0", "judge-large"))
    with pytest.raises(UserError) as exc:
        embedded.gguf_path("missing")
    assert "clvq-judge[judge-large]" in one_line(exc)
