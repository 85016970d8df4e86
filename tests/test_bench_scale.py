"""`geossl bench scale`: the rasterio floor writes the same chip grid as `geossl tile`, and the
report prints every row (the cluster part is exercised by tests/test_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geossl.bench.scale import bench_floor, format_report, rasterio_floor
from geossl.tiling import chip_index
from tests.data.chips.data import generate_major_tom


def test_floor_matches_tile_grid(tmp_path: Path) -> None:
    cell = generate_major_tom(tmp_path / "mt", size10=96)
    assert rasterio_floor(cell, tmp_path / "floor", size=32) == 9
    r = bench_floor(tmp_path / "cache", tmp_path / "mt", repeats=1, size=32)
    assert r["chips"] == 9 and r["floor_s"] > 0 and r["tile_s"] > 0 and r["tile_cpu_s"] > 0
    gdf = chip_index.read_index(tmp_path / "cache" / "tile_1")
    row = gdf[(gdf["row"] == 32) & (gdf["col"] == 64)].iloc[0]
    with rasterio.open(tmp_path / "floor" / "chip_32_64.tif") as f, \
            rasterio.open(tmp_path / "cache" / "tile_1" / row["path"]) as t:
        assert f.transform == t.transform and f.crs == t.crs and f.count == t.count == 12
        # the 10 m bands are copied as they are by both
        np.testing.assert_array_equal(f.read(2), t.read(2))


def test_report_lists_every_row() -> None:
    rows = [{"workers": n, "tile_chips_s": 60.0 * n * 0.9 ** (n - 1), "tile_efficiency": 1.0,
             "tile_chips_cpu_s": 60.0, "tile_cpu_efficiency": 1.0, "embed_windows_s": 100.0 * n,
             "embed_efficiency": 1.0, "embed_windows_cpu_s": 90.0, "embed_cpu_efficiency": 1.0}
            for n in (1, 2)]
    text = format_report({"cpu_count": 2, "repeats": 3,
                          "floor": {"cell": "c", "chips": 64, "size": 128, "floor_s": 0.42,
                                    "floor_cpu_s": 0.4, "tile_s": 1.0, "tile_cpu_s": 0.9,
                                    "tile_vs_floor": 2.38, "tile_vs_floor_cpu": 2.25},
                          "workers": {"cells": 2, "size": 128, "embed_size": 32, "rows": rows},
                          "pretrain": None})
    assert "2.38x the floor" in text and "not measured" in text
    assert len([line for line in text.splitlines() if line.strip().startswith(("1 |", "2 |"))]) == 2


def test_report_lists_the_pretrain_rows() -> None:
    rows = [{"workers": 1, "tile_chips_s": 60.0, "tile_efficiency": 1.0,
             "tile_chips_cpu_s": 60.0, "tile_cpu_efficiency": 1.0, "embed_windows_s": 100.0,
             "embed_efficiency": 1.0, "embed_windows_cpu_s": 90.0, "embed_cpu_efficiency": 1.0}]
    pretrain = {"rows": [{"processes": 1, "steps_s": 1.06, "chips_s": 8.5},
                         {"processes": 2, "steps_s": 0.71, "chips_s": 11.4}], "efficiency": 0.67}
    text = format_report({"cpu_count": 2, "repeats": 1,
                          "workers": {"cells": 1, "size": 128, "embed_size": 32, "rows": rows},
                          "pretrain": pretrain})
    assert "not measured" not in text and "parallel efficiency 0.67" in text
    assert any(line.split() == ["2", "|", "0.71", "|", "11.4"] for line in text.splitlines())


def test_compared_runs_are_interleaved_with_load_and_cpu() -> None:
    """Issue 18 item 21: A B A B (after one warm-up each), best times, load and CPU per side."""
    from geossl.bench.scale import interleaved

    calls: list[str] = []
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    for side in ("a", "b"):
        assert t[side]["wall_s"] >= 0 and t[side]["cpu_s"] >= 0
        assert 0 <= t[side]["load"] <= t[side]["load_max"]


def test_report_prints_load_and_cpu_beside_the_ratios() -> None:
    rows = [{"workers": n, "tile_chips_s": 60.0 * n, "tile_efficiency": 1.0,
             "tile_chips_cpu_s": 60.0, "tile_cpu_efficiency": 1.0, "tile_cpu_s": 1.5,
             "embed_windows_s": 100.0 * n, "embed_efficiency": 1.0, "embed_windows_cpu_s": 90.0,
             "embed_cpu_efficiency": 1.0, "embed_cpu_s": 2.25, "load": 1.5, "load_max": 2.0}
            for n in (1, 2)]
    text = format_report({"cpu_count": 2, "repeats": 3,
                          "floor": {"cell": "c", "chips": 64, "size": 128, "floor_s": 0.42,
                                    "floor_cpu_s": 0.4, "tile_s": 1.0, "tile_cpu_s": 0.9,
                                    "tile_vs_floor": 2.38, "tile_vs_floor_cpu": 2.25,
                                    "load": 0.75, "load_max": 1.25},
                          "workers": {"cells": 2, "size": 128, "embed_size": 32, "rows": rows},
                          "pretrain": None})
    assert "2.25x in CPU time; load 0.75 (max 1.25)" in text
    assert "interleaved" in text
    row2 = next(line for line in text.splitlines() if line.strip().startswith("2 |"))
    assert "1.50" in row2 and "2.25" in row2 and row2.rstrip().endswith("1.50 (max 2.00)")


def test_data_default_needs_the_environment_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    monkeypatch.delenv("GEOSSL_REAL_DATA", raising=False)
    assert main(["bench", "scale", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GEOSSL_REAL_DATA" in err[0] and "--data" in err[0]
    monkeypatch.setenv("GEOSSL_REAL_DATA", str(tmp_path / "nowhere"))
    assert main(["bench", "scale", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Major-TOM cell" in err[0] and "nowhere" in err[0]
    assert not (tmp_path / "c").exists()


def test_cache_that_is_a_user_folder_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The runs remove their own earlier outputs in --cache: a user's folder is refused first."""
    from geossl.cli import main
    from tests.data.chips.data import generate_major_tom

    generate_major_tom(tmp_path / "mt", size10=48)
    mine = tmp_path / "mine"
    (mine / "tile_0").mkdir(parents=True)
    (mine / "tile_0" / "notes.txt").write_text("keep me\n")
    assert main(["bench", "scale", "--cache", str(mine), "--data", str(tmp_path / "mt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(mine) in err[0], err
    assert (mine / "tile_0" / "notes.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in mine.iterdir()) == ["tile_0"]


def test_json_that_is_a_folder_is_refused_before_the_benchmark(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--json`` naming a folder: one line, exit 2, before minutes of benchmark are spent."""
    import geossl.bench.scale as scale
    from geossl.cli import main

    ran: list[bool] = []
    monkeypatch.setattr(scale, "bench_scale", lambda *a, **k: ran.append(True) or {})
    (tmp_path / "out").mkdir()
    assert main(["bench", "scale", "--data", str(tmp_path), "--json", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--json" in err[0], err
    assert not ran
