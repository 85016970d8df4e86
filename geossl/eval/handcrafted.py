"""Hand-crafted per-patch PolSAR features, for the logistic-regression baseline on them.

The classical baseline every learned PolSAR representation must beat: describe a patch by its
mean coherency (or covariance) matrix and classify that with a linear model.

Features of a patch (:func:`patch_mean_features`), 9 values:

* ``T11_db, T22_db, T33_db``: the diagonal terms of the patch-mean matrix in dB;
* ``T12/T13/T23 real, imag``: the off-diagonal terms of the patch-mean matrix divided by
  ``sqrt(Tii Tjj)`` (complex correlation coefficients, in [-1, 1]).

The mean is taken over the **matrix** (linear power, i.e. multi-looking over the patch), then the
features are derived, which is the physically meaningful patch average (``mode="matrix"``);
``mode="pixel"`` averages the per-pixel features instead (the mean of dB values and of per-pixel
coefficients), for comparison. The classifier on them is geossl's one linear probe
(:mod:`geossl.eval.linear`: :func:`~geossl.eval.linear.logreg_scores` with scikit-learn's default
``C = 1``, or the probe with its weight decay chosen by cross-validation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.polsar import NAMES, polsar_features

#: averaging modes of :func:`patch_mean_features`
MODES = ("matrix", "pixel")


def feature_names(kind: str = "t3") -> list[str]:
    """Names of the 9 hand-crafted features (``T11_db`` ... ``T23_imag_norm``)."""
    if kind not in NAMES:
        raise ConfigError(f"unknown PolSAR matrix kind {kind!r}; use t3 or c3")
    names = NAMES[kind]
    return [f"{n}_db" for n in names[:3]] + [f"{n}_norm" for n in names[3:]]


def _box_means(arr: NDArray[Any], rows: NDArray[Any], cols: NDArray[Any], size: int
               ) -> NDArray[np.float64]:
    """Mean of every channel over ``size x size`` boxes at ``(rows, cols)`` (integral images)."""
    c, h, w = arr.shape
    out = np.empty((len(rows), c), dtype=np.float64)
    r0, c0 = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    r1, c1 = r0 + size, c0 + size
    for i in range(c):
        integral = np.zeros((h + 1, w + 1), dtype=np.float64)
        integral[1:, 1:] = np.cumsum(np.cumsum(arr[i], axis=0, dtype=np.float64), axis=1)
        out[:, i] = (integral[r1, c1] - integral[r0, c1] - integral[r1, c0]
                     + integral[r0, c0]) / float(size * size)
    return out


def patch_mean_features(
    arr: NDArray[Any],
    rows: NDArray[Any],
    cols: NDArray[Any],
    size: int,
    kind: str = "t3",
    mode: str = "matrix",
) -> NDArray[np.float32]:
    """Hand-crafted features of square patches of a T3/C3 scene.

    Args:
        arr: ``(9, H, W)`` matrix elements (:func:`geossl.datasets.polsar.read_polsar` order).
        rows: top row of each patch.
        cols: left column of each patch.
        size: patch size in pixels.
        kind: ``t3`` or ``c3``.
        mode: ``matrix`` (features of the patch-mean matrix) or ``pixel`` (patch mean of the
            per-pixel features).

    Returns:
        float32 ``(N, 9)``, columns named by :func:`feature_names`.

    Raises:
        ConfigError: unknown mode or kind.
        DataError: ``arr`` is not ``(9, H, W)`` or a patch leaves the scene.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown hand-crafted feature mode {mode!r}; use {', '.join(MODES)}")
    if arr.ndim != 3 or arr.shape[0] != 9:
        raise DataError(f"expected a (9, H, W) PolSAR matrix, got shape {tuple(arr.shape)}")
    rows, cols = np.asarray(rows), np.asarray(cols)
    _, h, w = arr.shape
    if len(rows) and (rows.min() < 0 or cols.min() < 0 or rows.max() + size > h
                      or cols.max() + size > w):
        raise DataError(f"a {size} px patch leaves the {h} x {w} scene")
    if mode == "matrix":
        clean = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0, posinf=0.0,
                              neginf=0.0)
        mean = _box_means(clean, rows, cols, size).T.astype(np.float32)  # (9, N)
        feats = polsar_features(mean, kind)  # (9, N): same conventions as the network input
    else:
        per_pixel = polsar_features(arr, kind)
        feats = _box_means(per_pixel, rows, cols, size).T.astype(np.float32)
    return np.ascontiguousarray(feats.T, dtype=np.float32)
