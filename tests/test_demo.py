"""`clvq-judge demo --quick`: every axis end to end (model, ablation, judge, study, simulated annotators, report)
on the embedded default, through the CLI as a user runs it, and a second run in a row that does no work."""

import json

import numpy as np
import pandas as pd
import pytest

from clvq_judge.cli.main import main

STAGES = ["finetune", "extract", "train", "concepts", "ablate", "describe", "rank", "study", "simulate"]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory, embedded_judge_dir):
    runs = tmp_path_factory.mktemp("demo_runs")
    assert main(["demo", "--quick", "--runs-dir", str(runs)]) == 0
    return runs, runs / "demo-quick"


@pytest.mark.slow
def test_quick_demo_judges_with_intervals_around_estimates(quick_demo):
    _, run = quick_demo
    methods = pd.read_csv(run / "judge" / "methods.csv")
    assert sorted(methods["method"]) == ["clvq", "kmeans", "sae"]
    for stat, prefix in [("win_rate", "win_rate"), ("soft_pref", "soft"), ("known_answer_accuracy", "known_answer"),
                         ("first_place_rate", "first_place"), ("bt_score", "bt")]:
        est, low, high = methods[stat], methods[f"{prefix}_low"], methods[f"{prefix}_high"]
        assert ((0 <= low) & (low <= est + 1e-9) & (est <= high + 1e-9) & (high <= 1)).all(), stat
    # The tiny embedded judge's verdicts tie (it names the first option in both orders), but its label
    # probabilities still tell the methods apart: a constant column would mean the answers were not read.
    assert methods["soft_pref"].nunique() > 1
    assert (methods["position_inconsistency"].between(0, 1)).all()
    pairs = pd.read_csv(run / "judge" / "pairs.csv")
    assert len(pairs) == 3 and (pairs["wins"] + pairs["ties"] + pairs["losses"] + pairs["unparsed"] == pairs["n"]).all()
    comparisons = pd.read_csv(run / "judge" / "comparisons.csv")
    assert not comparisons["prompt"].str.contains("clvq|kmeans|sae", case=False).any()  # blinded


@pytest.mark.slow
def test_quick_demo_drop_is_against_its_energy_matched_control(quick_demo):
    _, run = quick_demo
    results = pd.read_csv(run / "ablation" / "results.csv")
    summary = json.loads((run / "ablation" / "summary.json").read_text())
    clvq = results.query("label == 'clvq' and protocol == 'model'").set_index("condition")["accuracy"]
    drop = summary["methods"]["clvq"]["model"]["drop_vs_energy_control"]
    assert drop["value"] == pytest.approx(clvq["random_energy"] - clvq["concept"])
    assert drop["ci_low"] <= drop["value"] <= drop["ci_high"]
    headline = json.loads((run / "headline.json").read_text())
    row = next(m for m in headline["methods"] if m["method"] == "clvq")
    assert row["drop_vs_energy_control"] == drop and row["accuracy_concept_removed"] == clvq["concept"]


@pytest.mark.slow
def test_quick_demo_study_is_answered_by_simulated_annotators_and_reported(quick_demo):
    runs, run = quick_demo
    study = run / "studies" / "demo.sqlite"
    assert study.exists()
    table = pd.read_csv(run / "studies" / "demo" / "results" / "conditions.csv")
    # The demo's study holds all three conditions; simulated annotators answered, no person did.
    assert set(table["condition"]) == {"concept", "sentence", "both"}
    sim = table[(table["kind"] == "simulated") & (table["answers"] > 0)]
    assert len(sim) and sim["accuracy"].between(0, 1).all()
    assert ((sim["ci_low"] <= sim["accuracy"]) & (sim["accuracy"] <= sim["ci_high"])).all()
    assert not ((table["kind"] == "human") & (table["answers"] > 0)).any()  # nothing human is invented
    page = (run / "report" / "index.html").read_text()
    for name in ("judge_methods.csv", "study_demo_conditions.csv", "ablation.csv", "concepts.csv"):
        assert (run / "report" / name).exists()
    # The report carries the judge's own verdict on its known-answer control, whichever it is.
    informative = bool(pd.read_csv(run / "judge" / "methods.csv")["informative"].iloc[0])
    assert ("informative: its CI clears 0.5" if informative else "not informative: its CI does not clear 0.5") in page
    assert "Study “demo”" in page and "93.5%" in page
    shown = pd.read_csv(run / "report" / "judge_methods.csv")
    assert np.allclose(shown["win_rate"], pd.read_csv(run / "judge" / "methods.csv")["win_rate"])


@pytest.mark.slow
def test_second_demo_in_a_row_does_no_work_and_keeps_stage_times(quick_demo, capsys):
    runs, run = quick_demo
    first = json.loads((run / "headline.json").read_text())
    assert set(STAGES) <= set(first["seconds"]) and first["skipped"] == []
    assert main(["demo", "--quick", "--runs-dir", str(runs)]) == 0
    second = json.loads((run / "headline.json").read_text())
    # Every stage keeps a record, so the study's results and the report are found up to date as well.
    assert second["skipped"] == [*STAGES, "results", "report"]
    assert second["this_invocation_seconds"] < 30
    assert {k: second["seconds"][k] for k in STAGES} == {k: first["seconds"][k] for k in STAGES}
    assert second["methods"] == first["methods"] and second["judge"] == first["judge"]
    assert "already done, not redone" in capsys.readouterr().out


def test_demo_refuses_a_compared_method_it_does_not_train(tmp_path, capsys):
    assert main(["demo", "--runs-dir", str(tmp_path), "--methods", "kmeans", "--compare", "kmeans", "clvq"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compare clvq not among --methods" in err[0]


def test_seed_replicates_keep_the_extraction_options():
    from clvq_judge.pipeline.seeds import SeedsConfig

    config = SeedsConfig(run="g", model="gemma-270m", dataset="sentiment", ig_steps=4, seeds=(0, 5),
                         ablate_space="standardized")
    first, other = config.demo(0), config.demo(5)
    assert (first.run, other.run) == ("g", "g-seed5") and other.seed == 5
    assert first.ig_steps == other.ig_steps == 4 and other.model == "gemma-270m" and other.axes == ("model",)
    assert other.ablate_space == "standardized"


@pytest.mark.slow
def test_same_seed_gives_the_same_tables_and_seeds_summarise_replicates(quick_demo, tmp_path):
    runs, run = quick_demo
    # A fresh model axis with the same seed in another folder reproduces the ablation table exactly.
    assert main(["demo", "--quick", "--axes", "model", "--runs-dir", str(tmp_path)]) == 0
    again = pd.read_csv(tmp_path / "demo-quick" / "ablation" / "results.csv")
    pd.testing.assert_frame_equal(again, pd.read_csv(run / "ablation" / "results.csv"))
    # Seed 0's replicate is the demo run itself (reused, not redone); seed 1 is a new run.
    assert main(["seeds", "--quick", "--seeds", "0", "1", "--runs-dir", str(runs)]) == 0
    seeds = json.loads((run / "seeds.json").read_text())
    assert seeds["runs"] == {"0": "demo-quick", "1": "demo-quick-seed1"} and seeds["seeds"] == [0, 1]
    headline = json.loads((run / "headline.json").read_text())
    clvq = seeds["methods"]["clvq"]["accuracy_concept_removed"]
    first = next(m for m in headline["methods"] if m["method"] == "clvq")["accuracy_concept_removed"]
    assert clvq["values"][0] == first and clvq["n"] == 2
    assert clvq["mean"] == pytest.approx(np.mean(clvq["values"]))
    if clvq["values"][0] != clvq["values"][1]:
        assert clvq["low"] < clvq["mean"] < clvq["high"]
    drop = seeds["methods"]["clvq"]["drop_vs_energy_control"]
    assert drop["values"][0] == next(m for m in headline["methods"] if m["method"] == "clvq")["drop_vs_energy_control"]["value"]
