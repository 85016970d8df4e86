"""geossl.core.compat on the installed TorchGeo (CI runs this file on 0.8.1 and on 0.10.x)."""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import pytest
import torch
import torchgeo
from rasterio.crs import CRS
from torch.utils.data import DataLoader

from geossl.core import compat

NEW_API = importlib.util.find_spec("torchgeo.tasks") is not None


def test_version_parsed() -> None:
    assert compat.TORCHGEO_VERSION[:2] == tuple(int(p) for p in torchgeo.__version__.split(".")[:2])
    assert compat.HAS_TASKS_MODULE == NEW_API
    # the range pyproject.toml declares (and CI tests both ends of)
    assert (0, 8, 1) <= compat.TORCHGEO_VERSION < (0, 11)


def test_stack_samples_keeps_georeference() -> None:
    crs = CRS.from_epsg(32633)
    samples = [{"image": torch.full((2, 4, 4), float(i)), "crs": crs, "id": f"chip_{i}",
                "bounds": (slice(0.0, 40.0), slice(0.0, 40.0), slice(None)),
                "label": torch.tensor(i)} for i in range(3)]
    batch = compat.stack_samples(samples)
    assert batch["image"].shape == (3, 2, 4, 4)
    assert batch["image"][:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert batch["label"].tolist() == [0, 1, 2]
    assert batch["crs"] == [crs] * 3 and batch["id"] == ["chip_0", "chip_1", "chip_2"]
    assert batch["bounds"][1][0] == slice(0.0, 40.0)
    # tensors of different shapes cannot stack: kept as a list, not an error
    ragged = compat.stack_samples([{"x": torch.zeros(2)}, {"x": torch.zeros(3)}])
    assert [t.shape[0] for t in ragged["x"]] == [2, 3]
    assert compat.stack_samples([]) == {}
    # as a DataLoader collate_fn
    loader = DataLoader(samples, batch_size=2, collate_fn=compat.stack_samples)
    assert [b["image"].shape[0] for b in loader] == [2, 1]


def test_torchgeo_stack_samples_difference() -> None:
    """The reason compat.stack_samples exists: 0.10's raises on non-tensor values."""
    from torchgeo.datasets import stack_samples

    samples = [{"image": torch.zeros(1, 2, 2), "id": "a"}, {"image": torch.ones(1, 2, 2),
                                                           "id": "b"}]
    if compat.TORCHGEO_VERSION >= (0, 10):
        with pytest.raises(TypeError):
            stack_samples(samples)
    else:
        assert stack_samples(samples)["id"] == ["a", "b"]
    assert compat.stack_samples(samples)["id"] == ["a", "b"]


@pytest.mark.parametrize("kind", ["classification", "segmentation", "simclr", "moco", "byol"])
def test_task_names(kind: str) -> None:
    names = compat.task_names(kind)  # type: ignore[arg-type]
    if NEW_API:
        assert len(names) == 2 and names[0].startswith("torchgeo.tasks.")
        assert names[1].startswith("torchgeo.trainers.") and names[1].endswith("Task")
        # the old name is a deprecated subclass of the new one
        assert issubclass(compat.resolve(names[1]), compat.resolve(names[0]))
    else:
        assert names == [f"torchgeo.trainers.{names[0].rsplit('.', 1)[1]}"]
        assert names[0].endswith("Task")
    assert compat.task_class(kind) is compat.resolve(names[0])  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        compat.task_names("detection")  # type: ignore[arg-type]


def test_preferred_task_builds_without_deprecation() -> None:
    cls = compat.task_class("classification")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        task = cls(model="resnet18", in_channels=4, num_classes=3)
    with torch.no_grad():
        assert task(torch.zeros(2, 4, 32, 32)).shape == (2, 3)


def test_samplers_are_the_preferred_ones() -> None:
    from torchgeo.datasets import GeoDataset

    samplers = importlib.import_module("torchgeo.samplers")
    if hasattr(samplers, "RandomPatchSampler"):
        want = ("RandomPatchSampler", "GriddedPatchSampler")
    else:
        want = ("RandomGeoSampler", "GridGeoSampler")

    class Box(GeoDataset):  # a 100 x 100 px footprint at 10 m, no data needed to sample
        def __init__(self) -> None:
            import geopandas as gpd
            import pandas as pd
            import shapely

            super().__init__()
            t = pd.Interval(pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02"))
            self.index = gpd.GeoDataFrame(
                index=pd.IntervalIndex([t], name="datetime"),
                geometry=[shapely.box(0, 0, 1000, 1000)], crs="EPSG:32633")
            self._res = (10.0, 10.0)

        @property
        def res(self) -> tuple[float, float]:
            return self._res

        @res.setter
        def res(self, value: tuple[float, float]) -> None:
            self._res = value

        def __getitem__(self, query):  # type: ignore[no-untyped-def]
            return {}

    ds = Box()
    rnd = compat.random_sampler(ds, 10, length=5, seed=0)
    grid = compat.grid_sampler(ds, 25, stride=25)
    assert (type(rnd).__name__, type(grid).__name__) == want
    queries = list(rnd)
    assert len(queries) == 5
    for x, y, *_ in queries:  # 10 px windows inside the footprint
        assert x.stop - x.start == pytest.approx(100) and y.stop - y.start == pytest.approx(100)
        assert 0 <= x.start and x.stop <= 1000 and 0 <= y.start and y.stop <= 1000
    assert queries == list(compat.random_sampler(ds, 10, length=5, seed=0))  # seeded
    assert len(list(grid)) == 16  # 4 x 4 windows of 250 m
