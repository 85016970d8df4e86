"""Embedding cubes: georeferencing, values, resume, cluster map, bounded reads, bad input;
on a fake GeoTIFF, a fake chip index and the real Major-TOM cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import torch
import xarray as xr
from affine import Affine
from torch import nn

from geossl.core.errors import DataError
from geossl.inference.embed import EmbedConfig, EmbedResult, Scene, embed
from geossl.pretrained.checkpoint import EncoderSource
from tests.conftest import real_path

ORIGIN = (500000.0, 4000000.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyEncoder(nn.Module):
    def __init__(self, in_chans: int, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = width
        self.calls = 0
        self.fail_after: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # a kill in the middle of the run
        return self.net(x)  # type: ignore[no-any-return]


def _source(in_chans: int, bands: list[str] | None = None) -> EncoderSource:
    meta = {"backbone": "tiny", "in_chans": in_chans, "bands": bands, "sensors": None,
            "normalization": {"mean": [0.0] * in_chans, "std": [1.0] * in_chans}}
    return EncoderSource(TinyEncoder(in_chans), meta, "tiny")


def embed_with(ckpt: Any, scene: Any, out: Any, **options: Any) -> EmbedResult:
    """The library's ``embed`` on an :class:`EmbedConfig` built from keyword options
    (``device=``, ``formats=``: the config's ``accelerator``, ``format``)."""
    renames = {"device": "accelerator", "formats": "format"}
    return embed(EmbedConfig(ckpt, scene, out, **{renames.get(k, k): v
                                                  for k, v in options.items()}))


def _geotiff(path: Path, bands: int = 5, h: int = 200, w: int = 160,
             crs: str = "EPSG:32633") -> Path:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (bands, h, w)).astype(np.float32)
    data[:, :, w // 2:] += 3  # two land covers: left and right halves
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=bands,
                       dtype="float32", crs=crs,
                       transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])) as dst:
        dst.write(data)
        dst.descriptions = tuple(f"B0{i + 1}" for i in range(bands))
    return path


def test_embed_geotiff(tmp_path: Path) -> None:
    tif = _geotiff(tmp_path / "scene.tif")
    src = _source(5)
    res = embed(EmbedConfig(src, tif, tmp_path / "out.zarr", size=32, stride=32, block_rows=2,
                            clusters=2, accelerator="cpu"))
    assert res.shape == (8, 6, 5)  # 200 // 32 rows, 160 // 32 cols
    ds = xr.open_zarr(tmp_path / "out.zarr", decode_coords="all")
    emb = ds["embedding"]
    assert emb.dims == ("band", "y", "x") and emb.shape == (8, 6, 5)
    assert ds.rio.crs.to_epsg() == 32633
    assert np.allclose(ds.x.values, ORIGIN[0] + 10 * (16 + 32 * np.arange(5)))
    assert np.allclose(ds.y.values, ORIGIN[1] - 10 * (16 + 32 * np.arange(6)))
    assert tuple(ds.rio.transform())[:6] == (320, 0, ORIGIN[0], 0, -320, ORIGIN[1])
    # a cube value equals the encoder on a direct window read of the scene
    with rasterio.open(tif) as f:
        win = f.read(window=rasterio.windows.Window(2 * 32, 3 * 32, 32, 32))
    with torch.no_grad():
        want = src.encoder(torch.from_numpy(win)[None])[0].numpy()
    assert np.allclose(emb.isel(y=3, x=2).values, want, atol=1e-5)
    assert np.isfinite(emb.values).all()
    # cluster map: one pixel per window, same grid; the two halves fall in different clusters
    assert res.cluster_map is not None
    with rasterio.open(res.cluster_map) as cm:
        assert (cm.height, cm.width) == (6, 5)
        assert cm.crs.to_epsg() == 32633
        assert tuple(cm.transform)[:6] == (320, 0, ORIGIN[0], 0, -320, ORIGIN[1])
        labels = cm.read(1)
    assert len(np.unique(labels[:, :2])) == 1 and labels[0, 0] != labels[0, -1]


def test_embed_overlapping_stride(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tif = _geotiff(tmp_path / "scene.tif", h=100, w=80)
    reads: list[tuple[int, int]] = []
    real_read = Scene.read_valid

    def spy(self: Scene, window: rasterio.windows.Window) -> tuple[np.ndarray, np.ndarray]:
        out, valid = real_read(self, window)
        reads.append(out.shape[1:])
        return out, valid

    monkeypatch.setattr(Scene, "read_valid", spy)
    res = embed(EmbedConfig(_source(5), tif, tmp_path / "o.zarr", size=32, stride=16, col_chunk=2,
                            block_rows=2, accelerator="cpu"))
    ds = xr.open_zarr(tmp_path / "o.zarr", decode_coords="all")
    assert res.shape == (8, (100 - 32) // 16 + 1, (80 - 32) // 16 + 1)
    # bounded memory: no read is larger than 2 window rows x 2 window columns of the scene,
    # and the cube is chunked by block rows x column chunks
    assert reads and max(h for h, _ in reads) <= 16 + 32 and max(w for _, w in reads) <= 16 + 32
    assert ds["embedding"].encoding["chunks"] == (8, 2, 2)
    assert np.allclose(ds.x.values, ORIGIN[0] + 10 * (16 + 16 * np.arange(ds.sizes["x"])))
    # cells of 16 px centred on the windows: origin shifted by (size - stride) / 2
    assert tuple(ds.rio.transform())[:6] == (160, 0, ORIGIN[0] + 80, 0, -160, ORIGIN[1] - 80)


def test_embed_resumes_after_kill(tmp_path: Path) -> None:
    tif = _geotiff(tmp_path / "scene.tif")
    out = tmp_path / "r.zarr"
    src = _source(5)
    src.encoder.fail_after = 2  # type: ignore[assignment]  # dies in the 3rd block
    with pytest.raises(KeyboardInterrupt):
        embed(EmbedConfig(src, tif, out, size=32, block_rows=2, accelerator="cpu", batch_size=10))
    assert json.loads((out / "geossl_progress.json").read_text())["done"] == [0, 1]
    src.encoder.fail_after = None  # type: ignore[assignment]
    res = embed(EmbedConfig(src, tif, out, size=32, block_rows=2, accelerator="cpu", batch_size=10))
    assert res.blocks_skipped == 2 and res.blocks_done == 1
    full = embed(EmbedConfig(_source(5), tif, tmp_path / "full.zarr", size=32, block_rows=2,
                             accelerator="cpu"))
    assert full.blocks_done == 3
    a = xr.open_zarr(out)["embedding"].values
    b = xr.open_zarr(tmp_path / "full.zarr")["embedding"].values
    assert np.allclose(a, b, atol=1e-6)


def test_embed_chip_index(tmp_path: Path) -> None:
    import pandas as pd

    tif = _geotiff(tmp_path / "scene.tif", bands=3, h=96, w=96)
    rows = []
    with rasterio.open(tif) as f:
        for r in range(0, 96, 32):
            for c in range(0, 96, 32):
                if (r, c) == (32, 32):
                    continue  # a chip dropped by the valid-fraction filter
                win = rasterio.windows.Window(c, r, 32, 32)
                path = tmp_path / "chips" / f"c_{r}_{c}.tif"
                path.parent.mkdir(exist_ok=True)
                with rasterio.open(path, "w", driver="GTiff", height=32, width=32, count=3,
                                   dtype="float32", crs=f.crs,
                                   transform=f.window_transform(win)) as dst:
                    dst.write(f.read(window=win))
                rows.append({"chip_id": path.stem, "path": f"chips/{path.name}", "scene": "s",
                             "row": r, "col": c, "height": 32, "width": 32})
    pd.DataFrame(rows).to_parquet(tmp_path / "index.parquet")
    res = embed(EmbedConfig(_source(3), tmp_path / "index.parquet", tmp_path / "c.zarr",
                            accelerator="cpu"))
    ds = xr.open_zarr(tmp_path / "c.zarr", decode_coords="all")
    assert res.shape == (8, 3, 3)
    assert tuple(ds.rio.transform())[:6] == (320, 0, ORIGIN[0], 0, -320, ORIGIN[1])
    emb = ds["embedding"].values
    assert np.isnan(emb[:, 1, 1]).all() and np.isfinite(emb[:, 0, 0]).all()
    ref = embed(EmbedConfig(_source(3), tif, tmp_path / "ref.zarr", size=32, accelerator="cpu"))
    assert ref.shape == res.shape
    assert np.allclose(xr.open_zarr(tmp_path / "ref.zarr")["embedding"].values[:, 0], emb[:, 0],
                       atol=1e-5)


def test_embed_bad_input(tmp_path: Path) -> None:
    tif = _geotiff(tmp_path / "scene.tif")
    with pytest.raises(DataError, match="B09"):
        embed(EmbedConfig(_source(2, ["B01", "B09"]), tif, tmp_path / "x.zarr", accelerator="cpu"))
    with pytest.raises(DataError, match="encoder takes 4"):
        embed(EmbedConfig(_source(4), tif, tmp_path / "x.zarr", size=32, accelerator="cpu"))
    with pytest.raises(DataError, match="not found"):
        embed(EmbedConfig(_source(5), tmp_path / "nope.tif", tmp_path / "x.zarr",
                          accelerator="cpu"))
    folder = tmp_path / "bands"
    folder.mkdir()
    _geotiff(folder / "B02.tif", bands=1)
    _geotiff(folder / "B03.tif", bands=1, crs="EPSG:32632")
    with pytest.raises(DataError, match="CRS"):
        Scene(folder)


@pytest.mark.real
def test_embed_major_tom(tmp_path: Path) -> None:
    cell = real_path("major_tom_s2l2a", "0U", "0U_199R")
    scene = next(p for p in cell.iterdir() if p.is_dir())
    sc = Scene(scene)
    assert len(sc.bands) == 12 and sc.bands[:2] == ["B01", "B02"] and "B8A" in sc.bands
    with rasterio.open(scene / "B02.tif") as ref:
        crs, t, h, w = ref.crs, ref.transform, ref.height, ref.width
    assert (sc.height, sc.width) == (h, w)
    size, stride = 64, 256
    res = embed(EmbedConfig(_source(12), scene, tmp_path / "mt.zarr", size=size, stride=stride,
                            clusters=3, accelerator="cpu"))
    ny, nx = (h - size) // stride + 1, (w - size) // stride + 1
    assert res.shape == (8, ny, nx)
    ds = xr.open_zarr(tmp_path / "mt.zarr", decode_coords="all")
    assert ds.rio.crs == crs
    assert np.allclose(ds.x.values, t.c + t.a * (size / 2 + stride * np.arange(nx)))
    assert np.allclose(ds.y.values, t.f + t.e * (size / 2 + stride * np.arange(ny)))
    assert np.isfinite(ds["embedding"].values).all()
    with rasterio.open(res.cluster_map) as cm:  # type: ignore[arg-type]
        assert cm.crs == crs and (cm.height, cm.width) == (ny, nx)
        assert cm.transform.a == t.a * stride


def test_cli_embed_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    assert main(["embed", str(tmp_path / "nope.ckpt"), str(tmp_path / "scene.tif"), "--out",
                 str(tmp_path / "o.zarr")]) == 2
    assert capsys.readouterr().err.startswith("geossl embed: error:")
