"""Statistics that more than one evaluation axis needs: bootstrap intervals and Krippendorff's alpha.

The ablation, the LLM judge and the human study all import these from here, so an interval or an
agreement figure means the same thing wherever the project prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampling items, seeded).

    For a paired comparison pass per-item differences (e.g. correct_random - correct_concept).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Chunks bound memory at about 4M indices however many items there are.
    chunk = max(1, 4_000_000 // len(values))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        means[start : start + size] = values[rng.integers(0, len(values), size=(size, len(values)))].mean(1)
    return percentile_interval(means, level)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central `level` interval of bootstrap replicates (NaN replicates ignored)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def cluster_resamples(n_clusters: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded bootstrap draws of cluster indices (e.g. sentences): each draw is [n_clusters] indices with
    replacement. Resample whole clusters so that all comparisons of one sentence stay together."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n_clusters, size=n_clusters)


def bootstrap_statistic(
    clusters: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Cluster-bootstrap interval of any statistic.

    `clusters` gives the cluster id of each row; `statistic(rows)` receives the row indices of one resample
    (rows of a cluster drawn twice appear twice) and returns a number.
    """
    clusters = np.asarray(clusters)
    ids, inverse = np.unique(clusters, return_inverse=True)
    if len(ids) == 0:
        return float("nan"), float("nan")
    order = np.argsort(inverse, kind="mergesort")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(ids)))])
    members = [order[bounds[i] : bounds[i + 1]] for i in range(len(ids))]
    replicates = np.array(
        [statistic(np.concatenate([members[i] for i in draw])) for draw in cluster_resamples(len(ids), n_boot, seed)]
    )
    return percentile_interval(replicates, level)


def krippendorff_alpha(ratings: np.ndarray, level: str = "nominal") -> float:
    """Krippendorff's alpha of a [raters, units] matrix (NaN = missing), through the `krippendorff` package.

    Returns NaN instead of raising when alpha is undefined (fewer than two pairable ratings, or a single
    value used throughout), so a table can show "n/a" for a method with too few overlapping answers.
    """
    import krippendorff

    ratings = np.asarray(ratings, dtype=np.float64)
    if ratings.ndim != 2 or ratings.size == 0:
        return float("nan")
    pairable = (np.isfinite(ratings).sum(0) >= 2).sum()
    values = np.unique(ratings[np.isfinite(ratings)])
    if pairable == 0 or len(values) < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=ratings, level_of_measurement=level))


def _cluster_sums(clusters: np.ndarray, values: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster of `ids`: the sum of the finite `values` and how many there are."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    index = np.searchsorted(ids, np.asarray(clusters))
    sums = np.bincount(index, weights=np.where(finite, values, 0.0), minlength=len(ids))
    counts = np.bincount(index, weights=finite.astype(np.float64), minlength=len(ids))
    return sums, counts


def cluster_mean_ci(
    clusters: np.ndarray, values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of the finite `values`, resampling whole clusters (seeded).

    The draws are `cluster_resamples`' (those `bootstrap_statistic` makes), so the interval equals
    `bootstrap_statistic` with the mean as statistic; the mean of resampled clusters is their summed values
    over their summed counts, so each replicate is one gather over clusters, not a concatenation of rows.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any() or n_boot < 1:
        return float("nan"), float("nan")
    ids = np.unique(np.asarray(clusters))
    sums, counts = _cluster_sums(clusters, values, ids)
    draws = np.array(list(cluster_resamples(len(ids), n_boot, seed)), dtype=np.int64).reshape(n_boot, len(ids))
    with np.errstate(divide="ignore", invalid="ignore"):
        replicates = sums[draws].sum(1) / counts[draws].sum(1)
    return percentile_interval(replicates, level)


def cluster_mean_difference_ci(
    clusters_a: np.ndarray, values_a: np.ndarray, clusters_b: np.ndarray, values_b: np.ndarray,
    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> tuple[float, float, float]:
    """mean(a) - mean(b) of the finite values and its percentile interval, resampling the clusters both
    groups share ids from (e.g. sentences answered in two study conditions) together, so that a sentence
    easy in both groups moves both means at once (a paired, cluster-level bootstrap)."""
    values_a, values_b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if not np.isfinite(values_a).any() or not np.isfinite(values_b).any():
        return float("nan"), float("nan"), float("nan")
    point = float(np.nanmean(values_a) - np.nanmean(values_b))
    if n_boot < 1:
        return point, float("nan"), float("nan")
    ids = np.unique(np.concatenate([np.asarray(clusters_a), np.asarray(clusters_b)]))
    sums_a, counts_a = _cluster_sums(clusters_a, values_a, ids)
    sums_b, counts_b = _cluster_sums(clusters_b, values_b, ids)
    draws = np.array(list(cluster_resamples(len(ids), n_boot, seed)), dtype=np.int64).reshape(n_boot, len(ids))
    with np.errstate(divide="ignore", invalid="ignore"):
        replicates = sums_a[draws].sum(1) / counts_a[draws].sum(1) - sums_b[draws].sum(1) / counts_b[draws].sum(1)
    low, high = percentile_interval(replicates, level)
    return point, low, high
