"""Columns of what `clvq-judge study results` writes to `studies/<name>/results/` (read through
`clvq_judge.pipeline.collect`)."""

from __future__ import annotations

RESULTS = "results"
"""Folder beside `studies/<name>.sqlite` holding the files below."""

ANSWERS = ["annotator", "annotator_name", "annotator_kind", "item", "item_kind", "sentence", "method", "concept",
           "truth", "answer", "cant_tell", "correct", "confidence", "seconds", "answered_at"]
SIM_COLUMNS = ["sim_answers", "sim_accuracy", "sim_ci_low", "sim_ci_high", "sim_mean_confidence", "sim_human_pairs",
               "sim_human_agreement", "sim_human_alpha"]
METHODS = ["method", "items", "answers", "accuracy", "ci_low", "ci_high", "cant_tell_rate", "accuracy_decided",
           "majority_baseline", "alpha", "mean_confidence", *SIM_COLUMNS]
ANNOTATORS = ["annotator", "name", "kind", "assigned", "answered", "progress", "attention_assigned",
              "attention_answered", "attention_passed", "attention_pass_rate", "accuracy", "median_seconds"]
COLUMNS = {"answers": ANSWERS, "methods": METHODS, "annotators": ANNOTATORS}

SUMMARY_KEYS = ["study", "run", "labels", "methods", "annotators", "answers", "task_answers", "assigned",
                "alpha_overall", "attention_pass_rate", "chance", "accuracy", "n_boot", "seed", "simulated"]
"""Keys of summary.json (`simulated` is null without simulated annotators)."""
SIMULATED_KIND = "simulated"
