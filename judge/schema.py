"""Columns of the files the judge stages write to `runs/<run>/judge/` (the writers' contract with every reader),
owned here next to their writers (`judge/protocols/`, `judge/rank.py`, `judge/describe.py`).

Readers (the report, export, the demo's headline, the explorer) go through `clvq_judge.pipeline.collect`,
which checks a file against these lists, so a renamed column fails there with one line instead of silently
dropping a chart's error bars. `*_REQUIRED` are always written; the `*_KNOWN_ANSWER` columns only when the
known-answer control ran. The side-by-side protocols (pairwise, calibrated, listwise) share one set of
columns; detection has its own (`required(protocol, name)` picks).
"""

from __future__ import annotations

STAGE = "judge"
POOLED = "pooled"
"""The `judge` value of the rows that pool all judges (written when there are several)."""

FILES = ("methods", "pairs", "comparisons", "agreement")
"""`<name>.csv` files `rank` writes (detection writes `concepts.csv` in place of `agreement.csv`)."""

COMPARISONS = ["judge", "kind", "sentence", "word", "prediction", "order", "labels", "shown", "concepts",
               "true_label", "raw_answer", "reask_answer", "verdict_label", "verdict", "parse_failed",
               "soft", "seconds", "prompt", "prompt_sha"]
"""One row per answer. `shown` is "A=clvq;B=kmeans" (a role in brackets for the known-answer control:
"A=clvq (true)"), `concepts` is "A=17;B=3", `verdict_label` the label chosen ("" when unparsed, "Equal" for
a tie answer)."""
COMPARISON_COLUMNS = COMPARISONS

PAIRS = ["judge", "method_a", "method_b", "n", "wins", "ties", "losses", "unparsed", "win_rate", "win_rate_low",
         "win_rate_high", "soft_pref", "soft_low", "soft_high", "p_value", "position_inconsistency"]
PAIR_COLUMNS = PAIRS

METHODS_REQUIRED = ["judge", "method", "n", "wins", "ties", "losses", "unparsed", "win_rate", "win_rate_low",
                    "win_rate_high", "first_place_rate", "first_place_low", "first_place_high", "bt_score", "bt_low",
                    "bt_high", "soft_pref", "soft_low", "soft_high", "position_inconsistency", "position_bias",
                    "position_bias_low", "position_bias_high"]
METHODS_KNOWN_ANSWER = ["known_answer_n", "known_answer_accuracy", "known_answer_low", "known_answer_high",
                        "known_answer_soft", "known_answer_soft_low", "known_answer_soft_high",
                        "known_answer_position_inconsistency", "method_informative", "judge_known_answer_accuracy",
                        "judge_known_answer_low", "judge_known_answer_high", "informative"]
METHODS = METHODS_REQUIRED + METHODS_KNOWN_ANSWER
METHOD_COLUMNS = METHODS

AGREEMENT = ["judges", "comparisons", "alpha", "note"]
AGREEMENT_COLUMNS = AGREEMENT

DETECTION_COLUMNS = ["judge", "kind", "sentence", "method", "concept", "role", "item", "item_row", "item_word",
                     "member", "on_card", "raw_answer", "reask_answer", "p_yes", "parse_failed", "seconds", "prompt",
                     "prompt_sha"]
"""comparisons.csv of the detection protocol: one row per (concept, item sentence) question; `on_card` says
whether the item's word is printed on the card shown (what string matching alone could use)."""

DETECTION_METHOD_COLUMNS = ["judge", "method", "n", "detection_auc", "detection_auc_low", "detection_auc_high",
                            "detection_accuracy", "detection_accuracy_low", "detection_accuracy_high",
                            "known_answer_accuracy", "known_answer_low", "known_answer_high",
                            "judge_known_answer_accuracy", "judge_known_answer_low", "judge_known_answer_high",
                            "string_match_auc", "string_match_known_answer", "unparsed", "informative"]
"""methods.csv of the detection protocol."""

DETECTION_PAIR_COLUMNS = ["judge", "method_a", "method_b", "n", "auc_difference", "auc_difference_low",
                          "auc_difference_high", "a_better", "ties", "b_better"]
DETECTION_CONCEPT_COLUMNS = ["judge", "sentence", "method", "concept", "n_items", "auc", "accuracy", "threshold"]

COLUMNS = {"comparisons": COMPARISONS, "pairs": PAIRS, "methods": METHODS, "agreement": AGREEMENT}
REQUIRED = {"comparisons": COMPARISONS, "pairs": PAIRS, "methods": METHODS_REQUIRED, "agreement": AGREEMENT}
DETECTION_REQUIRED = {"comparisons": DETECTION_COLUMNS, "pairs": DETECTION_PAIR_COLUMNS,
                      "methods": DETECTION_METHOD_COLUMNS, "concepts": DETECTION_CONCEPT_COLUMNS}


def required(protocol: str, name: str) -> list[str] | None:
    """The columns a `protocol`'s `<name>.csv` always has; None when that protocol writes no such file."""
    return (DETECTION_REQUIRED if protocol == "detection" else REQUIRED).get(name)


DONE = "done.json"
"""rank's record: config_hash, config, inputs, protocol, methods, seed, n_units, files, usage."""
RESULTS = "results"
"""judge/results/<protocol>-<hash>/: every finished ranking, kept apart for `clvq-judge judges`."""

UNITS = "units.jsonl"
"""The sampled units (`core.units.Unit` fields plus `control`: the known-answer opponent per method)."""
DESCRIPTIONS = "descriptions"
"""`descriptions/<method>.jsonl`, one object per described concept with these keys:"""
DESCRIPTION_KEYS = ["concept", "description", "raw", "reask", "not_a_description", "judge", "model", "prompt",
                    "prompt_sha", "concepts"]
