"""Issue 18 (items 12, 13, 16): configuration and flag errors are one line and exit 2, before
any work; valid YAML forms (integers, per-sensor band mappings) are accepted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from geossl.cli import build_parser, main
from geossl.training.config import PretrainConfig
from tests._cli_helpers import one_line_error


def _parsed(*argv: str) -> PretrainConfig:
    cfg = build_parser()[0].parse_args(["pretrain", *argv])
    return PretrainConfig.from_namespace(cfg.pretrain)


# item 13 ------------------------------------------------------------------------------------
def test_a_bad_value_in_a_config_file_is_one_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: notanumber\n")
    assert main(["pretrain", "--config", str(bad)]) == 2
    one_line_error(capsys, "pretrain", str(bad), "max_steps", "notanumber")


def test_an_unknown_key_and_an_unknown_flag_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_stepz: 3\n")
    assert main(["pretrain", "--config", str(bad)]) == 2
    one_line_error(capsys, "pretrain", str(bad), "max_stepz")
    assert main(["pretrain", "--max-stepz", "3"]) == 2
    one_line_error(capsys, "pretrain", "--max-stepz")


# item 12: YAML files --------------------------------------------------------------------------
def test_a_non_utf8_config_is_one_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("out: r\xe9sultats\n".encode("latin-1"))
    assert main(["pretrain", "--config", str(bad)]) == 2
    one_line_error(capsys, "pretrain", str(bad), "UTF-8")


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append("method_args: {bomb: *a9}")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    assert main(["pretrain", "--config", str(bomb)]) == 2
    assert time.monotonic() - start < 10
    one_line_error(capsys, "pretrain", str(bomb), "alias")


def test_devices_as_an_integer_in_yaml_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("devices: 1\nnum_nodes: 1\n")
    assert _parsed("--config", str(config)).devices == "1"


# item 16: per-sensor bands --------------------------------------------------------------------
def test_per_sensor_bands_as_a_flag_and_in_yaml(tmp_path: Path) -> None:
    want = {"s2": ["B04", "B03", "B02"], "s1": ["VV"]}
    assert _parsed("--bands", "{s2: [B04, B03, B02], s1: [VV]}").bands == want
    config = tmp_path / "c.yaml"
    config.write_text("bands:\n  s2: [B04, B03, B02]\n  s1: [VV]\n")
    assert _parsed("--config", str(config)).bands == want
    assert _parsed("--bands", "B04,B03").bands == ["B04", "B03"]


# item 12: batch sizes -------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["0", "1", "-4"])
def test_batch_sizes_that_cannot_train_are_refused(size: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["pretrain", "--root", str(tmp_path), "--out", str(out), "--batch-size", size,
                 "--max-steps", "2"]) == 2
    one_line_error(capsys, "pretrain", "--batch-size")
    assert not out.exists()


# item 12: sweep -------------------------------------------------------------------------------
def test_sweep_out_a_file_and_bad_cells_are_one_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text("pretrain: {method: simclr, devices: 1, max_steps: 2, lr: 0.1}\n"
                    "grid: {batch_size: [4, 8]}\n")
    taken = tmp_path / "a_file"
    taken.write_text("mine\n")
    assert main(["sweep", str(spec), "--out", str(taken), "--dry-run"]) == 2
    one_line_error(capsys, "sweep", str(taken), "--out")
    assert taken.read_text() == "mine\n"

    # devices as an integer: accepted, the dry run writes the cells
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    assert (out / "batch_size=4" / "pretrain.yaml").is_file()

    # a value `geossl pretrain` would refuse: the dry run says so, naming the cell, and no
    # real run starts any cell
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain: {method: simclr}\ngrid: {max_steps: [2, lots]}\n")
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(bad), "--out", str(tmp_path / "bad"), *extra]) == 2
        one_line_error(capsys, "sweep", "max_steps=lots", "max_steps")
    assert not (tmp_path / "bad").exists()

    latin = tmp_path / "latin.yaml"
    latin.write_bytes("grid: {out: [r\xe9s]}\n".encode("latin-1"))
    assert main(["sweep", str(latin), "--out", str(tmp_path / "l"), "--dry-run"]) == 2
    one_line_error(capsys, "sweep", "UTF-8")


# item 12: demo --out a file, a damaged embed progress record ---------------------------------
def test_demo_out_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "a_file"
    taken.write_text("mine\n")
    assert main(["demo", "--out", str(taken)]) == 2
    one_line_error(capsys, "demo", str(taken), "--out")
    assert taken.read_text() == "mine\n"


def test_damaged_embed_progress_is_one_line(tmp_path: Path) -> None:
    from geossl.core.errors import DataError
    from geossl.inference.embed import PROGRESS, EmbedConfig, embed
    from tests.test_embed import _geotiff, _source

    tif = _geotiff(tmp_path / "scene.tif", h=64, w=64)
    out = tmp_path / "r.zarr"
    embed(EmbedConfig(_source(5), tif, out, size=32, block_rows=2, accelerator="cpu"))
    record = out / PROGRESS
    record.write_text(record.read_text()[:7])  # cut short
    with pytest.raises(DataError, match="damaged progress record") as info:
        embed(EmbedConfig(_source(5), tif, out, size=32, block_rows=2, accelerator="cpu"))
    assert str(record) in str(info.value) and "\n" not in str(info.value)


# item 12: benchmark outputs checked before the benchmark ---------------------------------------
def test_bench_outputs_are_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import geossl.bench.splits as bench_splits_mod
    import geossl.bench.train as bench_train_mod

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran before its output was checked")

    monkeypatch.setattr(bench_train_mod, "run_bench", never)
    monkeypatch.setattr(bench_splits_mod, "bench_splits", never)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if (locked / "probe").parent.stat().st_mode & 0o200 == 0 and not _root_writes(locked):
            assert main(["bench", "train", "--out", str(locked / "out")]) == 2
            one_line_error(capsys, "bench", str(locked))
    finally:
        locked.chmod(0o700)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["bench", "splits", "--json", str(folder)]) == 2
    one_line_error(capsys, "bench", str(folder), "--json")
    taken = tmp_path / "a_file"
    taken.write_text("x")
    assert main(["bench", "train", "--out", str(taken)]) == 2
    one_line_error(capsys, "bench", str(taken), "--out")


def _root_writes(folder: Path) -> bool:
    """Whether this user writes into a read-only folder anyway (root)."""
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


# item 12: a split file with null sides -------------------------------------------------------
@pytest.mark.parametrize("side", ["null", "5", '[["a"]]', "{}"])
def test_split_file_with_a_null_side_is_one_line(side: str, tmp_path: Path) -> None:
    from geossl.core.errors import DataError
    from geossl.splits.files import load_split_ids, load_splits

    path = tmp_path / "splits.json"
    path.write_text(f'{{"strategy": "random", "splits": {{"train": {side}, "test": ["x"]}}}}')
    with pytest.raises(DataError, match="side 'train' is") as info:
        load_splits(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="not a list of ids"):
        load_split_ids(path, "test")


# item 12: a GeoTIFF whose pixel size is zero ---------------------------------------------------
def test_tile_zero_pixel_size_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import Affine

    tif = tmp_path / "z.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=64, width=64, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(0, 0, 500000, 0, 0, 5000000)) as f:
        f.write(np.ones((3, 64, 64), dtype="uint16"))
    out = tmp_path / "chips"
    assert main(["tile", str(tif), "--out", str(out), "--size", "32"]) == 2
    one_line_error(capsys, "tile", str(tif), "pixel size of zero")
    assert not out.exists() or not any(out.rglob("*.tif"))
