"""Columns of every table the judge stages write, owned here next to their writers (`judge/protocols/`,
`judge/rank.py`, `judge/describe.py`); readers (export, the report, the demo's headline, the explorer) import
these names instead of typing them."""

from __future__ import annotations

COMPARISON_COLUMNS = ["judge", "kind", "sentence", "word", "prediction", "order", "labels", "shown", "concepts",
                      "true_label", "raw_answer", "reask_answer", "verdict_label", "verdict", "parse_failed", "soft",
                      "seconds", "prompt", "prompt_sha"]
"""comparisons.csv of the pairwise, calibrated and listwise protocols: one row per question and order."""

PAIR_COLUMNS = ["judge", "method_a", "method_b", "n", "wins", "ties", "losses", "unparsed", "win_rate", "win_rate_low",
                "win_rate_high", "soft_pref", "soft_low", "soft_high", "p_value", "position_inconsistency"]
"""pairs.csv of the side-by-side protocols: one row per judge and pair of methods."""

METHOD_COLUMNS = ["judge", "method", "n", "wins", "ties", "losses", "unparsed", "win_rate", "win_rate_low",
                  "win_rate_high", "first_place_rate", "first_place_low", "first_place_high", "bt_score", "bt_low",
                  "bt_high", "soft_pref", "soft_low", "soft_high", "position_inconsistency", "known_answer_accuracy",
                  "known_answer_low", "known_answer_high", "method_informative", "judge_known_answer_accuracy",
                  "judge_known_answer_low", "judge_known_answer_high", "position_bias", "position_bias_low",
                  "position_bias_high", "informative"]
"""methods.csv of the side-by-side protocols: one row per judge (and "pooled") and method."""

AGREEMENT_COLUMNS = ["judges", "comparisons", "alpha", "note"]

DETECTION_COLUMNS = ["judge", "kind", "sentence", "method", "concept", "role", "item", "item_row", "item_word",
                     "member", "on_card", "raw_answer", "reask_answer", "p_yes", "parse_failed", "seconds", "prompt", "prompt_sha"]
"""comparisons.csv of the detection protocol: one row per (concept, item sentence) question."""

DETECTION_METHOD_COLUMNS = ["judge", "method", "n", "detection_auc", "detection_auc_low", "detection_auc_high",
                            "detection_accuracy", "detection_accuracy_low", "detection_accuracy_high",
                            "known_answer_accuracy", "known_answer_low", "known_answer_high",
                            "judge_known_answer_accuracy", "judge_known_answer_low", "judge_known_answer_high",
                            "string_match_auc", "string_match_known_answer", "unparsed", "informative"]
"""methods.csv of the detection protocol."""

DETECTION_PAIR_COLUMNS = ["judge", "method_a", "method_b", "n", "auc_difference", "auc_difference_low",
                          "auc_difference_high", "a_better", "ties", "b_better"]

DONE_KEYS = ["config_hash", "config", "inputs", "protocol", "methods", "seed", "n_units", "files", "usage"]
"""Keys of judge/done.json (rank's record of what it read and wrote)."""

RESULT_FILES = ["comparisons", "pairs", "methods", "agreement"]
"""The CSVs every protocol writes (detection adds concepts.csv)."""
