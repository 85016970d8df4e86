"""Shipped configurations by name (``--config pretrain/NAME``, ``geossl config``) and worker
defaults that fit the machine."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from geossl import conf as configs
from geossl.cli import build_parser, main
from geossl.core.errors import ConfigError
from geossl.runtime import machine

REPO = Path(__file__).resolve().parents[1]


def test_list_configs_is_every_shipped_yaml() -> None:
    found = {c.name: c for c in configs.list_configs()}
    files = sorted((REPO / "conf").rglob("*.yaml"))
    assert len(found) == len(files) >= 20
    assert found["pretrain/moco_sen12ms_geo"].path == (
        REPO / "conf" / "pretrain" / "moco_sen12ms_geo.yaml")
    assert found["pretrain/moco_sen12ms_geo"].summary.startswith("MoCo v2 on SEN12MS")
    assert found["tile"].summary.startswith("geossl tile: cut scenes")  # usage lines skipped
    assert all(c.summary for c in found.values())


def test_the_checkout_reads_the_top_level_conf() -> None:
    """From a checkout (PYTHONPATH or an editable install): the one copy in the top-level conf/."""
    assert configs.conf_dir() == REPO / "conf" == configs.CONF_DIR
    inside = sorted(str(f.relative_to(REPO)) for f in (REPO / "geossl").rglob("*.y*ml"))
    assert not inside, f"configs inside the package (git mv them to conf/): {inside}"
    from geossl.conf import studies

    assert studies.EXPERIMENTS_DIR == REPO / "conf" / "experiments"


#: a config's path from before the move to the top-level conf/ (geossl/conf/ keeps only code)
_OLD_PATH = re.compile(r"geossl/conf/(experiments|pretrain|data|[\w.-]+\.ya?ml)")


def test_no_file_names_the_configs_old_folder() -> None:
    """Docs, configs, code and tests name ``conf/...``, not the old ``geossl/conf/...`` path
    (a branch written before the move may bring such lines in; rewrite them to ``conf/``)."""
    files = [*REPO.glob("*.md"), *(REPO / "docs").rglob("*.md"), *(REPO / "conf").rglob("*.yaml"),
             *(REPO / "geossl").rglob("*.py"), *(REPO / "tests").rglob("*.py"),
             *(REPO / "tools").rglob("*.py"), *(REPO / ".ci").glob("*")]
    # the old prefix is still accepted in a name, on purpose: its docstring and its test
    allowed = {REPO / "geossl" / "conf" / "__init__.py", Path(__file__).resolve()}
    stale = [f"{f.relative_to(REPO)}:{n}" for f in files if f.is_file() and f not in allowed
             for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1)
             if _OLD_PATH.search(line)]
    assert not stale, "old config paths (now under conf/): " + ", ".join(stale)


def _layout(root: Path, *, packaged: bool, checkout: bool, pyproject: bool = True) -> Path:
    """A ``geossl/`` package folder under ``root``; with a wheel's ``_conf`` and/or a checkout's
    ``conf/`` (one config each, so the test can tell which copy was found)."""
    package = root / "geossl"
    package.mkdir(parents=True)
    if packaged:
        (package / "_conf" / "pretrain").mkdir(parents=True)
        (package / "_conf" / "pretrain" / "a.yaml").write_text("method: simclr\n")
    if checkout:
        (root / "conf" / "pretrain").mkdir(parents=True)
        (root / "conf" / "pretrain" / "b.yaml").write_text("method: moco\n")
    if pyproject:
        (root / "pyproject.toml").write_text("[project]\nname = 'geossl'\n")
    return package


def test_locate_conf_prefers_the_packaged_copy(tmp_path: Path) -> None:
    # an installed wheel: geossl/_conf (site-packages has no pyproject.toml beside it)
    wheel = _layout(tmp_path / "site", packaged=True, checkout=False, pyproject=False)
    assert configs.locate_conf(wheel) == wheel / "_conf"
    # a checkout: conf/ beside geossl/ and pyproject.toml
    checkout = _layout(tmp_path / "repo", packaged=False, checkout=True)
    assert configs.locate_conf(checkout) == tmp_path / "repo" / "conf"
    # both (a wheel unpacked over a checkout): the packaged copy, which belongs to that code
    both = _layout(tmp_path / "both", packaged=True, checkout=True)
    assert configs.locate_conf(both) == both / "_conf"


def test_locate_conf_never_takes_a_stranger_conf(tmp_path: Path) -> None:
    # a wheel that lost its configs, installed beside some other project's conf/ folder
    package = _layout(tmp_path / "site", packaged=False, checkout=True, pyproject=False)
    with pytest.raises(ConfigError, match="shipped configurations are missing") as err:
        configs.locate_conf(package)
    assert str(package / "_conf") in str(err.value) and "\n" not in str(err.value)


def test_conf_dir_is_the_one_locator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """list, resolve by name and ``config list`` all go through conf_dir()."""
    wheel = _layout(tmp_path / "site", packaged=True, checkout=False, pyproject=False)
    monkeypatch.chdir(tmp_path)  # no file at the names' paths here
    monkeypatch.setattr(configs, "_PACKAGE", wheel)
    configs.conf_dir.cache_clear()
    try:
        assert [c.name for c in configs.list_configs()] == ["pretrain/a"]
        assert configs.resolve_config("pretrain/a") == wheel / "_conf" / "pretrain" / "a.yaml"
        assert configs.resolve_config("conf/pretrain/a.yaml") == (
            wheel / "_conf" / "pretrain" / "a.yaml")
        with pytest.raises(ConfigError, match="did you mean pretrain/a"):
            configs.resolve_config("pretrain/b")
    finally:
        configs.conf_dir.cache_clear()


@pytest.mark.parametrize("value", ["pretrain/moco_sen12ms_geo", "pretrain/moco_sen12ms_geo.yaml",
                                   "conf/pretrain/moco_sen12ms_geo.yaml",
                                   "geossl/conf/pretrain/moco_sen12ms_geo.yaml"])
def test_resolve_by_name(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no such file here
    assert configs.resolve_config(value) == REPO / "conf" / "pretrain" / "moco_sen12ms_geo.yaml"


def test_a_file_at_the_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "pretrain" / "moco_sen12ms_geo.yaml"
    mine.parent.mkdir()
    mine.write_text("method: byol\n")
    assert configs.resolve_config("pretrain/moco_sen12ms_geo.yaml") == Path(
        "pretrain/moco_sen12ms_geo.yaml")
    with pytest.raises(SystemExit) as done:
        main(["pretrain", "--config", "pretrain/moco_sen12ms_geo.yaml", "--print_config"])
    assert done.value.code == 0
    assert yaml.safe_load(capsys.readouterr().out)["method"] == "byol"
    with pytest.raises(ConfigError, match="not a file"):
        configs.resolve_config("pretrain")  # a folder


def test_shipped_config_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["pretrain", "--config", "pretrain/moco_sen12ms_geo", "--max-steps", "7",
              "--print_config"])
    assert done.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load((REPO / "conf" / "pretrain" / "moco_sen12ms_geo.yaml").read_text())
    assert cfg["pairing"] == shipped["pairing"] == "geo" and cfg["method"] == "moco"
    assert cfg["max_steps"] == 7  # a flag after --config overrides it
    # a parse error is one line and exit status 2 (issue 18, item 13), no usage block
    assert main(["pretrain", "--config", "pretrain/moco_geo", "--print_config"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "did you mean pretrain/moco_sen12ms_geo" in err and "geossl config list" in err
    with pytest.raises(SystemExit) as done:  # inline YAML still works
        main(["pretrain", "--config", "{max_steps: 9}", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["max_steps"] == 9


def test_config_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:] if line.startswith("  ")]
    assert sorted(names) == [c.name for c in configs.list_configs()]
    assert "recipes: starting points" in out and "experiments: runs of the four studies" in out
    assert main(["config", "show", "split"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# ") and "strategy:" in text
    assert main(["config", "show"]) == 2
    assert main(["config", "show", "nothere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "geossl config list" in err


def test_available_cores_follows_the_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    if hasattr(os, "sched_getaffinity") and not hasattr(os, "process_cpu_count"):
        assert machine.available_cores() == len(os.sched_getaffinity(0))
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    else:
        monkeypatch.setattr(os, "process_cpu_count", lambda: 1, raising=False)
    assert machine.available_cores() == 1 and machine.default_workers() == 1
    monkeypatch.setattr(machine, "available_cores", lambda: 64)
    assert machine.default_workers() == 4


def test_worker_defaults_fit_the_machine() -> None:
    from geossl.bench.train import BenchConfig

    want = min(4, machine.available_cores())
    parser, _ = build_parser()
    subparsers = parser._subcommands_action._name_parser_map  # type: ignore[attr-defined]
    defaults = {name: sub.get_defaults().get("workers") for name, sub in subparsers.items()}
    assert defaults["pretrain"] == defaults["bench"] == BenchConfig().workers == want
    for command in ("tile", "stats", "index", "evaluate", "demo"):  # in-process by default
        assert defaults[command] == 0, command
