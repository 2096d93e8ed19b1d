"""One lifecycle for every stage: each records the done hashes of what it read, is a no-op when nothing it read
changed, and refuses or redoes an outdated input, exactly like the model stages (one test per stage kind).

On a private copy of the study fixtures' tiny run, so redoing its concepts never disturbs other tests."""

import json
import logging
import shutil

import pytest

from clvq_judge.cli.main import main
from clvq_judge.core.concepts import ConceptsConfig, concepts
from clvq_judge.core.diagnose import DiagnoseConfig, diagnose
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import Run
from clvq_judge.core.stages import STAGES, command_for
from clvq_judge.human_eval.builder import CreateConfig, create_study, study_path
from clvq_judge.human_eval.results import ResultsConfig, study_results
from clvq_judge.human_eval.simulate import SimulateConfig, simulate_study
from clvq_judge.human_eval.store import Store
from clvq_judge.pipeline.export import ExportConfig, export
from clvq_judge.pipeline.report import ReportConfig, build_report

METHODS = ("clvq", "kmeans")


@pytest.fixture
def runs(study_runs, tmp_path):
    shutil.copytree(study_runs / "tiny", tmp_path / "tiny", ignore=shutil.ignore_patterns("studies", "report", "judge",
                                                                                          "diagnose", "export"))
    return tmp_path


def _done(run: Run, key: str) -> dict:
    return json.loads((run.stage_dir(key) / "done.json").read_text())


def _redo_concepts(runs, method="kmeans"):
    concepts(ConceptsConfig(run="tiny", runs_dir=str(runs), method=method, examples=3, force=True))


def _create(runs, **options):
    return CreateConfig(run="tiny", runs_dir=str(runs), name="pilot", method=METHODS, items=3, overlap=1,
                        annotators=3, attention_checks=1, **options)


def test_every_stage_that_writes_a_result_keeps_a_record():
    records = {s.name: s.record for s in STAGES}
    for name in ("finetune", "extract", "train", "concepts", "ablate", "diagnose", "describe", "rank",
                 "study create", "study simulate", "study results", "report", "export"):
        assert records[name], f"{name} keeps no record"
    # The error messages name the command that remakes an outdated record, read from the same table.
    assert command_for("r", "studies/pilot") == "run `clvq-judge study create --run r --name pilot`"
    assert command_for("r", "methods/sae") == "run `clvq-judge train --run r --method sae`"
    assert command_for("r", "rank") == "run `clvq-judge rank --run r`"


def test_diagnose_is_a_no_op_until_its_method_is_retrained(runs, caplog):
    run = Run.open(runs, "tiny")
    config = DiagnoseConfig(run="tiny", runs_dir=str(runs), method="kmeans", context_sentences=2, max_points=500,
                            kmeans_iterations=2)
    first = diagnose(config)
    record = _done(run, "diagnose/kmeans")
    assert set(record["inputs"]) == {"extract", "methods/kmeans"} and record["outputs"] == ["diagnose/kmeans.json"]
    assert diagnose(config) == first and _done(run, "diagnose/kmeans")["done_hash"] == record["done_hash"]
    from clvq_judge.core.train import TrainConfig, train

    train(TrainConfig(run="tiny", runs_dir=str(runs), method="kmeans", n_concepts=16, force=True, progress=False))
    with caplog.at_level(logging.WARNING):
        diagnose(config)
    assert any("diagnose/kmeans" in r.getMessage() and "redone" in r.getMessage() for r in caplog.records)
    assert _done(run, "diagnose/kmeans")["inputs"]["methods/kmeans"] == run.done_hash("methods/kmeans")


def test_a_study_refuses_outdated_concepts_and_its_readers_follow(runs, capsys):
    run = Run.open(runs, "tiny")
    create_study(_create(runs))
    path = study_path(runs, "tiny", "pilot")
    record = _done(run, "studies/pilot")
    assert record["inputs"] == {f"concepts/{m}": run.done_hash(f"concepts/{m}") for m in METHODS}
    # Same options, same concepts: a no-op that prints the invite links again (the answers are kept).
    before = path.stat().st_mtime_ns
    assert "invite links" in create_study(_create(runs)) and path.stat().st_mtime_ns == before
    # Other options are refused without --force (a study holds people's answers).
    with pytest.raises(UserError, match="already finished with other options"):
        create_study(_create(runs, seed=5))

    # results: computed once, a no-op until an answer arrives, then redone.
    results = ResultsConfig(run="tiny", runs_dir=str(runs), name="pilot", n_boot=50)
    study_results(results)
    first = _done(run, "studies/pilot/results")
    assert first["inputs"] == {"studies/pilot": record["done_hash"]}
    assert "no answer arrived since" in study_results(results)
    store = Store.open(path)
    annotator = store.annotators()[0]
    item, display = store.pending_items(annotator.id)[0]
    store.record_answer(annotator.id, item, display["instruction"] or store.labels()[0], 3, seconds=1.0)
    assert "no answer arrived since" not in study_results(results)
    assert _done(run, "studies/pilot/results")["done_hash"] != first["done_hash"]

    # report and export record what they read; a rerun with nothing redone is a no-op.
    report = ReportConfig(run="tiny", runs_dir=str(runs))
    build_report(report)
    assert "studies/pilot/results" in _done(run, "report")["inputs"]
    assert "up to date" in build_report(report)
    out = runs / "paper"
    export(ExportConfig(run="tiny", runs_dir=str(runs), out=str(out)))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage_hashes"]["studies/pilot/results"] == run.done_hash("studies/pilot/results")
    assert "up to date" in export(ExportConfig(run="tiny", runs_dir=str(runs), out=str(out)))
    (out / "summary.csv").unlink()  # a lost output is made again
    assert "up to date" not in export(ExportConfig(run="tiny", runs_dir=str(runs), out=str(out)))

    # The concepts are redone: the study is outdated, and nothing built on it is served or extended.
    _redo_concepts(runs)
    with pytest.raises(UserError, match="'studies/pilot' of run 'tiny' was built from 'concepts/kmeans'.*--force"):
        create_study(_create(runs))
    for reader in (lambda: study_results(results), lambda: build_report(report),
                   lambda: export(ExportConfig(run="tiny", runs_dir=str(runs), out=str(out)))):
        with pytest.raises(UserError, match="outdated"):
            reader()
    with pytest.raises(UserError, match="'studies/pilot' of run 'tiny' is outdated"):
        simulate_study(SimulateConfig(run="tiny", runs_dir=str(runs), name="pilot", annotators=1))
    # The CLI says it in one line, naming the command.
    assert main(["study", "results", "--run", "tiny", "--runs-dir", str(runs), "--name", "pilot"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clvq-judge study create --run tiny --name pilot" in err

    # --replace-outdated rebuilds a study nobody answered for real (the demo's); then the readers follow.
    create_study(_create(runs, replace_outdated=True))
    assert _done(run, "studies/pilot")["inputs"]["concepts/kmeans"] == run.done_hash("concepts/kmeans")
    assert not (run.stage_dir("studies/pilot/results") / "done.json").exists()
    study_results(results)
    assert "up to date" not in build_report(report)
