"""Evaluation metrics as pure functions of labels and scores.

Thin wrappers over scikit-learn (and scipy for the Hungarian matching): they fix the conventions
used across geossl (class sets, thresholds, empty classes) and return plain Python floats, so a
result dictionary serialises to JSON as it is.

Why scikit-learn and not torchmetrics: the features and labels are on the host already, and the
conventions differ where it matters here: AA averages the recall of the classes present in
``y_true`` (torchmetrics' macro average also counts a class that is only predicted, as 0), and
scikit-learn's k-means, PCA and probes sit beside these metrics in :mod:`geossl.eval`.
``tests/test_metrics.py`` checks the values against torchmetrics where both agree.

Conventions:

* single-label: ``y_true`` ``(N,)`` integer classes, ``scores`` ``(N, K)`` logits/probabilities
  (or ``y_pred`` ``(N,)``). OA = overall accuracy, AA = mean per-class recall over the classes
  present in ``y_true`` (scikit-learn's balanced accuracy), macro-F1 over the classes present in
  ``y_true`` or ``y_pred``;
* multi-label: ``y_true`` ``(N, K)`` multi-hot, ``scores`` ``(N, K)`` (higher = more likely);
  mAP macro averages the per-class average precision over classes with at least one positive
  (AP is undefined without positives); F1 thresholds scores at ``threshold``;
* binary: ``y_true``/``y_pred`` in {0, 1}; sensitivity = recall of class 1, specificity = recall
  of class 0.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm


def _np(x: ArrayLike | Any) -> NDArray[Any]:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def single_label_metrics(
    y_true: ArrayLike, scores: ArrayLike, num_classes: int | None = None
) -> dict[str, Any]:
    """Overall accuracy, average accuracy, macro-F1, top-5 accuracy and the confusion matrix.

    Args:
        y_true: true classes ``(N,)``.
        scores: class scores ``(N, K)`` (logits or probabilities), or predicted classes ``(N,)``
            (then top-5 is not reported).
        num_classes: K; defaults to the score width, or the largest class seen + 1.

    Returns:
        ``{"oa", "aa", "f1_macro", "top5", "confusion", "f1_per_class"}``; ``top5`` is ``None``
        without scores or with 5 classes or fewer,
        ``confusion`` is a K x K list of lists (rows: true class, columns: predicted),
        ``f1_per_class`` the K per-class F1 scores (the per-class bar chart's).
    """
    yt = _np(y_true).astype(np.int64).ravel()
    s = _np(scores)
    if s.ndim == 2:
        k = num_classes or s.shape[1]
        yp = s.argmax(1)
    else:
        yp = s.astype(np.int64).ravel()
        k = num_classes or int(max(yt.max(initial=0), yp.max(initial=0)) + 1)
    top5: float | None = None
    if s.ndim == 2 and s.shape[1] > 5:  # undefined (always 1) with 5 classes or fewer
        top5 = float(skm.top_k_accuracy_score(yt, s, k=5, labels=np.arange(s.shape[1])))
    with warnings.catch_warnings():  # a small test side need not hold every predicted class
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        aa = float(skm.balanced_accuracy_score(yt, yp))
    return {
        "oa": float(skm.accuracy_score(yt, yp)),
        "aa": aa,
        "f1_macro": float(skm.f1_score(yt, yp, average="macro", zero_division=0)),
        "top5": top5,
        "confusion": skm.confusion_matrix(yt, yp, labels=np.arange(k)).tolist(),
        "f1_per_class": [float(v) for v in skm.f1_score(
            yt, yp, labels=np.arange(k), average=None, zero_division=0)],
    }


def multi_label_metrics(
    y_true: ArrayLike, scores: ArrayLike, threshold: float = 0.5
) -> dict[str, Any]:
    """Mean average precision (micro, macro) and F1 (micro, macro) for multi-label outputs.

    Args:
        y_true: multi-hot targets ``(N, K)``.
        scores: scores ``(N, K)``; probabilities when ``threshold`` is 0.5 (pass logits with
            ``threshold=0``).
        threshold: a class is predicted when its score is strictly above this.

    Returns:
        ``{"map_micro", "map_macro", "f1_micro", "f1_macro", "ap_per_class",
        "f1_per_class"}``; the per-class lists have K entries (AP ``None`` for a class without
        a positive test sample, where it is undefined).
    """
    yt = _np(y_true).astype(np.int64)
    s = _np(scores).astype(np.float64)
    has_pos = yt.sum(0) > 0
    yp = (s > threshold).astype(np.int64)
    return {
        "map_micro": float(skm.average_precision_score(yt, s, average="micro")),
        "map_macro": float(
            skm.average_precision_score(yt[:, has_pos], s[:, has_pos], average="macro")
        ),
        "f1_micro": float(skm.f1_score(yt, yp, average="micro", zero_division=0)),
        "f1_macro": float(skm.f1_score(yt, yp, average="macro", zero_division=0)),
        "ap_per_class": [float(skm.average_precision_score(yt[:, j], s[:, j])) if has_pos[j]
                         else None for j in range(yt.shape[1])],
        "f1_per_class": [float(v) for v in skm.f1_score(yt, yp, average=None,
                                                         zero_division=0)],
    }


def binary_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Sensitivity (true-positive rate), specificity (true-negative rate) and accuracy.

    Args:
        y_true: true labels in {0, 1}.
        y_pred: predicted labels in {0, 1}.

    Returns:
        ``{"sensitivity", "specificity", "accuracy"}``.
    """
    yt = _np(y_true).astype(np.int64).ravel()
    yp = _np(y_pred).astype(np.int64).ravel()
    return {
        "sensitivity": float(skm.recall_score(yt, yp, pos_label=1, zero_division=0)),
        "specificity": float(skm.recall_score(yt, yp, pos_label=0, zero_division=0)),
        "accuracy": float(skm.accuracy_score(yt, yp)),
    }


def hungarian_accuracy(y_true: ArrayLike, clusters: ArrayLike) -> float:
    """Accuracy of cluster ids after the best one-to-one matching of clusters to classes.

    The matching maximises the number of correctly assigned samples (scipy's
    ``linear_sum_assignment`` on the contingency table); clusters left unmatched (more clusters
    than classes) count as wrong.

    Args:
        y_true: true classes ``(N,)``.
        clusters: cluster ids ``(N,)``.

    Returns:
        the matched accuracy in [0, 1].
    """
    yt = _np(y_true).astype(np.int64).ravel()
    yc = _np(clusters).astype(np.int64).ravel()
    if yt.size == 0:
        return 0.0
    _, ti = np.unique(yt, return_inverse=True)
    _, ci = np.unique(yc, return_inverse=True)
    table = np.zeros((ci.max() + 1, ti.max() + 1), dtype=np.int64)
    np.add.at(table, (ci, ti), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / yt.size)


def clustering_metrics(y_true: ArrayLike, clusters: ArrayLike) -> dict[str, float]:
    """NMI, ARI and Hungarian-matched accuracy of a clustering against true classes.

    Args:
        y_true: true classes ``(N,)``.
        clusters: cluster ids ``(N,)``.

    Returns:
        ``{"nmi", "ari", "acc"}``.
    """
    yt = _np(y_true).astype(np.int64).ravel()
    yc = _np(clusters).astype(np.int64).ravel()
    return {
        "nmi": float(skm.normalized_mutual_info_score(yt, yc)),
        "ari": float(skm.adjusted_rand_score(yt, yc)),
        "acc": hungarian_accuracy(yt, yc),
    }
