"""The judge stages on a real tiny run: bad input (one line, exit 2), export, and (slow) describe + rank with the
real embedded judge, whose rerun sends no request."""

import json
import shutil

import pandas as pd
import pytest

from clvq_judge.cli.main import main
from clvq_judge.core.errors import UserError
from clvq_judge.judge import schema
from clvq_judge.judge.describe import DescribeConfig, describe, read_units
from clvq_judge.judge.judges import JudgesConfig, judges
from clvq_judge.judge.rank import RankConfig, rank
from clvq_judge.pipeline.export import ExportConfig, export

METHODS = ("clvq", "kmeans")

PAIR_COLUMNS, METHOD_COLUMNS = schema.PAIR_COLUMNS, schema.METHOD_COLUMNS


@pytest.fixture(scope="module")
def judge_runs(minilm_run, tmp_path_factory):
    """A copy of the tiny MiniLM run with two methods' concepts (tiny training): the runs folder, run "tiny"."""
    from clvq_judge.core.concepts import ConceptsConfig, concepts
    from clvq_judge.core.train import TrainConfig, train

    source, _ = minilm_run
    runs = tmp_path_factory.mktemp("judge_runs")
    (runs / "tiny").mkdir()
    for entry in (source / "tiny").iterdir():
        if entry.name in {"run.json", "data", "classifier", "activations"}:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, runs / "tiny" / entry.name)
    for method in METHODS:
        train(TrainConfig(run="tiny", runs_dir=str(runs), method=method, n_concepts=16, decoder_layers=1,
                          decoder_ff=32, batch_sentences=32, epochs=1, progress=False))
        concepts(ConceptsConfig(run="tiny", runs_dir=str(runs), method=method, examples=2))
    return runs


def cli(runs, *args):
    return main([*args, "--run", "tiny", "--runs-dir", str(runs)])


@pytest.mark.parametrize("args,needle", [
    (["rank", "--method", "clvq", "--vs", "clvq"], "focus method itself"),
    (["rank", "--method", "nope", "--vs", "kmeans"], "unknown method nope"),
    (["rank", "--method", "clvq", "--vs", "vqvae"], "no concepts for method 'vqvae'"),
    (["rank", "--method", "clvq", "--vs", "kmeans", "--vs", "kmeans"], "names a method twice"),
    (["rank", "--method", "clvq", "--vs", "kmeans", "--permutations", "0"], "--permutations"),
    (["rank", "--method", "clvq", "--vs", "kmeans", "--show", "everything"], "invalid choice"),
    (["describe", "--method", "sae"], "no concepts for method 'sae'"),
    (["describe", "--method", "clvq", "--sentences", "0"], "at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(judge_runs, capsys, args, needle):
    assert cli(judge_runs, *args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_unknown_run(tmp_path, capsys):
    assert main(["rank", "--run", "ghost", "--runs-dir", str(tmp_path)]) == 2
    assert "run 'ghost' not found" in capsys.readouterr().err


def test_units_are_seeded_stratified_and_shared(judge_runs):
    from clvq_judge.core.runs import Run
    from clvq_judge.judge.describe import prepare_units

    run = Run.open(judge_runs, "tiny")
    units = prepare_units(run, list(METHODS), 6, seed=3)
    again = read_units(run.root / "judge" / "units.jsonl")
    assert [u.unit.sentence for u in units] == [u.unit.sentence for u in again]
    assert all(u.unit.concepts.keys() == set(METHODS) for u in units)
    # The known-answer control is another concept of the same method.
    assert all(u.control[m] != u.unit.concepts[m] for u in units for m in u.control)
    other = prepare_units(run, list(METHODS), 6, seed=4)
    assert [u.unit.sentence for u in other] != [u.unit.sentence for u in units]
    # More sentences than the run has: all of them, with a warning, not an error.
    everything = prepare_units(run, list(METHODS), 10_000, seed=3)
    assert 6 < len(everything) < 10_000


def test_malformed_descriptions_file_is_reported(judge_runs, capsys):
    from clvq_judge.core.runs import Run

    run = Run.open(judge_runs, "tiny")
    path = run.root / "judge" / "descriptions" / "kmeans.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"concept": 1, "description": "x"\n')
    try:
        assert cli(judge_runs, "describe", "--method", "kmeans", "--sentences", "2") == 2
        err = capsys.readouterr().err
        assert "kmeans.jsonl line 1 is malformed" in err and "delete" in err
        assert path.exists()  # nothing is deleted behind the user's back
    finally:
        path.unlink()


def test_export_gathers_ranking_ablation_and_human_results(tmp_path):
    from clvq_judge.core.runs import Run

    run = Run.open(tmp_path / "runs", "r", create=True)
    run.write_info({"seed": 0})
    with pytest.raises(UserError, match="no results to export"):
        export(ExportConfig(run="r", runs_dir=str(tmp_path / "runs"), out=str(tmp_path / "paper")))
    (run.root / "judge").mkdir()
    pd.DataFrame([
        {"judge": "embedded", "method": "clvq", "win_rate": 0.6, "bt_score": 0.6, "informative": False},
        {"judge": "embedded", "method": "kmeans", "win_rate": 0.4, "bt_score": 0.4, "informative": False},
    ]).to_csv(run.root / "judge" / "methods.csv", index=False)
    pd.DataFrame([{"judge": "embedded", "method_a": "clvq", "method_b": "kmeans", "win_rate": 0.6}]).to_csv(
        run.root / "judge" / "pairs.csv", index=False)
    (run.root / "ablation").mkdir()
    pd.DataFrame([
        {"method": m, "k": 1, "label": m, "protocol": "model", "condition": c, "accuracy": a, "relative_drop": d}
        for m, rows in {"clvq": [("original", 0.9, 0.0), ("concept", 0.6, 0.33), ("random", 0.88, 0.02)],
                        "kmeans": [("original", 0.9, 0.0), ("concept", 0.5, 0.44), ("random", 0.9, 0.0)]}.items()
        for c, a, d in rows
    ]).to_csv(run.root / "ablation" / "results.csv", index=False)
    (run.root / "studies" / "pilot" / "results").mkdir(parents=True)
    pd.DataFrame([{"kind": "human", "condition": "concept", "method": "clvq", "accuracy": 0.7, "ci_low": 0.5,
                   "ci_high": 0.85},
                  {"kind": "simulated", "condition": "concept", "method": "kmeans", "accuracy": 0.2, "ci_low": 0.1,
                   "ci_high": 0.3}]).to_csv(run.root / "studies" / "pilot" / "results" / "conditions.csv", index=False)
    text = export(ExportConfig(run="r", runs_dir=str(tmp_path / "runs"), out=str(tmp_path / "paper")))
    out = tmp_path / "paper"
    assert {p.name for p in out.iterdir()} >= {"judge_methods.csv", "judge_pairs.csv", "ablation_results.csv",
                                               "human_pilot_conditions.csv", "summary.csv", "manifest.json"}
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["clvq", "judge_win_rate"] == 0.6 and summary.loc["kmeans", "ablation_model_after"] == 0.5
    assert summary.loc["clvq", "ablation_model_relative_drop"] == pytest.approx(0.33)
    assert summary.loc["clvq", "human_pilot_accuracy"] == 0.7 and pd.isna(summary.loc["kmeans", "human_pilot_accuracy"])
    assert "summary.csv" in text
    (run.root / "ablation" / "results.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x00")
    with pytest.raises(UserError, match="not a readable CSV"):
        export(ExportConfig(run="r", runs_dir=str(tmp_path / "runs"), out=str(tmp_path / "paper")))


@pytest.mark.slow
def test_describe_then_rank_with_the_embedded_judge(judge_runs, judge_engine, tmp_path):
    """The real 0.5B judge end to end on 2 sentences: descriptions, pairwise verdicts in both orders, the
    known-answer control, soft preferences, CSVs with the documented columns; a rerun asks nothing."""
    common = dict(run="tiny", runs_dir=str(judge_runs), sentences=2, seed=1, max_tokens=8)
    text = describe(DescribeConfig(method=METHODS, **common))
    assert "clvq:" in text and "kmeans:" in text
    folder = judge_runs / "tiny" / "judge"
    rows = [json.loads(line) for line in (folder / "descriptions" / "clvq.jsonl").read_text().splitlines()]
    assert rows and all(r["prompt"] == "explainer.v1.j2" and len(r["prompt_sha"]) == 12 for r in rows)
    every = rows + [json.loads(line) for line in (folder / "descriptions" / "kmeans.jsonl").read_text().splitlines()]
    # One request per concept, plus one re-ask for each answer that was empty or echoed the word list.
    assert json.loads((folder / "describe.json").read_text())["usage"]["requests_sent"] == len(every) + sum(
        r["reask"] is not None for r in every)
    assert all(r["not_a_description"] == (r["description"] == "") for r in every)

    out = tmp_path / "results"
    table = rank(RankConfig(method="clvq", vs=("kmeans",), out=str(out), bootstrap=50, **common))
    assert "judge embedded: known-answer accuracy" in table and "clvq vs kmeans" in table
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert list(comparisons.columns) == schema.COMPARISON_COLUMNS
    # 2 sentences x 1 pair x 2 orders, plus 2 sentences x 2 methods x 2 orders of the known-answer control.
    assert (comparisons["kind"] == "pairwise").sum() == 4 and (comparisons["kind"] == "known_answer").sum() == 8
    assert set(comparisons["order"]) == {0, 1}
    # The embedded judge exposes log-probabilities: every verdict has soft preferences and parses.
    assert comparisons["soft"].str.contains("A=").all() and not comparisons["parse_failed"].any()
    pairs = pd.read_csv(out / "pairs.csv")
    assert all(c in pairs.columns for c in PAIR_COLUMNS)
    assert pairs.loc[0, "wins"] + pairs.loc[0, "ties"] + pairs.loc[0, "losses"] + pairs.loc[0, "unparsed"] == 2
    methods = pd.read_csv(out / "methods.csv")
    assert all(c in methods.columns for c in METHOD_COLUMNS)
    assert methods["bt_score"].sum() == pytest.approx(1.0) or methods["bt_score"].isna().all()
    done = json.loads((folder / "done.json").read_text())
    assert done["usage"]["embedded"]["requests_sent"] == 12

    # Rerun: a no-op that reads the results back; with --force every answer comes from the cache.
    assert rank(RankConfig(method="clvq", vs=("kmeans",), bootstrap=50, **common)).startswith(table.split("\n")[0])
    rank(RankConfig(method="clvq", vs=("kmeans",), bootstrap=50, force=True, **common))
    done = json.loads((folder / "done.json").read_text())
    assert done["usage"]["embedded"]["requests_sent"] == 0 and done["usage"]["embedded"]["cache_hits"] == 12
    pd.testing.assert_frame_equal(pd.read_csv(folder / "comparisons.csv"), comparisons)

    # The detection protocol through the same lifecycle: yes/no scores per item, AUC per method, its control.
    detected = rank(RankConfig(method="clvq", vs=("kmeans",), protocol="detection", items=2, show="card",
                               bootstrap=50, **common))
    assert "detection AUC" in detected and "known-answer" in detected
    items = pd.read_csv(folder / "comparisons.csv")
    assert list(items.columns) == schema.DETECTION_COLUMNS and items["p_yes"].between(0, 1).all()
    assert set(items["kind"]) <= {"detection", "detection_control"} and items["member"].any() and (~items["member"]).any()
    methods = pd.read_csv(folder / "methods.csv")
    assert all(c in methods.columns for c in schema.DETECTION_METHOD_COLUMNS)
    # Both rankings are kept, and the calibration table lists the judge once per protocol.
    table = judges(JudgesConfig(run="tiny", runs_dir=str(judge_runs)))
    calibration = pd.read_csv(folder / "judges.csv")
    assert set(calibration["protocol"]) == {"calibrated", "detection"} and "embedded" in table

    # One lifecycle: describe and rank record the concepts they read; when one method's concepts are redone,
    # rank refuses the outdated descriptions (naming describe), and describe then rank redo on their own.
    from clvq_judge.core.concepts import ConceptsConfig, concepts
    from clvq_judge.core.runs import Run

    run = Run.open(judge_runs, "tiny")
    described = json.loads((folder / "descriptions" / "done.json").read_text())
    assert set(described["inputs"]) == {"concepts/clvq", "concepts/kmeans"}
    assert set(json.loads((folder / "done.json").read_text())["inputs"]) == {"concepts/clvq", "concepts/kmeans",
                                                                             "describe"}
    concepts(ConceptsConfig(run="tiny", runs_dir=str(judge_runs), method="kmeans", examples=2, force=True))
    with pytest.raises(UserError, match="'describe' of run 'tiny' is outdated.*clvq-judge describe --run tiny"):
        rank(RankConfig(method="clvq", vs=("kmeans",), bootstrap=50, **common))
    describe(DescribeConfig(method=METHODS, **common))
    assert json.loads((folder / "descriptions" / "done.json").read_text())["inputs"]["concepts/kmeans"] == \
        run.done_hash("concepts/kmeans")
    rank(RankConfig(method="clvq", vs=("kmeans",), bootstrap=50, **common))
    assert run.require("rank") == folder  # up to date again, so report and export may read it
