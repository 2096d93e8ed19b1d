"""Column names of every file `clvq-judge study results` writes, owned here by their writer.

Readers (the run collector, the report, the demo's headline) import these instead of retyping names.
All CSVs sit in `<run>/studies/<name>/results/` (and in `--out` when given).
"""

from __future__ import annotations

ANSWERS_CSV = "answers.csv"
CONDITIONS_CSV = "conditions.csv"
ADDED_VALUE_CSV = "added_value.csv"
ANNOTATORS_CSV = "annotators.csv"
SUMMARY_JSON = "summary.json"

HUMAN = "human"
SIMULATED = "simulated"
NO_METHOD = "none"
"""The `method` of an item whose condition shows no concept (the `sentence` control)."""

ANSWERS = ["annotator", "annotator_name", "annotator_kind", "item", "item_kind", "condition", "sentence", "method",
           "concept", "truth", "answer", "cant_tell", "correct", "confidence", "options", "answer_position", "seconds",
           "answered_at"]
"""One row per stored answer. `answer` empty = can't tell; `options` the labels in the order offered (joined by
" | "); `answer_position` the 0-based place of the answer among them (empty for can't tell)."""

CONDITIONS = ["kind", "condition", "method", "items", "answers", "annotators", "accuracy", "ci_low", "ci_high",
              "cant_tell_rate", "accuracy_decided", "alpha", "mean_confidence", "chance", "majority_baseline",
              "beats_chance", "beats_majority", "flagged_annotators", "informative", "human_pairs", "human_alpha"]
"""The one results table: per annotator kind (human, simulated) x condition x method. `accuracy` = share of answers
naming the model's prediction (can't tell counts as wrong), `ci_low`/`ci_high` its 95% cluster-bootstrap interval
over items; `beats_chance` / `beats_majority`: ci_low above 1/labels / above the majority-label baseline;
`informative` False when any annotator behind the row is flagged not informative (`flagged_annotators` of
`annotators`); `human_pairs`/`human_alpha`: a simulated row's agreement with the humans on the same items."""

ADDED_VALUE = ["kind", "method", "sentences", "shared_sentences", "accuracy_both", "accuracy_sentence", "added_value",
               "ci_low", "ci_high"]
"""What the concept adds to the sentence: accuracy(both) - accuracy(sentence), 95% interval of a bootstrap over the
`sentences` answered in either condition (a sentence answered in both moves both means: `shared_sentences`)."""

ANNOTATORS = ["annotator", "name", "kind", "assigned", "answered", "progress", "attention_assigned",
              "attention_answered", "attention_passed", "attention_pass_rate", "accuracy", "median_seconds",
              "top_label_share", "top_position_share", "informative", "flag"]
"""One row per annotator; `informative` and `flag` follow the rule in `results.informative`."""

SUMMARY = ["study", "run", "labels", "methods", "conditions", "annotators", "answers", "task_answers", "assigned",
           "alpha_overall", "attention_pass_rate", "chance", "informative_rule", "n_boot", "seed", "simulated"]
"""Keys of summary.json (human figures; `simulated` is null or holds SUMMARY_SIMULATED)."""

SUMMARY_SIMULATED = ["annotators", "answers", "assigned", "task_answers", "attention_pass_rate", "not_informative",
                     "human_pairs", "human_agreement", "human_alpha"]

RESULTS = "results"
"""The results folder of a study: `<run>/studies/<name>/results/`."""
COLUMNS = {"answers": ANSWERS, "conditions": CONDITIONS, "added_value": ADDED_VALUE, "annotators": ANNOTATORS}
"""`<name>.csv` -> its columns (what the run collector checks)."""
