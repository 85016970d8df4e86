"""`geossl sweep`: grids read from files and flags, coupled values, one folder per cell,
finished cells skipped on rerun, failures recorded and retried, one table across runs; and a
real run through child processes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from geossl.cli import main
from geossl.core.errors import ConfigError
from geossl.recipes.sweep import cell_name, load_spec, parse_grid, run_sweep

BASE = {"data": "cifar10", "sensors": "rgb", "pairing": "aug", "method": "simclr",
        "backbone": "test_resnet", "batch_size": 4, "max_steps": 1, "img_size": 16,
        "workers": 0, "accelerator": "cpu", "out": "runs/x"}


def _write(path: Path, value: dict) -> Path:
    path.write_text(yaml.safe_dump(value))
    return path


def test_spec_from_file_and_flags(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.yaml", BASE)
    sweep = _write(tmp_path / "sweep.yaml", {
        "pretrain": "base.yaml",
        "grid": {"batch_size": [{"batch_size": 8, "method_args.base_batch_size": 8},
                                {"batch_size": 16, "method_args.base_batch_size": 16}],
                 "temperature": [0.1]},
        "evaluate": {"data": "cifar10", "protocol": "knn"}})
    spec = load_spec(sweep, grid=["temperature=0.25,0.5"], overrides=["max-steps=3"],
                     root="DATA")
    assert spec.pretrain["max_steps"] == 3 and spec.pretrain["root"] == "DATA"
    assert spec.evaluate == {"data": "cifar10", "protocol": "knn", "root": "DATA"}
    assert [cell_name(c) for c in spec.cells] == [
        "batch_size=8,temperature=0.25", "batch_size=8,temperature=0.5",
        "batch_size=16,temperature=0.25", "batch_size=16,temperature=0.5"]
    plain = load_spec(base, grid=["optimizer=adam,lamb", "lr=0.001"])
    assert len(plain.cells) == 2 and plain.evaluate is None
    assert parse_grid(["temperature=0.1,0.2"]) == {"temperature": [0.1, 0.2]}
    for bad, match in ((["nope=1,2"], "unknown pretrain option 'nope'"),
                       (["out=a,b"], "cannot be swept"), (["temperature="], "expects KEY=")):
        with pytest.raises(ConfigError, match=match):
            load_spec(base, grid=bad)
    with pytest.raises(ConfigError, match="no grid"):
        load_spec(base)


def _fake_runner(calls: list[list[str]], fail: set[str] | None = None):
    """Stands in for the child processes: writes what `pretrain` / `evaluate` would."""
    def run(args: Sequence[str], log: Path) -> int:
        calls.append(list(args))
        config = yaml.safe_load(Path(args[2]).read_text())
        cell = Path(args[2]).parent
        if fail and cell.name in fail:
            return 2
        if args[0] == "pretrain":
            (cell / "checkpoints").mkdir(exist_ok=True)
            (cell / "logs" / "csv").mkdir(parents=True, exist_ok=True)
            t = config["temperature"]
            pd.DataFrame({"step": [0, 1], "train/loss": [2.0, 1.0 + t],
                          "train/contrastive_acc": [0.1, 0.5]}).to_csv(
                cell / "logs" / "csv" / "metrics.csv", index=False)
        else:
            (cell / "eval").mkdir(exist_ok=True)
            summary = [{"protocol": "knn20", "budget": "all",
                        "metrics": {"oa": {"mean": 0.5 + config.get("k", 0), "n": 1}}}]
            (cell / "eval" / "results.json").write_text(json.dumps({"summary": summary}))
        return 0
    return run


def test_cells_run_skip_fail_and_table(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.yaml", BASE)
    spec = load_spec(base, grid=["temperature=0.2,0.5"], eval_overrides=["protocol=knn"])
    calls: list[list[str]] = []
    out = tmp_path / "sweep"
    res = run_sweep(spec, out, runner=_fake_runner(calls, fail={"temperature=0.5"}))
    assert res["failed"] == ["temperature=0.5"]
    assert [c[0] for c in calls] == ["pretrain", "evaluate", "pretrain"]
    cell = yaml.safe_load((out / "temperature=0.2" / "pretrain.yaml").read_text())
    assert cell["temperature"] == 0.2 and cell["resume"] == "last"
    assert cell["out"] == str(out / "temperature=0.2")
    ev = yaml.safe_load((out / "temperature=0.2" / "evaluate.yaml").read_text())
    assert ev["ckpt"].endswith("temperature=0.2/checkpoints/last.ckpt")
    table = pd.read_csv(out / "results.csv")
    assert table["status"].tolist() == ["finished", "pretrain failed (exit 2)"]
    assert table.loc[0, "loss"] == pytest.approx(1.2) and table.loc[0, "knn20 oa"] == 0.5
    assert "| temperature=0.2 |" in (out / "results.md").read_text()
    # rerun: the finished cell is skipped, the failed one retried (and now succeeds)
    calls.clear()
    res = run_sweep(spec, out, runner=_fake_runner(calls))
    assert res["failed"] == [] and [c[0] for c in calls] == ["pretrain", "evaluate"]
    assert all("temperature=0.5" in c[2] for c in calls)
    assert pd.read_csv(out / "results.csv")["status"].tolist() == ["finished", "finished"]


def test_runs_are_child_processes(tmp_path: Path) -> None:
    """What the sweep runs for each cell: `geossl ...` in a child process, its output in the log
    and its exit status returned (the full path is the slow test below)."""
    from geossl.recipes.sweep import _geossl

    log = tmp_path / "run.log"
    assert _geossl(["--version"], log) == 0
    assert _geossl(["pretrain", "--no-such-flag"], log) == 2
    text = log.read_text()
    assert "$ geossl --version" in text and "geossl 0." in text
    assert "$ geossl pretrain --no-such-flag" in text and "no-such-flag" in text.split("$")[-1]


@pytest.mark.slow
def test_sweep_cli_runs_child_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    from tests.data.cifar.data import generate

    generate(tmp_path / "cifar", per_batch=4, test=6)
    base = _write(tmp_path / "base.yaml", BASE)
    _write(tmp_path / "eval.yaml", {"data": "cifar10", "protocol": "knn", "no_plots": True,
                                    "accelerator": "cpu"})
    args = ["sweep", str(base), "--root", str(tmp_path / "cifar"), "--grid", "temperature=0.5",
            "--evaluate", str(tmp_path / "eval.yaml"), "--out", str(tmp_path / "grid")]
    assert main(args) == 0
    cell = tmp_path / "grid" / "temperature=0.5"
    assert (cell / "checkpoints" / "last.ckpt").exists() and (cell / "cell.json").exists()
    assert "geossl pretrain: last checkpoint" in (cell / "run.log").read_text()
    table = pd.read_csv(tmp_path / "grid" / "results.csv")
    assert table.loc[0, "status"] == "finished" and table.loc[0, "steps"] == 1
    assert 0 <= table.loc[0, "knn20 oa"] <= 1 and table.loc[0, "loss"] > 0
    capsys.readouterr()
    assert main(args) == 0  # nothing left to do
    assert "finished, skipped" in capsys.readouterr().out


def test_batch_grid_keeps_the_learning_rate_unless_asked(tmp_path: Path) -> None:
    """--grid batch_size=... trains every cell at the base config's rate (lr 0.3 per 256 at
    batch 128 runs at 0.15): no silent linear rescaling; --scale-lr linear scales it."""
    from geossl.methods.optim import scaled_lr
    from geossl.recipes.sweep import cell_config

    base = _write(tmp_path / "base.yaml", {**BASE, "batch_size": 128, "lr": 0.3})
    spec = load_spec(base, grid=["batch_size=128,512"])
    rates = []
    for cell in spec.cells:
        config = cell_config(spec, cell, tmp_path / cell_name(cell))
        bbs = (config.get("method_args") or {}).get("base_batch_size", 256)
        rates.append(scaled_lr(config["lr"], config["batch_size"], bbs))
    assert rates == pytest.approx([0.15, 0.15])
    linear = load_spec(base, grid=["batch_size=128,512"], scale_lr="linear")
    rates = [scaled_lr(cell_config(linear, c, tmp_path)["lr"], c["batch_size"], 256)
             for c in linear.cells]
    assert rates == pytest.approx([0.15, 0.6])
    # a cell that sets its own reference batch is left as it is
    own = load_spec(base, grid=["temperature=0.5"])
    own.cells = [{"batch_size": {"batch_size": 512, "method_args.base_batch_size": 512}}]
    assert cell_config(own, own.cells[0], tmp_path)["lr"] == 0.3
    with pytest.raises(ConfigError, match="scale_lr must be none or linear"):
        load_spec(base, grid=["batch_size=64"], scale_lr="sqrt")
    no_lr = _write(tmp_path / "nolr.yaml", BASE)
    with pytest.raises(ConfigError, match="sets no lr"):
        load_spec(no_lr, grid=["batch_size=8,16"])
    assert len(load_spec(no_lr, grid=["batch_size=8,16"], scale_lr="linear").cells) == 2


def test_seed_repeats_as_mean_and_std(tmp_path: Path) -> None:
    """--grid seed=0,1,2 (3 repeats of every cell): results_repeats.md has one row per cell of
    the other keys, each logged value as mean ± std over the finished repeats."""
    base = _write(tmp_path / "base.yaml", BASE)
    spec = load_spec(base, grid=["temperature=0.2,0.5", "seed=0,1,2"])

    def run(args: Sequence[str], log: Path) -> int:
        config = yaml.safe_load(Path(args[2]).read_text())
        cell = Path(args[2]).parent
        (cell / "logs" / "csv").mkdir(parents=True, exist_ok=True)
        loss = 1.0 + config["temperature"] + 0.1 * config.get("seed", 0)
        pd.DataFrame({"step": [0], "train/loss": [loss]}).to_csv(
            cell / "logs" / "csv" / "metrics.csv", index=False)
        return 0

    res = run_sweep(spec, tmp_path / "sweep", runner=run)
    lines = res["repeats"].read_text().splitlines()
    assert lines[0] == "| temperature | repeats | loss |"
    assert lines[2:] == ["| 0.2 | 3 | 1.3000 ± 0.0816 |", "| 0.5 | 3 | 1.6000 ± 0.0816 |"]
    single = run_sweep(load_spec(base, grid=["temperature=0.2"]), tmp_path / "one", runner=run)
    assert single["repeats"] is None and not (tmp_path / "one" / "results_repeats.md").exists()


def test_epochs_table_from_a_max_epochs_grid(tmp_path: Path) -> None:
    """--grid max_epochs=... (with other keys and seed repeats): results_epochs.md has one row
    per pretraining length, in increasing order, per cell of the other keys, every result as
    mean ± std over the repeats; the table is rewritten as cells finish (a pending cell is not
    in it)."""
    base = _write(tmp_path / "base.yaml", BASE)
    spec = load_spec(base, grid=["temperature=0.5,0.2", "max_epochs=50,10", "seed=0,1"],
                     eval_overrides=["protocol=linear"])

    def run(args: Sequence[str], log: Path) -> int:
        cell = Path(args[2]).parent
        config = {"max_epochs": 1, "seed": 0,
                  **yaml.safe_load((cell / "pretrain.yaml").read_text())}
        if config.get("max_epochs") == 50 and config.get("temperature") == 0.2 and \
                config.get("seed") == 1:
            return 2  # one failed repeat: left out of the table's means
        if args[0] == "pretrain":
            (cell / "logs" / "csv").mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"step": [0], "probe/acc_epoch": [config["max_epochs"] / 100]}).to_csv(
                cell / "logs" / "csv" / "metrics.csv", index=False)
        else:
            (cell / "eval").mkdir(exist_ok=True)
            oa = config["max_epochs"] / 100 + config["seed"] * 0.1 - config["temperature"]
            (cell / "eval" / "results.json").write_text(json.dumps({"summary": [
                {"task": "farmland", "protocol": "linear", "budget": "all",
                 "metrics": {"oa": {"mean": oa, "n": 1}}}]}))
        return 0

    res = run_sweep(spec, tmp_path / "sweep", runner=run)
    assert res["failed"] == ["temperature=0.2,max_epochs=50,seed=1"]
    lines = res["epochs"].read_text().splitlines()
    assert lines[0] == ("| temperature | epochs | repeats | probe_acc | "
                        "farmland linear oa |")
    assert lines[2:] == [
        "| 0.2 | 10 | 2 | 0.1000 ± 0.0000 | -0.0500 ± 0.0500 |",
        "| 0.2 | 50 | 1 | 0.5000 | 0.3000 |",
        "| 0.5 | 10 | 2 | 0.1000 ± 0.0000 | -0.3500 ± 0.0500 |",
        "| 0.5 | 50 | 2 | 0.5000 ± 0.0000 | 0.0500 ± 0.0500 |",
    ]
    plain = run_sweep(load_spec(base, grid=["temperature=0.2"]), tmp_path / "one", runner=run)
    assert plain["epochs"] is None and not (tmp_path / "one" / "results_epochs.md").exists()


def test_chip_size_figure_from_an_img_size_grid(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--grid img_size=... with another key and seed repeats: accuracy_vs_img_size.png, one
    panel per accuracy-like result, one line per value of the other key, mean ± std per size
    over the repeats (the values handed to plots checked, and the PNG drawn)."""
    import matplotlib.image as mpimg

    from geossl.viz import plots

    base = _write(tmp_path / "base.yaml", BASE)
    spec = load_spec(base, grid=["backbone=test_resnet,test_convnext", "img_size=64,32",
                                 "seed=0,1"], eval_overrides=["protocol=linear"])

    def run(args: Sequence[str], log: Path) -> int:
        cell = Path(args[2]).parent
        config = {"seed": 0, **yaml.safe_load((cell / "pretrain.yaml").read_text())}
        if args[0] == "pretrain":
            (cell / "logs" / "csv").mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"step": [0], "train/loss": [1.0]}).to_csv(
                cell / "logs" / "csv" / "metrics.csv", index=False)
        else:
            (cell / "eval").mkdir(exist_ok=True)
            oa = config["img_size"] / 100 + (0.1 if "convnext" in config["backbone"] else 0.0)
            (cell / "eval" / "results.json").write_text(json.dumps({"summary": [
                {"protocol": "linear", "budget": "all",
                 "metrics": {"oa": {"mean": oa + 0.02 * config["seed"], "n": 1},
                             "f1_macro": {"mean": 0.3, "n": 1}}}]}))
        return 0

    drawn: list[Any] = []
    real = plots.plot_sweep_curves
    monkeypatch.setattr(plots, "plot_sweep_curves",
                        lambda panels, path, **kw: (drawn.append(panels), real(panels, path,
                                                                                **kw))[1])
    res = run_sweep(spec, tmp_path / "sweep", runner=run)
    assert res["size_figure"] == tmp_path / "sweep" / "accuracy_vs_img_size.png"
    panels = drawn[-1]
    assert list(panels) == ["linear oa"]  # accuracy-like columns only (not f1, not the loss)
    lines = panels["linear oa"]
    assert set(lines) == {"backbone=test_resnet", "backbone=test_convnext"}
    for label, shift in (("backbone=test_resnet", 0.0), ("backbone=test_convnext", 0.1)):
        got = lines[label]
        assert [x for x, _, _ in got] == [32.0, 64.0]  # sorted by size
        assert [m for _, m, _ in got] == pytest.approx([0.33 + shift, 0.65 + shift])
        assert [s for _, _, s in got] == pytest.approx([0.01, 0.01])  # 2 seeds, population std
    picture = mpimg.imread(res["size_figure"])
    assert picture.ndim == 3 and picture.std() > 0.05
    plain = run_sweep(load_spec(base, grid=["temperature=0.2,0.5"]), tmp_path / "one",
                      runner=run)
    assert plain["size_figure"] is None
