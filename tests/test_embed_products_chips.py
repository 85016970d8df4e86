"""``embed --format geoparquet`` on windows without a valid pixel: their rows are left out of the
GeoParquet (no NaN vector in it), and how many is said. ``embed`` on a chip index of chips that
``geossl tile`` did not cut: placed by their footprints, not stacked on one cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geossl.embeddings.records import read_geoparquet
from tests.test_embed import _source
from tests.test_embed import embed_with as embed
from tests.test_reliability_data import _nan_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_geoparquet_leaves_out_and_counts_empty_windows(tmp_path: Path) -> None:
    scene = _nan_scene(tmp_path / "holed.tif", "left")  # 96 x 128, the left 64 columns NaN
    with pytest.warns(UserWarning, match="6 of 12 windows have no valid pixel"):
        res = embed(_source(5), scene, tmp_path / "o.zarr", size=32, device="cpu",
                    formats="zarr,geoparquet", progress=False)
    table = read_geoparquet(res.products["geoparquet"])
    assert len(table) == 6 and np.isfinite(table.vectors).all()
    assert sorted(table.frame["col"].astype(int)) == [64, 64, 64, 96, 96, 96]
    assert res.product_rows == 6 and res.rows_left_out == 6


def test_cli_says_how_many_rows_were_left_out(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main
    from geossl.testing.checkpoints import random_simclr_checkpoint

    ckpt = random_simclr_checkpoint(tmp_path / "last.ckpt", [f"B0{i + 1}" for i in range(5)])
    scene = _nan_scene(tmp_path / "holed.tif", "left")
    rc = main(["embed", str(ckpt), str(scene), "--out", str(tmp_path / "o.zarr"),
               "--size", "32", "--format", "geoparquet"])
    assert rc == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "no row in the GeoParquet" in captured.err
    line = next(x for x in out.splitlines() if "o.parquet" in x)
    assert "6 rows" in line and "6 windows without a valid pixel left out" in line, out
    assert len(read_geoparquet(tmp_path / "o.parquet")) == 6


# ---- a chip index of chips not cut by `geossl tile` (no grid offsets in their tags) ----------


def _indexed_chips(root: Path, n: int = 6) -> Path:
    from geossl.tiling.chip_index import build_index
    from tests.data.chips.data import generate_chips

    generate_chips(root / "chips", n=n, size=32, bands=4)  # side by side along x, 320 m apart
    index = build_index(root / "chips", progress=False)
    assert (index["row"] == -1).all() and (index["col"] == -1).all()  # `geossl index`: unknown
    path = root / "chips" / "index.parquet"
    index.to_parquet(path)
    return path


def test_embed_places_untiled_chips_by_their_footprints(tmp_path: Path) -> None:
    import rasterio
    import rioxarray  # noqa: F401
    import torch
    import xarray as xr

    index = _indexed_chips(tmp_path)
    src = _source(4)
    res = embed(src, index, tmp_path / "c.zarr", device="cpu", progress=False)
    # six chips in a row, not one cell overwritten six times (the 1 x 1 cube seen before)
    assert res.shape == (8, 1, 6)
    ds = xr.open_zarr(tmp_path / "c.zarr", decode_coords="all")
    assert tuple(ds.rio.transform())[:6] == (320, 0, 400000.0, 0, -320, 5000000.0)
    assert ds.rio.crs.to_epsg() == 32633
    emb = ds["embedding"].values
    for k in range(6):
        with rasterio.open(tmp_path / "chips" / "scene_20200101" / f"chip_{k:03d}.tif") as f:
            chip = torch.from_numpy(f.read().astype(np.float32))
        with torch.no_grad():
            want = src.encoder(chip[None])[0].numpy()
        np.testing.assert_allclose(emb[:, 0, k], want, rtol=1e-5, atol=1e-5)


def test_embed_refuses_chips_on_one_cell(tmp_path: Path) -> None:
    import pandas as pd

    from geossl.core.errors import DataError

    index = _indexed_chips(tmp_path, n=2)
    df = pd.read_parquet(index)
    twin = df.iloc[[0]].assign(chip_id="twin")  # the same footprint as chip_000
    pd.concat([df, twin]).to_parquet(index)
    with pytest.raises(DataError, match=r"chip_000.*twin|twin.*chip_000"):
        embed(_source(4), index, tmp_path / "c.zarr", device="cpu", progress=False)
    assert not (tmp_path / "c.zarr").exists()


def test_embed_refuses_unknown_offsets_without_footprints(tmp_path: Path) -> None:
    """An index without footprint columns and with unknown grid offsets (``-1``) cannot place
    its chips: one line, nothing written (rather than stacking them on the corner cell)."""
    import pandas as pd

    from geossl.core.errors import DataError

    index = _indexed_chips(tmp_path, n=2)
    df = pd.read_parquet(index).drop(columns=["minx", "miny", "maxx", "maxy", "geometry"])
    df.to_parquet(index)
    with pytest.raises(DataError, match=r"neither footprints.*grid offsets"):
        embed(_source(4), index, tmp_path / "c.zarr", device="cpu", progress=False)
    assert not (tmp_path / "c.zarr").exists()
