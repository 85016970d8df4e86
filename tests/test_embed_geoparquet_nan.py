"""``embed --format geoparquet`` on windows without a valid pixel: their rows are left out of the
GeoParquet (no NaN vector in it), and how many is said (the result and the command's line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geossl.embed import embed
from geossl.embeddings.records import read_geoparquet
from tests.test_embed import _source
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
