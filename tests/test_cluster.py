"""Data jobs on Dask: a real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1.

``geossl tile`` and ``geossl embed`` run through ``--scheduler`` while one worker is killed
(SIGKILL) in the middle of the run; chips, index and cube must equal a run in one process.
``geossl index`` and ``geossl stats`` run through the same cluster. The runner's own logic
(in-process order, tasks added while iterating, addresses) is tested without a cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from geossl.core.errors import ConfigError, DataError
from geossl.data.config import StatsConfig
from geossl.data.stats import BandAccumulator, dataset_stats
from geossl.inference.embed import EmbedConfig, embed
from geossl.runtime.dask import SCHEDULER_ENV, Runner, scheduler_address
from geossl.tiling import chip_index
from geossl.tiling.tile import TileOptions, tile
from tests._compare import assert_same_tiling
from tests.conftest import REAL, REPO
from tests.data.chips.data import generate_major_tom

#: every wait below is bounded; a test never takes longer than this
pytestmark = pytest.mark.timeout(300)


# ---- the runner without a cluster --------------------------------------------------------------


def _double(x: int) -> int:
    return 2 * x


def test_inline_runner_runs_tasks_in_order_and_grows() -> None:
    seen: list[Any] = []
    with Runner(progress=False) as runner:
        assert runner.mode == "inline" and not runner.distributed
        tasks = runner.tasks("t")
        for i in range(3):
            tasks.submit(_double, i, tag=("a", i))
        for tag, result in tasks:
            seen.append((tag, result))
            if tag[0] == "a" and tag[1] == 0:
                tasks.submit(_double, 10, tag=("b", 10))  # the graph grows while it runs
        assert tasks.bar.total == 4
        assert runner.map(_double, [3, 4], "m") == [6, 8]
    assert seen == [(("a", 0), 0), (("a", 1), 2), (("a", 2), 4), (("b", 10), 20)]


def test_local_cluster_and_tiny_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    with Runner(workers=2, progress=False) as runner:
        assert runner.mode == "local" and runner.n_workers() == 2
        assert runner.map(_double, list(range(5)), "m") == [0, 2, 4, 6, 8]
    err = capsys.readouterr().err
    assert "local cluster tcp://127.0.0.1:" in err and "(2 worker(s))" in err
    assert "dashboard: http://127.0.0.1:" in err  # served on the loopback only
    # a job estimated too small for a cluster runs here, and says so
    with Runner(workers=2, progress=False, work_s=1.0) as runner:
        assert runner.mode == "inline" and runner.map(_double, [1], "m") == [2]
    assert "run in this process" in capsys.readouterr().err


def test_scheduler_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert scheduler_address() is None
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:8786")
    assert scheduler_address() == "tcp://127.0.0.1:8786"
    assert Runner(workers=4).mode == "remote"  # the variable wins over local workers
    assert scheduler_address("tcp://127.0.0.1:1") == "tcp://127.0.0.1:1"
    with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
        scheduler_address("127.0.0.1:8786")
    monkeypatch.delenv(SCHEDULER_ENV)
    assert Runner(workers=4).mode == "local" and Runner(workers=1).mode == "inline"


def test_unreachable_scheduler_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import dask
    import distributed  # noqa: F401 - its config defaults first, then the shorter timeout

    from geossl.cli import main

    cell = generate_major_tom(tmp_path / "mt", size10=48)
    port = _free_port()
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        rc = main(["tile", str(cell), "--out", str(tmp_path / "o"), "--size", "16",
                   "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("geossl tile: error: cannot reach the dask scheduler")


def test_accumulator_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (2, 3000)).astype(np.float32)
    x[0, :10] = np.nan
    whole = BandAccumulator(2, reservoir=10_000)
    whole.update(x)
    parts = [BandAccumulator(2, reservoir=10_000, seed=[0, i]) for i in range(3)]
    for i, p in enumerate(parts):
        p.update(x[:, i * 1000:(i + 1) * 1000])
    merged = parts[0]
    merged.merge(parts[1])
    merged.merge(parts[2])
    a, b = whole.result(), merged.result()
    assert a["count"] == b["count"] and a["invalid"] == b["invalid"]
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12)
    np.testing.assert_allclose(a["std"], b["std"], rtol=1e-12)
    assert a["p1"] == b["p1"] and a["p99"] == b["p99"]  # exact: every value kept


# ---- a real cluster ----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    env.pop(SCHEDULER_ENV, None)
    return env


class Cluster:
    """``dask scheduler`` + ``dask worker`` processes on 127.0.0.1 (single-threaded, no nanny,
    so that SIGKILL on a worker's pid kills that worker for good)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.scheduler = self._spawn("scheduler", [
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(self.file)])
        deadline = time.monotonic() + 90
        while not self.file.is_file():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start: " + self.log("scheduler"))
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written in one go, but be safe on a slow disk
        self.address = json.loads(self.file.read_text())["address"]
        assert self.address.startswith("tcp://127.0.0.1:")
        self.workers: list[subprocess.Popen[bytes]] = []
        self._n = 0

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:  # the child keeps its own copy
            return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                                    stderr=subprocess.STDOUT, env=_env(), cwd=self.folder)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    def ensure_workers(self, n: int) -> None:
        """Start workers until ``n`` are alive and connected."""
        from distributed import Client

        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            self._n += 1
            self.workers.append(self._spawn(f"worker{self._n}", [
                "worker", self.address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                "--no-dashboard", "--name", f"w{self._n}", "--memory-limit", "0"]))
        with Client(self.address, timeout="60s") as client:
            deadline = time.monotonic() + 120
            while len(client.nthreads()) != n:
                if time.monotonic() > deadline:
                    raise RuntimeError("dask workers did not connect: " +
                                       self.log(f"worker{self._n}"))
                time.sleep(0.3)

    def kill_worker(self) -> int:
        """SIGKILL the first live worker; returns its pid."""
        w = next(w for w in self.workers if w.poll() is None)
        os.kill(w.pid, signal.SIGKILL)
        w.wait(timeout=30)
        return w.pid

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.ensure_workers(2)
        yield c
    finally:
        c.close()


def _geossl(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "geossl.cli", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _until(cond: Any, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail("the run ended before the worker could be killed: "
                        + (proc.stdout.read() if proc.stdout else "")[-2000:])
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run to start writing")
        time.sleep(0.05)


def _scenes(root: Path, real: bool = True, size10: int = 768) -> list[Path]:
    """Several scenes: the real Major-TOM cells when present, plus fake cells (always)."""
    scenes = []
    folder = REAL / "major_tom_s2l2a"
    if real and folder.is_dir():
        scenes += sorted(p.parent for p in folder.rglob("B02.tif"))
    for k in range(3):
        scenes.append(generate_major_tom(
            root, size10=size10, cell=(f"{k}D", f"{k}D_{k}L"),
            product=f"S2B_MSIL2A_2021010{k + 1}T100000_N0400_R000_T3{k}ABC_2021",
            crs=f"EPSG:3263{k + 3}", nodata_rows=100 * k, cloud_box=(300, 500, 0, 200)))
    return scenes


@pytest.mark.slow
def test_tile_on_cluster_with_a_worker_killed(cluster: Cluster, tmp_path: Path) -> None:
    cluster.ensure_workers(2)
    scenes = _scenes(tmp_path / "scenes")
    opts = TileOptions(size=128, cloud_mask="auto", min_valid=0.7)
    ref = tmp_path / "ref"
    tile(scenes, ref, opts, progress=False)  # one process, no cluster
    out = tmp_path / "out"
    proc = _geossl("tile", *map(str, scenes), "--out", str(out), "--size", "128",
                   "--cloud-mask", "auto", "--min-valid", "0.7",
                   "--scheduler", cluster.address)

    def started() -> bool:
        return any(out.rglob("*_r*_c*.tif")) if out.is_dir() else False

    _until(started, proc)
    cluster.kill_worker()
    at_kill = len(list(out.rglob("*_r*_c*.tif")))
    printed = _wait(proc)
    assert f"dask scheduler {cluster.address} (2 worker(s))" in printed
    n = assert_same_tiling(out, ref)
    assert at_kill < n  # the worker died with work left, which the other one finished
    assert f"index {out / 'index.parquet'} ({n} chips)" in printed


def _chip_folder(root: Path) -> tuple[Path, int]:
    scenes = _scenes(root / "scenes", real=False, size10=384)[-2:]
    chips = root / "chips"
    report = tile(scenes, chips, TileOptions(size=64), progress=False)
    (chips / "index.parquet").unlink()
    return chips, report.written


def test_index_on_cluster(cluster: Cluster, tmp_path: Path) -> None:
    cluster.ensure_workers(2)
    chips, n = _chip_folder(tmp_path)
    # the index from the chip headers, read by chunks on the workers
    want = chip_index.build_index(chips, progress=False)
    got = chip_index.build_index(chips, progress=False, scheduler=cluster.address)
    assert got.drop(columns="geometry").equals(want.drop(columns="geometry"))
    assert len(got) == n == 36  # 2 x 6 x 6 chips less the nodata rows


def test_scheduler_file_of_a_real_scheduler(cluster: Cluster, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``--scheduler-file``: the JSON ``dask scheduler --scheduler-file`` writes (docs/scale.md's
    SLURM recipe); a missing or damaged file is one line after a bounded wait."""
    import geossl.runtime.dask
    from geossl.cli import main

    cluster.ensure_workers(2)
    chips, n = _chip_folder(tmp_path)
    out = tmp_path / "index.parquet"
    assert main(["index", str(chips), "--out", str(out),
                 "--scheduler-file", str(cluster.file)]) == 0
    err = capsys.readouterr().err
    assert f"dask scheduler {cluster.address} (2 worker(s))" in err
    assert len(chip_index.read_index(out)) == n
    geossl.runtime.dask.SCHEDULER_FILE_WAIT_S = 0.5
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for path, why in [(tmp_path / "absent.json", "not found after waiting 0.5 s"),
                      (bad, "not a dask scheduler file")]:
        assert main(["index", str(chips), "--out", str(tmp_path / "x.parquet"),
                     "--scheduler-file", str(path)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith(f"geossl index: error: {path}: {why}"), lines
    assert main(["index", str(chips), "--out", str(tmp_path / "x.parquet"), "--scheduler-file",
                 str(cluster.file), "--scheduler", cluster.address]) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.slow  # every worker imports torch: seconds per worker on a busy machine
def test_stats_on_cluster(cluster: Cluster, tmp_path: Path) -> None:
    cluster.ensure_workers(2)
    chips, n = _chip_folder(tmp_path)
    # stats over the GeoTIFFs of a folder (no index: read file by file), in chunks of 8 chips
    a = dataset_stats(StatsConfig("chips", str(chips), max_samples=None, reservoir=4000,
                                  progress=False))
    b = dataset_stats(StatsConfig("chips", str(chips), max_samples=None, reservoir=4000,
                                  progress=False, scheduler=cluster.address, chunk=8))
    (key,) = a
    assert a[key]["samples"] == b[key]["samples"] == n
    assert a[key]["count"] == b[key]["count"] and a[key]["min"] == b[key]["min"]
    np.testing.assert_allclose(a[key]["mean"], b[key]["mean"], rtol=1e-9)
    np.testing.assert_allclose(a[key]["std"], b[key]["std"], rtol=1e-9)
    # percentiles counted exactly (16-bit DN): identical on the cluster (issue 18 item 9)
    assert a[key]["p1"] == b[key]["p1"] and a[key]["p99"] == b[key]["p99"]
    assert a[key]["percentiles_exact"] and b[key]["percentiles_exact"]


def _checkpoint(path: Path, bands: list[str]) -> Path:
    """A SimCLR checkpoint (tiny resnet) as ``geossl pretrain`` writes it."""
    from geossl.testing.checkpoints import random_simclr_checkpoint

    return random_simclr_checkpoint(path, bands, std=800.0)


@pytest.mark.slow
def test_embed_on_cluster_with_a_worker_killed(cluster: Cluster, tmp_path: Path) -> None:
    cluster.ensure_workers(2)
    real = REAL / "major_tom_s2l2a"
    cells = sorted(p.parent for p in real.rglob("B02.tif")) if real.is_dir() else []
    scene = cells[0] if cells else generate_major_tom(tmp_path / "mt", size10=768)
    bands = ["B02", "B03", "B04", "B08"]
    ckpt = _checkpoint(tmp_path / "simclr.ckpt", bands)
    torch.set_num_threads(1)  # as on the single-threaded workers: bit-identical results
    ref = embed(EmbedConfig(str(ckpt), scene, tmp_path / "ref.zarr", size=32, block_rows=2,
                            accelerator="cpu", progress=False))
    out = tmp_path / "out.zarr"
    proc = _geossl("embed", str(ckpt), str(scene), "--out", str(out), "--size", "32",
                   "--block-rows", "2", "--accelerator", "cpu", "--scheduler", cluster.address)
    progress = out / "geossl_progress.json"

    def started() -> bool:
        try:
            return len(json.loads(progress.read_text())["done"]) >= 1
        except (OSError, ValueError, KeyError):
            return False

    _until(started, proc)
    cluster.kill_worker()
    at_kill = len(json.loads(progress.read_text())["done"])
    printed = _wait(proc)
    done = json.loads(progress.read_text())["done"]
    n_blocks = -(-ref.shape[1] // 2)
    assert at_kill < n_blocks and sorted(done) == list(range(n_blocks))
    assert f"({n_blocks} blocks written" in printed
    got = xr.open_zarr(out, decode_coords="all")
    want = xr.open_zarr(tmp_path / "ref.zarr", decode_coords="all")
    assert got["embedding"].shape == ref.shape
    assert not np.isnan(got["embedding"].values).any()
    np.testing.assert_array_equal(got["embedding"].values, want["embedding"].values)
    assert got.rio.crs == want.rio.crs and got.rio.transform() == want.rio.transform()


def test_task_error_reaches_the_client_as_one_line(cluster: Cluster, tmp_path: Path) -> None:
    cluster.ensure_workers(2)
    cell = generate_major_tom(tmp_path / "mt", size10=48)
    (cell / "B05.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match=r"B05\.tif: not a readable raster") as err:
        tile([cell], tmp_path / "o", TileOptions(size=16), progress=False,
             scheduler=cluster.address)
    assert "\n" not in str(err.value)
