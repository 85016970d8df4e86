"""tools/tile_scenes.py: new scenes join a chip store whose index keeps the old scenes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, real_path
from tests.data.chips.data import generate_major_tom

SCRIPT = REPO / "tools" / "tile_scenes.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--no-progress"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_new_scene_joins_the_store(tmp_path: Path) -> None:
    import geopandas as gpd

    first = tmp_path / "inbox1"
    second = tmp_path / "inbox2"
    generate_major_tom(first, size10=48)
    generate_major_tom(second, size10=48, cell=("1U", "1U_200R"), origin=(600000.0, 5100000.0),
                       product="S2B_MSIL2A_20220801T085559_N0400_R007_T33NZA_20220801T112233")
    out = tmp_path / "chips"
    r1 = _run(str(first), "--out", str(out), "--size", "16")
    assert r1.returncode == 0, r1.stderr
    assert "1 new" in r1.stdout
    n1 = len(gpd.read_parquet(out / "index.parquet"))
    assert n1 > 0
    # only the new inbox is given: the index still holds the first scene's chips
    r2 = _run(str(second), "--out", str(out), "--size", "16")
    assert r2.returncode == 0, r2.stderr
    index = gpd.read_parquet(out / "index.parquet")
    assert index["scene"].nunique() == 2
    assert len(index) == 2 * n1
    assert index["chip_id"].is_unique
    for path in index["path"]:
        assert (out / path).is_file()
    # a rerun of the same inbox writes nothing new and says the scene is known
    r3 = _run(str(second), "--out", str(out), "--size", "16")
    assert r3.returncode == 0, r3.stderr
    assert "0 new" in r3.stdout and "0 chip(s) written" in r3.stdout
    assert len(gpd.read_parquet(out / "index.parquet")) == 2 * n1


def test_missing_inbox_is_one_line(tmp_path: Path) -> None:
    r = _run(str(tmp_path / "nope"), "--out", str(tmp_path / "chips"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "nope" in r.stderr
    assert not (tmp_path / "chips").exists()


@pytest.mark.real
def test_real_major_tom_cell(tmp_path: Path) -> None:
    import geopandas as gpd

    cell = real_path("major_tom_s2l2a", "0U", "0U_199R")
    out = tmp_path / "chips"
    r = _run(str(cell), "--out", str(out), "--size", "256", "--bands", "B02,B03,B04,B08")
    assert r.returncode == 0, r.stderr
    index = gpd.read_parquet(out / "index.parquet")
    assert len(index) > 0
    assert set(index["bands"]) == {"B02,B03,B04,B08"}
    assert index.crs.to_epsg() == 4326
