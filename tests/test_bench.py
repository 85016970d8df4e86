"""`geossl bench`: the chip writer, the table, and a tiny CPU run of every measurement."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio

from geossl.bench.train import BenchConfig, Result, format_table, make_chips, run_bench
from geossl.cli import main


def test_make_chips_writes_a_chip_index(tmp_path: Path) -> None:
    index = make_chips(tmp_path, n=5, bands=4, size=16)
    frame = gpd.read_parquet(index)
    assert len(frame) == 5 and frame["chip_id"].is_unique
    assert frame.crs.to_epsg() == 4326
    for col in ("path", "scene", "sensor", "datetime", "crs", "res", "row", "col", "height",
                "width", "bands", "valid_fraction", "minx", "miny", "maxx", "maxy"):
        assert col in frame.columns, col
    row = frame.iloc[3]
    with rasterio.open(tmp_path / row["path"]) as src:
        assert src.count == 4 and src.width == 16 and src.height == 16
        assert src.crs.to_string() == row["crs"]
        assert src.bounds.left == pytest.approx(row["minx"])
        assert src.bounds.top == pytest.approx(row["maxy"])
        data = src.read()
    assert data.dtype.name == "uint16" and data.max() > 0
    assert row["bands"] == "B01,B02,B03,B04"


def test_table_has_ratios_against_the_baselines() -> None:
    rows = [Result("geossl-simclr", 300.0, 10.0), Result("torchgeo-simclr", 100.0, 30.0),
            Result("ceiling", 400.0, 7.5), Result("torchgeo-moco", math.nan, math.nan, "failed")]
    table = format_table(rows, BenchConfig())
    line = next(t for t in table.splitlines() if t.startswith("| geossl-simclr"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[4] == "3.00" and cells[5] == "0.75"
    assert "| torchgeo-moco | nan |" in table


def test_ceiling_and_torchgeo_run_on_cpu() -> None:
    cfg = BenchConfig(backbone="resnet18", bands=3, size=32, batch_size=4, steps=1, warmup=1,
                      device="cpu", only=["ceiling", "torchgeo-simclr"])
    results = {r.name: r for r in run_bench(cfg, progress=lambda s: None)}
    assert set(results) == {"ceiling", "torchgeo-simclr"}
    for r in results.values():
        assert math.isfinite(r.images_per_s) and r.images_per_s > 0, r


def test_geossl_rows_run_on_cpu(tmp_path: Path) -> None:
    cfg = BenchConfig(backbone="resnet18", bands=4, size=32, batch_size=4, steps=1, warmup=1,
                      device="cpu", workers=0, num_chips=12,
                      only=["geossl-simclr", "geossl-moco", "loader", "e2e-simclr",
                            "loader-packed", "e2e-simclr-packed"])
    results = {r.name: r for r in run_bench(cfg, progress=lambda s: None)}
    for name in cfg.only or []:
        assert math.isfinite(results[name].images_per_s), results[name]


def test_cli_bench_train_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "train", "--device", "cpu", "--backbone", "resnet18", "--bands", "2",
               "--size", "32", "--batch-size", "2", "--steps", "1", "--warmup", "1",
               "--only", "[ceiling]", "--out", str(tmp_path)])
    assert rc == 0
    assert "| ceiling |" in capsys.readouterr().out
    assert (tmp_path / "bench_train.json").exists() and (tmp_path / "bench_train.md").exists()


def test_cli_bench_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "train", "--only", "[warp-drive]"]) == 2
    assert "unknown measurement" in capsys.readouterr().err
