from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import torch.nn.functional as F

from geossl.core.errors import ConfigError, DataError
from geossl.datasets import bigearthnet as mod
from geossl.datasets import labels as lab
from geossl.datasets.bigearthnet import S2_BANDS, BigEarthNet
from tests.conftest import real_path
from tests.data.bigearthnet.data import LABEL_SETS, generate_v1, generate_v2


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("ben_v1")
    return root, generate_v1(root, n=3)


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("ben_v2")
    return root, generate_v2(root, n=3)


def _raw(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _expected(k: int, num_classes: int) -> torch.Tensor:
    return lab.multi_hot(lab.clc_codes_to_indices(LABEL_SETS[k % 4], num_classes), num_classes)


def test_v1_s2_sample_and_resampling(v1: tuple[Path, list[str]]) -> None:
    root, ids = v1
    ds = BigEarthNet(root, version=1)
    assert ds.ids == sorted(ids) and len(ds) == 3
    i = ds.ids.index(ids[0])
    s = ds[i]
    assert set(s) == {"image_s2", "image", "label", "id"} and s["id"] == ids[0]
    img = s["image_s2"]
    assert img.shape == (12, 120, 120) and img.dtype == torch.float32 and s["image"] is img
    folder = root / "BigEarthNet-v1.0" / ids[0]
    # 10 m bands are untouched
    np.testing.assert_array_equal(img[1].numpy(), _raw(folder / f"{ids[0]}_B02.tif"))
    # 20 m / 60 m bands: bilinear (pixels as areas) to 120 x 120
    for band in ("B05", "B01"):
        raw = torch.from_numpy(_raw(folder / f"{ids[0]}_{band}.tif").astype(np.float32))
        up = F.interpolate(raw[None, None], size=(120, 120), mode="bilinear", align_corners=False)
        torch.testing.assert_close(img[S2_BANDS.index(band)], up[0, 0])
    torch.testing.assert_close(s["label"], _expected(0, 19))


def test_resampling_keeps_the_footprint(tmp_path: Path) -> None:
    (pid,) = generate_v1(tmp_path, n=1, s1=False)
    band = tmp_path / "BigEarthNet-v1.0" / pid / f"{pid}_B05.tif"
    with rasterio.open(band) as src:
        profile = src.profile
    ramp = np.tile(np.arange(60, dtype=np.uint16) * 100 + 100, (60, 1))  # value = 100 (col + 1)
    with rasterio.open(band, "w", **profile) as dst:
        dst.write(ramp, 1)
    img = BigEarthNet(tmp_path, version=1)[0]["image_s2"][S2_BANDS.index("B05")]
    # output pixel j (10 m) has its centre at 20 m column (j + 0.5) / 2 - 0.5: a linear ramp is
    # reproduced exactly inside, i.e. no half-pixel shift of the footprint
    j = torch.arange(2, 118, dtype=torch.float32)
    expected = 100 * ((j + 0.5) / 2 - 0.5 + 1)
    torch.testing.assert_close(img[5, 2:118], expected)
    torch.testing.assert_close(img[:, 40], torch.full((120,), float(img[0, 40])))


def test_v1_s1_pairs_and_43_classes(v1: tuple[Path, list[str]]) -> None:
    root, ids = v1
    ds = BigEarthNet(root, version=1, sensors=("s1", "s2"), num_classes=43)
    for k, pid in enumerate(ids):
        s = ds[ds.ids.index(pid)]
        assert s["image_s1"].shape == (2, 120, 120) and "image" not in s
        assert s["label"].shape == (43,) and s["label"].dtype == torch.float32
        torch.testing.assert_close(s["label"], _expected(k, 43))
    # the S1 patch of ids[1] is its json's corresponding_s2_patch
    s1dir = next(p for p in (root / "BigEarthNet-S1-v1.0").iterdir()
                 if json.loads(next(p.glob("*.json")).read_text())["corresponding_s2_patch"]
                 == ids[1])
    vv = _raw(s1dir / f"{s1dir.name}_VV.tif")
    np.testing.assert_array_equal(ds[ds.ids.index(ids[1])]["image_s1"][0].numpy(), vv)
    assert (root / "bigearthnet_v1_s1_pairs.json").exists()
    only_s1 = BigEarthNet(root, version=1, sensors=("s1",))
    assert only_s1[0]["image"].shape == (2, 120, 120)


def test_v2_with_metadata(v2: tuple[Path, list[str]]) -> None:
    root, ids = v2
    ds = BigEarthNet(root, version=2, sensors=("s1", "s2"))
    assert ds.label_source == "metadata" and ds.ids == ids
    for k in range(3):
        s = ds[k]
        assert s["image_s2"].shape == (12, 120, 120) and s["image_s1"].shape == (2, 120, 120)
        torch.testing.assert_close(s["label"], _expected(k, 19))
    ds43 = BigEarthNet(root, version=2, num_classes=43)
    assert ds43.label_source == "reference_maps"
    torch.testing.assert_close(ds43[1]["label"], _expected(1, 43))
    assert BigEarthNet(root, version=2, split="val").ids == [ids[1]]
    assert BigEarthNet(root, version=2, split="test").ids == [ids[2]]
    sub = BigEarthNet(root, version=2, ids=[ids[2], ids[0]])
    assert sub.ids == [ids[2], ids[0]]


def test_v2_without_metadata(tmp_path: Path) -> None:
    ids = generate_v2(tmp_path, n=3, metadata=False)
    ds = BigEarthNet(tmp_path, version=2, sensors=("s1", "s2"))
    assert ds.label_source == "reference_maps" and sorted(ds.ids) == sorted(ids)
    for pid in ids:
        s = ds[ds.ids.index(pid)]
        k = ids.index(pid)
        torch.testing.assert_close(s["label"], _expected(k, 19))
        # paired by grid cell: the S1 patch covers the same footprint
        cell = "_".join(pid.split("_")[-2:])
        s1 = next((tmp_path / "BigEarthNet-S1").glob(f"*/*_33UUP_{cell}"))
        np.testing.assert_array_equal(s["image_s1"][1].numpy(), _raw(s1 / f"{s1.name}_VH.tif"))
    # no reference map for one patch: labels off for the whole dataset, with a warning
    shutil.rmtree(next((tmp_path / "Reference_Maps").glob(f"*/{ids[0]}")))
    with pytest.warns(UserWarning, match="labels disabled"):
        nolab = BigEarthNet(tmp_path, version=2)
    assert nolab.label_source is None and "label" not in nolab[0]
    with pytest.raises(ConfigError, match=r"metadata\.parquet"):
        BigEarthNet(tmp_path, version=2, split="train")


def test_v2_43_without_maps_is_config_error(tmp_path: Path) -> None:
    generate_v2(tmp_path, n=2, reference_maps=False)
    assert BigEarthNet(tmp_path, version=2).label_source == "metadata"
    with pytest.raises(ConfigError, match="43"):
        BigEarthNet(tmp_path, version=2, num_classes=43)


def test_bad_options(v1: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = v1
    with pytest.raises(ConfigError):
        BigEarthNet(root, version=3)
    with pytest.raises(ConfigError):
        BigEarthNet(root, version=1, num_classes=10)
    with pytest.raises(ConfigError):
        BigEarthNet(root, version=1, sensors=("s2", "s3"))
    with pytest.raises(ConfigError, match="nope"):
        BigEarthNet(root, version=1, ids=["nope"])
    with pytest.raises(ConfigError, match="split"):
        BigEarthNet(root, version=1, split="train")
    with pytest.raises(DataError, match="not found"):
        BigEarthNet(tmp_path / "absent", version=1)
    with pytest.raises(DataError, match="BigEarthNet-S2"):
        BigEarthNet(tmp_path, version=2)


def test_missing_band_corrupt_band_and_crs_mismatch(tmp_path: Path) -> None:
    ids = generate_v1(tmp_path, n=3)
    ds = BigEarthNet(tmp_path, version=1, sensors=("s1", "s2"))
    folder = tmp_path / "BigEarthNet-v1.0"
    missing = folder / ids[0] / f"{ids[0]}_B8A.tif"
    missing.unlink()
    with pytest.raises(DataError, match=f"{ids[0]}_B8A.tif") as err:
        ds[ds.ids.index(ids[0])]
    assert "not found" in str(err.value) and "\n" not in str(err.value)
    # truncated file: the header opens, the pixels do not
    corrupt = folder / ids[1] / f"{ids[1]}_B03.tif"
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    with pytest.raises(DataError, match=f"{ids[1]}_B03.tif"):
        ds[ds.ids.index(ids[1])]
    # a band in another CRS
    band = folder / ids[2] / f"{ids[2]}_B11.tif"
    with rasterio.open(band) as src:
        arr, profile = src.read(), src.profile
    profile["crs"] = "EPSG:32632"
    with rasterio.open(band, "w", **profile) as dst:
        dst.write(arr)
    with pytest.raises(DataError, match="CRS mismatch"):
        ds[ds.ids.index(ids[2])]
    # missing label json
    (folder / ids[2] / f"{ids[2]}_labels_metadata.json").unlink()
    with pytest.raises(DataError, match=r"labels_metadata\.json"):
        ds.label_indices(ds.ids.index(ids[2]))


def test_footprints(v2: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    root, ids = v2
    ds = BigEarthNet(root, version=2, num_classes=43)
    fp = ds.footprints(workers=1)
    assert isinstance(fp, gpd.GeoDataFrame) and fp.crs.to_epsg() == 4326
    for col in ("chip_id", "path", "scene", "season", "datetime", "patch", "crs", "minx",
                "miny", "maxx", "maxy", "geometry", "label"):
        assert col in fp.columns, col
    assert fp["chip_id"].tolist() == ids
    with rasterio.open(root / fp["path"].iloc[0]) as src:
        assert fp["crs"].iloc[0] == "EPSG:32633"
        assert tuple(fp.loc[0, ["minx", "miny", "maxx", "maxy"]]) == tuple(src.bounds)
    assert fp["label"].iloc[1] == ",".join(map(str, lab.clc_codes_to_indices(LABEL_SETS[1], 43)))
    assert fp["season"].tolist() == ["summer", "winter", "summer"]
    assert fp["datetime"].iloc[0] == pd.Timestamp("2017-06-13 10:10:31", tz="UTC")
    # neighbouring cells touch but do not overlap
    assert fp.geometry.iloc[0].intersection(fp.geometry.iloc[1]).area < 1e-12
    # second call: from the cache, no file reopened
    monkeypatch.setattr(mod, "header_info", lambda p: (_ for _ in ()).throw(AssertionError()))
    monkeypatch.setattr(mod, "read_image", lambda *a: (_ for _ in ()).throw(AssertionError()))
    again = BigEarthNet(root, version=2, num_classes=43).footprints()
    pd.testing.assert_frame_equal(pd.DataFrame(again.drop(columns="geometry")),
                                  pd.DataFrame(fp.drop(columns="geometry")))
    meta = BigEarthNet(root, version=2).footprints()
    assert meta["split"].tolist() == ["train", "validation", "test"]


@pytest.mark.real
def test_real_bigearthnet_v2_sample() -> None:
    root = real_path("bigearthnet_v2")
    with pytest.warns(UserWarning, match="labels disabled"):
        ds = BigEarthNet(root, version=2)
    assert len(ds) == 1
    pid = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43"
    s = ds[0]
    assert s["id"] == pid and s["image_s2"].shape == (12, 120, 120) and "label" not in s
    folder = root / "BigEarthNet-S2" / "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP" / pid
    np.testing.assert_array_equal(s["image_s2"][3].numpy(), _raw(folder / f"{pid}_B04.tif"))
    b12 = _raw(folder / f"{pid}_B12.tif").astype(np.float32)
    assert b12.shape == (60, 60)
    assert abs(float(s["image_s2"][11].mean()) - float(b12.mean())) < 0.01 * float(b12.mean())
    assert 0 < float(s["image_s2"].mean()) < 10000
    fp = ds.footprints(cache=False)
    assert fp["crs"].iloc[0] == "EPSG:32633"
    assert tuple(fp.loc[0, ["minx", "miny", "maxx", "maxy"]]) == (
        390000.0, 5347200.0, 391200.0, 5348400.0)
    assert fp["season"].iloc[0] == "summer"
    c = fp.geometry.iloc[0].centroid
    assert 13 < c.x < 14 and 48 < c.y < 48.5
    # the sample's S1 patch lies on another grid cell (70_48): no pair
    with pytest.warns(UserWarning, match="no S1"), pytest.raises(DataError, match="no BigEarthNet"):
        BigEarthNet(root, version=2, sensors=("s1", "s2"))
    # the sample's reference map (of patch 26_57): CLC codes -> 19-class labels
    ref = next((root / "Reference_Maps").rglob("*_reference_map.tif"))
    codes = np.unique(_raw(ref))
    assert set(codes.tolist()) <= set(lab.CLC_CODES)
    assert lab.clc_codes_to_indices(codes.tolist(), 19) == [2, 4, 8, 10]


def test_example_config_builds_the_dataset(v2: tuple[Path, list[str]]) -> None:
    import importlib

    import yaml

    root, ids = v2
    conf = Path(__file__).parents[1] / "conf/data/bigearthnet.yaml"
    cfg = yaml.safe_load(conf.read_text())
    module, name = cfg["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    ds = cls(**{**cfg["init_args"], "root": root})
    assert isinstance(ds, BigEarthNet) and ds.ids == [ids[0]]  # split: train
    assert set(ds[0]) == {"image_s1", "image_s2", "label", "id"}


def test_registry_ids_with_split_all(v2: tuple[Path, list[str]]) -> None:
    from geossl.datasets.registry import get_dataset

    root, ids = v2
    ds = get_dataset("bigearthnet", root, ids=[ids[2]], sensors=("s2",))
    assert ds.ids == [ids[2]]
