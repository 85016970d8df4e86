from __future__ import annotations

import glob
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject
from torch.utils.data import DataLoader
from torchgeo.samplers import GridGeoSampler, PreChippedGeoSampler, RandomGeoSampler

from geossl.core import pairing as C
from geossl.core.compat import grid_sampler, random_sampler, stack_samples
from geossl.core.errors import ConfigError, DataError
from geossl.data import pairs as V
from geossl.datasets import multisensor as M
from geossl.datasets.ssl4eo import SSL4EOS12
from tests.conftest import real_path
from tests.data.ssl4eo import data as fake

SIZE = 48


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake.generate(tmp_path_factory.mktemp("ssl4eo"), size=SIZE)


def _shift(a: np.ndarray, b: np.ndarray, m: int = 6) -> tuple[int, int, float]:
    """(dy, dx) maximising the correlation of a[i + dy, j + dx] with b[i, j]."""
    a = (a - a.mean()) / (a.std() + 1e-9)
    b = (b - b.mean()) / (b.std() + 1e-9)
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    best = (-np.inf, 0, 0)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            c = float((a[m + dy:h - m + dy, m + dx:w - m + dx] * b[m:h - m, m:w - m]).mean())
            best = max(best, (c, dy, dx))
    return best[1], best[2], best[0]


def _edges(x: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient((x - x.mean()) / (x.std() + 1e-9))
    return np.hypot(gx, gy)


# ---- contract --------------------------------------------------------------------------------
def test_check_pairing_and_keys() -> None:
    assert C.PAIRING_MODES == ("geo", "aug", "fusion", "partial-fusion", "temporal")
    assert C.pairing_keys("geo", ["s1", "s2"]) == ["image_s1", "image_s2"]
    assert C.pairing_keys("aug", ["s2"]) == ["image_s2"]
    assert C.pairing_keys("aug", ["s2", "s1"]) == ["image_s2"]
    assert C.pairing_keys("fusion", ["s1", "s2"]) == ["image_s1", "image_s2"]
    assert C.pairing_keys("partial-fusion", ["s1", "s2"]) == ["image_s1", "image_s2"]
    assert C.pairing_keys("temporal", ["s1"]) == ["image_s1", "image_s1_t2"]
    for mode, sensors, msg in [("geo", ["s1"], "at least 2"), ("fusion", ["s2"], "at least 2"),
                               ("partial-fusion", [], "at least 2"), ("swap", ["s1"], "unknown"),
                               ("aug", ["S-2"], "invalid sensor"), ("geo", ["s1", "s1"], "twice")]:
        with pytest.raises(ConfigError, match=msg):
            C.check_pairing(mode, sensors)
    with pytest.raises(ConfigError, match="needs >= 2 dates"):
        C.check_pairing("temporal", ["s1"], dates=1)
    with pytest.raises(ConfigError, match="unknown sensor 'lidar'"):
        C.check_pairing("geo", ["s1", "lidar"], available=["s1", "s2"])


def test_apply_sensor_mask_pure() -> None:
    x = {"s1": torch.ones(2, 4, 4), "s2": torch.full((13, 4, 4), 2.0)}
    out = C.apply_sensor_mask(x, torch.tensor([1.0, 0.0]))
    assert torch.equal(out["s1"], x["s1"]) and not out["s2"].any()
    assert x["s2"].all()  # inputs untouched
    batch = {"s1": torch.ones(3, 2, 4, 4), "s2": torch.ones(3, 13, 4, 4)}
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    out = C.apply_sensor_mask(batch, mask)
    assert out["s1"][:, 0, 0, 0].tolist() == [1, 0, 1]
    assert out["s2"][:, 0, 0, 0].tolist() == [0, 1, 1]
    with pytest.raises(ConfigError, match="3 entries for 2 sensors"):
        C.apply_sensor_mask(x, torch.ones(3))


# ---- SSL4EO-S12 raster datasets -----------------------------------------------------------------
def test_ssl4eo_dataset(root: Path) -> None:
    s2 = SSL4EOS12(root, "s2c")
    assert len(s2) == 4  # 2 locations x 2 dates
    assert s2.reference_band == "B2"
    assert set(s2.index["location"]) == {"0000200", "0000201"}
    assert s2.index.index.left.min() == pd.Timestamp("2020-06-04 05:46:39")
    x, y, t = s2.bounds
    sample = s2[x, y, slice(pd.Timestamp("2020-06-04 05:46:39"),
                            pd.Timestamp("2020-06-04 05:46:39.5"))]
    assert sample["image"].shape[0] == 13
    assert SSL4EOS12(root, "s2a")[x, y, t]["image"].shape[0] == 12
    s1 = SSL4EOS12(root, "s1", locations=["0000201"])
    assert len(s1) == 2 and s1[s1.bounds]["image"].shape[0] == 2
    with pytest.raises(ConfigError, match="unknown SSL4EO-S12 sensor"):
        SSL4EOS12(root, "s3")
    with pytest.raises(ConfigError, match="unknown s2a band"):
        SSL4EOS12(root, "s2a", bands=["B10"])


def test_ssl4eo_missing_band(tmp_path: Path) -> None:
    fake.generate(tmp_path, locations=("0000200",), products=("s2a",), size=12)
    victim = sorted(glob.glob(str(tmp_path / "s2a/*/*/B5.tif")))[0]
    Path(victim).unlink()
    with pytest.raises(DataError, match=r"missing band file.*B5"):
        SSL4EOS12(tmp_path, "s2a")
    with pytest.raises(DataError, match="no SSL4EO-S12 s1 folder"):
        SSL4EOS12(tmp_path, "s1")


# ---- multi-sensor geo dataset --------------------------------------------------------------------
@pytest.fixture(scope="module")
def multi(root: Path) -> M.MultiSensorDataset:
    return M.MultiSensorDataset({"s1": SSL4EOS12(root, "s1"), "s2": SSL4EOS12(root, "s2c")},
                                reference="s2")


@pytest.mark.parametrize("kind", ["random", "grid", "prechipped", "preferred-random",
                                  "preferred-grid"])
def test_multisensor_samplers(multi: M.MultiSensorDataset, kind: str) -> None:
    # the 0.8 samplers (deprecated aliases on TorchGeo 0.10, still supported) and the ones
    # this TorchGeo prefers (0.10: RandomPatchSampler/GriddedPatchSampler, (x, y) queries)
    size = 16 if kind == "preferred-random" else 32  # 0.10 erodes the footprint by size * 0.7
    sampler = {
        "random": lambda: RandomGeoSampler(multi, size=size, length=3,
                                           generator=torch.Generator().manual_seed(0)),
        "grid": lambda: GridGeoSampler(multi, size=size, stride=16),
        "prechipped": lambda: PreChippedGeoSampler(multi),
        "preferred-random": lambda: random_sampler(multi, size, length=3, seed=0),
        "preferred-grid": lambda: grid_sampler(multi, size, stride=16),
    }[kind]()
    loader = DataLoader(multi, sampler=sampler, batch_size=2, collate_fn=stack_samples)
    batch = next(iter(loader))
    s1, s2 = batch["image_s1"], batch["image_s2"]
    assert s1.shape[1] == 2 and s2.shape[1] == 13
    assert s1.shape[-2:] == s2.shape[-2:]
    if kind != "prechipped":
        assert s2.shape[-2:] == (size, size)
    # the georeference stays beside the tensors on every TorchGeo release
    assert len(batch["crs"]) == 2 and batch["crs"][0] == multi.crs
    x, y, _ = batch["bounds"][0]
    h, w = s2.shape[-2:]  # a pre-chipped query is a footprint: a fraction of a pixel more
    assert abs(x.stop - x.start - w * multi.res[0]) < multi.res[0]
    assert abs(y.stop - y.start - h * multi.res[1]) < multi.res[1]
    assert batch["sensor_mask"].shape == (2, 2) and batch["sensor_mask"].eq(1).all()
    assert s1.abs().sum() > 0 and s2.abs().sum() > 0


def test_multisensor_coregistered(multi: M.MultiSensorDataset, root: Path) -> None:
    sample = multi[next(iter(PreChippedGeoSampler(multi)))]
    # every band sees the same ground pattern: co-registered views correlate best at (0, 0)
    vv, b4, b11 = sample["image_s1"][0].numpy(), sample["image_s2"][3].numpy(), \
        sample["image_s2"][11].numpy()
    dy, dx, corr = _shift(vv, b4)
    assert (abs(dy), abs(dx)) <= (1, 1) and corr > 0.9
    assert _shift(b11, b4)[:2] == (0, 0)  # a 20 m band resampled onto the 10 m grid
    # the raw S1 grid is a few pixels off the S2 grid: alignment is what makes them match
    with rasterio.open(sorted(glob.glob(str(root / "s1/0000200/*/VV.tif")))[0]) as src:
        raw = src.read(1)
    with rasterio.open(sorted(glob.glob(str(root / "s2c/0000200/*/B4.tif")))[0]) as src:
        raw_b4 = src.read(1).astype(np.float32)
    rdy, rdx, _ = _shift(raw, raw_b4)
    assert abs(rdy) + abs(rdx) >= 3
    # footprint: the index row is the intersection of both sensors' footprints
    row = multi.index.iloc[0]
    s1_box = multi.datasets["s1"].index.geometry.iloc[row["_row_s1"]]
    s2_box = multi.datasets["s2"].index.geometry.iloc[row["_row_s2"]]
    assert row.geometry.normalize().equals_exact(s1_box.intersection(s2_box).normalize(), 1e-12)


def test_multisensor_dates_and_temporal(root: Path) -> None:
    s1, s2 = SSL4EOS12(root, "s1"), SSL4EOS12(root, "s2a")
    any_ = M.MultiSensorDataset({"s1": s1, "s2": s2})
    all_ = M.MultiSensorDataset({"s1": s1, "s2": s2}, dates="all")
    assert len(any_) == 4 and len(all_) == 8
    # closest S1 date to each S2 date (June S2 -> June S1, August S2 -> September S1)
    gaps = (any_.index["_l_s1"] - any_.index["_l_s2"]).abs()
    assert (gaps < pd.Timedelta("30D")).all()
    tight = M.MultiSensorDataset({"s1": s1, "s2": s2}, time_tolerance="5D")
    assert len(tight) == 2
    with pytest.raises(DataError, match="time tolerance"):
        M.MultiSensorDataset({"s1": s1, "s2": s2}, time_tolerance="1h")
    tmp = M.MultiSensorDataset({"s1": s1, "s2": s2}, temporal="s1")
    assert len(tmp) == 2  # the first S1 date of each location, paired with the next
    assert (tmp.index["_l_s1_t2"] > tmp.index["_l_s1"]).all()
    sample = tmp[next(iter(GridGeoSampler(tmp, size=32, stride=32)))]
    assert set(C.pairing_keys("temporal", ["s1"])) <= set(sample)
    assert sample["image_s1_t2"].shape == sample["image_s1"].shape == (2, 32, 32)
    assert _shift(sample["image_s1"][0].numpy(), sample["image_s1_t2"][0].numpy())[:2] == (0, 0)
    one_date = M.MultiSensorDataset({"s1": SSL4EOS12(root, "s1", locations=["0000200"])})
    assert len(one_date) == 2
    with pytest.raises(DataError, match="two dates"):
        M.MultiSensorDataset({"s2": _single_date(root)}, temporal="s2")


def _single_date(root: Path) -> SSL4EOS12:
    ds = SSL4EOS12(root, "s2a", locations=["0000200"])
    ds.index = ds.index.iloc[:1]
    return ds


def test_multisensor_bad_inputs(root: Path) -> None:
    s1 = SSL4EOS12(root, "s1", locations=["0000201"])
    s2 = SSL4EOS12(root, "s2c", locations=["0000200"])
    with pytest.raises(DataError, match=r"s2 \(.*s2c\) and s1 \(.*s1\) have no spatial overlap"):
        M.MultiSensorDataset({"s1": s1, "s2": s2})
    with pytest.raises(ConfigError, match="unknown reference sensor 's3'"):
        M.MultiSensorDataset({"s1": s1, "s2": s2}, reference="s3")
    with pytest.raises(ConfigError, match="unknown temporal sensor"):
        M.MultiSensorDataset({"s1": s1}, temporal="s2")
    with pytest.raises(ConfigError, match="dates must be"):
        M.MultiSensorDataset({"s1": s1}, dates="some")


# ---- chip indexes --------------------------------------------------------------------------------
def _chip(path: Path, res: float, size: int, bands: int, x0: float, y0: float) -> None:
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    x, y = x0 + cols * res, y0 - rows * res
    f = np.sin(x / 37.0) * np.cos(y / 53.0) + ((x > x0 + 100) & (y < y0 - 120))
    arr = np.stack([f * (k + 1) for k in range(bands)]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands,
                       dtype="float32", crs="EPSG:32633", transform=from_origin(x0, y0, res, res)
                       ) as dst:
        dst.write(arr)


def _index(root: Path, sensor: str, res: float, size: int, bands: int,
           dates: list[str], n: int = 3, jitter: float = 0.0) -> gpd.GeoDataFrame:
    from geossl.tiling.chip_index import make_index

    rows = []
    for k in range(n):
        for d in dates:
            x0, y0 = 500_000.0 + k * 1000 + jitter, 5_000_000.0
            rel = f"{sensor}/{d}/chip{k}.tif"
            _chip(root / rel, res, size, bands, x0, y0)
            rows.append({"chip_id": f"{sensor}_{d}_{k}", "path": rel, "scene": "s",
                         "sensor": sensor, "datetime": d, "crs": "EPSG:32633", "res": res,
                         "row": 0, "col": 0, "height": size, "width": size,
                         "bands": ",".join(f"b{i}" for i in range(bands)), "valid_fraction": 1.0,
                         "minx": x0, "miny": y0 - size * res, "maxx": x0 + size * res,
                         "maxy": y0})
    gdf = make_index(rows)
    gdf.attrs["root"] = str(root)
    return gdf


def test_paired_chips(tmp_path: Path) -> None:
    s2 = _index(tmp_path, "s2", 10.0, 32, 4, ["2020-06-01", "2020-08-01"])
    s1 = _index(tmp_path, "s1", 20.0, 16, 2, ["2020-06-03"], jitter=3.0)
    ds = M.PairedChips({"s1": s1, "s2": s2}, reference="s2")
    assert len(ds) == 6
    sample = ds[0]
    assert sample["image_s2"].shape == (4, 32, 32) and sample["image_s1"].shape == (2, 32, 32)
    assert sample["sensor_mask"].tolist() == [1.0, 1.0]
    assert _shift(sample["image_s1"][0].numpy(), sample["image_s2"][0].numpy(), 4)[:2] == (0, 0)
    tmp = M.PairedChips({"s2": s2, "s1": s1}, temporal="s2")
    assert len(tmp) == 3 and tmp[0]["image_s2_t2"].shape == (4, 32, 32)
    assert tmp.ids[0].startswith("s2_2020-06-01")
    # partial fusion: keep S2 chips without S1, zero-filled and flagged
    lone = _index(tmp_path / "far", "s1", 20.0, 16, 2, ["2020-06-03"], n=1)
    part = M.PairedChips({"s1": lone, "s2": s2}, require="reference")
    masks = torch.stack([part[i]["sensor_mask"] for i in range(len(part))])
    assert masks[:, 1].eq(1).all() and masks[:, 0].sum() == 2  # chip 0 at both dates
    empty = next(i for i in range(len(part)) if part[i]["sensor_mask"][0] == 0)
    assert not part[empty]["image_s1"].any()
    far = _index(tmp_path / "far2", "s1", 20.0, 16, 2, ["2020-06-03"], n=1, jitter=50_000.0)
    with pytest.raises(DataError, match="do not overlap"):
        M.PairedChips({"s1": far, "s2": s2})
    with pytest.raises(ConfigError, match="unknown reference"):
        M.PairedChips({"s1": s1, "s2": s2}, reference="s9")


# ---- patch datasets ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", C.PAIRING_MODES)
def test_paired_view_sen12ms(tmp_path: Path, mode: str) -> None:
    from geossl.datasets.sen12ms import SEN12MSPatches
    from tests.data.sen12ms.data import generate

    generate(tmp_path, scenes={"ROIs1158_spring": [1]}, patches=2, size=16)
    sensors = ["s1", "s2"]
    base = SEN12MSPatches(tmp_path, sensors=sensors, label="igbp")
    if mode == "temporal":
        with pytest.raises(DataError, match="image_s1_t2"):
            V.PairedView(base, mode, sensors)[0]
        return
    sample = V.PairedView(base, mode, sensors)[0]
    for key in C.pairing_keys(mode, sensors):
        assert sample[key].shape[-2:] == (16, 16)
    assert sample["sensor_mask"].tolist() == [1.0, 1.0]
    assert "label" in sample and sample["id"] == "ROIs1158_spring_1_1"
    if mode == "partial-fusion":
        s2_only = SEN12MSPatches(tmp_path, sensors=["s2"], label=None)
        filled = V.PairedView(s2_only, mode, sensors, channels={"s1": 2})[0]
        assert filled["image_s1"].shape == (2, 16, 16) and not filled["image_s1"].any()
        assert filled["sensor_mask"].tolist() == [0.0, 1.0]


# ---- real SSL4EO-S12 location --------------------------------------------------------------------
@pytest.mark.real
def test_real_ssl4eo_coregistration() -> None:
    root = real_path("ssl4eo_s12")
    ds = M.MultiSensorDataset({"s1": SSL4EOS12(root, "s1"), "s2": SSL4EOS12(root, "s2c")},
                              reference="s2", dates="all")
    assert len(ds) == 4
    q = next(iter(PreChippedGeoSampler(ds)))
    sample = ds[q]
    x, y, _ = sample["bounds"]
    s1, s2 = sample["image_s1"].numpy(), sample["image_s2"].numpy()
    assert s1.shape[0] == 2 and s2.shape[0] == 13 and s1.shape[1:] == s2.shape[1:]
    # footprints: the sample covers the intersection of the native S1 and S2 footprints
    with rasterio.open(glob.glob(str(root / "s1/*/*/VV.tif"))[0]) as src:
        s1_bounds, s1_crs = src.bounds, src.crs
        native_vv = src.read(1)
        s1_transform = src.transform
    with rasterio.open(glob.glob(str(root / "s2c/*/*/B2.tif"))[0]) as src:
        s2_bounds = src.bounds
    rx, ry = ds.res
    assert abs(x.start - max(s1_bounds.left, s2_bounds.left)) < rx
    assert abs(x.stop - min(s1_bounds.right, s2_bounds.right)) < rx
    assert abs(y.start - max(s1_bounds.bottom, s2_bounds.bottom)) < ry
    assert abs(y.stop - min(s1_bounds.top, s2_bounds.top)) < ry
    assert s2.shape[1:] == (round((y.stop - y.start) / ry), round((x.stop - x.start) / rx))
    # co-registration: an independent reprojection of the native S1 VV onto the sample grid
    # (rasterio.warp.reproject) matches the paired S1 view within one pixel
    dst = np.zeros(s1.shape[1:], np.float32)
    reproject(native_vv, dst, src_transform=s1_transform, src_crs=s1_crs,
              dst_transform=from_origin(x.start, y.stop, rx, ry), dst_crs=ds.crs,
              resampling=Resampling.bilinear)
    dy, dx, corr = _shift(dst[4:-4, 4:-4], s1[0][4:-4, 4:-4], 4)
    assert abs(dy) <= 1 and abs(dx) <= 1 and corr > 0.8
    # and the S1 grid really moved: native S1 is several pixels off the sample grid
    ndy, ndx, _ = _shift(native_vv[:s1.shape[1], :s1.shape[2]], s1[0], 6)
    assert abs(ndy) + abs(ndx) >= 3
    # georeferenced centre pixel: same ground coordinate in S1 and S2 of the sample
    r, c = s2.shape[1] // 2, s2.shape[2] // 2
    lon, lat = x.start + (c + 0.5) * rx, y.stop - (r + 0.5) * ry
    nr, nc = rasterio.transform.rowcol(s1_transform, lon, lat)
    window = native_vv[nr - 1:nr + 2, nc - 1:nc + 2]
    assert window.min() - 1e-3 <= s1[0, r, c] <= window.max() + 1e-3
    # S2 bands at 10/20/60 m resampled onto one grid line up (edges), and S1 dates too
    assert _shift(_edges(s2[3]), _edges(s2[7]), 4)[:2] == (0, 0)
    dy, dx, _ = _shift(_edges(s2[11]), _edges(s2[7]), 4)
    assert abs(dy) <= 1 and abs(dx) <= 1
