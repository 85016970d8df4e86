"""Tests for scenes, tiling and ``geossl tile``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio import windows
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from geossl.cli import main
from geossl.core.errors import DataError
from geossl.tiling import chip_index
from geossl.tiling.scenes import (
    band_name_from_file,
    find_scenes,
    open_scene,
    parse_datetime,
)
from geossl.tiling.tile import TileOptions, tile
from tests.conftest import real_path
from tests.data.chips.data import (
    MT_BANDS,
    PRODUCT,
    generate_major_tom,
    generate_multiband,
    generate_safe,
)

S2_12 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def _chips(out: Path) -> list[Path]:
    return sorted(out.rglob("*.tif"))


def test_band_names_and_datetime() -> None:
    assert band_name_from_file("B8A.tif") == "B8A"
    assert band_name_from_file("s2_B01.jp2") == "B01"
    assert band_name_from_file("T33NZA_20220706T085611_B02_10m.jp2") == "B02"
    assert band_name_from_file("LC08_L2SP_B4.TIF") == "B04"
    assert band_name_from_file("cloud_mask.tif") is None
    assert band_name_from_file("T33NZA_20220706T085611_SCL_20m.jp2") is None
    dt = parse_datetime(PRODUCT)
    assert dt is not None and dt.isoformat() == "2022-07-06T08:56:11+00:00"
    assert parse_datetime("no_date_here") is None


def test_open_fake_major_tom(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path, size10=48)
    assert find_scenes([tmp_path]) == [folder]
    scene = open_scene(folder)
    assert scene.band_names == S2_12
    assert scene.sensor == "s2"
    assert (scene.grid.width, scene.grid.height, scene.grid.res) == (48, 48, 10.0)
    assert scene.datetime is not None and scene.datetime.year == 2022
    coarse = open_scene(folder, resolution=20.0, bands=["B04", "B05"])
    assert (coarse.grid.width, coarse.grid.res, coarse.band_names) == (24, 20.0, ["B04", "B05"])


def test_tile_fake_scene(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=96)
    out = tmp_path / "out"
    report = tile([folder], out, TileOptions(size=32, stride=32), progress=False)
    assert report.written == 9 and report.rejected == 0
    gdf = chip_index.read_index(out)
    assert list(gdf.columns) == list(chip_index.COLUMNS)
    assert gdf["bands"].iloc[0] == ",".join(S2_12)
    assert set(gdf["sensor"]) == {"s2"}
    assert str(gdf["datetime"].iloc[0]) == "2022-07-06 08:56:11+00:00"
    assert gdf.crs.to_epsg() == 4326 and set(gdf["crs"]) == {"EPSG:32633"}
    row = gdf[(gdf["row"] == 32) & (gdf["col"] == 64)].iloc[0]
    with rasterio.open(out / row["path"]) as chip, rasterio.open(folder / "B04.tif") as b04:
        assert chip.count == 12 and chip.descriptions == tuple(S2_12)
        assert chip.crs == b04.crs
        assert chip.transform == windows.transform(Window(64, 32, 64, 64), b04.transform)
        # one tiled block holds the whole chip (all bands, pixel interleaved), compressed
        assert chip.block_shapes[0] == (32, 32) and chip.compression is not None
        assert chip.interleaving.value.upper() == "PIXEL"
        assert (row["minx"], row["maxy"]) == (chip.bounds.left, chip.bounds.top)
        np.testing.assert_array_equal(chip.read(4), b04.read(1, window=Window(64, 32, 32, 32)))
    assert not list(out.rglob("*.part"))


def test_safe_product(tmp_path: Path) -> None:
    safe = generate_safe(tmp_path, size10=48, scl_cloud_rows=16)
    scene = open_scene(safe)
    assert scene.band_names == S2_12 and scene.grid.res == 10.0
    assert all(b.res == MT_BANDS[b.name] for b in scene.bands)  # finest copy of each band
    assert scene.name == safe.name[: -len(".SAFE")]
    report = tile([tmp_path], tmp_path / "out", TileOptions(size=16, cloud_mask="auto"),
                  progress=False)
    assert (report.written, report.rejected) == (6, 3)  # top row of chips under SCL clouds
    gdf = chip_index.read_index(tmp_path / "out")
    assert str(gdf["datetime"].iloc[0]) == "2022-07-06 08:56:11+00:00"


def test_interrupted_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geossl.tiling import tile as tiling

    folder = generate_major_tom(tmp_path / "mt", size10=48)
    out = tmp_path / "out"
    real_write = tiling._write_chip
    calls = {"n": 0}

    def dying_write(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # killed while writing the 4th chip
        real_write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tiling, "_write_chip", dying_write)
    with pytest.raises(KeyboardInterrupt):
        tile([folder], out, TileOptions(size=16), progress=False)
    assert len(_chips(out)) == 3 and not (out / "index.parquet").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    monkeypatch.setattr(tiling, "_write_chip", real_write)
    report = tile([folder], out, TileOptions(size=16), progress=False)
    assert (report.written, report.existing) == (6, 3)
    assert len(chip_index.read_index(out)) == 9


def test_overlapping_stride(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    report = tile([folder], tmp_path / "out", TileOptions(size=32, stride=16), progress=False)
    assert report.written == 4


def test_resume(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=96, nodata_rows=12)
    out = tmp_path / "out"
    opts = TileOptions(size=32, min_valid=0.9)
    first = tile([folder], out, opts, progress=False)
    assert first.written == 6 and first.rejected == 3
    chips = _chips(out)
    mtimes = {p: p.stat().st_mtime_ns for p in chips}
    index_before = gpd.read_parquet(out / "index.parquet")

    again = tile([folder], out, opts, progress=False)
    assert (again.written, again.existing, again.rejected) == (0, 6, 3)
    assert {p: p.stat().st_mtime_ns for p in _chips(out)} == mtimes

    victim = chips[2]
    victim.unlink()
    (out / "index.parquet").unlink()
    third = tile([folder], out, opts, progress=False)
    assert (third.written, third.existing) == (1, 5)
    assert victim.exists()
    for p, t in mtimes.items():
        if p != victim:
            assert p.stat().st_mtime_ns == t
    index_after = gpd.read_parquet(out / "index.parquet")
    assert index_after.drop(columns="geometry").equals(index_before.drop(columns="geometry"))


def test_no_partial_files(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    out = tmp_path / "out"
    stale = out / folder.name / ".x.tif.abc123.part"  # what a killed run leaves
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    (out / ".geossl-output.json").write_text('{"command": "tile"}')  # written first by a run
    tile([folder], out, TileOptions(size=16), progress=False)
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    for p in _chips(out):
        assert oct(p.stat().st_mode & 0o777) != oct(0o600)


def test_min_valid_nodata(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=96, nodata_rows=6)
    out = tmp_path / "out"
    report = tile([folder], out, TileOptions(size=32, min_valid=0.5), progress=False)
    gdf = chip_index.read_index(out)
    assert report.written == 9
    top = gdf[gdf["row"] == 0]
    np.testing.assert_allclose(top["valid_fraction"], (32 - 6) / 32)
    assert (gdf[gdf["row"] > 0]["valid_fraction"] == 1.0).all()
    strict = tile([folder], tmp_path / "strict", TileOptions(size=32, min_valid=0.9),
                  progress=False)
    assert (strict.written, strict.rejected) == (6, 3)


def test_min_valid_nan(tmp_path: Path) -> None:
    path = generate_multiband(tmp_path / "scene.tif", size=64, nan_rows=20)
    report = tile([path], tmp_path / "out", TileOptions(size=32, min_valid=0.9),
                  progress=False)
    assert (report.written, report.rejected) == (2, 2)
    gdf = chip_index.read_index(tmp_path / "out")
    assert gdf["bands"].iloc[0] == "red,green,blue" and set(gdf["row"]) == {32}
    assert set(gdf["sensor"]) == {""}


def test_cloud_mask(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=96, cloud_box=(0, 40, 0, 40))
    clear = tile([folder], tmp_path / "a", TileOptions(size=32), progress=False)
    assert clear.written == 9
    auto = tile([folder], tmp_path / "b", TileOptions(size=32, cloud_mask="auto"),
                progress=False)
    # (0,0) fully cloudy; (0,32), (32,0): 8 of 32 columns/rows cloudy (75 % < 90 %);
    # (32,32): 8 x 8 cloudy pixels (94 % valid, kept)
    assert (auto.written, auto.rejected) == (6, 3)
    explicit = tile([folder], tmp_path / "c",
                    TileOptions(size=32, cloud_mask=str(folder / "cloud_mask.tif"),
                                min_valid=0.7), progress=False)
    assert (explicit.written, explicit.rejected) == (8, 1)


def test_parallel_scenes(tmp_path: Path) -> None:
    a = generate_major_tom(tmp_path / "mt", size10=48)
    b = generate_major_tom(tmp_path / "mt", size10=48, cell=("1U", "1U_2R"),
                           product="S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_2023",
                           crs="EPSG:32648")
    report = tile([tmp_path / "mt"], tmp_path / "out", TileOptions(size=16), workers=2,
                  progress=False)
    assert report.scenes == 2 and report.written == 18
    gdf = chip_index.read_index(tmp_path / "out")
    assert set(gdf["scene"]) == {a.name, b.name}
    assert set(gdf["crs"]) == {"EPSG:32633", "EPSG:32648"}


# ---- bad input: one-line DataError naming the file, CLI exit 2 -------------------------------


def test_corrupt_band(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    (folder / "B05.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(DataError, match=r"B05\.tif") as err:
        tile([folder], tmp_path / "out", TileOptions(size=16), progress=False)
    assert "\n" not in str(err.value)


def test_missing_band(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    with pytest.raises(DataError, match=r"missing band.*B10"):
        tile([folder], tmp_path / "out", TileOptions(size=16, bands=("B02", "B10")),
             progress=False)


def test_crs_mismatch(tmp_path: Path) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    with rasterio.open(folder / "B05.tif") as src:
        arr, transform = src.read(), src.transform
    from tests.data.chips.data import write_raster

    write_raster(folder / "B05.tif", arr, "EPSG:32634", transform)
    with pytest.raises(DataError, match=r"B05\.tif: CRS mismatch"):
        open_scene(folder)


@pytest.mark.parametrize("case", ["corrupt", "missing", "crs"])
def test_cli_errors(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    args = ["tile", str(folder), "--out", str(tmp_path / "out"), "--size", "16"]
    if case == "corrupt":
        (folder / "B11.tif").write_bytes(b"\x00" * 100)
    elif case == "missing":
        (folder / "B11.tif").unlink()
        args += ["--bands", "B02,B11"]
    else:
        with rasterio.open(folder / "B01.tif") as src:
            arr, transform = src.read(), src.transform
        from tests.data.chips.data import write_raster

        write_raster(folder / "B01.tif", arr, "EPSG:4326", transform)
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("geossl tile: error: ")
    assert "Traceback" not in err
    assert ("B11" in lines[-1]) if case != "crs" else ("B01.tif" in lines[-1])


def test_cli_tile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    out = tmp_path / "out"
    assert main(["tile", str(tmp_path / "mt"), "--out", str(out), "--size", "16",
                 "--bands", "B04,B03,B02", "--format", "npy"]) == 0
    assert "9 chip(s) written" in capsys.readouterr().out
    gdf = chip_index.read_index(out)
    assert len(gdf) == 9 and gdf["bands"].iloc[0] == "B04,B03,B02"
    assert (out / "packed" / "meta.json").is_file()
    assert folder.name in set(gdf["scene"])


# ---- the real Major-TOM cell -----------------------------------------------------------------


@pytest.mark.real
def test_real_major_tom(tmp_path: Path) -> None:
    cell = real_path("major_tom_s2l2a", "0U", "0U_199R")
    (product,) = [p for p in cell.iterdir() if p.is_dir()]
    out = tmp_path / "out"
    report = tile([product], out, TileOptions(size=128, min_valid=0.9, cloud_mask="auto"),
                  progress=False)
    assert report.written == 64  # 1068 px: 8 x 8 full chips
    gdf = chip_index.read_index(out)
    row = gdf[(gdf["row"] == 256) & (gdf["col"] == 384)].iloc[0]
    window = Window(384, 256, 128, 128)
    with rasterio.open(out / row["path"]) as chip:
        assert chip.count == 12 and list(chip.descriptions) == S2_12
        data = chip.read()
        with rasterio.open(product / "B02.tif") as ref:
            assert chip.crs == ref.crs
            assert chip.transform == windows.transform(window, ref.transform)
            grid_transform, grid_shape = ref.transform, ref.shape
        for k, band in enumerate(S2_12):
            with rasterio.open(product / f"{band}.tif") as src:
                if MT_BANDS[band] == 10:  # on the grid: bit-exact window read
                    np.testing.assert_array_equal(data[k], src.read(1, window=window))
                else:  # resampled: same as warping the whole band onto the 10 m grid
                    full = np.zeros(grid_shape, dtype=np.float32)
                    reproject(src.read(1).astype(np.float32), full,
                              src_transform=src.transform, src_crs=src.crs,
                              dst_transform=grid_transform, dst_crs=src.crs,
                              resampling=Resampling.bilinear)
                    expected = full[256:384, 384:512]
                    # only the rounding to uint16 differs
                    assert np.abs(data[k].astype(np.float32) - expected).max() <= 0.5, band
    # the footprint in EPSG:4326 contains the chip centre
    with rasterio.open(out / row["path"]) as chip:
        from pyproj import Transformer

        cx, cy = (chip.bounds.left + chip.bounds.right) / 2, (chip.bounds.top
                                                              + chip.bounds.bottom) / 2
        lon, lat = Transformer.from_crs(chip.crs, 4326, always_xy=True).transform(cx, cy)
    import shapely

    assert row["geometry"].contains(shapely.Point(lon, lat))
    assert os.path.getsize(out / "index.parquet") > 0


# ---- scene names, failed runs, error lines (issue 11) ----------------------------------------


def _all_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("where", [".", ".."])
def test_dot_scene_names_stay_inside_out(tmp_path: Path, where: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = generate_major_tom(tmp_path / "mt", size10=48)
    cwd = folder if where == "." else folder / "sub"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    before = _all_files(tmp_path)
    out = tmp_path / "work" / "out"
    assert main(["tile", where, "--out", str(out), "--size", "16"]) == 0
    new = _all_files(tmp_path) - before
    assert new and all(out in p.parents for p in new), sorted(new - set(out.rglob("*")))
    gdf = chip_index.read_index(out)
    assert set(gdf["scene"]) == {folder.name}  # the folder's real name, not '' or '..'
    assert all(p.startswith(f"{folder.name}/") for p in gdf["path"])


def test_scene_names_are_safe_file_names(tmp_path: Path) -> None:
    from geossl.tiling.scenes import safe_name, scene_name

    src = generate_multiband(tmp_path / "a b;c.tif", size=32)
    assert scene_name(src) == "a_b_c"
    assert scene_name(Path("/")) == "scene"
    assert safe_name("..") == "scene" and safe_name(".hidden") == "hidden"
    assert safe_name("x/../y") == "x_.._y" and "/" not in safe_name("a/b\\c")
    tile([src], tmp_path / "out", TileOptions(size=16), progress=False)
    assert {p.parent.name for p in _chips(tmp_path / "out")} == {"a_b_c"}


@pytest.mark.parametrize("case", ["all_nan", "corrupt"])
def test_failed_tile_leaves_no_out(tmp_path: Path, case: str) -> None:
    if case == "all_nan":
        scene = generate_multiband(tmp_path / "blank.tif", size=64, nan_rows=64)
    else:
        scene = generate_major_tom(tmp_path / "mt", size10=48)
        (scene / "B05.tif").write_bytes(b"not a tiff")
    out = tmp_path / "new" / "out"
    with pytest.raises(DataError) as err:
        tile([scene], out, TileOptions(size=16), progress=False)
    assert not out.exists() and not out.parent.exists()  # nor the parent it created
    if case == "all_nan":
        # the message names the scene, not the output folder
        assert str(err.value).startswith(f"{scene}: no chip kept")
        assert str(out) not in str(err.value)
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(DataError):
        tile([scene], existing, TileOptions(size=16), progress=False)
    assert existing.is_dir()  # a folder the user made is never removed


def test_failed_tile_keeps_chips_for_resume(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from geossl.tiling import tile as tiling

    a = generate_major_tom(tmp_path / "mt", size10=48)
    generate_major_tom(tmp_path / "mt", size10=48, cell=("1U", "1U_2R"),
                       product="S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_2023")
    real = tiling.tile_block

    def second_fails(scene: Any, *args: object, **kwargs: object) -> object:
        if scene.name != a.name:  # reading the second scene's pixels fails
            raise DataError("broken", scene.path)
        return real(scene, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tiling, "tile_block", second_fails)
    with pytest.raises(DataError):
        tile([tmp_path / "mt"], tmp_path / "out", TileOptions(size=16), progress=False)
    assert len(_chips(tmp_path / "out")) == 9


def test_cli_error_line_not_glued_to_progress_bar(tmp_path: Path) -> None:
    import subprocess
    import sys

    scene = generate_multiband(tmp_path / "blank.tif", size=64, nan_rows=64)
    proc = subprocess.run(
        [sys.executable, "-m", "geossl.cli", "tile", str(scene), "--out", str(tmp_path / "o"),
         "--size", "16"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.rstrip("\n").split("\n")[-1]  # what `tail -1` of the log shows
    assert last == (f"geossl tile: error: {scene}: no chip kept from this scene (size 16, "
                    "min-valid 0.9): smaller than a chip or mostly invalid (nodata, NaN, cloud)")


def test_warns_scene_missing_band(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_major_tom(tmp_path / "mt", size10=48)
    b = generate_major_tom(tmp_path / "mt", size10=48, cell=("1U", "1U_2R"),
                           product="S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_2023")
    (b / "B05.tif").unlink()
    assert main(["tile", str(tmp_path / "mt"), "--out", str(tmp_path / "out"),
                 "--size", "16"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.replace("\r", "\n").splitlines() if "warning" in line]
    assert len(warning) == 1, err
    assert warning[0].startswith(f"geossl tile: warning: scene {b.name} lacks band(s) B05 ")
    assert "--bands B01,B02,B03,B04,B06," in warning[0]
