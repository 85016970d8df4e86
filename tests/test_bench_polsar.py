"""Tests of the PolSAR benchmark (geossl.bench.polsar, tools/bench_polsar.py) and of the
hand-crafted PolSAR features (geossl.eval.handcrafted), on a tiny fake AIRSAR-like scene."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from geossl.bench.polsar import (
    PolsarBenchConfig,
    build_bench_encoder,
    checkerboard_split,
    patch_footprints,
    run_polsar_benchmark,
    small_input_stem,
    split_leakage,
)
from geossl.data.polsar import read_polsar
from geossl.errors import ConfigError, DataError
from geossl.eval.handcrafted import feature_names, logreg_scores, patch_mean_features

REPO = Path(__file__).resolve().parents[1]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "polsar_fake_data", REPO / "tests" / "data" / "polsar" / "data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 x 100 T3 scene with 3 vertical class stripes (columns 4..99), labels in labels/."""
    root = tmp_path_factory.mktemp("polsar")
    _generator().generate(root, rows=64, cols=100, n_classes=3, c3=False)
    return root


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location("bench_polsar_tool",
                                                  REPO / "tools" / "bench_polsar.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_polsar_tool"] = module
    spec.loader.exec_module(module)
    return module


# -- checkerboard split ---------------------------------------------------------------------------
def test_checkerboard_assigns_by_footprint_and_drops_straddlers() -> None:
    grid_r, grid_c = np.meshgrid(np.arange(0, 57, 4), np.arange(0, 57, 4), indexing="ij")
    rows, cols = grid_r.ravel(), grid_c.ravel()
    fp = patch_footprints(rows, cols, 8)
    split = checkerboard_split(fp, 32, origin=(0.0, 0.0)).to_numpy()
    for r, c, s in zip(rows, cols, split):
        inside = r // 32 == (r + 7) // 32 and c // 32 == (c + 7) // 32
        if not inside:
            assert s == "drop"
        else:
            assert s == ("train" if (r // 32 + c // 32) % 2 == 0 else "test")
    # a patch ending exactly on a border is inside (half-open blocks)
    assert checkerboard_split(patch_footprints(np.array([24]), np.array([0]), 8), 32,
                              origin=(0.0, 0.0)).iloc[0] == "train"
    # no pixel is shared by a training and a test patch
    cover = {"train": np.zeros((64, 64), bool), "test": np.zeros((64, 64), bool)}
    for r, c, s in zip(rows, cols, split):
        if s in cover:
            cover[s][r : r + 8, c : c + 8] = True
    assert cover["train"].any() and cover["test"].any()
    assert not (cover["train"] & cover["test"]).any()
    # the overlap-aware splitter's leakage report agrees; without the drops it would leak
    assert split_leakage(fp, pd.Series(split, index=fp.index))["leaking"] == 0
    leaky = np.where(split == "drop", "train", split)
    assert split_leakage(fp, pd.Series(leaky, index=fp.index))["leaking"] > 0


def test_checkerboard_rejects_bad_block() -> None:
    with pytest.raises(ConfigError):
        checkerboard_split(patch_footprints(np.array([0]), np.array([0]), 8), 0)


# -- encoder --------------------------------------------------------------------------------------
def test_small_stem_keeps_spatial_extent_for_16px() -> None:
    enc = build_bench_encoder("resnet18", 9, stem_stride=2, seed=0)
    out = enc(torch.randn(2, 9, 16, 16))
    assert out.shape == (2, enc.num_features) and torch.isfinite(out).all()
    trunk: Any = enc.backbone
    assert trunk.conv1.kernel_size == (3, 3) and trunk.conv1.stride == (2, 2)
    assert isinstance(trunk.maxpool, torch.nn.Identity)
    with pytest.raises(ConfigError):
        small_input_stem(torch.nn.Linear(3, 3))


# -- hand-crafted features ------------------------------------------------------------------------
def test_handcrafted_features_match_direct_computation(scene: Path) -> None:
    arr, _ = read_polsar(scene)
    rows, cols = np.array([0, 10, 40]), np.array([4, 50, 90])
    f = patch_mean_features(arr, rows, cols, 8)
    assert f.shape == (3, 9) and f.dtype == np.float32
    assert feature_names()[:3] == ["T11_db", "T22_db", "T33_db"]
    m = arr[:, 10:18, 50:58].astype(np.float64).mean(axis=(1, 2))
    assert f[1, 1] == pytest.approx(10 * np.log10(m[1]), abs=1e-3)
    assert f[1, 3] == pytest.approx(m[3] / np.sqrt(m[0] * m[1]), abs=1e-4)  # Re T12 normalised
    assert np.all(np.abs(f[:, 3:]) <= 1)
    fp = patch_mean_features(arr, rows, cols, 8, mode="pixel")
    assert fp[2, 0] == pytest.approx(
        np.mean(10 * np.log10(np.maximum(arr[0, 40:48, 90:98], 1e-10))), abs=1e-3)
    with pytest.raises(DataError):
        patch_mean_features(arr, np.array([60]), np.array([0]), 8)
    with pytest.raises(ConfigError):
        patch_mean_features(arr, rows, cols, 8, mode="median")


def test_logreg_baseline_separates_classes(scene: Path) -> None:
    arr, _ = read_polsar(scene)
    grid_r, grid_c = np.meshgrid(np.arange(0, 57, 8), [4, 12, 36, 44, 68, 76], indexing="ij")
    rows, cols = grid_r.ravel(), grid_c.ravel()
    y = (cols - 4) // 32
    f = patch_mean_features(arr, rows, cols, 8)
    p = logreg_scores(f[::2], y[::2], f[1::2], 4)
    assert p.shape == (len(f[1::2]), 4) and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == y[1::2]).mean() > 0.9
    assert np.all(p[:, 3] == 0)  # a class absent from training gets no probability


# -- the benchmark, end to end --------------------------------------------------------------------
def test_benchmark_smoke(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = PolsarBenchConfig(
        root=str(scene), out=str(out), patch=8, stride=4, block=16, budgets=(2, 3), seeds=2,
        methods=("simclr", "moco"), pretrain_steps=3, pretrain_batch=16, moco_queue=64,
        pretrain_stride=8, scratch_steps=2, threads=1, device="cpu", tsne=False,
        log_every=0,
    )
    lines: list[str] = []
    res = run_polsar_benchmark(cfg, log=lines.append)
    rows = {(r["row"], r["eval"]) for r in res["summary"]}
    assert {row for row, _ in rows} == {
        "hand-crafted (patch-mean T3)", "hand-crafted (mean per-pixel features)",
        "geossl SimCLR", "geossl MoCo v2", "random init", "supervised from scratch"}
    assert ("geossl SimCLR", "kNN (k=20)") in rows and ("geossl MoCo v2", "linear probe") in rows
    for rec in res["summary"]:
        for b in ("2", "3"):
            stat = rec["budgets"][b]
            assert stat["oa"]["n"] == 2 and 0 <= stat["oa"]["mean"] <= 1
            assert 0 <= stat["aa"]["mean"] <= 1
    # the hand-crafted baseline sees clearly different scattering classes
    hc = next(r for r in res["summary"] if r["row"].startswith("hand-crafted (patch"))
    assert hc["budgets"]["3"]["oa"]["mean"] > 0.8
    data = res["data"]
    assert data["train"] > 0 and data["test"] > 0 and data["dropped_on_borders"] > 0
    assert data["leakage"]["leaking"] == 0 and data["leakage"]["overlap_px"] == 0
    assert len(res["runs"]) == 2 * 2 * (2 + 2 * 2 + 1 + 1)
    assert res["pretrain"]["simclr"]["steps"] == 3
    saved = json.loads((out / "results.json").read_text())
    assert saved["table"] == res["table"] and "| geossl MoCo v2 | kNN" in saved["table"]
    assert (out / "table.md").is_file() and (out / "split.png").stat().st_size > 1000
    assert (out / "simclr_encoder.pt").is_file() and (out / "moco_encoder.pt").is_file()
    assert "SSL" in res["verdict"]


def test_tool_writes_doc_and_reports_bad_input(scene: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    tool = _tool()
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nhand-written intro\n")
    args = ["--root", str(scene), "--out", str(tmp_path / "o"), "--patch", "8", "--stride", "8",
            "--block", "16", "--budgets", "2", "--seeds", "1", "--methods", "simclr",
            "--pretrain-steps", "2", "--pretrain-batch", "16", "--moco-queue", "64",
            "--pretrain-stride", "8", "--scratch-steps", "1", "--threads", "1",
            "--device", "cpu", "--no-tsne", "--doc", str(doc)]
    assert tool.main(args) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written intro\n")
    assert "## PolSAR San Francisco" in text and "| geossl SimCLR | linear probe" in text
    assert "OA @2/class" in text and "Verdict" in text
    # a rerun replaces the generated section only
    doc.write_text(text + "\nnotes after\n")
    tool.update_doc(doc, "## PolSAR San Francisco\n\nnew table\n")
    again = doc.read_text()
    assert "hand-written intro" in again and "notes after" in again and "new table" in again
    assert again.count(tool.BEGIN) == 1 and "| geossl SimCLR |" not in again
    # a folder without a T3/C3 matrix: one-line error, exit code 2
    assert tool.main(["--root", str(tmp_path / "nothing"), "--doc", ""]) == 2
    assert "error:" in capsys.readouterr().err
    # a corrupt element file
    bad = tmp_path / "bad"
    _generator().generate(bad, rows=32, cols=40, n_classes=2, c3=False)
    (bad / "T3" / "T22.bin").write_bytes(b"\0" * 10)
    assert tool.main(["--root", str(bad), "--doc", ""]) == 2
