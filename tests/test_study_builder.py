"""`clvq-judge study create` on a real tiny run: the design in the file, invite links, one-line errors."""

import json
import re
import sqlite3
from collections import Counter

import pytest

from clvq_judge.cli.main import main
from clvq_judge.human_eval.store import SCHEMA_VERSION, Store


def rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


ALL = ("concept", "sentence", "both")


def test_created_study_holds_the_design(make_study):
    path = make_study(items=8, overlap=1, annotators=7, attention_checks=2, seed=5, condition=ALL)
    assert rows(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert rows(path, "PRAGMA journal_mode")[0][0] == "wal"
    items = rows(path, "SELECT id, kind, condition, sentence, method, truth, display FROM items")
    task = [i for i in items if i[1] == "task"]
    checks = [i for i in items if i[1] == "attention"]
    # per sentence: concept x 3 methods, one sentence-only item, both x 3 methods
    assert len(task) == 8 * 7 and len(checks) == 2
    assert Counter((i[2], i[4]) for i in task) == {
        **{("concept", m): 8 for m in ("clvq", "kmeans", "sae")}, ("sentence", None): 8,
        **{("both", m): 8 for m in ("clvq", "kmeans", "sae")}}
    labels = Store.open(path).labels()
    texts = {}
    for _, _, condition, sentence, method, truth, display in task:
        content = json.loads(display)
        # the frozen content an annotator gets holds neither the method nor the answer key
        assert (method is None or method not in display) and "prediction" not in content and truth in labels
        if condition == "concept":
            assert content["text"] is None and content["top_words"] is not None
        else:
            assert content["text"][slice(*content["span"])] == content["word"] or content["span"] == [0, 0]
            texts[sentence] = content["text"]
        if condition == "sentence":
            assert content["top_words"] is None and not content["examples"]
    for _, _, condition, sentence, _, _, display in task:
        if condition == "concept":  # never the evaluation sentence among a concept's examples
            shown = [re.sub(r"\[\[|\]\]", "", e) for e in json.loads(display)["examples"]]
            assert texts[sentence] not in shown
    assignments = rows(path, "SELECT a.annotator, i.sentence, i.condition, i.method, i.kind, a.position "
                             "FROM assignments a JOIN items i ON i.id = a.item")
    per_item = Counter((s, c, m) for _, s, c, m, k, _ in assignments if k == "task")
    assert set(per_item.values()) == {1} and len(per_item) == 56
    for annotator in range(1, 8):
        mine = sorted((p, s, (c, m), k) for a, s, c, m, k, p in assignments if a == annotator)
        sentences = [s for _, s, _, k in mine if k == "task"]
        assert len(sentences) == len(set(sentences))  # no sentence met twice, in any condition or method
        assert sum(k == "attention" for *_, k in mine) == 2 and mine[0][3] == "task"
        assert [p for p, *_ in mine] == list(range(len(mine)))
        per_cell = Counter(cell for _, _, cell, k in mine if k == "task")
        assert len(per_cell) == 7 and max(per_cell.values()) - min(per_cell.values()) <= 1
    meta = Store.open(path).meta()
    assert meta["conditions"] == list(ALL) and len(meta["key_secret"]) == 32 and meta["name"] == path.stem


def test_default_condition_is_the_concept_alone(make_study):
    path = make_study(items=3, overlap=1, annotators=3)
    assert {r[0] for r in rows(path, "SELECT condition FROM items WHERE kind = 'task'")} == {"concept"}


def test_same_seed_same_items_new_tokens(make_study):
    a, b = make_study(seed=1), make_study(seed=1)
    q = "SELECT kind, sentence, method, concept, truth, display FROM items ORDER BY id"
    assert rows(a, q) == rows(b, q)
    qa = "SELECT annotator, item, position FROM assignments ORDER BY 1, 3"
    assert rows(a, qa) == rows(b, qa)
    tokens_a = [t for _, t in Store.open(a).invites()]
    tokens_b = [t for _, t in Store.open(b).invites()]
    assert not set(tokens_a) & set(tokens_b)
    assert all(len(t) >= 32 and not t.isdigit() for t in tokens_a) and len(set(tokens_a)) == len(tokens_a)


def test_cli_prints_one_link_per_annotator_and_refuses_bad_requests(study_runs, capsys):
    base = ["study", "create", "--runs-dir", str(study_runs), "--run", "tiny", "--method", "clvq", "--method", "kmeans"]
    assert main([*base, "--items", "5", "--overlap", "2", "--annotators", "4", "--name", "cli",
                 "--base-url", "https://study.example.org/"]) == 0
    out = capsys.readouterr().out
    links = re.findall(r"https://study\.example\.org/\?token=([\w-]+)", out)
    assert len(links) == 4 and len(set(links)) == 4

    def error(*extra):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        return err

    # The same study again is a no-op that prints the same links (nobody's answers are touched); other options
    # are refused, naming --force.
    assert main([*base, "--items", "5", "--overlap", "2", "--annotators", "4", "--name", "cli",
                 "--base-url", "https://study.example.org/"]) == 0
    assert re.findall(r"https://study\.example\.org/\?token=([\w-]+)", capsys.readouterr().out) == links
    assert "--force" in error("--items", "4", "--overlap", "2", "--annotators", "4", "--name", "cli")
    assert "above --annotators" in error("--overlap", "5", "--annotators", "4", "--name", "x")
    assert "needs at least 6 annotators" in error("--overlap", "3", "--annotators", "4", "--name", "x")
    three = ["--condition", "concept", "--condition", "sentence", "--condition", "both"]
    assert "needs at least 5 annotators" in error(*three, "--overlap", "1", "--annotators", "4", "--name", "x")
    assert "unknown --condition" in error("--condition", "pictures", "--overlap", "1", "--annotators", "4", "--name", "x")
    assert "lower --items" in error("--items", "500", "--overlap", "1", "--annotators", "2", "--name", "x")
    assert "unknown --method" in error("--method", "nope", "--overlap", "1", "--annotators", "3", "--name", "x")
    assert "no concepts for method 'vqvae'" in error("--method", "vqvae", "--overlap", "1", "--annotators", "3", "--name", "x")
    assert "CLVQ_TEST_UNSET" in error("--overlap", "1", "--annotators", "2", "--name", "x", "--admin-password-env", "CLVQ_TEST_UNSET")
    # --force replaces the study (new tokens)
    assert main([*base, "--items", "5", "--overlap", "2", "--annotators", "4", "--name", "cli", "--force"]) == 0
    assert not set(re.findall(r"token=([\w-]+)", capsys.readouterr().out)) & set(links)


def test_stored_admin_password_is_a_salted_hash(make_study, monkeypatch):
    monkeypatch.setenv("MY_STUDY_PW", "correct horse")
    path = make_study(admin_password_env="MY_STUDY_PW", items=3, overlap=1, annotators=3)
    raw = path.read_bytes()
    assert b"correct horse" not in raw
    meta = Store.open(path).meta()
    assert meta["admin_password"]["algorithm"] == "pbkdf2_sha256" and "admin_password_env" not in meta["config"]


@pytest.mark.parametrize("options", [{"items": 3, "overlap": 1, "annotators": 3, "attention_checks": 0}])
def test_no_attention_checks(make_study, options):
    path = make_study(**options)
    assert rows(path, "SELECT COUNT(*) FROM items WHERE kind = 'attention'")[0][0] == 0
