from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from geossl.core.errors import ConfigError, DataError
from geossl.datasets import labels as lab
from geossl.datasets import sen12ms as mod
from geossl.datasets.sen12ms import HOLDOUT_SCENES, SEN12MS, SEN12MSPatches
from tests.data.sen12ms.data import generate, stripe_classes

SIZE = 32
PATCHES = 3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sen12ms")
    generate(path, patches=PATCHES, size=SIZE)
    return path


@pytest.fixture()
def fresh(tmp_path: Path) -> Path:
    generate(tmp_path, scenes={"ROIs1158_spring": [1], "ROIs1970_fall": [30]}, patches=2,
             size=SIZE)
    return tmp_path


def _raw(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# ---------------------------------------------------------------------------- constants
def test_holdout_list_is_the_toolbox_list() -> None:
    assert len(HOLDOUT_SCENES) == 26
    assert "ROIs1158_spring_63" in HOLDOUT_SCENES and "ROIs2017_winter_135" in HOLDOUT_SCENES
    assert "ROIs1158_spring_1" not in HOLDOUT_SCENES
    assert mod.parse_scene("ROIs1158_spring/s1_63") == ("ROIs1158_spring", 63)
    assert mod.parse_scene("ROIs1970_fall_30") == ("ROIs1970_fall", 30)
    assert mod.parse_scene(7) == (None, 7)
    with pytest.raises(ConfigError, match="scene id"):
        mod.parse_scene("Paris")


# ---------------------------------------------------------------------------- geo view
def test_geo_index_columns_and_filters(root: Path) -> None:
    ds = SEN12MS(root, sensor="s2")
    assert len(ds) == 6 * PATCHES
    assert {"filepath", "roi", "season", "scene", "patch", "id"} <= set(ds.index.columns)
    assert set(ds.index["season"]) == {"spring", "summer", "fall", "winter"}
    row = ds.index[ds.index["id"] == "ROIs1158_spring_63_2"].iloc[0]
    assert row["scene"] == "ROIs1158_spring_63" and row["patch"] == 2
    assert row["filepath"].endswith("ROIs1158_spring/s2_63/ROIs1158_spring_s2_63_p2.tif")

    spring = SEN12MS(root, sensor="s1", seasons=["spring"])
    assert set(spring.index["roi"]) == {"ROIs1158_spring"} and len(spring) == 2 * PATCHES
    one = SEN12MS(root, sensor="s1", scenes=["ROIs1868_summer_43"])
    assert set(one.index["scene"]) == {"ROIs1868_summer_43"}
    held = SEN12MS(root, sensor="s1", holdout="holdout")
    assert set(held.index["scene"]) <= HOLDOUT_SCENES and len(held) == 3 * PATCHES
    train = SEN12MS(root, sensor="s1", holdout="train")
    assert not set(train.index["scene"]) & HOLDOUT_SCENES and len(train) == 3 * PATCHES


def test_geo_sample_matches_file(root: Path) -> None:
    ds = SEN12MS(root, sensor="s2", scenes=["ROIs1158_spring_1"], bands=["B04", "B8A", "B10"])
    row = ds.index[ds.index["patch"] == 1].iloc[0]
    minx, _, _, maxy = row.geometry.bounds
    # a window inside patch 1 but left of patch 2 (patches overlap by half)
    sample = ds[minx : minx + 80, maxy - 80 : maxy]
    assert sample["image"].shape == (3, 8, 8) and sample["image"].dtype == torch.float32
    raw = _raw(Path(row["filepath"]))
    expected = raw[[3, 8, 10], :8, :8].astype(np.float32)
    np.testing.assert_array_equal(sample["image"].numpy(), expected)

    lc = SEN12MS(root, sensor="lc", bands=["IGBP"], scenes=["ROIs1158_spring_1"])
    mask = lc[minx : minx + 80, maxy - 80 : maxy]["mask"]
    assert mask.dtype == torch.int64 and mask.shape == (8, 8)
    assert int(mask[0, 0]) == stripe_classes(1, 1)[0]


def test_geo_bad_input(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sensor"):
        SEN12MS(root, sensor="s3")
    with pytest.raises(ConfigError, match="band"):
        SEN12MS(root, sensor="s1", bands=["HH"])
    with pytest.raises(ConfigError, match="season"):
        SEN12MS(root, sensor="s1", seasons=["monsoon"])
    with pytest.raises(ConfigError, match="999"):
        SEN12MS(root, sensor="s1", scenes=[999])
    with pytest.raises(DataError, match="no SEN12MS s1 patches"):
        SEN12MS(tmp_path, sensor="s1")


# ---------------------------------------------------------------------------- patch view
def test_patches_sample(root: Path) -> None:
    ds = SEN12MSPatches(root, label="igbp")
    assert len(ds) == 6 * PATCHES
    assert ds.ids[0] == "ROIs1158_spring_1_1"
    i = ds.ids.index("ROIs1970_fall_5_2")
    s = ds[i]
    assert set(s) == {"image_s1", "image_s2", "mask_lc", "label", "id"}
    assert s["id"] == "ROIs1970_fall_5_2"
    assert s["image_s1"].shape == (2, SIZE, SIZE) and s["image_s1"].dtype == torch.float32
    assert s["image_s2"].shape == (13, SIZE, SIZE) and s["image_s2"].dtype == torch.float32
    raw = _raw(root / "ROIs1970_fall" / "s2_5" / "ROIs1970_fall_s2_5_p2.tif")
    np.testing.assert_array_equal(s["image_s2"].numpy(), raw.astype(np.float32))
    assert s["mask_lc"].dtype == torch.int64 and s["mask_lc"].shape == (SIZE, SIZE)
    first = stripe_classes(5, 2)[0]
    assert int(s["mask_lc"][0, 0]) == first - 1
    assert s["label"].dtype == torch.int64 and int(s["label"]) == first - 1


def test_patches_multilabel_dfc(root: Path) -> None:
    ds = SEN12MSPatches(root, sensors=("s2",), label="dfc", multilabel=True)
    for i in (0, 4):
        s = ds[i]
        assert "image" in s and s["image"] is s["image_s2"] and "image_s1" not in s
        _, scene, patch = ds.ids[i].rsplit("_", 2)
        classes = stripe_classes(int(scene), int(patch))
        # the first two stripes cover ~59 % and 25 %, the others < 10 %
        expected = torch.zeros(10)
        for value in classes[:2]:
            expected[lab.IGBP_TO_DFC[value] - 1] = 1
        assert s["label"].dtype == torch.float32 and s["label"].shape == (10,)
        torch.testing.assert_close(s["label"], expected)
        assert s["mask_lc"].max() <= 9


def test_patches_holdout_ids_and_scenes(root: Path) -> None:
    train = SEN12MSPatches(root, holdout="train", label=None)
    held = SEN12MSPatches(root, holdout="holdout", label=None)
    assert len(train) + len(held) == 6 * PATCHES
    assert all("_".join(i.split("_")[:3]) in HOLDOUT_SCENES for i in held.ids)
    assert not any("_".join(i.split("_")[:3]) in HOLDOUT_SCENES for i in train.ids)
    sub = SEN12MSPatches(root, ids=["ROIs2017_winter_135_3", "ROIs1158_spring_1_2"], label=None)
    assert sub.ids == ["ROIs2017_winter_135_3", "ROIs1158_spring_1_2"]
    assert sub[0]["id"] == "ROIs2017_winter_135_3" and "label" not in sub[0]
    with pytest.raises(ConfigError, match="ROIs1158_spring_1_2"):
        SEN12MSPatches(root, ids=["ROIs1158_spring_1_2"], holdout="holdout")
    with pytest.raises(ConfigError, match="ROIs1158_spring_999"):
        SEN12MSPatches(root, scenes=["ROIs1158_spring_999"])
    with pytest.raises(ConfigError, match="holdout"):
        SEN12MSPatches(root, holdout="test")
    with pytest.raises(ConfigError, match="label"):
        SEN12MSPatches(root, label="corine")
    only = SEN12MSPatches(root, scenes=[63, "ROIs1868_summer_2"], label=None)
    assert {i.rsplit("_", 1)[0] for i in only.ids} == {"ROIs1158_spring_63", "ROIs1868_summer_2"}


def test_patches_without_lc_when_no_label(fresh: Path) -> None:
    for folder in fresh.glob("ROIs*/lc_*"):
        shutil.rmtree(folder)
    ds = SEN12MSPatches(fresh, label=None)
    assert len(ds) == 4 and "mask_lc" not in ds[0]
    with pytest.raises(DataError, match="no SEN12MS patches"):
        SEN12MSPatches(fresh / "nothing")


def test_missing_file_is_named(fresh: Path) -> None:
    missing = fresh / "ROIs1970_fall" / "s2_30" / "ROIs1970_fall_s2_30_p2.tif"
    missing.unlink()
    with pytest.raises(DataError, match=r"ROIs1970_fall_s2_30_p2\.tif") as err:
        SEN12MSPatches(fresh)
    assert "missing s2 file" in str(err.value) and "\n" not in str(err.value)
    # S1 only does not need the S2 file
    assert len(SEN12MSPatches(fresh, sensors=("s1",))) == 4


def test_corrupt_file_and_crs_mismatch(fresh: Path) -> None:
    ds = SEN12MSPatches(fresh)
    corrupt = ds.path(0, "s1")
    corrupt.write_bytes(b"II*\x00 this is not a tiff")
    with pytest.raises(DataError, match=corrupt.name):
        ds[0]
    # patch 2 of scene 30: rewrite the S1 file in another UTM zone
    s1 = ds.path(3, "s1")
    arr = _raw(s1)
    with rasterio.open(s1, "w", driver="GTiff", height=SIZE, width=SIZE, count=2,
                       dtype="float32", crs="EPSG:32631",
                       transform=from_origin(0, 0, 10, 10)) as dst:
        dst.write(arr)
    with pytest.raises(DataError, match="CRS mismatch"):
        ds[3]
    s2 = ds.path(1, "s2")
    with rasterio.open(s2, "w", driver="GTiff", height=SIZE, width=SIZE, count=12,
                       dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(0, 0, 10, 10)) as dst:
        dst.write(np.zeros((12, SIZE, SIZE), dtype=np.uint16))
    with pytest.raises(DataError, match="expected 13 bands, found 12"):
        SEN12MSPatches(fresh, sensors=("s2",), label=None)[1]


def test_footprints_and_cache(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = SEN12MSPatches(fresh, label="igbp")
    fp = ds.footprints(workers=1)
    assert isinstance(fp, gpd.GeoDataFrame) and fp.crs.to_epsg() == 4326
    for col in ("chip_id", "path", "scene", "season", "patch", "crs", "minx", "miny", "maxx",
                "maxy", "geometry", "label"):
        assert col in fp.columns, col
    assert fp["chip_id"].tolist() == ds.ids
    assert fp["chip_id"].is_unique
    with rasterio.open(fresh / fp["path"].iloc[3]) as src:
        assert fp["crs"].iloc[3] == f"EPSG:{src.crs.to_epsg()}"
        assert tuple(fp.loc[3, ["minx", "miny", "maxx", "maxy"]]) == tuple(src.bounds)
    assert fp["label"].tolist() == [int(ds[i]["label"]) for i in range(len(ds))]
    assert fp["scene"].tolist()[:2] == ["ROIs1158_spring_1"] * 2
    # footprints are in EPSG:4326, scene 1 (zone 33N, 400 km E) near 13.7 E 48.3 N
    assert 13 < fp.geometry.iloc[0].centroid.x < 14.5 and 48 < fp.geometry.iloc[0].centroid.y < 49
    # overlapping patches overlap in the footprints too
    assert fp.geometry.iloc[0].intersects(fp.geometry.iloc[1])
    assert (fresh / mod.FOOTPRINT_CACHE).exists()

    def boom(path: object) -> dict[str, object]:
        raise AssertionError("cache not used")

    monkeypatch.setattr(mod, "open_raster", boom)
    again = SEN12MSPatches(fresh, label="dfc").footprints()
    assert again["chip_id"].tolist() == fp["chip_id"].tolist()
    assert (again["geometry"].geom_equals_exact(fp["geometry"], 1e-9)).all()


def test_example_config_builds_the_dataset(root: Path) -> None:
    import importlib

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "conf/data/sen12ms.yaml").read_text())
    module, name = cfg["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    ds = cls(**{**cfg["init_args"], "root": root})
    assert isinstance(ds, SEN12MSPatches) and ds.label == "igbp"
    assert len(ds) == 3 * PATCHES  # holdout: train


def test_geo_sensors_intersect_and_sample(root: Path) -> None:
    from torchgeo.samplers import RandomGeoSampler

    s1 = SEN12MS(root, sensor="s1", scenes=["ROIs1158_spring_1"])
    s2 = SEN12MS(root, sensor="s2", scenes=["ROIs1158_spring_1"])
    both = s1 & s2
    assert {"scene_1", "scene_2", "patch_1", "patch_2"} <= set(both.index.columns)
    for query in RandomGeoSampler(both, size=16, length=2):
        assert both[query]["image"].shape == (15, 16, 16)
