"""Checkpoints are data, never code: every command that reads a checkpoint or weights file.

A hostile ``.ckpt`` whose unpickling would run ``os.system("touch MARKER")`` is given to
``geossl export``, ``embed``, ``evaluate``, ``pretrain --resume`` and ``pretrain --pretrained``:
each exits 2 with one line naming the file, and the marker file is never created. The same
payload hidden inside a real ``geossl pretrain`` checkpoint is refused too; appended after the
archive it is never read, and the checkpoint's own data loads.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from geossl.cli import main

TINY = ["--backbone", "test_resnet", "--batch-size", "4", "--workers", "0", "--accelerator",
        "cpu", "--devices", "1", "--img-size", "16", "--log-every", "1"]
S2_AUG = ["--method", "simclr", "--pairing", "aug", "--sensors", "s2"]


class Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class Harmless:
    """A class that runs nothing when rebuilt, but is not data either: refused."""


@pytest.fixture(scope="module")
def real_ckpt(sen12ms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-step `geossl pretrain` checkpoint (SimCLR, S2, tiny ResNet)."""
    out = tmp_path_factory.mktemp("run") / "run"
    torch.set_num_threads(1)
    assert main(["pretrain", "--data", "sen12ms", "--root", str(sen12ms), "--out", str(out),
                 *S2_AUG, *TINY, "--max-steps", "2"]) == 0
    return out / "checkpoints" / "last.ckpt"


def _hostile(kind: str, real_ckpt: Path, path: Path, marker: Path) -> Path:
    """``bare``: a minimal checkpoint carrying the payload; ``embedded``: a real checkpoint
    with the payload among its callback states."""
    if kind == "bare":
        torch.save({"state_dict": {"encoder.w": torch.zeros(1)}, "x": Payload(marker)}, path)
    else:
        ckpt = torch.load(real_ckpt, map_location="cpu", weights_only=True)
        ckpt["callbacks"]["Evil"] = {"state": Payload(marker)}
        torch.save(ckpt, path)
    return path


def _command(name: str, ckpt: Path, sen12ms: Path, tmp_path: Path) -> list[str]:
    scene = next(sen12ms.glob("ROIs*/s2_*/*.tif"))
    data = ["--data", "sen12ms", "--root", str(sen12ms)]
    return {
        "export": ["export", str(ckpt), "--out", str(tmp_path / "enc.ckpt")],
        "embed": ["embed", str(ckpt), str(scene), "--out", str(tmp_path / "emb.zarr"),
                  "--size", "16", "--accelerator", "cpu"],
        "evaluate": ["evaluate", str(ckpt), *data, "--protocol", "knn", "--accelerator", "cpu",
                     "--out", str(tmp_path / "eval")],
        "resume": ["pretrain", *data, "--out", str(tmp_path / "run"), *S2_AUG, *TINY,
                   "--max-steps", "3", "--resume", str(ckpt)],
        "pretrained": ["pretrain", *data, "--out", str(tmp_path / "run"), *S2_AUG, *TINY,
                       "--max-steps", "1", "--pretrained", str(ckpt)],
    }[name]


@pytest.mark.parametrize("kind", ["bare", "embedded"])
@pytest.mark.parametrize("name", ["export", "embed", "evaluate", "resume", "pretrained"])
def test_hostile_checkpoint_never_runs(name: str, kind: str, sen12ms: Path, real_ckpt: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    marker = tmp_path / "PWNED"
    bad = _hostile(kind, real_ckpt, tmp_path / "shared.ckpt", marker)
    capsys.readouterr()
    rc = main(_command(name, bad, sen12ms, tmp_path))
    err = capsys.readouterr().err.strip()
    assert not marker.exists(), "the checkpoint's payload ran"
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and str(bad) in err, err
    assert "refused" in err and "posix.system" in err, err


def test_payload_appended_to_a_real_checkpoint_is_never_read(real_ckpt: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    marker = tmp_path / "PWNED"
    bad = tmp_path / "appended.ckpt"
    shutil.copy(real_ckpt, bad)
    with bad.open("ab") as fh:
        fh.write(pickle.dumps(Payload(marker)))
    assert main(["export", str(bad), "--out", str(tmp_path / "enc.ckpt")]) == 0
    assert not marker.exists()
    assert (tmp_path / "enc.ckpt").is_file()


def test_allow_list_and_refusal_in_the_loader(tmp_path: Path) -> None:
    """Value types a library user may put in hyper-parameters load; any other object does not."""
    import numpy as np

    from geossl.core.errors import DataError
    from geossl.core.io import load_torch_file
    from geossl.pretrained.checkpoint import read_checkpoint

    ok = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)},
                "hyper_parameters": {"lr": np.float64(0.1), "steps": np.int64(3),
                                     "mean": np.arange(3.0), "root": Path("/data/x")}}, ok)
    hp = read_checkpoint(ok)["hyper_parameters"]
    assert hp["lr"] == 0.1 and hp["steps"] == 3 and hp["root"] == Path("/data/x")
    assert np.array_equal(hp["mean"], [0.0, 1.0, 2.0])

    bad = tmp_path / "custom.pt"
    torch.save({"obj": Harmless()}, bad)
    with pytest.raises(DataError, match=r"refused.*Harmless"):
        load_torch_file(bad, "weights file")


def test_polsar_bench_encoder_file_is_data_only(tmp_path: Path) -> None:
    """The PolSAR benchmark reloads its own encoder files with the same data-only loader."""
    import dataclasses
    import json

    from geossl.bench.polsar import PolsarBenchConfig, load_pretrained
    from geossl.core.errors import DataError
    from geossl.core.io import jsonable

    cfg = PolsarBenchConfig(root=str(tmp_path))
    (tmp_path / "results.json").write_text(json.dumps(
        {"config": jsonable(dataclasses.asdict(cfg)), "pretrain": {"moco": {"steps": 1}}}))
    marker = tmp_path / "PWNED"
    torch.save({"stem.weight": Payload(marker)}, tmp_path / "moco_encoder.pt")
    with pytest.raises(DataError, match="refused"):
        load_pretrained(tmp_path, "moco", cfg)
    assert not marker.exists()
