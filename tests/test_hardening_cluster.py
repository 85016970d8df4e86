"""Issue 18, item 10: a wrong or lost Dask scheduler and a multi-node run without its other
nodes each end in one line after a bounded wait, never a hang or a raw traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geossl.core.errors import ConfigError, GeosslError
from geossl.runtime.dask import Runner


def _serve(reply: bytes) -> tuple[socket.socket, int]:
    """A plain TCP server on 127.0.0.1 (not Dask) that sends ``reply`` and then stays silent."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if reply:
                conn.sendall(reply)
            held.append(conn)  # keep it open, silent

    threading.Thread(target=loop, daemon=True).start()
    return srv, srv.getsockname()[1]


@pytest.fixture
def short_connect(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import dask
    import distributed  # noqa: F401  (its settings first: leaving the `set` restores them)

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        yield


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"],
                         ids=["silent", "http"])
def test_a_port_that_is_not_a_dask_scheduler(reply: bytes, short_connect: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    srv, port = _serve(reply)
    try:
        start = time.monotonic()
        with pytest.raises(ConfigError, match="not a dask scheduler") as info, \
                Runner(f"tcp://127.0.0.1:{port}", progress=False):
            pass
        assert time.monotonic() - start < 15
    finally:
        srv.close()
    assert f"127.0.0.1:{port}" in str(info.value) and "\n" not in str(info.value)
    assert "waiting up to 2 s" in capsys.readouterr().err  # says what it waits for


def test_scheduler_flag_at_a_wrong_port_is_one_line(tmp_path: Path) -> None:
    """The CLI: `geossl stats --scheduler` at a plain TCP server, one line and exit 2."""
    srv, port = _serve(b"")
    try:
        scene = tmp_path / "x.tif"
        scene.write_bytes(b"")
        env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
        done = subprocess.run([sys.executable, "-m", "geossl.cli", "index", str(tmp_path),
                               "--scheduler", f"tcp://127.0.0.1:{port}"],
                              capture_output=True, text=True, env=env, timeout=60)
    finally:
        srv.close()
    ours = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len(ours) == 1 and "not a dask scheduler" in ours[0], done.stderr[-2000:]


@pytest.mark.slow
def test_scheduler_lost_mid_run_is_one_line(tmp_path: Path) -> None:
    """A real `dask scheduler` killed while tasks run: a GeosslError, not a Dask traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    addr = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                              "127.0.0.1", "--port", str(port), "--no-dashboard"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr,
                               "--nthreads", "1", "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Runner(addr, progress=False, quiet=True) as runner:
            deadline = time.monotonic() + 60
            while not runner.client.nthreads():
                assert time.monotonic() < deadline
                time.sleep(0.2)
            tasks = runner.tasks("t")
            for i in range(50):
                tasks.submit(time.sleep, 0.3, tag=i)  # importable on the worker
            start = time.monotonic()
            with pytest.raises(GeosslError, match="lost the dask scheduler") as info:
                for n, _ in enumerate(tasks):
                    if n == 1:
                        sched.kill()
            assert time.monotonic() - start < 60
        assert addr in str(info.value) and "\n" not in str(info.value)
    finally:
        for proc in (worker, sched):
            proc.kill()
            proc.wait()


def test_num_nodes_without_the_other_nodes_is_a_bounded_wait(tmp_path: Path,
                                                            sen12ms: Path) -> None:
    """`--num-nodes 2` started on one machine only: says what it waits for, then one line."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MASTER_", "NODE_RANK", "SLURM_", "WORLD_SIZE", "LOCAL_RANK"))}
    env["OMP_NUM_THREADS"] = "1"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "geossl.cli", "pretrain", "--data", "sen12ms", "--root",
         str(sen12ms), "--out", str(tmp_path / "run"), "--method", "simclr", "--pairing", "aug",
         "--sensors", "s2", "--backbone", "test_resnet", "--batch-size", "4", "--workers", "0",
         "--accelerator", "cpu", "--devices", "1", "--img-size", "16", "--max-steps", "2",
         "--num-nodes", "2", "--join-timeout", "3"],
        capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - start < 90
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    said = done.stdout + done.stderr
    assert "waiting up to 3 s for the 2 processes of --num-nodes 2" in said, said[-3000:]
    err = [line for line in done.stderr.splitlines() if line.startswith("geossl pretrain:")]
    assert len(err) == 1 and "error:" in err[0] and "within 3 s" in err[0], done.stderr[-3000:]
