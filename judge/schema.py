"""Columns of the files the judge stages write to `runs/<run>/judge/` (the writers' contract with every reader).

Readers (the report, export, the demo's headline, the explorer) go through `clvq_judge.pipeline.collect`,
which checks a file against these lists, so a renamed column fails there with one line instead of silently
dropping a chart's error bars. `*_REQUIRED` are always written; the `*_KNOWN_ANSWER` columns only when the
known-answer control ran.
"""

from __future__ import annotations

STAGE = "judge"
POOLED = "pooled"
"""The `judge` value of the rows that pool all judges (written when there are several)."""

FILES = ("methods", "pairs", "comparisons", "agreement")
"""`<name>.csv` files `rank` writes."""

COMPARISONS = ["judge", "kind", "sentence", "word", "prediction", "order", "labels", "shown", "concepts",
               "true_label", "raw_answer", "reask_answer", "verdict_label", "verdict", "parse_failed",
               "soft", "prompt", "prompt_sha"]
"""One row per answer. `shown` is "A=clvq;B=kmeans" (a role in brackets for the known-answer control:
"A=clvq (true)"), `concepts` is "A=17;B=3", `verdict_label` the label chosen ("" when unparsed)."""

PAIRS = ["judge", "method_a", "method_b", "n", "wins", "ties", "losses", "unparsed", "win_rate", "win_rate_low",
         "win_rate_high", "soft_pref", "soft_low", "soft_high", "p_value", "position_inconsistency"]

METHODS_REQUIRED = ["judge", "method", "n", "wins", "ties", "losses", "unparsed", "win_rate", "win_rate_low",
                    "win_rate_high", "first_place_rate", "first_place_low", "first_place_high", "bt_score", "bt_low",
                    "bt_high", "soft_pref", "soft_low", "soft_high", "position_inconsistency"]
METHODS_KNOWN_ANSWER = ["known_answer_n", "known_answer_accuracy", "known_answer_low", "known_answer_high",
                        "known_answer_soft", "known_answer_soft_low", "known_answer_soft_high",
                        "known_answer_position_inconsistency", "method_informative", "judge_known_answer_accuracy",
                        "judge_known_answer_low", "judge_known_answer_high", "informative"]
METHODS = METHODS_REQUIRED + METHODS_KNOWN_ANSWER

AGREEMENT = ["judges", "comparisons", "alpha"]

COLUMNS = {"comparisons": COMPARISONS, "pairs": PAIRS, "methods": METHODS, "agreement": AGREEMENT}
REQUIRED = {"comparisons": COMPARISONS, "pairs": PAIRS, "methods": METHODS_REQUIRED, "agreement": AGREEMENT}

UNITS = "units.jsonl"
"""The sampled units (`core.units.Unit` fields plus `control`: the known-answer opponent per method)."""
DESCRIPTIONS = "descriptions"
"""`descriptions/<method>.jsonl`, one object per described concept with these keys:"""
DESCRIPTION_KEYS = ["concept", "description", "raw", "judge", "model", "prompt", "prompt_sha", "concepts"]
