"""``geossl embed --sampler torchgeo-grid``: the windows drawn by TorchGeo's grid sampler over the
scene as a TorchGeo RasterDataset give the cube of geossl's own grid (same shape, coordinates,
CRS and transform; equal vectors); on a fake GeoTIFF and on the real Major-TOM cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from geossl.core.errors import ConfigError
from tests.conftest import real_path
from tests.test_embed import ORIGIN, _source
from tests.test_embed import embed_with as embed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _both(scene: Path, out: Path, n_in: int, **kw: object) -> tuple[xr.Dataset, xr.Dataset]:
    """The cubes of ``scene`` through geossl's grid and through TorchGeo's grid sampler."""
    cubes = []
    for sampler in ("grid", "torchgeo-grid"):
        embed(_source(n_in), scene, out / f"{sampler}.zarr", device="cpu", sampler=sampler,
              **kw)  # type: ignore[arg-type]
        cubes.append(xr.open_zarr(out / f"{sampler}.zarr", decode_coords="all"))
    return cubes[0], cubes[1]


def _same_grid(a: xr.Dataset, b: xr.Dataset) -> None:
    assert a["embedding"].shape == b["embedding"].shape
    assert a.rio.crs == b.rio.crs
    assert tuple(a.rio.transform())[:6] == tuple(b.rio.transform())[:6]
    assert np.array_equal(a.x.values, b.x.values) and np.array_equal(a.y.values, b.y.values)


def test_torchgeo_grid_same_cube_fake(tmp_path: Path) -> None:
    # 90 x 70 px, windows of 20 every 30: neither side is a whole number of steps, where
    # TorchGeo's own grid (from the bottom edge, past the top) would not meet geossl's windows
    h, w = 90, 70
    rng = np.random.default_rng(0)
    data = rng.uniform(1, 5, (3, h, w)).astype(np.float32)
    data[:, :30, 30:60] = 0  # no data: the window at row 0, column 1 has no valid pixel
    tif = tmp_path / "scene.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=h, width=w, count=3, dtype="float32",
                       crs="EPSG:32633", nodata=0,
                       transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])) as dst:
        dst.write(data)
        dst.descriptions = ("B02", "B03", "B04")
    with pytest.warns(UserWarning, match="no valid pixel"):
        a, b = _both(tif, tmp_path, 3, size=20, stride=30, block_rows=2)
    _same_grid(a, b)
    ea, eb = a["embedding"].values, b["embedding"].values
    assert ea.shape == (8, 3, 2)  # (90 - 20) // 30 + 1 rows, (70 - 20) // 30 + 1 columns
    assert np.isnan(ea[:, 0, 1]).all() and np.isnan(eb[:, 0, 1]).all()
    assert np.isfinite(eb).sum() == np.isfinite(ea).sum() == 8 * 5
    np.testing.assert_allclose(eb, ea, rtol=1e-6, atol=1e-6)
    assert b.attrs["geossl_sampler"] == "torchgeo-grid" and "geossl_sampler" not in a.attrs


def test_sampler_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    tif = tmp_path / "scene.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=32, width=32, count=1, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.ones((1, 32, 32), np.float32))
    with pytest.raises(ConfigError, match=r"torchgeo-random.*holes"):
        embed(_source(1), tif, tmp_path / "r.zarr", size=16, sampler="torchgeo-random")
    with pytest.raises(ConfigError, match="choose one of grid, torchgeo-grid"):
        embed(_source(1), tif, tmp_path / "r.zarr", size=16, sampler="grdi")
    assert not (tmp_path / "r.zarr").exists()
    assert main(["embed", str(tmp_path / "x.ckpt"), str(tif), "--out", str(tmp_path / "c.zarr"),
                 "--sampler", "torchgeo-random"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torchgeo-random" in err[0]
    import pandas as pd

    pd.DataFrame([{"path": "c.tif", "row": 0, "col": 0, "height": 16, "width": 16}]).to_parquet(
        tmp_path / "index.parquet")
    with pytest.raises(ConfigError, match="chip index"):
        embed(_source(1), tmp_path / "index.parquet", tmp_path / "i.zarr",
              sampler="torchgeo-grid", device="cpu")


@pytest.mark.real
def test_torchgeo_grid_same_cube_major_tom(tmp_path: Path) -> None:
    cell = real_path("major_tom_s2l2a", "0U", "0U_199R")
    scene = next(p for p in cell.iterdir() if p.is_dir())
    with rasterio.open(scene / "B02.tif") as ref:
        crs, t = ref.crs, ref.transform
    # 10 m bands: no resampling on either side, the vectors are equal
    a, b = _both(scene, tmp_path / "10m", 4, size=64, stride=192,
                 bands=["B02", "B03", "B04", "B08"])
    _same_grid(a, b)
    assert a.rio.crs == crs and a["embedding"].shape == (8, 6, 6)  # (1068 - 64) // 192 + 1
    assert np.allclose(b.x.values, t.c + t.a * (32 + 192 * np.arange(6)))
    ea, eb = a["embedding"].values, b["embedding"].values
    assert np.isfinite(eb).all()
    np.testing.assert_array_equal(eb, ea)
    # every band: the 20 and 60 m bands are warped to 10 m by each reader (both bilinear)
    a, b = _both(scene, tmp_path / "all", 12, size=64, stride=192)
    _same_grid(a, b)
    np.testing.assert_allclose(b["embedding"].values, a["embedding"].values, rtol=1e-3,
                               atol=1e-2)
