"""Clustering baselines (spec section 3): k-means and agglomerative (Ward) over L_in token vectors.

Concept vector = centroid; a token's concept = its nearest centroid (Euclidean), which for k-means is
exactly its cluster. Ward clustering costs O(n^2) memory and time, so it is fitted on a seeded random
subsample of at most `agglomerative_max_points` training vectors; the remaining training tokens and all
evaluation tokens are then assigned to the nearest centroid. k-means likewise fits on at most
`kmeans_max_points` vectors (memory stays bounded on large caches).

With `--standardize` the clustering runs on standardised vectors; `vectors()` maps each centroid back to the
model's space, where it is exactly the mean of its members, and the recorded FVU is the model-space one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_text
from ..config import option
from .base import ConceptMethod, StandardizeOption
from .batching import LayerData
from .quantizer import perplexity, squared_distances

log = logging.getLogger(__name__)


@dataclass
class ClusterConfig(StandardizeOption):
    """Hyper-parameters of the clustering baselines."""

    n_concepts: int = option(400, ge=2)
    """Number of clusters K (ConceptX default: 400)."""
    seed: int = 0
    """Seed for subsampling and k-means initialisation."""
    kmeans_max_points: int = option(100000, ge=0)
    """k-means fits on at most this many random training vectors (0 = all)."""
    agglomerative_max_points: int = option(6000, ge=2)
    """Ward clustering fits on at most this many random training vectors (O(n^2) memory)."""


class _CentroidMethod(ConceptMethod):
    config_class = ClusterConfig

    def __init__(self, config: ClusterConfig, dims):
        super().__init__(config, dims)
        self.centroids = torch.zeros(0, dims.d_in)
        self.history: list[dict] = []

    @classmethod
    def target_layer(cls, config, layer_in: int, layer_out: int) -> int:
        return layer_in

    def _max_points(self) -> int | None:
        raise NotImplementedError

    def _cluster(self, x: np.ndarray, k: int) -> np.ndarray:
        """Cluster labels of x [n, D]."""
        raise NotImplementedError

    def fit(self, data: LayerData, workdir=None, device="cpu", on_epoch_end=None, progress=False):
        cfg = self.config
        self.fit_scaling(data)
        x = self.internal(data).sample_rows(data.layer_in, self._max_points(), cfg.seed)
        k = min(cfg.n_concepts, len(x))
        if k < cfg.n_concepts:
            log.warning("%s: only %d training vectors, using %d clusters instead of %d", self.name, len(x), k, cfg.n_concepts)
        labels = self._cluster(x, k)
        sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)
        self.centroids = torch.from_numpy((sums / np.maximum(counts, 1)[:, None]).astype(np.float32))
        codes = self._nearest(torch.from_numpy(x))
        # Model-space error and variance, so the figure is comparable with and without standardisation.
        x_model, centroids_model = self.input_to_model(x), self.input_to_model(self.centroids)
        err = float(((torch.from_numpy(x_model) - centroids_model[codes]) ** 2).sum(1).mean())
        var = float(((x_model - x_model.mean(0)) ** 2).sum(1).mean())
        row = {
            "epoch": 1,
            "fit_vectors": len(x),
            "val_mse": err / x.shape[1],
            "val_fvu": err / max(var, 1e-12),
            "perplexity": perplexity(codes, k),
            "active_codes": int((counts > 0).sum()),
            "dead_codes": int((counts == 0).sum()),
        }
        self.history = [row]
        if workdir is not None:
            write_text(Path(workdir) / "metrics.jsonl", json.dumps(row, sort_keys=True) + "\n")
        if on_epoch_end is not None:
            on_epoch_end(1, row)
        return self

    @torch.no_grad()
    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        return squared_distances(z, self.centroids).argmin(1)

    def assign_vectors(self, x: np.ndarray) -> np.ndarray:
        z = self.to_internal(np.require(x, np.float32))
        return self._nearest(torch.from_numpy(np.require(z, np.float32, ["W"]))).numpy().astype(np.int64)

    def vectors(self) -> np.ndarray:
        return np.asarray(self.input_to_model(self.centroids.numpy()), dtype=np.float32)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"centroids": self.centroids}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.centroids = tensors["centroids"].float().cpu()


class KMeansMethod(_CentroidMethod):
    name = "kmeans"

    def _max_points(self) -> int | None:
        return self.config.kmeans_max_points or None

    def _cluster(self, x: np.ndarray, k: int) -> np.ndarray:
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=1, random_state=self.config.seed).fit_predict(x)


class AgglomerativeMethod(_CentroidMethod):
    name = "agglomerative"

    def _max_points(self) -> int | None:
        return self.config.agglomerative_max_points

    def _cluster(self, x: np.ndarray, k: int) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering

        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
