"""Metrics against hand-computed small cases and their scikit-learn / torchmetrics equivalents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.eval.metrics import (
    binary_metrics,
    clustering_metrics,
    hungarian_accuracy,
    multi_label_metrics,
    single_label_metrics,
)


def test_single_label_hand_computed() -> None:
    y = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 1, 0]
    m = single_label_metrics(y, pred, num_classes=3)
    assert m["oa"] == pytest.approx(4 / 6)
    assert m["aa"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    # per-class F1: 2/3, 0.8, 0
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["top5"] is None


def test_single_label_scores_top5_and_torch_input() -> None:
    k = 7
    y = torch.tensor([0, 1, 2])
    scores = torch.zeros(3, k)
    # sample 0: true class ranked 1st; sample 1: ranked 5th; sample 2: ranked 6th
    scores[0] = torch.tensor([9, 1, 2, 3, 4, 5, 6.0])
    scores[1] = torch.tensor([9, 5, 8, 7, 6, 1, 0.0])
    scores[2] = torch.tensor([9, 8, 1, 7, 6, 5, 0.0])
    m = single_label_metrics(y, scores)
    assert m["top5"] == pytest.approx(2 / 3)
    assert m["oa"] == pytest.approx(1 / 3)
    assert len(m["confusion"]) == k


def test_single_label_matches_torchmetrics() -> None:
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (200,), generator=g)
    scores = torch.randn(200, 5, generator=g) + 2 * torch.nn.functional.one_hot(y, 5)
    m = single_label_metrics(y, scores)
    assert m["oa"] == pytest.approx(float(multiclass_accuracy(scores, y, 5, average="micro")))
    assert m["aa"] == pytest.approx(float(multiclass_accuracy(scores, y, 5, average="macro")))
    assert m["f1_macro"] == pytest.approx(float(multiclass_f1_score(scores, y, 5, average="macro")))


def test_multi_label_hand_computed() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1]])
    s = np.array([[0.9, 0.5], [0.4, 0.8], [0.6, 0.3]])
    m = multi_label_metrics(y, s)
    # class 0 AP = 1; class 1 ranking P, N, P -> (1 + 2/3) / 2
    assert m["map_macro"] == pytest.approx((1 + 5 / 6) / 2)
    # pooled ranking P P P N N P -> (1 + 1 + 1 + 4/6) / 4
    assert m["map_micro"] == pytest.approx((3 + 4 / 6) / 4)
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["f1_micro"] == pytest.approx(6 / 7)


def test_multi_label_ignores_classes_without_positives() -> None:
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    s = np.array([[0.9, 0.5, 0.1], [0.4, 0.8, 0.7], [0.6, 0.3, 0.2]])
    assert multi_label_metrics(y, s)["map_macro"] == pytest.approx((1 + 5 / 6) / 2)


def test_binary_hand_computed() -> None:
    m = binary_metrics([1, 1, 1, 0, 0], [1, 0, 1, 0, 1])
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["accuracy"] == pytest.approx(3 / 5)


def test_hungarian_and_clustering() -> None:
    y = [0, 0, 1, 1, 2, 2]
    assert hungarian_accuracy(y, [1, 1, 0, 0, 0, 2]) == pytest.approx(5 / 6)
    perfect = clustering_metrics(y, [5, 5, 3, 3, 9, 9])  # relabelled clusters
    assert perfect == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "acc": 1.0}
    # more clusters than classes: unmatched clusters count as errors
    assert hungarian_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == pytest.approx(0.5)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    c = [0, 1, 1, 2, 2, 2]
    m = clustering_metrics(y, c)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(y, c))
    assert m["ari"] == pytest.approx(adjusted_rand_score(y, c))


def test_per_class_scores_and_their_bar_chart(tmp_path: Path) -> None:
    """Per-class F1 (single- and multi-label) and AP (multi-label, None without positives),
    against sklearn's per-class calls; plots.plot_per_class draws them as a PNG."""
    import matplotlib.image as mpimg

    from geossl.eval.metrics import multi_label_metrics, single_label_metrics
    from geossl.viz import plots

    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = single_label_metrics(y, pred, num_classes=4)
    assert m["f1_per_class"] == pytest.approx([0.5, 0.8, 2 / 3, 0.0])  # class 3: no sample
    yt = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    sc = np.array([[0.9, 0.2, 0.1], [0.4, 0.8, 0.3], [0.6, 0.3, 0.7], [0.1, 0.6, 0.2]])
    mm = multi_label_metrics(yt, sc)
    assert mm["ap_per_class"][:2] == pytest.approx([1.0, 5 / 6]) and mm["ap_per_class"][2] is None
    assert mm["f1_per_class"] == pytest.approx([1.0, 0.5, 0.0])
    path = plots.plot_per_class({"AP": mm["ap_per_class"], "F1": mm["f1_per_class"]},
                                tmp_path / "per_class.png", ["water", "forest", "urban"])
    picture = mpimg.imread(path)
    assert picture.ndim == 3 and picture.shape[0] > 100 and picture.std() > 0.05
    with pytest.raises(ValueError, match="one list per score"):
        plots.plot_per_class({"AP": [0.1], "F1": [0.1, 0.2]}, tmp_path / "bad.png")
