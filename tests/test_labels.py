from __future__ import annotations

import numpy as np
import pytest
import torch

from geossl.datasets import labels as lab


def test_nomenclature_sizes() -> None:
    assert len(lab.IGBP_CLASSES) == 17
    assert len(lab.DFC_CLASSES) == 10
    assert len(lab.IGBP_TO_DFC) == 18
    assert len(lab.CORINE_CLASSES) == len(lab.CLC_CODES) == 43
    assert len(lab.BEN19_CLASSES) == 19
    # every 19-class index is reached, and exactly the 8 classes without counterpart drop out
    assert set(lab.CORINE_TO_BEN19.values()) == set(range(19))
    dropped = {lab.CLC_CODES[i] for i in range(43) if i not in lab.CORINE_TO_BEN19}
    assert dropped == {122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 423}


def test_igbp_and_dfc_mapping() -> None:
    igbp = np.arange(0, 19, dtype=np.uint8)  # 0 and 18 are invalid
    idx = lab.igbp_to_index(igbp, "igbp")
    assert idx[0] == lab.IGNORE_INDEX and idx[18] == lab.IGNORE_INDEX
    assert idx[1:18].tolist() == list(range(17))
    dfc = lab.igbp_to_index(igbp, "dfc")
    # forests 1-5 -> 0, shrub 6-7 -> 1, savanna 8-9 -> 2, grass 10 -> 3, wetland 11 -> 4,
    # crop 12 and mosaic 14 -> 5, urban 13 -> 6, snow 15 -> 7, barren 16 -> 8, water 17 -> 9
    assert dfc[1:18].tolist() == [0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 5, 7, 8, 9]
    assert dfc[0] == lab.IGNORE_INDEX
    with pytest.raises(ValueError):
        lab.igbp_to_index(igbp, "nope")


def test_single_label_most_frequent_and_ties() -> None:
    mask = np.array([[0, 0, 1], [1, 1, lab.IGNORE_INDEX]])
    assert lab.single_label(lab.class_counts(mask, 3)) == 1
    assert lab.single_label([2, 2, 0]) == 0  # tie -> lowest index
    assert lab.single_label([0, 0]) == lab.IGNORE_INDEX
    label = lab.scene_label(mask, 3)
    assert label.dtype == torch.int64 and label.ndim == 0 and int(label) == 1


def test_multi_label_threshold() -> None:
    # 100 valid pixels: 60 / 30 / 10 (exactly 10 %) / 0; ignored pixels do not count
    mask = np.concatenate([np.zeros(60), np.ones(30), np.full(10, 2), np.full(50, -100)])
    label = lab.scene_label(mask.astype(int), 4, multilabel=True, min_fraction=0.1)
    assert label.dtype == torch.float32
    assert label.tolist() == [1.0, 1.0, 1.0, 0.0]
    mask2 = np.concatenate([np.zeros(91), np.ones(9)]).astype(int)  # 9 % is out
    assert lab.scene_label(mask2, 2, multilabel=True).tolist() == [1.0, 0.0]
    assert lab.multi_label([0, 0]).tolist() == [0.0, 0.0]


def test_dfc_aggregates_before_majority() -> None:
    # IGBP: 40 % class 1, 35 % class 12 (crop), 25 % class 14 (mosaic): IGBP majority is
    # forest, but DFC croplands (12 + 14 = 60 %) win
    igbp = np.array([1] * 40 + [12] * 35 + [14] * 25)
    assert int(lab.scene_label(lab.igbp_to_index(igbp, "igbp"), 17)) == 0
    assert int(lab.scene_label(lab.igbp_to_index(igbp, "dfc"), 10)) == 5


def test_corine_names_to_19_and_43() -> None:
    names = ["Non-irrigated arable land", "Road and rail networks and associated land",
             "Sea and ocean", "coastal lagoons"]
    assert lab.corine_names_to_indices(names, 43) == [3, 11, 40, 42]
    assert lab.corine_names_to_indices(names, 19) == [2, 18]  # road dropped, sea+lagoon merged
    with pytest.raises(KeyError, match="Atlantis"):
        lab.corine_names_to_indices(["Atlantis"], 19)
    with pytest.raises(ValueError):
        lab.corine_names_to_indices(names, 10)


def test_ben19_names_and_clc_codes() -> None:
    assert lab.ben19_names_to_indices(["Marine waters", "Arable land"]) == [2, 18]
    with pytest.raises(KeyError):
        lab.ben19_names_to_indices(["Arable"])
    assert lab.clc_codes_to_indices([0, 211, 231, 311, 313, 999], 19) == [2, 4, 8, 10]
    assert lab.clc_codes_to_indices([211, 122], 43) == [3, 11]
    hot = lab.multi_hot([2, 4], 19)
    assert hot.dtype == torch.float32 and hot.sum() == 2 and hot[2] == 1
