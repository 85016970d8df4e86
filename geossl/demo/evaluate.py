"""The demo's evaluation: encoders scored against spectral-index proxy labels, table and map.

``geossl demo`` has no ground truth for its sample scene, so it scores feature sets against the
proxy land-cover classes of :mod:`geossl.demo.proxy_labels` (**spectral-index proxy labels, not
ground truth**) with three protocols from :mod:`geossl.eval`, the same for every feature set:

* ``linear``: geossl's linear probe (:mod:`geossl.eval.linear`): multinomial logistic
  regression on standardised features with scikit-learn's default L2 strength, C = 1
  (:func:`geossl.eval.linear.logreg_scores`: one fit, no weight-decay search, which would cost
  several fits per feature set on a busy 2-core CPU), fitted on the training chips, scored on the
  test chips (OA, AA, macro-F1);
* ``knn``: temperature-weighted cosine kNN, k = 20 (:func:`geossl.eval.knn.knn_scores`);
* ``kmeans``: k-means with one cluster per class on every labelled chip (L2-normalised features,
  no labels used), scored with NMI and ARI (:func:`geossl.eval.cluster.kmeans_labels`).

Every number is a single run (one split, one seed): small differences mean nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from geossl.datasets.protocol import OPAQUE, DatasetWrapper
from geossl.demo.proxy_labels import DISCLAIMER

#: neighbours of the kNN protocol
KNN_K = 20
#: k-means restarts
KMEANS_INIT = 4
#: table columns: (protocol, metric, header)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("linear", "oa", "linear OA"),
    ("linear", "aa", "linear AA"),
    ("linear", "f1_macro", "linear macro-F1"),
    ("knn", "oa", f"kNN{KNN_K} OA"),
    ("knn", "aa", f"kNN{KNN_K} AA"),
    ("knn", "f1_macro", f"kNN{KNN_K} macro-F1"),
    ("kmeans", "nmi", "k-means NMI"),
    ("kmeans", "ari", "k-means ARI"),
)


class LabelledChips(DatasetWrapper, Dataset[dict[str, Any]]):
    """Samples of a chip dataset with a ``label`` added (picklable, for data-loader workers).

    A :class:`~geossl.datasets.protocol.DatasetWrapper` of the chip dataset: its ``bands``,
    ``sensors`` and ``normalized`` are the chips'; it states no ``classes`` (the labels it adds
    are the demo's proxy labels, not classes of the chips) and no per-sample declarations
    (the demo splits by its own draw, never by the chips' ids or footprints).
    """

    @property
    def wrapped(self) -> Any:
        """The chip dataset."""
        return self.base

    def stated(self) -> Mapping[str, Any]:
        """No ``classes`` and no ids, targets or footprints (the demo's draw splits)."""
        return {**OPAQUE, "classes": None}

    def __init__(self, base: Any, labels: Any) -> None:
        """Wrap ``base``; ``labels[i]`` is the label of sample ``i`` (negative: none)."""
        self.base = base
        self.labels = [int(v) for v in labels]
        if len(self.labels) != len(base):
            raise ValueError(f"{len(self.labels)} labels for {len(base)} samples")

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Sample ``i`` with its ``label``."""
        sample = dict(self.base[i])
        sample["label"] = self.labels[i]
        return sample


def evaluate_features(
    features: Mapping[str, Tensor],
    labels: NDArray[np.int64],
    train: NDArray[np.bool_],
    test: NDArray[np.bool_],
    num_classes: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Score every feature set with the linear, kNN and k-means protocols.

    Args:
        features: name -> ``(N, D)`` features of every chip.
        labels: ``(N,)`` classes in ``[0, num_classes)``, negative for chips left out.
        train: ``(N,)`` chips the probes are fitted on.
        test: ``(N,)`` chips the probes are scored on.
        num_classes: K.
        seed: k-means seed.

    Returns:
        one row per feature set: ``{"features", "dim", "linear": {...}, "knn": {...},
        "kmeans": {...}}`` with ``oa``, ``aa``, ``f1_macro``, ``confusion`` (probes) and ``nmi``,
        ``ari``, ``acc`` (k-means).
    """
    from geossl.eval.cluster import kmeans_labels
    from geossl.eval.knn import knn_scores
    from geossl.eval.linear import logreg_scores
    from geossl.eval.metrics import clustering_metrics, single_label_metrics

    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    known = y.numpy() >= 0
    tr = torch.as_tensor(np.flatnonzero(np.asarray(train) & known))
    te = torch.as_tensor(np.flatnonzero(np.asarray(test) & known))
    everything = torch.as_tensor(np.flatnonzero(known & (np.asarray(train) | np.asarray(test))))
    rows = []
    for name, x in features.items():
        x = torch.as_tensor(x).float()
        scores = logreg_scores(x[tr].numpy(), y[tr].numpy(), x[te].numpy(), num_classes)
        linear = single_label_metrics(y[te], scores, num_classes)
        knn = single_label_metrics(
            y[te], knn_scores(x[tr], y[tr], x[te], num_classes, k=KNN_K), num_classes)
        clusters = kmeans_labels(x[everything], num_classes, seed=seed, n_init=KMEANS_INIT)
        kmeans = clustering_metrics(y[everything], clusters)
        for part in (linear, knn):
            part.pop("top5", None)
        rows.append({"features": name, "dim": int(x.shape[1]), "linear": linear, "knn": knn,
                     "kmeans": kmeans})
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]], title: str,
                   notes: Sequence[str] = ()) -> str:
    """The evaluation table in markdown, with the proxy-label disclaimer and notes."""
    lines = [f"## {title}", "",
             f"**Labels: {DISCLAIMER}.** They are derived from NDWI / NDVI / NDBI / brightness "
             "per pixel, so band statistics predict them almost by construction.", "",
             "| features | " + " | ".join(h for _, _, h in COLUMNS) + " |",
             "| --- |" + " ---: |" * len(COLUMNS)]
    for row in rows:
        cells = [_cell(row.get(p, {}).get(m)) for p, m, _ in COLUMNS]
        lines.append(f"| {row['features']} | " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and np.isfinite(value):
        return f"{value:.3f}"
    return "-"


def plot_cluster_map(
    rgb: NDArray[np.float32],
    rgb_bounds: tuple[float, float, float, float],
    cluster_map: str | os.PathLike[str],
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """The RGB quick-look and a k-means cluster map GeoTIFF side by side, in map coordinates.

    Args:
        rgb: ``(H, W, 3)`` picture of the scene in [0, 1].
        rgb_bounds: its ``(left, bottom, right, top)`` in the scene's CRS.
        cluster_map: GeoTIFF of cluster ids (same CRS; nodata left blank).
        path: PNG to write.
        title: title of the cluster-map panel.

    Returns:
        the path written.
    """
    import rasterio

    from geossl.viz.plots import plot_cluster_panels

    with rasterio.open(cluster_map) as src:
        ids = src.read(1, masked=True)
        b = src.bounds
    return plot_cluster_panels(rgb, rgb_bounds, ids, (b.left, b.bottom, b.right, b.top), path,
                               title)
