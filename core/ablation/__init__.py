"""Faithfulness by concept removal (spec section 5): pure math in `directions`, `projection`, `probe`,
`stats`, `model_level` (the explanation token and bootstrap live in `core.explanation` and `core.stats`,
shared with the judge and the study); glue to other stages in `sources`; the `ablate` stage in `stage`."""

from .directions import (
    basis_from_ids,
    orthonormal_basis,
    random_basis,
    random_ids,
    sentence_ids,
)
from .model_level import BlockReplay, ModelBatch, predict_with_removal
from .probe import FoldProbes, ProbeConfig, stratified_folds, train_fold_probes
from .projection import remove_direction, remove_span
from .stats import flip_rate, fold_accuracies, relative_drop

__all__ = [
    "BlockReplay",
    "FoldProbes",
    "ModelBatch",
    "ProbeConfig",
    "basis_from_ids",
    "flip_rate",
    "fold_accuracies",
    "orthonormal_basis",
    "predict_with_removal",
    "random_basis",
    "random_ids",
    "relative_drop",
    "remove_direction",
    "remove_span",
    "sentence_ids",
    "stratified_folds",
    "train_fold_probes",
]
