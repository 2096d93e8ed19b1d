"""No stage serves results made from an input that was redone since: done hashes and recorded inputs."""

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from clvq_judge.cli.main import main
from clvq_judge.core.errors import UserError
from clvq_judge.core.runs import Run


@dataclass
class Cfg:
    x: int = 1


def _chain(tmp_path):
    run = Run.open(tmp_path, "r", create=True)
    for stage, inputs in (("a", ()), ("b", ("a",)), ("c", ("b",))):
        assert run.begin(stage, Cfg(), inputs=inputs)
        run.finish(stage, Cfg())
    return run


def test_done_record_names_the_inputs_it_read(tmp_path):
    run = _chain(tmp_path)
    assert run.done_record("c")["inputs"] == {"b": run.done_hash("b")}
    assert run.begin("c", Cfg(), inputs=("b",)) is False  # nothing changed: a no-op


def test_forced_redo_with_same_options_outdates_readers(tmp_path, caplog):
    run = _chain(tmp_path)
    before = run.done_hash("a")
    assert run.begin("a", Cfg(), force=True)
    run.finish("a", Cfg())
    assert run.done_hash("a") != before  # same options, new result
    # A later stage never gets "c" (made from the old "b", made from the old "a"), whatever it asks for.
    for stage in ("b", "c"):
        with pytest.raises(UserError, match="'b' of run 'r' is outdated: its input 'a' was redone"):
            run.require(stage)
    with caplog.at_level(logging.WARNING):
        assert run.begin("b", Cfg(), inputs=("a",)) is True
    assert [r.getMessage() for r in caplog.records] == [
        "b: input 'a' of run 'r' was redone since this stage finished; redoing it"]


def test_half_finished_stage_on_other_inputs_starts_over(tmp_path):
    run = _chain(tmp_path)
    assert run.begin("d", Cfg(), inputs=("c",))
    (run.stage_dir("d") / "partial.bin").write_text("half")
    for stage, inputs in (("a", ()), ("b", ("a",)), ("c", ("b",))):
        run.begin(stage, Cfg(), force=True, inputs=inputs)
        run.finish(stage, Cfg())
    assert run.begin("d", Cfg(), inputs=("c",))
    assert not (run.stage_dir("d") / "partial.bin").exists()


def test_older_done_json_is_migrated_and_checked_by_file_time(tmp_path):
    run = Run.open(tmp_path, "r", create=True)
    for stage in ("a", "b"):  # the format before done hashes: config hash only
        run.stage_dir(stage).mkdir()
        (run.stage_dir(stage) / "done.json").write_text(json.dumps({"config_hash": "x"}))
    assert run.require("b") and run.done_hash("b").startswith("x-legacy")
    assert run.outdated_inputs("b", ("a",)) == []
    run.begin("a", Cfg(), force=True)
    run.finish("a", Cfg())
    assert run.outdated_inputs("b", ("a",)) == ["a"]


def _lines(caplog, capsys):
    """Warnings of the stages and the one-line errors (stderr) since the last call."""
    out = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    out += [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    return out


@pytest.mark.slow
def test_finetune_with_another_setup_outdates_every_later_stage(minilm_run, tmp_path, caplog, capsys):
    runs, _ = minilm_run
    shutil.copytree(Path(runs) / "tiny", tmp_path / "tiny")
    common = ["--run", "tiny", "--runs-dir", str(tmp_path)]
    train = ["train", *common, "--method", "kmeans", "--n-concepts", "6"]
    concepts = ["concepts", *common, "--method", "kmeans"]
    ablate = ["ablate", *common, "--method", "kmeans", "--folds", "2", "--bootstrap", "20"]
    extract = ["extract", *common, "--ig-steps", "4", "--chunk-sentences", "64", "--min-count", "2"]
    for argv in (train, concepts, ablate):
        assert main(argv) == 0
    caplog.set_level(logging.WARNING)
    _lines(caplog, capsys)
    # Another classifier: same data and backbone, other pooling (a different model under study).
    assert main(["finetune", *common, "--max-train", "150", "--max-dev", "40", "--pooling", "first", "--force"]) == 0
    _lines(caplog, capsys)
    seen = {}
    for name, argv in (("train", train), ("concepts", concepts), ("ablate", ablate)):
        assert main(argv) == 2  # the cache was made by the old classifier: refused, naming what to rerun
        seen[f"{name} before extract"] = _lines(caplog, capsys)
    for name, argv in (("extract", extract), ("train", train), ("concepts", concepts), ("ablate", ablate)):
        assert main(argv) == 0
        seen[name] = _lines(caplog, capsys)
    print(json.dumps(seen, indent=1))
    for name in ("train", "concepts", "ablate"):
        assert seen[f"{name} before extract"] == [
            f"clvq-judge {name}: error: 'extract' of run 'tiny' is outdated: its input 'finetune' was redone after it; "
            "run `clvq-judge extract --run tiny`"]
    assert seen["extract"] == ["extract: input 'finetune' of run 'tiny' was redone since this stage finished; redoing it"]
    assert seen["train"] == ["methods/kmeans: input 'extract' of run 'tiny' was redone since this stage finished; redoing it"]
    assert seen["concepts"] == ["concepts/kmeans: input 'extract', 'methods/kmeans' of run 'tiny' was redone since this stage finished; redoing it"]
    assert seen["ablate"] == ["ablate: input 'concepts/kmeans', 'extract', 'finetune' of run 'tiny' was redone since this stage finished; "
                             "redoing it"]
    run = Run.open(tmp_path, "tiny")
    assert run.done_record("ablate")["inputs"] == {s: run.done_hash(s) for s in ("finetune", "extract", "concepts/kmeans")}
    # The demo's headline figures come from these records and render into the README table format.
    import importlib.util

    import pandas as pd

    from clvq_judge.pipeline.demo import model_figures

    spec = importlib.util.spec_from_file_location("readme_table", Path(__file__).parents[1] / "benchmarks" / "readme_table.py")
    readme_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_table)
    results = pd.read_csv(run.stage_dir("ablate") / "results.csv")
    figures = {"run": "tiny", "date": "today", "dataset": "news", "model": "minilm", **model_figures(run, ("kmeans",))}
    kmeans = figures["methods"][0]
    assert kmeans["n_concepts"] == 6 and kmeans["accuracy_concept_removed"] == results.query(
        "protocol == 'model' and condition == 'concept'")["accuracy"].item()
    assert f"| kmeans (4) | {kmeans['used_concepts']} / 6 |" in readme_table.render(figures)
