"""Hardening of data, statistics, checkpoints, docs and progress (issue 18, items 8-22 of h18c).

Each test reproduces a case of the adversarial matrix in docs/reliability.md: it failed before
the fix and passes after it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from geossl.errors import DataError


# ---- item 11: a small checkpoint must not inflate to gigabytes ---------------------------------


def _deflated(src: Path, dest: Path) -> None:
    """Rewrite a torch zip archive with every record deflate-compressed (as a hostile one)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def test_checkpoint_inflating_far_beyond_its_size_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geossl.io import load_torch_file

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"encoder.w": torch.zeros(4_000_000)}}, plain)  # 16 MB stored
    bomb = tmp_path / "bomb.ckpt"
    _deflated(plain, bomb)
    assert bomb.stat().st_size < plain.stat().st_size / 100  # tens of kB asking for 16 MB
    with pytest.raises(DataError, match="inflate") as err:
        load_torch_file(bomb)
    assert str(bomb) in str(err.value) and "\n" not in str(err.value)
    # a plain (stored) checkpoint loads, and the cap is configurable
    assert load_torch_file(plain)["state_dict"]["encoder.w"].shape == (4_000_000,)
    monkeypatch.setenv("GEOSSL_CKPT_MAX_INFLATE", "2000")
    assert load_torch_file(bomb)["state_dict"]["encoder.w"].abs().sum() == 0
    monkeypatch.setenv("GEOSSL_CKPT_MAX_INFLATE", "x")
    with pytest.raises(Exception, match="GEOSSL_CKPT_MAX_INFLATE"):
        load_torch_file(plain)
