"""Calibrated pairwise: the pairwise questions, read from label log-probabilities with the judge's position
bias removed. A comparison's verdict is the sign of the reference option's log-odds averaged over both
orders, in which a constant preference for the first-listed option cancels; the bias itself (mean log-odds of
option A) is reported as its own statistic. Backends without log-probabilities fall back to the plain
pairwise reading."""

from __future__ import annotations

from . import register
from .pairwise import Pairwise


@register
class CalibratedPairwise(Pairwise):
    name = "calibrated"
    calibrated = True
