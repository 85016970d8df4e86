"""Every writing command checks its ``--out`` before any work: one line naming it, exit 2.

The eight commands that write (tile, index, split, stats, pretrain, evaluate, export, embed) are
given valid inputs and an output they cannot write: inside a read-only folder, naming something
of the other kind (a file where a folder goes, a folder where a file goes), or below a file.

Root writes into read-only folders regardless of their mode bits, so when the tests run as root
the commands run with the effective user ``nobody`` (``os.seteuid``), as a user would meet the
problem; the inputs live in a world-readable folder for that, and the modules the commands use
are imported first (the interpreter may live where ``nobody`` cannot read).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from geossl.cli import main

TINY = ["--backbone", "test_resnet", "--batch-size", "4", "--workers", "0", "--accelerator",
        "cpu", "--devices", "1", "--img-size", "16", "--log-every", "1"]
#: command -> whether its --out is a folder (else a file), and the suffix of a file output
FOLDER_OUT = {"tile": True, "pretrain": True, "evaluate": True, "embed": True,
              "index": False, "split": False, "stats": False, "export": False}
SUFFIX = {"index": ".parquet", "split": ".json", "stats": ".json", "export": ".ckpt"}


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as ``nobody`` when the process is root (permissions apply to it then)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture(scope="module")
def inputs() -> Iterator[dict[str, Path]]:
    """Valid inputs for every command, in a folder everyone can read."""
    import importlib

    from tests.data.sen12ms.data import generate

    for module in ("multiprocessing.pool", "geossl.tiling.tile", "geossl.tiling.chip_index",
                   "geossl.splits", "geossl.data.stats", "geossl.training.trainer",
                   "geossl.eval.run",
                   "geossl.eval.data", "geossl.inference.export", "geossl.inference.embed"):
        importlib.import_module(module)
    base = Path(tempfile.mkdtemp(prefix="geossl-out-"))
    base.chmod(0o755)
    try:
        root = base / "sen12ms"
        generate(root)
        scene = next(root.glob("ROIs*/s2_*/*.tif"))
        chips = base / "chips"
        assert main(["tile", str(scene), "--out", str(chips), "--size", "16"]) == 0
        torch.set_num_threads(1)
        run = base / "run"
        assert main(["pretrain", "--data", "sen12ms", "--root", str(root), "--out", str(run),
                     "--method", "simclr", "--pairing", "aug", "--sensors", "s2", *TINY,
                     "--max-steps", "1"]) == 0
        ro = base / "read_only"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH
                 | stat.S_IXOTH)
        a_file = base / "a_file"
        a_file.write_text("not a folder\n")
        yield {"base": base, "root": root, "scene": scene, "chips": chips,
               "index": chips / "index.parquet", "ckpt": run / "checkpoints" / "last.ckpt",
               "ro": ro, "file": a_file}
    finally:
        (base / "read_only").chmod(0o755)
        shutil.rmtree(base)


def _command(name: str, out: Path, i: dict[str, Path]) -> list[str]:
    sen12ms = ["--data", "sen12ms", "--root", str(i["root"])]
    return {
        "tile": ["tile", str(i["scene"]), "--out", str(out), "--size", "16"],
        "index": ["index", str(i["chips"]), "--out", str(out)],
        "split": ["split", "--index", str(i["index"]), "--strategy", "random", "--out",
                  str(out)],
        "stats": ["stats", "--data", "chips", "--root", str(i["chips"]), "--out", str(out)],
        "pretrain": ["pretrain", *sen12ms, "--out", str(out), "--method", "simclr",
                     "--pairing", "aug", "--sensors", "s2", *TINY, "--max-steps", "1"],
        "evaluate": ["evaluate", str(i["ckpt"]), *sen12ms, "--protocol", "knn",
                     "--accelerator", "cpu", "--out", str(out)],
        "export": ["export", str(i["ckpt"]), "--out", str(out)],
        "embed": ["embed", str(i["ckpt"]), str(i["scene"]), "--out", str(out), "--size", "16",
                  "--accelerator", "cpu"],
    }[name]


def _snapshot(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")}


def _refused(name: str, out: Path, i: dict[str, Path], capsys: pytest.CaptureFixture[str],
             *words: str, as_nobody: bool = False) -> None:
    before = _snapshot(i["base"])
    capsys.readouterr()
    with unprivileged() if as_nobody else contextlib.nullcontext():
        rc = main(_command(name, out, i))
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith(f"geossl {name}: error: {out}:") and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    assert _snapshot(i["base"]) == before  # nothing written, not even an empty folder


@pytest.mark.parametrize("name", list(FOLDER_OUT))
def test_read_only_out(name: str, inputs: dict[str, Path],
                       capsys: pytest.CaptureFixture[str]) -> None:
    out = inputs["ro"] / ("out" + SUFFIX.get(name, ""))
    _refused(name, out, inputs, capsys, "not writable", "Permission denied", as_nobody=True)
    if FOLDER_OUT[name]:  # the read-only folder itself as --out
        _refused(name, inputs["ro"], inputs, capsys, "not writable", as_nobody=True)


@pytest.mark.parametrize("name", list(FOLDER_OUT))
def test_out_of_the_wrong_kind(name: str, inputs: dict[str, Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    if FOLDER_OUT[name]:
        _refused(name, inputs["file"], inputs, capsys, "names an existing file")
    else:
        _refused(name, inputs["chips"], inputs, capsys, "names an existing folder")
    _refused(name, inputs["file"] / ("out" + SUFFIX.get(name, "")), inputs, capsys,
             "is a file, not a folder")


def test_stats_checks_out_before_computing(inputs: dict[str, Path],
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import geossl.data.stats

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("statistics computed before the output was checked")

    monkeypatch.setattr(geossl.data.stats, "compute_stats", never)
    _refused("stats", inputs["ro"] / "stats.json", inputs, capsys, "not writable",
             as_nobody=True)
