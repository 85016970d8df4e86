"""Tests for the chip index, ChipDataset, the packed store and ``geossl index``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader

from geossl.cli import main
from geossl.core.errors import ConfigError, DataError
from geossl.datasets.chips import ChipDataset
from geossl.tiling import chip_index
from geossl.tiling.packed import pack
from geossl.tiling.tile import TileOptions, tile
from tests.data.chips.data import generate_chips, generate_major_tom


@pytest.fixture
def chips(tmp_path: Path) -> Path:
    root = tmp_path / "chips"
    generate_chips(root, n=6, size=32, bands=4)
    return root


def _expected(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32)


def test_folder_without_index(chips: Path) -> None:
    ds = ChipDataset(chips)
    assert len(ds) == 6 and ds.bands == ["B02", "B03", "B04", "B08"]
    s = ds[3]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (4, 32, 32)
    np.testing.assert_array_equal(s["image"].numpy(),
                                  _expected(chips / "scene_20200101" / "chip_003.tif"))
    assert s["id"] == "chip_003" and s["crs"] == "EPSG:32633"
    assert s["bounds"].tolist() == [400000.0 + 960.0, 5000000.0 - 320.0, 400000.0 + 1280.0,
                                    5000000.0]
    assert not (chips / "index.parquet").exists()  # building in memory writes nothing


def test_band_selection_and_collate(chips: Path) -> None:
    ds = ChipDataset(chips, bands=["B08", "B02"])
    full = _expected(chips / "scene_20200101" / "chip_001.tif")
    np.testing.assert_array_equal(ds[1]["image"].numpy(), full[[3, 0]])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 2, 32, 32)
    assert batch["id"] == ["chip_000", "chip_001", "chip_002", "chip_003"]
    assert batch["bounds"].shape == (4, 4) and batch["crs"][0] == "EPSG:32633"
    with pytest.raises(DataError, match="lack band"):
        ChipDataset(chips, bands=["B02", "B12"])


def test_ids_and_transforms(chips: Path) -> None:
    def double(sample: dict) -> dict:
        sample["image"] = sample["image"] * 2
        return sample

    ds = ChipDataset(chips, ids=["chip_004", "chip_001"], transforms=double)
    assert ds.ids == ["chip_004", "chip_001"]
    np.testing.assert_array_equal(ds[0]["image"].numpy(),
                                  2 * _expected(chips / "scene_20200101" / "chip_004.tif"))
    with pytest.raises(DataError, match="not in the index"):
        ChipDataset(chips, ids=["nope"])


def test_index_cli_and_no_rescan(chips: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["index", str(chips), "--sensor", "s2"]) == 0
    gdf = chip_index.read_index(chips)
    assert list(gdf.columns) == list(chip_index.COLUMNS)
    assert gdf["path"].iloc[0] == "scene_20200101/chip_000.tif"
    assert set(gdf["sensor"]) == {"s2"} and set(gdf["scene"]) == {"scene_20200101"}
    assert str(gdf["datetime"].iloc[0]).startswith("2020-01-01")
    assert gdf.geometry.iloc[0].bounds[1] == pytest.approx(45.1, abs=0.1)  # lat, EPSG:4326

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a chip file was opened")

    monkeypatch.setattr(rasterio, "open", boom)
    ds = ChipDataset(chips / "index.parquet")
    assert len(ds) == 6 and ds.ids[0] == "chip_000"
    with pytest.raises(AssertionError, match="opened"):
        ds[0]


def test_index_elsewhere(chips: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx" / "my.parquet"
    assert main(["index", str(chips), "--out", str(out)]) == 0
    ds = ChipDataset(out)
    assert ds.index["path"].iloc[0] == "../chips/scene_20200101/chip_000.tif"
    np.testing.assert_array_equal(ds[0]["image"].numpy(),
                                  _expected(chips / "scene_20200101" / "chip_000.tif"))


def test_bad_index(tmp_path: Path, chips: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable"):
        ChipDataset(bad)
    gdf = chip_index.build_index(chips, progress=False)
    chip_index.write_index(gdf, chips)
    gdf.drop(columns="valid_fraction").to_parquet(tmp_path / "cols.parquet")
    with pytest.raises(DataError, match="missing column"):
        ChipDataset(tmp_path / "cols.parquet")
    with pytest.raises(DataError, match="not found"):
        ChipDataset(tmp_path / "missing.parquet")


def test_mixed_bands_need_selection(tmp_path: Path) -> None:
    generate_chips(tmp_path, n=2, bands=4, scene="a")
    generate_chips(tmp_path, n=2, bands=3, scene="b")
    with pytest.raises(ConfigError, match="different bands"):
        ChipDataset(tmp_path)
    # same stems in two folders: ids fall back to relative paths
    ds = ChipDataset(tmp_path, bands=["B04", "B02"])
    assert ds.ids == ["a/chip_000", "a/chip_001", "b/chip_000", "b/chip_001"]
    assert ds[3]["image"].shape == (2, 32, 32)


def test_corrupt_chip(chips: Path) -> None:
    ds = ChipDataset(chips)
    (chips / "scene_20200101" / "chip_002.tif").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"chip_002\.tif"):
        ds[2]


def test_corrupt_chip_in_a_loader_worker_is_one_clean_line(chips: Path) -> None:
    ds = ChipDataset(chips)
    (chips / "scene_20200101" / "chip_002.tif").write_bytes(b"garbage")
    with pytest.raises(DataError) as direct:
        ds[2]
    loader = DataLoader(ds, batch_size=1, num_workers=2, sampler=[2])
    with pytest.raises(DataError) as worker:
        next(iter(loader))
    # not "Caught DataError in DataLoader worker process 0. Original Traceback ..." flattened
    assert str(worker.value) == str(direct.value)


def test_cli_corrupt_chip_same_line_with_workers(chips: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (chips / "scene_20200101" / "chip_002.tif").write_bytes(b"garbage")
    lines = []
    for workers in ("0", "2"):
        assert main(["stats", "--data", "chips", "--root", str(chips),
                     "--workers", workers]) == 2
        err = capsys.readouterr().err
        lines.append(err.rstrip("\n").split("\n")[-1])
    assert lines[0] == lines[1]
    assert lines[0].startswith("geossl stats: error: ") and "chip_002.tif" in lines[0]
    assert "Traceback" not in lines[1] and "worker process" not in lines[1]


@pytest.mark.parametrize("fmt", ["npy", "zarr"])
def test_pack(tmp_path: Path, fmt: str) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    out = tmp_path / "out"
    tile([folder], out, TileOptions(size=16), progress=False)
    plain = ChipDataset(out)
    assert not plain.packed
    store = pack(out, fmt=fmt, progress=False)
    assert store == out / "packed" and (store / "meta.json").is_file()
    packed = ChipDataset(out)
    assert packed.packed and len(packed) == 9
    for i in (0, 4, 8):
        a, b = plain[i], packed[i]
        assert a["id"] == b["id"]
        torch.testing.assert_close(a["image"], b["image"])
    sel = ChipDataset(out, bands=["B04", "B8A"])
    assert sel.packed
    torch.testing.assert_close(sel[5]["image"], plain[5]["image"][[3, 8]])
    # a subset of the chips still reads from the store; the index is unaffected by packing
    sub = ChipDataset(out, ids=plain.ids[3:5])
    assert sub.packed
    torch.testing.assert_close(sub[1]["image"], plain[4]["image"])
    assert not ChipDataset(out, packed=False).packed
    batch = next(iter(DataLoader(packed, batch_size=8, num_workers=0)))
    assert batch["image"].shape == (8, 12, 16, 16)


def test_packed_required(tmp_path: Path, chips: Path) -> None:
    with pytest.raises(DataError, match="packed chip store not found"):
        ChipDataset(chips, packed=True)


def test_index_records_true_valid_fraction_of_nan_chips(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    from rasterio.transform import from_origin

    from tests.data.chips.data import write_raster

    arr = np.ones((3, 16, 16), dtype=np.float32)
    arr[1, :4, :] = np.nan  # 64 pixels invalid in one band
    arr[0, 15, :8] = np.inf  # 8 more
    write_raster(tmp_path / "c" / "nan.tif", arr, "EPSG:32633", from_origin(0, 160, 10, 10))
    ints = np.ones((2, 16, 16), dtype=np.uint16)
    ints[:, 0, :2] = 7  # the nodata value: 2 pixels
    write_raster(tmp_path / "c" / "nodata.tif", ints, "EPSG:32633",
                 from_origin(0, 160, 10, 10), nodata=7)
    write_raster(tmp_path / "c" / "clean.tif", ints * 2, "EPSG:32633",
                 from_origin(0, 160, 10, 10))
    assert main(["index", str(tmp_path / "c")]) == 0
    gdf = chip_index.read_index(tmp_path / "c").set_index("chip_id")
    assert gdf.loc["nan", "valid_fraction"] == pytest.approx(1 - 72 / 256)
    assert gdf.loc["nodata", "valid_fraction"] == pytest.approx(1 - 2 / 256)
    assert gdf.loc["clean", "valid_fraction"] == 1.0
    out = capsys.readouterr().out
    assert "2 chip(s) hold 74 invalid pixel(s)" in out
