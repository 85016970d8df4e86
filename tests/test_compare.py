"""``geossl compare``: rows on one split and the same label draws, paired against a reference.

The draws are checked with an oracle outside the code under test: spies on the probe and on
fine-tuning record which samples each row actually learned from (feature rows: the training
features handed to the probe, matched back to their samples; trained rows: the positions
handed to fine-tuning, read back from the dataset).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import geossl.compare.rows as rows_mod
from geossl.cli import main
from geossl.compare.rows import parse_row, parse_rows
from geossl.compare.run import compare
from geossl.core.errors import ConfigError
from geossl.eval.paired import paired_difference
from geossl.models import build_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EUROSAT_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                 "B11", "B12"]


def write_checkpoint(path: Path, in_chans: int, bands: list[str], sensor: str = "s2",
                     seed: int = 7) -> Path:
    """A checkpoint in the layout ``geossl pretrain`` writes (tiny timm ResNet, known weights)."""
    torch.manual_seed(seed)
    enc = build_encoder("test_resnet", in_chans)
    config = {**dict(enc.config), "pretrained": None}  # type: ignore[arg-type]
    blob = {"state_dict": {f"encoder.{k}": v for k, v in enc.state_dict().items()},
            "geossl": {"method": "moco", "encoder_prefix": "encoder.", "encoder_config": config,
                       "sensors": [sensor], "pairing": "aug", "bands": {sensor: bands},
                       "normalization": {"mean": [1500.0] * in_chans,
                                         "std": [1000.0] * in_chans}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path)
    return path


class Spy:
    """Records the samples every row learned from, per (seed, number of labels)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.train_sets: list[Any] = []
        self.seen: dict[tuple[int, int], list[frozenset[str]]] = defaultdict(list)
        self.calls = 0
        cached, probe, tune = (rows_mod.cached_features, rows_mod.linear_probe,
                               rows_mod.finetune)

        def cached_spy(source: Any, dataset: Any, positions: Any, **kw: Any) -> Any:
            fs = cached(source, dataset, positions, **kw)
            self.train_sets.append(fs)
            return fs

        def probe_spy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                      k: int, **kw: Any) -> Any:
            self.calls += 1
            ids = None
            for fs in self.train_sets:  # the feature set these rows came from
                if fs.features.shape[1] != train_x.shape[1]:
                    continue
                eq = (train_x[:, None, :] == fs.features[None, :, :]).all(-1)
                if bool(eq.any(1).all()):
                    ids = frozenset(fs.ids[int(j)] for j in eq.float().argmax(1))
                    break
            assert ids is not None and len(ids) == len(train_x)
            self.seen[(int(kw["seed"]), len(train_x))].append(ids)
            return probe(train_x, train_y, test_x, k, **kw)

        def tune_spy(encoder: Any, dataset: Any, train_positions: Any, *a: Any,
                     **kw: Any) -> Any:
            self.calls += 1
            ids = frozenset(str(dataset[int(p)]["id"]) for p in train_positions)
            self.seen[(int(kw["seed"]), len(train_positions))].append(ids)
            return tune(encoder, dataset, train_positions, *a, **kw)

        monkeypatch.setattr(rows_mod, "cached_features", cached_spy)
        monkeypatch.setattr(rows_mod, "linear_probe", probe_spy)
        monkeypatch.setattr(rows_mod, "finetune", tune_spy)


@pytest.fixture()
def eurosat(tmp_path: Path) -> Path:
    from tests.data.aid.data import generate_eurosat

    return generate_eurosat(tmp_path / "data", n_per_class=6, size=16)


def test_cli_eurosat_every_row_learns_from_the_same_draws(
        eurosat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", 13, EUROSAT_BANDS)
    spy = Spy(monkeypatch)
    out = tmp_path / "cmp"
    config = tmp_path / "compare.yaml"
    config.write_text(
        "rows:\n"
        f"  - {{name: ssl, kind: ckpt, ckpt: {ckpt}}}\n"
        "  - {name: means, kind: band-means}\n"
        "  - {name: random, kind: random}\n"
        "  - {name: supervised, kind: scratch, finetune_steps: 2}\n"
        "reference: means\n"
        "labels_per_class: 1,2\n"
        "seeds: 0,1,2\n")
    rc = main(["compare", "--config", str(config), "--data", "eurosat", "--root", str(eurosat),
               "--out", str(out), "--accelerator", "cpu", "--batch-size", "8"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "[1/4] ssl (ckpt): preparing" in printed and "| supervised | scratch |" in printed
    for name in ("compare.json", "compare.md", "compare.csv", "compare.png"):
        assert (out / name).stat().st_size > 0
    res = json.loads((out / "compare.json").read_text())

    # the oracle: 4 rows x 3 seeds x 2 budgets learned, and per draw all from one sample set
    assert spy.calls == 4 * 3 * 2
    assert sorted(spy.seen) == [(s, n) for s in (0, 1, 2) for n in (3, 6)]
    for key, sets in spy.seen.items():
        assert len(sets) == 4 and len(set(sets)) == 1, key
    # ... the one compare.json records, drawn from the train side only, different per seed
    train_ids = {i for fs in spy.train_sets[:1] for i in fs.ids}
    for d in res["draws"]:
        assert frozenset(d["ids"]) == spy.seen[(d["seed"], d["n_labels"])][0]
        assert set(d["ids"]) <= train_ids
    assert len({frozenset(d["ids"]) for d in res["draws"] if d["budget"] == "2/class"}) > 1

    # table and paired differences: each row minus the reference, seed by seed
    assert res["meta"]["reference"] == "means"
    assert res["meta"]["headline_metrics"] == {"classes": ["oa", "aa"]}
    by = {(r["row"], r["budget"], r["seed"]): r["metrics"] for r in res["runs"]}
    for c in res["comparison"]:
        d = [by[(c["row"], c["budget"], s)][c["metric"]]
             - by[("means", c["budget"], s)][c["metric"]] for s in (0, 1, 2)]
        assert c["mean"] == pytest.approx(np.mean(d))
        half = 4.302652729911275 * np.std(d, ddof=1) / math.sqrt(3)  # t(0.975, 2 dof)
        assert c["low"] == pytest.approx(np.mean(d) - half)
        assert c["high"] == pytest.approx(np.mean(d) + half)
    assert {c["row"] for c in res["comparison"]} == {"ssl", "random", "supervised"}
    assert len(res["verdict"]) == 2 and "vs reference means" in res["verdict"][0]
    md = (out / "compare.md").read_text()
    assert "| ssl | ckpt | 1/class | 3 |" in md and "ΔOA vs means" in md
    table = pd.read_csv(out / "compare.csv")
    assert set(table["row"]) == {"ssl", "means", "random", "supervised"}
    assert table[(table.row == "means") & (table.metric == "oa")]["diff_mean"].isna().all()
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["random"]["backbone"] == "test_resnet"  # the first encoder row's architecture
    assert rows["means"]["num_features"] == 13

    # a rerun into its own output is allowed
    assert main(["compare", "--baselines", "band-means", "--seeds", "0", "--data", "eurosat",
                 "--root", str(eurosat), "--out", str(out), "--accelerator", "cpu",
                 "--no-plots"]) == 0
    assert json.loads((out / "compare.json").read_text())["meta"]["seeds"] == [0]


def test_cli_bigearthnet_map_and_binary_task(tmp_path: Path) -> None:
    from tests.data.bigearthnet.data import generate_v1

    generate_v1(tmp_path / "ben", n=24, s1=False)
    out = tmp_path / "cmp"
    rc = main(["compare", "--data", "bigearthnet", "--root", str(tmp_path / "ben"),
               "--baselines", "band-means,random", "--backbone", "test_resnet",
               "--task", "farmland", "--labels", "8", "--seeds", "0,1", "--out", str(out),
               "--accelerator", "cpu", "--batch-size", "8"])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["meta"]["multilabel"] and res["meta"]["num_classes"] == 19
    assert res["meta"]["split_source"] == "auto" and (out / "splits.json").is_file()
    sides = json.loads((out / "splits.json").read_text())["splits"]
    assert (len(sides["train"]), len(sides["test"])) == (res["meta"]["n_train"],
                                                         res["meta"]["n_test"])
    assert all(set(d["ids"]) <= set(sides["train"]) for d in res["draws"])
    assert any(n.endswith(str(out / "splits.json")) for n in res["notes"])
    assert res["meta"]["headline_metrics"] == {
        "classes": ["map_macro", "map_micro"], "farmland": ["oa", "sensitivity", "specificity"]}
    metrics = {(r["row"], r["task"]): r["metrics"] for r in res["runs"]}
    assert "map_macro" in metrics[("random", "classes")]
    assert {"sensitivity", "specificity"} <= set(metrics[("random", "farmland")])
    assert {(c["task"], c["metric"]) for c in res["comparison"]} == {
        ("classes", "map_macro"), ("classes", "map_micro"), ("farmland", "oa"),
        ("farmland", "sensitivity"), ("farmland", "specificity")}
    # the draws of each task are shared: one per (task, seed), 8 labels each
    assert sorted((d["task"], d["seed"], d["n_labels"]) for d in res["draws"]) == [
        ("classes", 0, 8), ("classes", 1, 8), ("farmland", 0, 8), ("farmland", 1, 8)]
    assert (out / "compare.png").stat().st_size > 0
    assert "mAP macro" in (out / "compare.md").read_text()


def test_user_registered_dataset(tmp_path: Path) -> None:
    from geossl.datasets import register, unregister
    from tests.test_user_dataset import Plots, _write

    root = _write(tmp_path / "plots")
    register("plots_cmp", Plots)
    try:
        ids = list(Plots(root).ids or [])
        splits = {"train": [i for i in ids if int(i[2:]) < 5],
                   "test": [i for i in ids if int(i[2:]) >= 5]}
        lines: list[str] = []
        ckpt = write_checkpoint(tmp_path / "rgb.ckpt", 3, ["red", "green", "blue"], "rgb")
        rows = ["band-means", "random:test_resnet",
                {"name": "knn", "kind": "random", "backbone": "test_resnet", "protocol": "knn"},
                {"name": "ft", "kind": "ckpt", "ckpt": str(ckpt), "protocol": "finetune",
                 "finetune_steps": 2}]
        res = compare(rows, "plots_cmp", root, splits=splits, labels_per_class=2, seeds=[0, 1],
                      out=tmp_path / "cmp", device="cpu", batch_size=8, plots=False,
                      log=lines.append)
    finally:
        unregister("plots_cmp")
    assert res["meta"]["n_train"] == 15 and res["meta"]["n_test"] == 9
    info = {r["name"]: r for r in res["rows"]}
    assert info["knn"]["protocol"] == "knn" and info["ft"]["protocol"] == "finetune"
    assert {r["row"]: r["info"] for r in res["runs"]}["knn"] == {"k": 6}  # 2 labels x 3 classes
    assert (tmp_path / "cmp" / "logs").is_dir()  # the fine-tuning loss curves
    # one channel's brightness tells the classes apart: band means separate them
    means = [r for r in res["runs"] if r["row"] == "band-means"]
    assert all(r["metrics"]["oa"] == 1.0 for r in means)
    assert any(line.startswith("draw 2/2") for line in lines)
    assert not (tmp_path / "cmp" / "compare.png").exists()


def assert_each_fails_in_one_line(base: list[str], cases: list[tuple[list[str], str]],
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``geossl compare BASE EXTRA --out O`` exits 2 with one error line holding the message and
    writes no O, for each ``(EXTRA, message)`` of ``cases``."""
    for extra, message in cases:
        out = tmp_path / "o"
        assert main(base + extra + ["--out", str(out)]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("geossl compare: error:") and message in err, err
        assert len(err.splitlines()) == 1
        assert not out.exists(), extra


def test_bad_input_is_one_line_and_writes_nothing(eurosat: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["compare", "--data", "eurosat", "--root", str(eurosat), "--accelerator", "cpu"]
    cases = [
        (["--row", "foo:bar"], "unknown row kind 'foo'"),
        (["--baselines", "band-means", "--reference", "ssl"], "reference 'ssl' is not a row"),
        (["--ckpt", str(tmp_path / "missing.ckpt")], "checkpoint not found"),
        (["--row", "a=band-means", "--row", "a=random:test_resnet"], "two rows are named 'a'"),
        (["--baselines", "scratch"], "needs a backbone"),
        ([], "no rows to compare"),
    ]
    assert_each_fails_in_one_line(base, cases, tmp_path, capsys)
    # named weights that are not on disk (offline), or a geossl without weights by name
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("GEOSSL_OFFLINE", "1")
    out = tmp_path / "o"
    assert main([*base, "--weights", "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("geossl compare: error:") and len(err.splitlines()) == 1
    assert not out.exists()
    # a folder holding someone's files is refused, and left as it was
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main([*base, "--baselines", "band-means", "--out", str(mine)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_parse_rows() -> None:
    r = parse_row("ssl=ckpt:runs/moco/checkpoints/last.ckpt")
    assert (r.name, r.kind, r.options) == ("ssl", "ckpt",
                                           {"ckpt": "runs/moco/checkpoints/last.ckpt"})
    assert parse_row("ckpt:runs/moco/checkpoints/last.ckpt").name == "moco"
    w = parse_row("weights:torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO")
    assert w.options == {"weights": "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"}
    assert w.name == "ResNet18_Weights.SENTINEL2_ALL_MOCO"
    assert parse_row("band-means").name == "band-means"
    assert parse_row({"name": "s", "kind": "scratch", "backbone": "resnet18"}).options == {
        "backbone": "resnet18"}
    with pytest.raises(ConfigError, match="takes no value"):
        parse_row("band-means:x")
    with pytest.raises(ConfigError, match="unknown protocol"):
        parse_row({"kind": "random", "protocol": "svm"})
    with pytest.raises(ConfigError, match="has no 'kind'"):
        parse_row({"name": "x"})
    with pytest.raises(ConfigError, match="no rows"):
        parse_rows([])


def test_new_row_kind_is_one_function(eurosat: Path, tmp_path: Path) -> None:
    """A row kind registered from outside (as embedding products will be) joins the draws."""
    from geossl.compare.rows import ROW_KINDS, PreparedRow, register_row_kind

    seen: list[list[str]] = []

    def constant(spec: Any, ctx: Any) -> PreparedRow:
        def fit(task: Any, rows: np.ndarray, seed: int) -> Any:
            seen.append(sorted(ctx.ids[ctx.train_positions[int(r)]] for r in rows))
            return torch.zeros(len(ctx.test_positions), task.num_classes), False, {}

        return PreparedRow(spec.name, spec.kind, fit, {"what": "all zeros"})

    register_row_kind("zeros", constant)
    try:
        res = compare(["band-means", "zeros"], "eurosat", eurosat, labels_per_class=1,
                      seeds=[0, 1], out=tmp_path / "cmp", device="cpu", plots=False,
                      log=lambda _: None)
    finally:
        ROW_KINDS.pop("zeros")
    assert seen == [sorted(d["ids"]) for d in res["draws"]] and seen[0] != seen[1]
    assert {r["name"]: r.get("what") for r in res["rows"]}["zeros"] == "all zeros"


def test_paired_difference_interval() -> None:
    from scipy import stats

    a = {0: 0.8, 1: 0.75, 2: 0.9, 3: 0.9}
    b = {0: 0.6, 1: 0.6, 2: 0.72, 3: 0.75, 9: 0.1}  # seed 9: not shared, ignored
    gap = paired_difference(a, b)
    assert gap is not None
    d = np.array([0.2, 0.15, 0.18, 0.15])
    ci = stats.ttest_rel([a[k] for k in range(4)], [b[k] for k in range(4)]).confidence_interval()
    assert gap["n"] == 4 and gap["wins"] == 4 and gap["mean"] == pytest.approx(d.mean())
    assert (gap["low"], gap["high"]) == pytest.approx((ci.low, ci.high))
    assert gap["clear"] and not gap["below"]
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    one = paired_difference({0: 1.0}, {0: 0.5})
    assert one is not None and not one["clear"] and math.isinf(one["high"])



def test_foundation_weights_row(eurosat: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``weights`` row: TorchGeo weights by name from a cached file, frozen, same draws.

    The file is a TorchGeo ResNet-18 state dict (13 bands, known values) put where TorchGeo's
    own loader looks: ``TORCH_HOME/hub/checkpoints/<basename of the enum's url>``.
    """
    pytest.importorskip("geossl.pretrained.foundation")
    import timm
    from torchgeo.models import ResNet18_Weights

    weights = ResNet18_Weights.SENTINEL2_ALL_MOCO
    home = tmp_path / "torch_home"
    cached = home / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(3)
    model = timm.create_model("resnet18", in_chans=weights.meta["in_chans"], num_classes=0)
    torch.save(model.state_dict(), cached)
    monkeypatch.setenv("TORCH_HOME", str(home))

    spy = Spy(monkeypatch)
    out = tmp_path / "cmp"
    rc = main(["compare", "--data", "eurosat", "--root", str(eurosat),
               "--row", "ssl4eo=weights:torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO",
               "--baselines", "band-means", "--labels-per-class", "1", "--seeds", "0,1",
               "--out", str(out), "--accelerator", "cpu", "--batch-size", "8", "--no-plots"])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    row = {r["name"]: r for r in res["rows"]}["ssl4eo"]
    assert row["kind"] == "weights" and row["method"] == "foundation"
    assert row["weights"] == "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"
    assert row["num_features"] == 512
    for key, sets in spy.seen.items():
        assert len(sets) == 2 and len(set(sets)) == 1, key
