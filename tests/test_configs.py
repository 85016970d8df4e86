"""Shipped configurations by name (``--config pretrain/NAME``, ``geossl config``) and worker
defaults that fit the machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from geossl import conf as configs
from geossl import machine
from geossl.cli import build_parser, main
from geossl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_list_configs_is_every_shipped_yaml() -> None:
    found = {c.name: c for c in configs.list_configs()}
    files = sorted((REPO / "geossl" / "conf").rglob("*.yaml"))
    assert len(found) == len(files) >= 20
    assert found["pretrain/moco_sen12ms_geo"].path == (
        REPO / "geossl" / "conf" / "pretrain" / "moco_sen12ms_geo.yaml")
    assert found["pretrain/moco_sen12ms_geo"].summary.startswith("MoCo v2 on SEN12MS")
    assert found["tile"].summary.startswith("geossl tile: cut scenes")  # usage lines skipped
    assert all(c.summary for c in found.values())


@pytest.mark.parametrize("value", ["pretrain/moco_sen12ms_geo", "pretrain/moco_sen12ms_geo.yaml",
                                   "conf/pretrain/moco_sen12ms_geo.yaml",
                                   "geossl/conf/pretrain/moco_sen12ms_geo.yaml"])
def test_resolve_by_name(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no such file here
    assert configs.resolve_config(value) == configs.CONF_DIR / "pretrain" / "moco_sen12ms_geo.yaml"


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
    shipped = yaml.safe_load((configs.CONF_DIR / "pretrain" / "moco_sen12ms_geo.yaml").read_text())
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
