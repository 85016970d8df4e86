"""Unsupervised classification: k-means on frozen features, scored against the true classes."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import Tensor

from geossl.eval.metrics import clustering_metrics
from geossl.runtime.threads import few_threads


def kmeans_labels(x: Tensor, n_clusters: int, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means cluster ids of L2-normalised features.

    Args:
        x: features ``(N, D)``.
        n_clusters: number of clusters (capped at N).
        seed: k-means seed.
        n_init: k-means restarts.

    Returns:
        ``(N,)`` cluster ids.
    """
    z = F.normalize(x.float(), dim=1).numpy().astype(np.float64)
    km = KMeans(n_clusters=min(n_clusters, len(z)), n_init=n_init, random_state=seed)
    with few_threads(float(z.size) * n_clusters):
        return km.fit_predict(z)  # type: ignore[no-any-return]


def cluster_eval(
    x: Tensor, y: Tensor, n_clusters: int | None = None, seed: int = 0
) -> dict[str, float]:
    """k-means on features, scored with NMI, ARI and Hungarian-matched accuracy.

    Args:
        x: features ``(N, D)``.
        y: true classes ``(N,)``.
        n_clusters: clusters (default: the number of distinct classes in ``y``).
        seed: k-means seed.

    Returns:
        ``{"nmi", "ari", "acc"}``.
    """
    labels = y.numpy()
    k = n_clusters or len(np.unique(labels))
    return clustering_metrics(labels, kmeans_labels(x, k, seed))
