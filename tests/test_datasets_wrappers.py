"""The dataset readers (``geossl.datasets.protocol``) through every wrapper of geossl.

Each wrapper names the dataset it wraps and states some declarations; the readers take every
other one from the wrapped dataset, read a ``DeclaredDataset`` (a ``GeosslDataset``) by the
attributes it declares, even when its class is also a wrapper (``SEN12MSGeoChips`` is a
``GeoSamples``), and read a plain dataset object by name (``plain_declaration``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, Dataset

from geossl.core.errors import DataError
from geossl.data.datamodule import SSLSamples
from geossl.data.pairs import PairedView
from geossl.datasets import bands as bandsel
from geossl.datasets.base import GeosslDataset
from geossl.datasets.geogrid import GeoSamples
from geossl.datasets.protocol import (
    DatasetWrapper,
    bands_of_sensors,
    class_names,
    declared_bands,
    declared_sensors,
    footprints_of,
    is_normalized,
    labelled_mask,
    sample_ids,
    single_sensor,
    targets_of,
)
from geossl.demo.evaluate import LabelledChips
from geossl.eval.predictions import Relabelled

BANDS = {"s1": ["VV", "VH"], "s2": ["B02", "B03", "B04"]}


class Inner(GeosslDataset, Dataset[dict[str, Any]]):
    """Three samples of S1 (2 bands) and S2 (3 bands); the mask is in (s1, s2) order."""

    sensors = ("s1", "s2")
    arguments = ()
    bands = BANDS
    classes = ("a", "b")
    targets = (0, 1, 0)

    def __init__(self, drop_s1: bool = False) -> None:
        self.ids = ["p0", "p1", "p2"]
        self.drop_s1 = drop_s1

    def footprints(self) -> Any:
        return "footprints of Inner"

    def labelled_mask(self) -> np.ndarray:
        return np.array([True, False, True])

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> dict[str, Any]:
        out = {"image_s2": torch.full((3, 8, 8), float(i)), "label": torch.tensor(i % 2),
               "sensor_mask": torch.tensor([1.0, 0.0]), "id": self.ids[i]}
        if not self.drop_s1:
            out["image_s1"] = torch.full((2, 8, 8), -1.0)
        return out


class PlainGeo:
    """A plain (non-geossl) dataset: read by attribute name."""

    def __init__(self) -> None:
        self.sensors = ["s1", "s2"]  # a list, as MultiSensorDataset's
        self.classes = ["forest", "water"]


class Both(GeosslDataset, GeoSamples):
    """A dataset of its own that is also a wrapper, as ``SEN12MSGeoChips``."""

    sensors = ("s1", "s2")
    arguments = ()


def _geo_samples(cls: type[GeoSamples], dataset: Any) -> Any:
    out = cls.__new__(cls)  # no TorchGeo index needed: the readers read attributes only
    out.dataset = dataset
    out.bands = {k: list(v) for k, v in BANDS.items()}
    out.queries = [0, 1]
    return out


def test_select_bands_states_its_bands_and_forwards_the_rest() -> None:
    inner = Inner()
    sel = bandsel.SelectBands(inner, "B04,B03")
    assert isinstance(sel, DatasetWrapper) and sel.wrapped is inner
    assert declared_bands(sel) == {"s1": ["VV", "VH"], "s2": ["B04", "B03"]}
    assert class_names(sel) == ["a", "b"] and sample_ids(sel) == ["p0", "p1", "p2"]
    assert targets_of(sel) == (0, 1, 0) and footprints_of(sel) == "footprints of Inner"
    assert labelled_mask(sel).tolist() == [True, False, True]
    assert declared_sensors(sel) == ("s1", "s2") and single_sensor(sel) is None
    assert sel[2]["image_s2"][:, 0, 0].tolist() == [2.0, 2.0]


def test_ssl_samples_forward_classes_and_bands_but_no_per_sample_declarations() -> None:
    inner = Inner()
    ssl = SSLSamples(bandsel.SelectBands(inner, "B04"), "geo", ["s2", "s1"], indices=[2, 0])
    assert class_names(ssl) == ["a", "b"]  # the online probe's class names
    assert declared_bands(ssl) == {"s1": ["VV", "VH"], "s2": ["B04"]}
    assert bands_of_sensors(ssl, ["s2"]) == {"s2": ["B04"]}
    assert bandsel.band_names(ssl) == {"s1": ["VV", "VH"], "s2": ["B04"]}
    assert declared_sensors(ssl) == ("s1", "s2") and is_normalized(ssl) is False
    assert sample_ids(ssl) is None and targets_of(ssl) is None
    assert footprints_of(ssl) is None and labelled_mask(ssl) is None
    sample = ssl[0]
    assert set(sample) == {"image_s2", "image_s1", "sensor_mask", "index"}
    assert sample["image_s2"].shape == (1, 8, 8) and float(sample["image_s2"].max()) == 2.0
    # the dataset's mask is in its own order (s1 present, s2 absent): reordered to (s2, s1)
    assert sample["sensor_mask"].tolist() == [0.0, 1.0]


def test_ssl_samples_zero_fill_a_missing_sensor_in_partial_fusion() -> None:
    lone = Inner(drop_s1=True)
    ssl = SSLSamples(lone, "partial-fusion", ["s1", "s2"], channels={"s1": 2, "s2": 3},
                     patch_size=4)
    sample = ssl[1]
    assert sample["image_s1"].shape == (2, 4, 4) and float(sample["image_s1"].abs().sum()) == 0
    assert sample["sensor_mask"].tolist() == [0.0, 0.0]  # s1 missing; s2 flagged 0 by the data
    with pytest.raises(DataError, match="has no 'image_s1'"):
        SSLSamples(lone, "fusion", ["s1", "s2"])[0]
    aug = SSLSamples(Inner(), "aug", ["s2"])[0]
    assert set(aug) == {"image_s2", "sensor_mask", "index"} and aug["sensor_mask"].tolist() == [0.0]


def test_geo_samples_state_bands_and_no_per_sample_declarations() -> None:
    geo = _geo_samples(GeoSamples, PlainGeo())
    assert declared_bands(geo) == BANDS and class_names(geo) == ["forest", "water"]
    assert declared_sensors(geo) == ("s1", "s2") and single_sensor(geo) is None
    assert sample_ids(geo) is None and footprints_of(geo) is None and targets_of(geo) is None


def test_a_dataset_that_is_also_a_wrapper_declares_its_own() -> None:
    """The online probe on SEN12MS geo chips: the class names of ``SEN12MSGeoChips`` (a
    ``GeosslDataset`` and a ``GeoSamples``) reach the data module through ``SSLSamples``."""
    both = _geo_samples(Both, PlainGeo())
    both.classes = ["Forest", "Shrubland"]
    assert class_names(both) == ["Forest", "Shrubland"]
    ssl = SSLSamples(both, "geo", ["s1", "s2"])
    assert class_names(ssl) == ["Forest", "Shrubland"]
    assert declared_bands(ssl) == BANDS and declared_sensors(ssl) == ("s1", "s2")
    assert sample_ids(ssl) is None and single_sensor(both) is None


def test_paired_view_states_its_sensors() -> None:
    inner = Inner()
    view = PairedView(inner, "geo", ["s2", "s1"])
    assert declared_sensors(view) == ("s2", "s1") and view.source_sensors == ["s1", "s2"]
    assert class_names(view) == ["a", "b"] and sample_ids(view) == ["p0", "p1", "p2"]
    assert view[0]["sensor_mask"].tolist() == [0.0, 1.0]


def test_labelled_chips_and_relabelled_state_their_own_classes() -> None:
    inner = Inner()
    demo = LabelledChips(inner, [1, 0, -1])
    assert class_names(demo) is None and sample_ids(demo) is None
    assert declared_bands(demo) == BANDS and int(demo[0]["label"]) == 1
    task = Relabelled(inner, {0: 1, 2: 0}, ["other", "forest"])
    assert class_names(task) == ["other", "forest"] and targets_of(task) is None
    assert labelled_mask(task) is None and sample_ids(task) == ["p0", "p1", "p2"]
    assert int(task[0]["label"]) == 1


def test_plain_datasets_are_read_by_name() -> None:
    class Plain:
        ids = (1, 2)
        classes = ("c",)
        normalized = True

    assert sample_ids(Plain()) == ["1", "2"] and class_names(Plain()) == ["c"]
    assert declared_bands(Plain()) is None and footprints_of(Plain()) is None
    assert is_normalized(Plain()) is True and declared_sensors(Plain()) == ()
    assert targets_of(Plain()) is None and labelled_mask(Plain()) is None
    concat = ConcatDataset([Inner(), Inner()])
    assert class_names(concat) is None  # a ConcatDataset is read by name: it has no classes
    assert bandsel.band_names(concat) == BANDS  # its first part names the bands
    assert single_sensor(Inner) is None and declared_sensors(Inner) == ("s1", "s2")


def test_unregistered_subclass_without_sensors_reads_as_declaring_none() -> None:
    """``sensors`` has no class default (the registry refuses a class without it); a subclass
    handed to the library without registering reads as declaring none, not a crash."""
    from geossl.datasets.base import GeosslDataset
    from geossl.datasets.protocol import declared_sensors, single_sensor

    class Mine(GeosslDataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"image": torch.zeros(1, 2, 2)}

    assert declared_sensors(Mine()) == () and single_sensor(Mine) is None


def test_partial_fusion_zero_fill_of_numpy_images() -> None:
    """Partial fusion zero-fills a missing sensor like the present one, also when a dataset
    returns numpy images."""
    from geossl.data.pairs import select_keys

    sample = {"image_s2": np.ones((3, 4, 4), dtype=np.float32)}
    out = select_keys(sample, "partial-fusion", ["s1", "s2"], channels={"s1": 2, "s2": 3})
    assert out["image_s1"].shape == (2, 4, 4) and not out["image_s1"].any()
    assert out["image_s1"].dtype == torch.float32


def test_ssl_samples_name_the_sample_and_the_second_date_when_a_key_lacks() -> None:
    """A key of the mode that a sample lacks: the message names the sample (its position in the
    dataset) and, for ``temporal``, the missing second date (a ConfigError: the dataset has no
    dates to pair, not a damaged sample)."""
    from geossl.core.errors import ConfigError

    with pytest.raises(DataError, match=r"^sample 2 has no 'image_s1' \(has image_s2\)"):
        SSLSamples(Inner(drop_s1=True), "fusion", ["s1", "s2"])[2]
    with pytest.raises(ConfigError, match=r"temporal pairing needs a second date "
                                          r"\('image_s2_t2'\) but Inner gives image_s2"):
        SSLSamples(Inner(drop_s1=True), "temporal", ["s2"])[0]
