"""Hardening of data, statistics, checkpoints, docs and progress (issue 18, items 8-22 of h18c).

Each test reproduces a case of the adversarial matrix in docs/reliability.md: it failed before
the fix and passes after it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.core.errors import DataError

# ---- item 11: a small checkpoint must not inflate to gigabytes ---------------------------------


def _deflated(src: Path, dest: Path) -> None:
    """Rewrite a torch zip archive with every record deflate-compressed (as a hostile one)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def test_checkpoint_inflating_far_beyond_its_size_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geossl.core.io import load_torch_file

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"encoder.w": torch.zeros(4_000_000)}}, plain)  # 16 MB stored
    bomb = tmp_path / "bomb.ckpt"
    _deflated(plain, bomb)
    assert bomb.stat().st_size < plain.stat().st_size / 100  # tens of kB asking for 16 MB
    with pytest.raises(DataError, match="inflate") as err:
        load_torch_file(bomb)
    assert str(bomb) in str(err.value) and "\n" not in str(err.value)
    # a plain (stored) checkpoint loads, and the cap is configurable
    assert load_torch_file(plain)["state_dict"]["encoder.w"].shape == (4_000_000,)
    monkeypatch.setenv("GEOSSL_CKPT_MAX_INFLATE", "2000")
    assert load_torch_file(bomb)["state_dict"]["encoder.w"].abs().sum() == 0
    monkeypatch.setenv("GEOSSL_CKPT_MAX_INFLATE", "x")
    with pytest.raises(Exception, match="GEOSSL_CKPT_MAX_INFLATE"):
        load_torch_file(plain)


# ---- item 8: embed on NaN scenes, --clusters < 0 -----------------------------------------------


def _nan_scene(path: Path, hole: str) -> Path:
    """A 5-band float GeoTIFF, ``hole`` = ``all`` (every pixel NaN) or ``left`` (left half)."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (5, 96, 128)).astype(np.float32)
    if hole == "all":
        data[:] = np.nan
    else:
        data[:, :, :64] = np.nan
    with rasterio.open(path, "w", driver="GTiff", height=96, width=128, count=5,
                       dtype="float32", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(data)
        dst.descriptions = tuple(f"B0{i + 1}" for i in range(5))
    return path


def test_embed_all_nan_scene_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    from geossl.inference.embed import EmbedConfig, embed
    from tests.test_embed import _source

    scene = _nan_scene(tmp_path / "nan.tif", "all")
    out = tmp_path / "o.zarr"
    with pytest.raises(DataError, match="no valid pixel") as err:
        embed(EmbedConfig(_source(5), scene, out, size=32, clusters=2, accelerator="cpu"))
    assert str(scene) in str(err.value)
    assert not out.exists() and not (tmp_path / "o_clusters.tif").exists()


def test_embed_nan_holed_scene_warns_and_leaves_holes_empty(tmp_path: Path) -> None:
    import rasterio
    import xarray as xr

    from geossl.core.errors import GeosslWarning
    from geossl.inference.embed import EmbedConfig, embed
    from tests.test_embed import _source

    scene = _nan_scene(tmp_path / "holed.tif", "left")
    # windows of 32 at stride 24: columns 0, 24 all NaN; 48 straddles the hole; 72, 96 valid
    with pytest.warns(GeosslWarning, match=r"6 of 15 windows have no valid pixel.*3 of 15 "):
        res = embed(EmbedConfig(_source(5), scene, tmp_path / "h.zarr", size=32, stride=24,
                                clusters=2, accelerator="cpu"))
    emb = xr.open_zarr(tmp_path / "h.zarr")["embedding"].values
    assert emb.shape == (8, 3, 5)
    assert np.isnan(emb[:, :, :2]).all() and np.isfinite(emb[:, :, 2:]).all()
    with rasterio.open(res.cluster_map) as cm:  # type: ignore[arg-type]
        lab = cm.read(1)
    assert (lab[:, :2] == cm.nodata).all() and (lab[:, 2:] != cm.nodata).all()


def test_embed_negative_clusters_is_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    scene = _nan_scene(tmp_path / "holed.tif", "left")
    rc = main(["embed", str(tmp_path / "any.ckpt"), str(scene), "--out", str(tmp_path / "o.zarr"),
               "--clusters", "-3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--clusters" in err[0] and "-3" in err[0]
    assert not (tmp_path / "o.zarr").exists()


# ---- item 9: percentiles exact in one process and on Dask ---------------------------------------


def test_percentiles_exact_whatever_the_chunks() -> None:
    from geossl.data.stats import BandAccumulator

    rng = np.random.default_rng(1)
    # uint16-like DN (many more values than the reservoir), a float band with few levels
    x = np.stack([rng.gamma(2.0, 600.0, 30_000).round(),
                  rng.integers(0, 7, 30_000) * 0.25]).astype(np.float32)
    x[0, :50] = np.nan
    whole = BandAccumulator(2, reservoir=500)
    whole.update(x)
    parts = [BandAccumulator(2, reservoir=500, seed=[0, i]) for i in range(3)]  # as Dask's chunks
    for i, part in enumerate(parts):
        part.update(x[:, i * 10_000:(i + 1) * 10_000])
    merged = parts[0]
    merged.merge(parts[1])
    merged.merge(parts[2])
    pcts = (0.5, 1, 50, 99, 99.9)
    a, b = whole.result(pcts), merged.result(pcts)
    for p in pcts:
        # every value in float64, sorted: the exact percentile
        want = [float(np.percentile(v[np.isfinite(v)].astype(np.float64), p)) for v in x]
        assert a[f"p{p:g}"] == b[f"p{p:g}"]  # one process and Dask chunks: identical
        np.testing.assert_allclose(a[f"p{p:g}"], want, rtol=1e-12)
    assert a["percentiles_exact"] and b["percentiles_exact"]


def test_percentiles_of_too_many_distinct_values_say_approximate() -> None:
    from geossl.data.stats import BandAccumulator

    x = np.random.default_rng(2).normal(0, 1, (1, 5000)).astype(np.float32)  # all distinct
    acc = BandAccumulator(1, reservoir=500, exact_values=1000)
    acc.update(x[:, :2500])
    acc.update(x[:, 2500:])
    res = acc.result()
    assert not res["percentiles_exact"]
    assert abs(res["p1"][0] - np.percentile(x, 1)) < 0.5  # from the reservoir


# ---- item 17: bands chosen by common name keep their canonical names ---------------------------


@pytest.mark.parametrize("named", [True, False])
def test_stac_common_names_give_canonical_band_names(tmp_path: Path, named: bool) -> None:
    """``--bands blue,red`` on STAC: chips and index say ``B02,B04`` (as checkpoints and other
    indexes do), whether ``eo:bands`` gives the name or only the common name (Sentinel-2)."""
    import json

    import rasterio

    from geossl.tiling import chip_index
    from geossl.tiling.tile import TileOptions, tile
    from tests.data.chips.data import generate_major_tom
    from tests.test_remote import COMMON, stac_item

    data = tmp_path / "data"
    cell = generate_major_tom(data, size10=96)
    item = stac_item(cell, data, "", relative_to=".")
    if not named:
        for asset in item.assets.values():
            for b in asset.extra_fields.get("eo:bands", []):
                b.pop("name")
    (data / "item.json").write_text(json.dumps(item.to_dict()))
    out = tmp_path / "out"
    tile([str(data / "item.json")], out, TileOptions(size=32, bands=("blue", "red", "B08")),
         progress=False)
    index = chip_index.read_index(out / "index.parquet")
    assert set(index["bands"]) == {"B02,B04,B08"}
    with rasterio.open(out / str(index["path"].iloc[0])) as chip:
        assert chip.descriptions == ("B02", "B04", "B08")
    assert COMMON["B02"] == "blue"


# ---- item 14: complex rasters, a scene named index.parquet, mixed-band index, antimeridian -----


def test_complex_raster_is_refused_not_truncated(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import rasterio
    from affine import Affine

    from geossl.cli import main

    path = tmp_path / "slc.tif"
    z = (np.ones((1, 64, 64)) + 2j * np.ones((1, 64, 64))).astype(np.complex64)
    with rasterio.open(path, "w", driver="GTiff", height=64, width=64, count=1,
                       dtype="complex64", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(z)
    out = tmp_path / "chips"
    assert main(["tile", str(path), "--out", str(out), "--size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "complex" in err[0]
    assert not any(out.rglob("*.tif"))


def test_scene_named_like_the_index_does_not_break_it(tmp_path: Path) -> None:
    from geossl.tiling import chip_index
    from geossl.tiling.tile import TileOptions, tile
    from tests.data.chips.data import generate_major_tom

    scene = generate_major_tom(tmp_path / "scenes", size10=96, product="index.parquet")
    assert scene.name == "index.parquet"
    out = tmp_path / "chips"
    report = tile([scene], out, TileOptions(size=32), progress=False)
    assert (out / "index.parquet").is_file()
    gdf = chip_index.read_index(out / "index.parquet")
    assert len(gdf) == report.chips > 0
    assert all((out / p).is_file() for p in gdf["path"])
    assert not any(str(p).startswith("index.parquet/") for p in gdf["path"])


def test_index_of_mixed_band_chips_warns_as_tile_does(tmp_path: Path) -> None:
    from geossl.core.errors import GeosslWarning
    from geossl.tiling.chip_index import build_index
    from geossl.tiling.tile import TileOptions, tile
    from tests.data.chips.data import generate_major_tom

    a = generate_major_tom(tmp_path / "s", size10=96)
    b = generate_major_tom(tmp_path / "s", size10=96, cell=("1U", "1U_2R"),
                           product="S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_2023")
    (b / "B05.tif").unlink()  # one scene lacks a band
    out = tmp_path / "chips"
    with pytest.warns(GeosslWarning, match="lacks band"):
        tile([a, b], out, TileOptions(size=32), progress=False)
    (out / "index.parquet").unlink()
    with pytest.warns(GeosslWarning, match=r"lacks band\(s\) B05"):
        build_index(out, progress=False)


def test_footprints_across_the_antimeridian_stay_within_180(tmp_path: Path) -> None:
    import shapely

    from geossl.tiling.chip_index import lonlat_centroids, make_index

    row = {"chip_id": "c", "path": "c.tif", "scene": "s", "sensor": "", "datetime": None,
           "crs": "EPSG:32660", "res": 10.0, "row": 0, "col": 0, "height": 3000, "width": 3000,
           "bands": "B02", "valid_fraction": 1.0, "minx": 720000.0, "miny": 5000000.0,
           "maxx": 750000.0, "maxy": 5010000.0}
    west = dict(row, chip_id="w", minx=600000.0, maxx=630000.0)
    gdf = make_index([row, west])
    geom = gdf.set_index("chip_id").geometry
    across, plain = geom["c"], geom["w"]
    lon_min, _, lon_max, _ = across.bounds
    assert -180 <= lon_min and lon_max <= 180
    parts = list(getattr(across, "geoms", [across]))
    assert len(parts) == 2  # split at the antimeridian
    assert all(p.bounds[2] - p.bounds[0] < 1 for p in parts)  # each a sliver, not the globe
    assert abs(sum(p.area for p in parts) - shapely.area(plain)) / plain.area < 0.05
    assert plain.geom_type == "Polygon" and 178 < plain.bounds[0] < 180
    # its centroid (the UTM zone splits project it to) is at the antimeridian, not near 0
    lon, lat = lonlat_centroids(gdf.geometry.to_numpy())
    assert abs(abs(lon[list(gdf["chip_id"]).index("c")]) - 180) < 0.3 and 45 < lat[0] < 45.3


# ---- item 22: progress in logs -------------------------------------------------------------------


def test_progress_in_a_log_is_timed_lines_with_the_time_left(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from geossl.core.progress import progress

    monkeypatch.setenv("GEOSSL_PROGRESS_S", "0.05")
    bar = progress(total=0, desc="tasks", unit="task")
    for _ in range(10):  # a growing task graph: explicit redraws keep to the interval too
        bar.total += 1
        bar.refresh()
    for _ in range(10):
        time.sleep(0.02)
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 6, lines  # about one line per 0.05 s, not one per update
    assert all(line.startswith("tasks:") and "\r" not in line for line in lines)
    assert any("<" in line and "/10 [" in line for line in lines)  # [elapsed<left]
    # short work prints nothing at the default interval
    monkeypatch.delenv("GEOSSL_PROGRESS_S")
    for _ in progress(range(3), desc="quick"):
        pass
    assert capsys.readouterr().err == ""


# ---- item 20: nodes launched with plain environment variables (docs/scale.md) -------------------


@pytest.mark.slow  # two pretraining processes (gloo, CPU): about a minute on a busy machine
@pytest.mark.timeout(600)
def test_nodes_started_with_plain_environment_variables(tmp_path: Path) -> None:
    """``MASTER_ADDR``/``MASTER_PORT``/``WORLD_SIZE``/``NODE_RANK`` and one ``geossl pretrain``
    per node, as scale.md says: two "nodes" on 127.0.0.1 form one run of 2 processes."""
    import os
    import socket
    import subprocess
    import sys

    from geossl.bench.train import make_chips
    from tests.conftest import REPO

    chips = make_chips(tmp_path / "chips", 8, 13, 32).parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    args = ["pretrain", "--data", "chips", "--root", str(chips), "--out", str(out),
            "--sensors", "s2", "--pairing", "aug", "--method", "simclr", "--backbone",
            "test_convnext", "--img-size", "32", "--workers", "0", "--accelerator", "cpu",
            "--devices", "1", "--num-nodes", "2", "--strategy", "ddp", "--batch-size", "4",
            "--max-steps", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    procs = [subprocess.Popen([sys.executable, "-m", "geossl.cli", *args],
                              env={**env, "NODE_RANK": str(rank)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    logs = [p.communicate(timeout=500)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs[0] and "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]
    assert (out / "checkpoints" / "last.ckpt").is_file()
