"""Names of the files `concepts` and `ablate` write and the columns of their tables: the writers import them
from here, readers (the report, the explorer, export) check against them through `pipeline.collect`.

A module of its own, free of torch, so a reader can import it without loading a model library.
"""

from __future__ import annotations

CONCEPTS_STAGE = "concepts"
CONCEPT_FILES = {"assignments": "assignments.npy", "vectors": "vectors.npy", "cards": "concepts.jsonl",
                 "summary": "summary.json"}
CARD_KEYS = ["id", "count", "share", "top_words", "examples", "start_share", "is_start_dominated"]
"""Keys of one line of concepts.jsonl (see `core.concepts`)."""

ABLATION_STAGE = "ablation"
ABLATION_FILES = {"results": "results.csv", "summary": "summary.json", "chart": "ablation.png",
                  "sentences": "sentences.csv"}
ABLATION_RESULTS = ["method", "k", "label", "protocol", "condition", "accuracy", "std", "n", "relative_drop",
                    "flip_rate", "ci_low", "ci_high", "energy_share"]
"""results.csv: one row per method variant (`label`), protocol and condition."""
ABLATION_CONDITIONS = ("original", "concept", "random", "random_energy", "other_concept")
ABLATION_SENTENCES = ["label", "protocol", "condition", "sentence", "correct"]
"""sentences.csv: whether each evaluation sentence was classified correctly under each
condition, so a reader can take the accuracy drop over the sentences one concept explains."""
