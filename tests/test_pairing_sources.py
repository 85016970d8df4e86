"""Every pairing mode over every source the pairing issue names, through TorchGeo samplers.

SEN12MS (its TorchGeo raster datasets, one per sensor), BigEarthNet S1 + S2 (TorchGeo raster
datasets over its band files, and its pre-chipped patch dataset) and user chip indexes (the
GeoTIFF chips of a chip index as TorchGeo raster datasets, and :class:`PairedChips`), each read
through the random and grid samplers this TorchGeo prefers (``RandomGeoSampler`` and
``GridGeoSampler`` on 0.8, ``RandomPatchSampler`` and ``GriddedPatchSampler`` on 0.10, via
:mod:`geossl.core.compat`) and ``PreChippedGeoSampler`` (or a plain loader for pre-chipped patch
datasets), for ``geo``, ``aug``, ``fusion``, ``partial-fusion``
and ``temporal``. Sources with a single date per place refuse ``temporal`` with a one-line
error. Co-registration: SEN12MS partners are the same patch id; chip-index S1 (20 m, off the S2
grid by 3 m) and S2 views both match the map pattern the generator wrote, at zero shift, for
every sampler. Sensors that do not overlap are a one-line error (exit status 2 from the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset
from torchgeo.samplers import GridGeoSampler, PreChippedGeoSampler

from geossl.core import pairing as C
from geossl.core.compat import grid_sampler, random_sampler, stack_samples
from geossl.core.errors import DataError
from geossl.data import pairs as V
from geossl.datasets import multisensor as M

MODES = C.PAIRING_MODES
SAMPLERS = ("random", "grid", "prechipped")


def _sampler(ds: Any, kind: str, size: int) -> Any:
    if kind == "random":
        return random_sampler(ds, size, length=4, seed=0)
    if kind == "grid":
        return grid_sampler(ds, size, stride=size)
    return PreChippedGeoSampler(ds, shuffle=False)


def _check_batch(batch: dict[str, Any], mode: str, sensors: list[str],
                 channels: dict[str, int], size: int | None) -> None:
    keys = C.pairing_keys(mode, sensors)
    hw = None
    for key in keys:
        x = batch[key]
        sensor = key.removeprefix("image_").removesuffix("_t2")
        assert x.ndim == 4 and x.shape[1] == channels[sensor], key
        hw = x.shape[-2:] if hw is None else hw
        assert x.shape[-2:] == hw, "views are not on one grid"
        assert x.abs().sum() > 0, key
    if size is not None:
        assert hw == (size, size)
    mask = batch["sensor_mask"]
    assert mask.shape == (batch[keys[0]].shape[0], len(sensors))
    assert mask.eq(1).all()  # both sensors read at every query


def _loader(view: V.PairedView, sampler: Any) -> dict[str, Any]:
    return next(iter(DataLoader(view, sampler=sampler, batch_size=2, collate_fn=stack_samples)))


# ---- SEN12MS ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sen12ms(tmp_path_factory: pytest.TempPathFactory) -> M.MultiSensorDataset:
    from geossl.datasets.sen12ms import SEN12MS
    from tests.data.sen12ms.data import generate

    root = tmp_path_factory.mktemp("sen12ms")
    generate(root, scenes={"ROIs1158_spring": [1]}, patches=4, size=32)
    return M.MultiSensorDataset({s: SEN12MS(root, sensor=s) for s in ("s1", "s2", "lc")},
                                reference="s2")


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("mode", [m for m in MODES if m != "temporal"])
def test_sen12ms_every_mode_and_sampler(sen12ms: M.MultiSensorDataset, mode: str,
                                        kind: str) -> None:
    sensors = ["s1", "s2"] if mode != "aug" else ["s2"]
    view = V.PairedView(sen12ms, mode, sensors)
    batch = _loader(view, _sampler(sen12ms, kind, 16))
    # pre-chipped: whole 32 px patches, each S2 patch with its own S1 patch (not with a
    # half-overlapping neighbour of the same date)
    _check_batch(batch, mode, sensors, {"s1": 2, "s2": 13}, 32 if kind == "prechipped" else 16)
    # the land cover comes along as the mask, on the same grid
    assert batch["mask"].shape[-2:] == batch[f"image_{sensors[0]}"].shape[-2:]


def test_sen12ms_partner_is_the_same_patch(sen12ms: M.MultiSensorDataset) -> None:
    idx = sen12ms.index
    ids = {s: sen12ms.datasets[s].index["id"].to_numpy() for s in ("s1", "s2", "lc")}
    s2 = ids["s2"][idx["_row_s2"].to_numpy()]
    assert len(idx) == len(ids["s2"])  # one row per S2 patch
    for s in ("s1", "lc"):
        assert (ids[s][idx[f"_row_{s}"].to_numpy()] == s2).all()


def test_sen12ms_temporal_is_refused(sen12ms: M.MultiSensorDataset) -> None:
    from geossl.datasets.sen12ms import SEN12MS

    s1 = sen12ms.datasets["s1"]
    assert isinstance(s1, SEN12MS)
    with pytest.raises(DataError, match="two dates of s1") as err:
        M.MultiSensorDataset({"s1": s1}, temporal="s1")
    assert "\n" not in str(err.value)


# ---- BigEarthNet S1 + S2 -----------------------------------------------------------------------
class _BENS2(RasterDataset):
    """BigEarthNet S2 band files as a TorchGeo raster dataset (10 m bands)."""

    filename_glob = "*_B02.tif"
    filename_regex = r"^(?P<patch>.+)_(?P<band>B\d[\dA])\.tif$"
    separate_files = True
    all_bands = ("B02", "B03", "B04", "B08")


class _BENS1(RasterDataset):
    """BigEarthNet S1 band files as a TorchGeo raster dataset."""

    filename_glob = "*_VV.tif"
    filename_regex = r"^(?P<patch>.+)_(?P<band>V[VH])\.tif$"
    separate_files = True
    all_bands = ("VV", "VH")


@pytest.fixture(scope="module")
def bigearthnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.data.bigearthnet.data import generate_v2

    root = tmp_path_factory.mktemp("ben")
    generate_v2(root, n=4)
    return root


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("mode", [m for m in MODES if m != "temporal"])
def test_bigearthnet_rasters_every_mode_and_sampler(bigearthnet: Path, mode: str,
                                                    kind: str) -> None:
    s2 = _BENS2(bigearthnet / "BigEarthNet-S2")
    s1 = _BENS1(bigearthnet / "BigEarthNet-S1")
    ds = M.MultiSensorDataset({"s1": s1, "s2": s2}, reference="s2")
    assert len(ds) >= 4  # every S2 patch has its S1 partner (other dates: spatial pairing)
    sensors = ["s1", "s2"] if mode != "aug" else ["s2"]
    batch = _loader(V.PairedView(ds, mode, sensors), _sampler(ds, kind, 60))
    _check_batch(batch, mode, sensors, {"s1": 2, "s2": 4}, 120 if kind == "prechipped" else 60)


@pytest.mark.parametrize("mode", MODES)
def test_bigearthnet_patches_every_mode(bigearthnet: Path, mode: str) -> None:
    from geossl.datasets.bigearthnet import BigEarthNet

    sensors = ["s1", "s2"] if mode != "aug" else ["s2"]
    base = BigEarthNet(bigearthnet, sensors=("s1", "s2"))
    view = V.PairedView(base, mode, sensors)
    if mode == "temporal":  # one date per patch: a one-line error naming the missing key
        with pytest.raises(DataError, match="image_s1_t2"):
            view[0]
        return
    batch = next(iter(DataLoader(view, batch_size=2, collate_fn=stack_samples)))
    _check_batch(batch, mode, sensors, {"s1": 2, "s2": 12}, 120)
    assert batch["label"].shape == (2, 19)
    if mode == "partial-fusion":  # an S2-only dataset: S1 zero-filled and flagged
        lone = V.PairedView(BigEarthNet(bigearthnet, sensors=("s2",)), mode, ["s1", "s2"],
                            channels={"s1": 2})[0]
        assert lone["sensor_mask"].tolist() == [0.0, 1.0] and not lone["image_s1"].any()


# ---- user chip indexes -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.test_pairing import _index

    root = tmp_path_factory.mktemp("chips")
    s2 = _index(root, "s2", 10.0, 32, 4, ["2020-06-01", "2020-08-01"])
    s1 = _index(root, "s1", 20.0, 16, 2, ["2020-06-03"], jitter=3.0)
    return {"root": root, "s1": s1, "s2": s2}


class _Chips(RasterDataset):
    """The GeoTIFF chips of a chip index as a TorchGeo raster dataset (dates from folders)."""

    filename_glob = "chip*.tif"
    filename_regex = r"^chip(?P<id>\d+)\.tif$"


def _chip_rasters(folder: Path) -> RasterDataset:
    import pandas as pd

    ds = _Chips(folder)
    # one folder per date (<sensor>/<YYYY-MM-DD>/chipK.tif): give the index those dates
    days = [pd.Timestamp(Path(p).parent.name) for p in ds.index["filepath"]]
    ds.index.index = pd.IntervalIndex.from_arrays(
        days, [d + pd.Timedelta(hours=1) for d in days], closed="both", name="datetime")
    return ds


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("mode", MODES)
def test_chip_rasters_every_mode_and_sampler(chips: dict[str, Any], mode: str,
                                             kind: str) -> None:
    s2 = _chip_rasters(chips["root"] / "s2")
    s1 = _chip_rasters(chips["root"] / "s1")
    if mode == "temporal":
        ds = M.MultiSensorDataset({"s2": s2}, temporal="s2")
        sensors = ["s2"]
    else:
        ds = M.MultiSensorDataset({"s1": s1, "s2": s2}, reference="s2")
        sensors = ["s1", "s2"] if mode != "aug" else ["s2"]
    batch = _loader(V.PairedView(ds, mode, sensors), _sampler(ds, kind, 16))
    _check_batch(batch, mode, sensors, {"s1": 2, "s2": 4}, 32 if kind == "prechipped" else 16)
    if mode == "temporal":  # the same place at its two dates, co-registered
        a, b = batch["image_s2"], batch["image_s2_t2"]
        assert torch.allclose(a, b)  # the generator writes the same pattern at every date


def _chip_field(query: Any, n: int, margin: int) -> np.ndarray:
    """What ``tests.test_pairing._chip`` wrote, at the 10 m pixel centres of ``query`` +- margin."""
    cols, rows = np.meshgrid(np.arange(-margin, n + margin) + 0.5,
                             np.arange(-margin, n + margin) + 0.5)
    x, y = query[0].start + cols * 10.0, query[1].stop - rows * 10.0
    x0 = 500_000.0 + np.floor((x - 500_000.0) / 1000.0) * 1000.0  # chips lie 1000 m apart
    return np.asarray(np.sin(x / 37.0) * np.cos(y / 53.0)
                      + ((x > x0 + 100) & (y < 5_000_000.0 - 120)))


def _best_shift(image: np.ndarray, field: np.ndarray, m: int) -> tuple[tuple[int, int], float]:
    """(dy, dx) of ``field`` that best matches ``image`` (mean absolute error), and that error."""
    n = image.shape[0]
    err = {(dy, dx): float(np.abs(image - field[m + dy:m + dy + n, m + dx:m + dx + n]).mean())
           for dy in range(-m, m + 1) for dx in range(-m, m + 1)}
    best = min(err, key=err.__getitem__)
    return best, err[best]


@pytest.mark.parametrize("kind", SAMPLERS)
def test_chip_rasters_coregistered(chips: dict[str, Any], kind: str) -> None:
    """S1 (20 m, 3 m off the S2 grid) and S2 (10 m) read at a query both match the map there."""
    s2 = _chip_rasters(chips["root"] / "s2")
    s1 = _chip_rasters(chips["root"] / "s1")
    ds = M.MultiSensorDataset({"s1": s1, "s2": s2}, reference="s2")
    view = V.PairedView(ds, "fusion", ["s1", "s2"])
    # a grid inside each footprint: TorchGeo 0.10's GriddedPatchSampler centres one grid on the
    # union of all footprints (chips 1 km apart here), whose windows straddle chip edges and
    # fall between S2 pixels; GridGeoSampler (deprecated there, still shipped) lays one grid per
    # footprint, on the S2 pixels
    sampler = GridGeoSampler(ds, size=16, stride=16) if kind == "grid" else _sampler(ds, kind, 16)
    for query in list(sampler)[:3]:
        sample = view[query]
        n = sample["image_s2"].shape[-1]
        field = _chip_field(query, n, 3)
        for key, tol in (("image_s2", 0.05), ("image_s1", 0.1)):  # S1: coarser, resampled
            shift, err = _best_shift(sample[key][0].numpy(), field, 3)
            assert shift == (0, 0) and err < tol, (kind, key, shift, err)


@pytest.mark.parametrize("mode", MODES)
def test_paired_chips_every_mode(chips: dict[str, Any], mode: str) -> None:
    if mode == "temporal":
        ds = M.PairedChips({"s2": chips["s2"]}, temporal="s2")
        sensors = ["s2"]
    else:
        ds = M.PairedChips({"s1": chips["s1"], "s2": chips["s2"]}, reference="s2",
                           require="reference" if mode == "partial-fusion" else "all")
        sensors = ["s1", "s2"] if mode != "aug" else ["s2"]
    view = V.PairedView(ds, mode, sensors, channels=ds.channels)
    batch = next(iter(DataLoader(view, batch_size=2, collate_fn=stack_samples)))
    _check_batch(batch, mode, sensors, {"s1": 2, "s2": 4}, 32)
    assert len(batch["id"]) == 2 and all(i.startswith("s2_") for i in batch["id"])
    assert np.isfinite(batch[f"image_{sensors[0]}"].numpy()).all()


# ---- bad input: sensors that do not overlap ---------------------------------------------------
def test_sensors_without_overlap_one_line_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """S1 chips 50 km from every S2 chip: a one-line DataError, exit status 2 from the CLI."""
    import pandas as pd

    from geossl.cli import main
    from geossl.tiling.chip_index import make_index, write_index
    from tests.test_pairing import _index

    s2 = _index(tmp_path, "s2", 10.0, 32, 4, ["2020-06-01"])
    s1 = _index(tmp_path, "s1", 20.0, 16, 2, ["2020-06-03"], jitter=50_000.0)
    with pytest.raises(DataError, match="do not overlap") as err:
        M.PairedChips({"s1": s1, "s2": s2}, reference="s2", roots={"s1": tmp_path,
                                                                    "s2": tmp_path})
    assert "\n" not in str(err.value)
    write_index(make_index(pd.concat([s1, s2], ignore_index=True).drop(columns="geometry")),
                tmp_path / "index.parquet")
    rc = main(["pretrain", "--data", "chips", "--root", str(tmp_path), "--sensors", "s1,s2",
               "--pairing", "fusion", "--backbone", "resnet18", "--batch-size", "2",
               "--workers", "0", "--accelerator", "cpu", "--max-steps", "1", "--out",
               str(tmp_path / "run")])
    text = capsys.readouterr().err.strip()
    assert rc == 2 and "do not overlap" in text, text
    assert len(text.splitlines()) == 1 and text.startswith("geossl pretrain: error:")
