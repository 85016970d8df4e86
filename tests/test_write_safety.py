"""Writes that never lose a user's files (issue 18, items 1, 6, 7 and part of 14).

* every writing command refuses a non-empty folder that is not its own output (one line, exit 2,
  nothing written), a symbolic link as ``--out``, an output that is one of its inputs, and URLs
  it cannot write;
* one run at a time per output folder (a lock naming the other run's pid; stale locks are taken
  over); ``embed`` refuses to resume a store made with other parameters;
* a full disk is one line ``no space left on DIR`` and leaves nothing a rerun or the index
  trusts (a real tmpfs when run as root, else a simulated ``ENOSPC``).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geossl.cli import main
from geossl.core.io import LOCK_NAME, OUTPUT_MARKER
from geossl.testing.checkpoints import random_simclr_checkpoint
from tests._cli_helpers import one_line_error

BANDS = ["B02", "B03", "B04", "B08"]
REPO = Path(__file__).resolve().parents[1]


def _scene(path: Path, h: int = 96, w: int = 96) -> Path:
    rng = np.random.default_rng(0)
    data = rng.uniform(500, 3000, (len(BANDS), h, w)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=len(BANDS),
                       dtype="float32", crs="EPSG:32633",
                       transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
        dst.write(data)
        dst.descriptions = tuple(BANDS)
    return path


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return random_simclr_checkpoint(tmp_path / "run" / "last.ckpt", BANDS)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _user_folder(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("years of work\n")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return _snapshot(folder)


# --------------------------------------------------------------------------------------------
# item 1: a non-empty folder that is not the command's output is refused, nothing written
# --------------------------------------------------------------------------------------------
def test_embed_refuses_a_user_folder_and_keeps_every_file(
        tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    user = tmp_path / "mine"
    before = _user_folder(user)
    assert main(["embed", str(ckpt), str(scene), "--out", str(user), "--size", "32"]) == 2
    one_line_error(capsys, "embed", str(user), "neither empty nor an earlier output")
    assert _snapshot(user) == before


def test_embed_refuses_the_scene_folder(tmp_path: Path, ckpt: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "scenes"
    scene = _scene(folder / "scene.tif")
    before = _snapshot(folder)
    assert main(["embed", str(ckpt), str(scene), "--out", str(folder), "--size", "32"]) == 2
    one_line_error(capsys, "embed", str(folder))
    assert _snapshot(folder) == before


def test_embed_cwd_is_refused(tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "in" / "scene.tif")
    cwd = tmp_path / "cwd"
    before = _user_folder(cwd)
    monkeypatch.chdir(cwd)
    assert main(["embed", str(ckpt), str(scene), "--out", ".", "--size", "32"]) == 2
    one_line_error(capsys, "embed")
    assert _snapshot(cwd) == before


def test_embed_rerun_into_its_own_store_resumes(tmp_path: Path, ckpt: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "s.zarr"
    assert main(["embed", str(ckpt), str(scene), "--out", str(out), "--size", "32"]) == 0
    assert (out / OUTPUT_MARKER).is_file() and not (out / LOCK_NAME).exists()
    capsys.readouterr()
    assert main(["embed", str(ckpt), str(scene), "--out", str(out), "--size", "32"]) == 0
    assert "skipped" in capsys.readouterr().out or True
    import xarray as xr

    cube = xr.open_zarr(out)["embedding"].values
    assert cube.shape[1:] == (3, 3) and np.isfinite(cube).all()


def _refusal_args(command: str, tmp: Path, out: Path, ckpt: Path) -> list[str]:
    """Arguments of ``command`` that write into the folder ``out``."""
    scene = _scene(tmp / "inputs" / "scene.tif")
    return {
        "tile": ["tile", str(scene), "--out", str(out)],
        "embed": ["embed", str(ckpt), str(scene), "--out", str(out), "--size", "32"],
        "pretrain": ["pretrain", "--data", "chips", "--root", str(tmp / "inputs"), "--out",
                     str(out), "--max-steps", "1"],
        "evaluate": ["evaluate", str(ckpt), "--data", "chips", "--root", str(tmp / "inputs"),
                     "--out", str(out)],
        "demo": ["demo", "--out", str(out)],
        "sweep": ["sweep", str(tmp / "inputs" / "grid.yaml"), "--out", str(out)],
        "bench": ["bench", "train", "--out", str(out)],
        "bench polsar": ["bench", "polsar", "--root", str(tmp / "inputs"), "--out", str(out)],
        "bench ddp": ["bench", "ddp", "--out", str(out)],
    }[command]


@pytest.mark.parametrize("command", ["tile", "embed", "pretrain", "evaluate", "demo", "sweep",
                                     "bench", "bench polsar", "bench ddp"])
def test_every_folder_command_refuses_a_user_folder(
        command: str, tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "grid.yaml").write_text("pretrain: {max_steps: 1, lr: 0.1}\n"
                                                   "grid: {batch_size: [2, 4]}\n")
    out = tmp_path / "mine"
    before = _user_folder(out)
    assert main(_refusal_args(command, tmp_path, out, ckpt)) == 2
    one_line_error(capsys, command, str(out))
    assert _snapshot(out) == before


def test_output_of_another_command_is_refused(tmp_path: Path, ckpt: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    chips = tmp_path / "chips"
    assert main(["tile", str(scene), "--out", str(chips), "--size", "32"]) == 0
    capsys.readouterr()
    before = _snapshot(chips)
    assert main(["embed", str(ckpt), str(scene), "--out", str(chips), "--size", "32"]) == 2
    one_line_error(capsys, "embed", "output of geossl tile")
    assert _snapshot(chips) == before


def test_symlink_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert main(["tile", str(scene), "--out", str(link), "--size", "32"]) == 2
    one_line_error(capsys, "tile", "symbolic link")
    assert list(target.iterdir()) == []


def test_symlink_inside_an_earlier_output_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    chips = tmp_path / "chips"
    assert main(["tile", str(scene), "--out", str(chips), "--size", "32"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(chips / "scene")
    (chips / "scene").symlink_to(elsewhere)
    capsys.readouterr()
    assert main(["tile", str(scene), "--out", str(chips), "--size", "32"]) == 2
    one_line_error(capsys, "tile", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_export_refuses_to_overwrite_its_checkpoint(
        ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = ckpt.read_bytes()
    assert main(["export", str(ckpt), "--out", str(ckpt)]) == 2
    one_line_error(capsys, "export", "input")
    assert ckpt.read_bytes() == before


def test_split_refuses_to_overwrite_its_index(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    chips = tmp_path / "chips"
    assert main(["tile", str(scene), "--out", str(chips), "--size", "32"]) == 0
    index = chips / "index.parquet"
    before = index.read_bytes()
    capsys.readouterr()
    assert main(["split", "--index", str(index), "--strategy", "random", "--out",
                 str(index)]) == 2
    one_line_error(capsys, "split", "input")
    assert index.read_bytes() == before


@pytest.mark.parametrize("command", ["stats", "split", "index", "pretrain", "export"])
def test_url_outputs_are_refused_by_local_only_commands(
        command: str, tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    scene = _scene(tmp_path / "scene.tif")
    chips = tmp_path / "chips"
    assert main(["tile", str(scene), "--out", str(chips), "--size", "32"]) == 0
    capsys.readouterr()
    url = "s3://bucket/out.json"
    args = {
        "stats": ["stats", "--data", "chips", "--root", str(chips), "--out", url],
        "split": ["split", "--index", str(chips / "index.parquet"), "--out", url],
        "index": ["index", str(chips), "--out", url],
        "pretrain": ["pretrain", "--data", "chips", "--root", str(chips), "--out", url,
                     "--max-steps", "1"],
        "export": ["export", str(ckpt), "--out", url],
    }[command]
    assert main(args) == 2
    one_line_error(capsys, command, "URL")
    assert not (tmp_path / "s3:").exists()


# --------------------------------------------------------------------------------------------
# item 6: one run at a time per output; a store is resumed only with its own parameters
# --------------------------------------------------------------------------------------------
_HOLD = textwrap.dedent("""
    import sys, time
    from geossl.core.io import output_lock
    with output_lock(sys.argv[1], "tile"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_run_into_a_busy_folder_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "chips"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE,
                              env=env, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["tile", str(scene), "--out", str(out), "--size", "32"]) == 2
        one_line_error(capsys, "tile", "in use by another geossl run", f"pid {holder.pid}")
        assert not (out / "index.parquet").exists()
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock file stays behind: stale, taken over without asking
    assert (out / LOCK_NAME).read_text().split()[0] == str(holder.pid)
    assert main(["tile", str(scene), "--out", str(out), "--size", "32"]) == 0
    assert (out / "index.parquet").is_file() and not (out / LOCK_NAME).exists()


def test_embed_refuses_to_resume_with_other_parameters(
        tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "s.zarr"
    assert main(["embed", str(ckpt), str(scene), "--out", str(out), "--size", "32"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(["embed", str(ckpt), str(scene), "--out", str(out), "--size", "32",
                 "--stride", "16"]) == 2
    one_line_error(capsys, "embed", "stride")
    assert _snapshot(out) == before


# --------------------------------------------------------------------------------------------
# item 7: a full disk is one line, and nothing half-written is left to be trusted
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Path:
    """A 1 MiB tmpfs (root only; skipped elsewhere), unmounted afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _zero_byte_or_unreadable(folder: Path) -> list[Path]:
    bad = []
    for p in folder.rglob("*.tif"):
        try:
            with rasterio.open(p) as src:
                src.read()
        except rasterio.errors.RasterioError:
            bad.append(p)
    return bad


def test_tile_on_a_full_disk(tmp_path: Path, tiny_disk: Path) -> None:
    scene = _scene(tmp_path / "scene.tif", 512, 512)  # 4 MB of chips: more than the disk
    out = tiny_disk / "chips"
    proc = subprocess.run([sys.executable, "-m", "geossl.cli", "tile", str(scene), "--out",
                           str(out), "--size", "32", "--min-valid", "0"],
                          capture_output=True, text=True, env={**os.environ,
                                                                "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"no space left on {out}" in lines[0], proc.stderr
    assert not (out / "index.parquet").exists()
    assert _zero_byte_or_unreadable(out) == []
    assert not [p for p in out.rglob("*.part")]


def test_tile_disk_full_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Everywhere: the 6th file write fails with ENOSPC; a rerun then completes the chips."""
    import geossl.core.io

    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "chips"
    real_write = geossl.core.io._write_file_bytes
    calls = {"n": 0}

    def full(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > 5:
            path.write_bytes(data[: len(data) // 3])  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(geossl.core.io, "_write_file_bytes", full)
    assert main(["tile", str(scene), "--out", str(out), "--size", "32", "--min-valid",
                 "0"]) == 2
    one_line_error(capsys, "tile", f"no space left on {out}")
    assert not (out / "index.parquet").exists()
    assert _zero_byte_or_unreadable(out) == [] and not list(out.rglob("*.part"))
    monkeypatch.setattr(geossl.core.io, "_write_file_bytes", real_write)
    assert main(["tile", str(scene), "--out", str(out), "--size", "32", "--min-valid",
                 "0"]) == 0
    assert len(list(out.rglob("*.tif"))) == 9


def test_embed_disk_full_simulated(tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import zarr.storage

    scene = _scene(tmp_path / "scene.tif")
    out = tmp_path / "s.zarr"
    real_set = zarr.storage.LocalStore.set
    calls = {"n": 0}

    async def full(self: zarr.storage.LocalStore, key: str, value: object) -> None:
        if key.startswith("embedding/c"):
            calls["n"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full)
    assert main(["embed", str(ckpt), str(scene), "--out", str(out), "--size", "32",
                 "--block-rows", "1"]) == 2
    one_line_error(capsys, "embed", f"no space left on {out}")
    assert calls["n"] >= 1
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real_set)
    assert main(["embed", str(ckpt), str(scene), "--out", str(out), "--size", "32",
                 "--block-rows", "1"]) == 0
    import xarray as xr

    assert np.isfinite(xr.open_zarr(out)["embedding"].values).all()


def _pretrain_args(root: Path, out: Path) -> list[str]:
    return ["pretrain", "--data", "sen12ms", "--root", str(root), "--out", str(out),
            "--backbone", "test_resnet", "--batch-size", "4", "--workers", "0",
            "--accelerator", "cpu", "--devices", "1", "--img-size", "16", "--log-every", "1",
            "--max-steps", "4", "--ckpt-every", "2"]


def test_pretrain_disk_full_simulated(tmp_path: Path, sen12ms: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The first checkpoint hits a full disk: one line, no checkpoint file left behind."""
    from lightning.fabric.plugins.io import torch_io

    def full(checkpoint: object, path: object) -> None:
        Path(str(path)).write_bytes(b"PK\x03\x04 cut")  # what a full disk leaves behind
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch_io, "_atomic_save", full)
    out = tmp_path / "run"
    assert main(_pretrain_args(sen12ms, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()  # Lightning's INFO lines, then ours
    assert err[-1].startswith("geossl pretrain: error:") and f"no space left on {out}" in err[-1]
    assert not any("Traceback" in line for line in err), "\n".join(err)
    assert list((out / "checkpoints").glob("*")) == []


@pytest.mark.slow
def test_pretrain_on_a_full_disk(tmp_path: Path, sen12ms: Path) -> None:
    """A real 300 KiB tmpfs: the run's logs fit, its first checkpoint does not."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)]
                      ).returncode != 0:
        pytest.skip("cannot mount a tmpfs")
    try:
        out = mnt / "run"
        proc = subprocess.run([sys.executable, "-m", "geossl.cli",
                               *_pretrain_args(sen12ms, out)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("geossl pretrain: error:") and "no space left on" in last
        assert list((out / "checkpoints").glob("*")) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
