"""Helpers of the CLI tests: the one-line error check, tiny `geossl pretrain` flags and a CLI
run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

TINY = ["--backbone", "test_resnet", "--batch-size", "4", "--workers", "0", "--accelerator",
        "cpu", "--devices", "1", "--img-size", "16", "--log-every", "1"]
S2_AUG = ["--method", "simclr", "--pairing", "aug", "--sensors", "s2"]


def one_line_error(capsys: pytest.CaptureFixture[str], command: str, *words: str) -> str:
    """The captured stderr: one line, ``geossl COMMAND: error: ...``, holding every word."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"geossl {command}: error:"), err
    for word in words:
        assert word in err, err
    return err


def ckpt_step(path: Path) -> int:
    """The ``global_step`` saved in a checkpoint."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def launch(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """``python -m geossl.cli ARGS`` started in a subprocess (stdout dropped, stderr piped)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "geossl.cli", *args], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Wait until ``path`` exists; fail if ``proc`` exits first or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"exited early: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{path} not written within {timeout} s"
        time.sleep(0.05)


def stop_when(path: Path, proc: subprocess.Popen[str], send: Callable[[], Any]) -> str:
    """Once ``path`` exists (and 0.3 s more), ``send()`` a signal; ``proc``'s stderr once it
    has exited (killed if it is still running when that fails)."""
    try:
        wait_for(path, proc)
        time.sleep(0.3)
        send()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return str(err)


def last_geossl_line(err: str) -> str:
    """The one line of ``err`` from geossl, which must be its last."""
    ours = [line for line in err.splitlines() if line.startswith("geossl")]
    assert len(ours) == 1 and err.strip().splitlines()[-1] == ours[0], err[-3000:]
    return ours[0]
