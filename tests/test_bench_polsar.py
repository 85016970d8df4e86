"""Tests of the PolSAR benchmark (geossl.bench.polsar, geossl/bench/polsar_report.py) and of the
hand-crafted PolSAR features (geossl.eval.handcrafted), on a tiny fake AIRSAR-like scene."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
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
    compare_to_baselines,
    cv_linear_probe,
    embed_patches,
    embed_windows,
    load_pretrained,
    paired_gap,
    patch_footprints,
    run_polsar_benchmark,
    small_input_stem,
    split_leakage,
    window_origins,
)
from geossl.core.errors import ConfigError, DataError
from geossl.datasets.polsar import read_polsar
from geossl.eval.handcrafted import feature_names, patch_mean_features
from geossl.eval.linear import logreg_scores

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
    return importlib.import_module("geossl.bench.polsar_report")


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


def test_multi_stage_features_concatenate_pooled_stages() -> None:
    enc = build_bench_encoder("resnet18", 9, stem_stride=2, seed=0)
    x = torch.randn(5, 9, 16, 16)
    dev = torch.device("cpu")
    last = embed_patches(enc, x, dev, batch_size=2)
    assert last.shape == (5, 512)
    # stage 4 pooled by the hook is the encoder's own (pooled last stage) output
    assert torch.allclose(embed_patches(enc, x, dev, stages=(4,)), last, atol=1e-5)
    multi = embed_patches(enc, x, dev, batch_size=2, stages=(1, 2, 3, 4))
    assert multi.shape == (5, 64 + 128 + 256 + 512) and torch.allclose(multi[:, -512:], last,
                                                                         atol=1e-5)
    trunk: Any = enc.backbone
    assert not trunk.layer1._forward_hooks  # hooks removed
    with pytest.raises(ConfigError):
        embed_patches(enc, x, dev, stages=(5,))
    with pytest.raises(ConfigError):
        PolsarBenchConfig(root="x", feature_stages=(0, 4)).check()


def test_windows_are_centred_and_stay_inside_the_scene() -> None:
    r, c = window_origins(np.array([0, 20, 56]), np.array([40, 3, 92]), 8, 16, 64, 100)
    assert r.tolist() == [0, 16, 48] and c.tolist() == [36, 0, 84]
    for rr, cc, pr, pc in zip(r, c, [0, 20, 56], [40, 3, 92]):  # the patch lies inside
        assert rr <= pr and pr + 8 <= rr + 16 and cc <= pc and pc + 8 <= cc + 16
    enc = build_bench_encoder("resnet18", 9, stem_stride=2, seed=0)
    scene = torch.randn(9, 64, 100)
    rows = np.stack([np.array([0, 20, 56]), r])
    cols = np.stack([np.array([40, 3, 92]), c])
    small, large = embed_windows(enc, scene, rows, cols, (8, 16), torch.device("cpu"), (1, 4),
                                 batch_size=2)
    assert small.shape == large.shape == (3, 64 + 512)
    direct = embed_patches(enc, scene[:, 16:32, 0:16][None], torch.device("cpu"), stages=(1, 4))
    assert torch.allclose(large[1], direct[0], atol=1e-5)
    with pytest.raises(ConfigError, match="windows"):
        PolsarBenchConfig(root="x", windows=(16,)).check()
    with pytest.raises(ConfigError, match="select_half"):
        PolsarBenchConfig(root="x", select_half=3).check()
    # flags that may be given empty: --windows alone means the patch alone
    parsed = _tool().build_parser().parse_args(["--root", "x", "--windows", "--methods", "moco"])
    assert parsed.windows == [] and parsed.methods == ["moco"]


def test_multiscale_selection_run_never_scores_test_blocks(scene: Path, tmp_path: Path) -> None:
    cfg = PolsarBenchConfig(
        root=str(scene), out=str(tmp_path / "sel"), patch=8, stride=4, block=16, budgets=(2,),
        seeds=2, methods=("moco",), pretrain_steps=2, pretrain_batch=16, moco_queue=64,
        pretrain_stride=8, context=12, scratch_steps=0, threads=1, device="cpu", tsne=False,
        log_every=0, probe_folds=2, windows=(16,), select=True)
    res = run_polsar_benchmark(cfg, log=lambda _: None)
    full = run_polsar_benchmark(dataclasses.replace(cfg, out=str(tmp_path / "full"),
                                                    select=False, methods=()),
                                log=lambda _: None)
    data = res["data"]
    # both halves come from the training blocks of the full split, which they partition
    assert data["train"] + data["test"] == full["data"]["train"]
    assert data["scored_on"].startswith("half of the training blocks")
    other = run_polsar_benchmark(dataclasses.replace(cfg, out=str(tmp_path / "sel1"),
                                                     select_half=1, methods=()),
                                 log=lambda _: None)["data"]
    # --select-half 1 swaps the roles of the two halves: every training block is scored once
    assert (other["train"], other["test"]) == (data["test"], data["train"])
    lines = {(r["row"], r["eval"]) for r in res["summary"]}
    assert ("geossl MoCo v2", "linear probe (8+16 px)") in lines
    assert ("geossl MoCo v2", "linear probe") in lines
    assert ("random init", "linear probe (8+16 px)") in lines
    assert ("hand-crafted (mean per-pixel features)",
            "logistic regression (C=1) (8+16 px)") in lines
    assert not any(r.startswith("supervised") for r, _ in lines)  # --scratch-steps 0
    assert res["primary"] == ["geossl MoCo v2", "linear probe (8+16 px)"]
    baselines = {(c["row"], c["eval"]) for c in res["comparison"]}
    assert baselines == {line for line in lines if not line[0].startswith("geossl")}
    gap = res["comparison"][0]["budgets"]["2"]["oa"]
    assert gap["n"] == 2 and gap["low"] <= gap["mean"] <= gap["high"]
    assert "SSL line fixed in advance" in res["comparison_verdict"]


def test_selection_on_both_halves_pools_every_training_block(scene: Path, tmp_path: Path
                                                            ) -> None:
    cfg = PolsarBenchConfig(
        root=str(scene), out=str(tmp_path / "both"), patch=8, stride=4, block=16, budgets=(2,),
        seeds=2, methods=("moco",), pretrain_steps=2, pretrain_batch=16, moco_queue=64,
        pretrain_stride=8, context=12, scratch_steps=0, threads=1, device="cpu", tsne=False,
        log_every=0, probe_folds=2, windows=(), select=True, select_half=2)
    res = run_polsar_benchmark(cfg, log=lambda _: None)
    half0, half1 = (json.loads((tmp_path / "both" / f"half{h}" / "results.json").read_text())
                    for h in (0, 1))
    # the halves swap roles: every training block is scored once, never a test block
    assert (half1["data"]["train"], half1["data"]["test"]) == (half0["data"]["test"],
                                                               half0["data"]["train"])
    assert res["data"]["test"] == half0["data"]["test"] + half1["data"]["test"]
    # half 1 reused half 0's encoder (pretraining sees no label)
    assert half1["pretrain"]["moco"]["loaded_from"].endswith("half0/moco_encoder.pt")
    # 2 x seeds pooled draws per line; the pooled mean is the mean of the halves' runs
    line = ("geossl MoCo v2", "linear probe")
    pooled = [r for r in res["runs"] if (r["row"], r["eval"]) == line]
    assert sorted(r["seed"] for r in pooled) == [0, 1, 2, 3]
    expect = np.mean([r["metrics"]["oa"] for h in (half0, half1) for r in h["runs"]
                      if (r["row"], r["eval"]) == line])
    stat = next(s_ for s_ in res["summary"] if (s_["row"], s_["eval"]) == line)
    assert stat["budgets"]["2"]["oa"]["mean"] == pytest.approx(expect)
    assert res["comparison"][0]["budgets"]["2"]["oa"]["n"] == 4
    saved = json.loads((tmp_path / "both" / "results.json").read_text())
    assert saved["data"]["scored_on"].startswith("each half")
    assert "--select-half 2" in _tool().doc_section(saved, "geossl bench polsar ...")


def test_compare_to_baselines_flags_clear_gaps() -> None:
    def run(row: str, seed: int, oa: float, aa: float) -> dict[str, Any]:
        return {"row": row, "eval": "e", "budget": 10, "seed": seed,
                "metrics": {"oa": oa, "aa": aa}}

    runs = [run("geossl X", s, 0.9 + 0.01 * s, 0.8) for s in range(4)]
    runs += [run("base", s, 0.85 + 0.01 * s, 0.8 + 0.05 * (-1) ** s) for s in range(4)]
    (rec,) = compare_to_baselines(runs, ("geossl X", "e"), [10])
    oa, aa = rec["budgets"]["10"]["oa"], rec["budgets"]["10"]["aa"]
    assert oa["mean"] == pytest.approx(0.05) and oa["clear"] and oa["wins"] == 4
    assert aa["mean"] == pytest.approx(0.0) and not aa["clear"] and aa["low"] < 0 < aa["high"]


def test_cv_linear_probe_uses_only_labelled_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 20, generator=gen) * 3
    y = torch.arange(3).repeat_interleave(10)
    x = centres[y] + torch.randn(30, 20, generator=gen)
    yt = torch.arange(3).repeat(20)
    xt = centres[yt] + torch.randn(60, 20, generator=gen)
    grid = (1e-2, 1e-1, 1.0, 1e3)  # small grid, no near-zero decay: fast on separable data
    logits, info = cv_linear_probe(x, y, xt, 3, folds=5, seed=1, weight_decays=grid)
    assert logits.shape == (60, 3) and (logits.argmax(1) == yt).float().mean() > 0.9
    assert info["weight_decay"] in grid[:3] and 0.9 < info["cv_score"] <= 1  # 1e3 underfits
    # the choice does not depend on the test rows
    _, again = cv_linear_probe(x, y, torch.zeros(4, 20), 3, folds=5, seed=1, weight_decays=grid)
    assert again["weight_decay"] == info["weight_decay"]
    # a class with a single label: falls back to the hold-out probe
    logits, info = cv_linear_probe(x[:21], y[:21], xt, 3, folds=5, weight_decays=grid)
    assert logits.shape == (60, 3) and "cv_score" not in info


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
        pretrain_stride=8, context=8, crop_scale=(0.4, 1.0), scratch_steps=2, threads=1,
        device="cpu", tsne=False, log_every=0, probe_folds=2, windows=(),
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
    # per budget and seed: hand-crafted x (scikit-learn + CV probe) x 2, SSL x (probe + kNN) x 2,
    # random init, scratch
    assert len(res["runs"]) == 2 * 2 * (2 * 2 + 2 * 2 + 1 + 1)
    assert ("hand-crafted (mean per-pixel features)", "linear probe") in rows
    probed = [r for r in res["runs"] if r["eval"] == "linear probe"]
    assert probed and all(r["probe"]["weight_decay"] > 0 for r in probed)
    assert "Paired over the same label draws" in res["verdict"]
    assert res["pretrain"]["simclr"]["steps"] == 3
    saved = json.loads((out / "results.json").read_text())
    assert saved["table"] == res["table"] and "| geossl MoCo v2 | kNN" in saved["table"]
    assert (out / "table.md").is_file() and (out / "split.png").stat().st_size > 1000
    assert (out / "simclr_encoder.pt").is_file() and (out / "moco_encoder.pt").is_file()
    assert "SSL" in res["verdict"]
    # an evaluation-only rerun loads the saved encoders (same pretraining options) ...
    again = run_polsar_benchmark(dataclasses.replace(
        cfg, out=str(tmp_path / "rerun"), encoders=str(out), methods=("moco",), budgets=(2,),
        seeds=1), log=lines.append)
    assert again["pretrain"]["moco"]["loaded_from"] == str(out / "moco_encoder.pt")
    first = next(r for r in res["runs"] if (r["row"], r["eval"], r["budget"], r["seed"])
                 == ("geossl MoCo v2", "linear probe", 2, 0))
    second = next(r for r in again["runs"] if (r["row"], r["eval"]) == ("geossl MoCo v2",
                                                                        "linear probe"))
    assert second["metrics"] == pytest.approx(first["metrics"])
    # ... and refuses encoders pretrained with other options
    with pytest.raises(ConfigError, match="pretrain_steps"):
        load_pretrained(out, "moco", dataclasses.replace(cfg, pretrain_steps=4))


def test_paired_gap_compares_the_same_draws() -> None:
    def run(row: str, seed: int, oa: float) -> dict[str, Any]:
        return {"row": row, "eval": "e", "budget": 10, "seed": seed,
                "metrics": {"oa": oa, "aa": oa}}

    runs = [run("a", 0, 0.9), run("a", 1, 0.8), run("a", 2, 0.7),
            run("b", 0, 0.85), run("b", 1, 0.82), run("b", 3, 0.1)]
    gap = paired_gap(runs, ("a", "e"), ("b", "e"), 10)
    assert gap is not None and gap["n"] == 2 and gap["wins"] == 1  # seeds 0 and 1 only
    assert gap["mean"] == pytest.approx(0.015) and gap["std"] == pytest.approx(
        np.std([0.05, -0.02], ddof=1))
    assert paired_gap(runs, ("a", "e"), ("b", "e"), 50) is None


def test_tool_writes_doc_and_reports_bad_input(scene: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    tool = _tool()
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nhand-written intro\n")
    args = ["--root", str(scene), "--out", str(tmp_path / "o"), "--patch", "8", "--stride", "8",
            "--block", "16", "--budgets", "2", "--seeds", "1", "--methods", "simclr",
            "--pretrain-steps", "2", "--pretrain-batch", "16", "--moco-queue", "64",
            "--pretrain-stride", "8", "--context", "32", "--crop-scale", "0.1", "0.3",
            "--scratch-steps", "1", "--threads", "1", "--device", "cpu", "--no-tsne",
            "--doc", str(doc)]
    assert tool.main(args) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written intro\n")
    assert "## PolSAR San Francisco" in text and "| geossl SimCLR | linear probe" in text
    assert "OA @2/class" in text and "Verdict" in text
    assert "Paired comparison per baseline" in text and "SSL line fixed in advance" in text
    assert "| hand-crafted (patch-mean T3), logistic regression (C=1) |" in text
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


def test_a_run_writes_a_doc_only_when_given_one(scene: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _tool()
    doc = tmp_path / "benchmarks_polsar.md"
    doc.write_text("published section\n")
    monkeypatch.chdir(tmp_path)  # no doc is found from the working folder either
    flags = ["--root", str(scene), "--patch", "8", "--stride", "4", "--block", "16",
             "--budgets", "2", "--seeds", "1", "--methods", "--windows", "--scratch-steps", "0",
             "--threads", "1", "--device", "cpu", "--no-tsne", "--probe-folds", "2", "--select"]
    assert tool.main([*flags, "--out", str(tmp_path / "a")]) == 0
    assert doc.read_text() == "published section\n"  # no --doc: no doc written
    assert {p.name for p in tmp_path.iterdir()} == {doc.name, "a"}  # only --out written
    assert tool.main([*flags, "--out", str(tmp_path / "b"), "--doc", str(doc)]) == 0
    assert "Selection run (--select, --select-half 0)" in doc.read_text()  # asked for: written
    doc.write_text("published section\n")
    assert tool.main([*flags, "--out", str(tmp_path / "c"), "--do", str(doc)]) == 0
    assert "Selection run" in doc.read_text()  # argparse's abbreviation of --doc counts too


def test_orientation_views_pretrain_and_are_part_of_the_encoder_options(
        scene: Path, tmp_path: Path) -> None:
    cfg = PolsarBenchConfig(
        root=str(scene), out=str(tmp_path / "or"), patch=8, stride=4, block=16, budgets=(2,),
        seeds=1, methods=("moco",), pretrain_steps=2, pretrain_batch=16, moco_queue=64,
        pretrain_stride=8, context=12, scratch_steps=0, threads=1, device="cpu", tsne=False,
        log_every=0, probe_folds=2, orientation_p=1.0, orientation_max_deg=30.0)
    res = run_polsar_benchmark(cfg, log=lambda _: None)
    info = res["pretrain"]["moco"]
    assert info["steps"] == 2 and np.isfinite(info["loss_last"])
    assert res["config"]["orientation_p"] == 1.0
    doc = _tool().doc_section(res, "geossl bench polsar ...")
    assert "orientation turns" in doc and "±30°" in doc and "p = 1.0" in doc
    # encoders pretrained with other views are not reused
    with pytest.raises(ConfigError, match="orientation_p"):
        load_pretrained(tmp_path / "or", "moco", dataclasses.replace(cfg, orientation_p=0.0))


def test_orientation_views_need_a_t3_scene(tmp_path: Path) -> None:
    folder = _generator().generate(tmp_path, rows=32, cols=40, n_classes=2, c3=True)["c3"]
    cfg = PolsarBenchConfig(root=str(folder), out=str(tmp_path / "o"), patch=8, stride=4,
                            block=16, budgets=(1,), seeds=1, methods=("moco",),
                            orientation_p=0.5, threads=1, device="cpu", tsne=False)
    with pytest.raises(ConfigError, match="T3 scene"):
        run_polsar_benchmark(cfg, log=lambda _: None)


def test_a_context_larger_than_the_scene_is_refused(scene: Path, tmp_path: Path) -> None:
    cfg = PolsarBenchConfig(root=str(scene), out=str(tmp_path / "c"), patch=8, stride=4,
                            block=16, budgets=(1,), seeds=1, threads=1, device="cpu",
                            tsne=False)  # default context: 96 px, the scene is 64 x 100
    with pytest.raises(ConfigError, match="context 96 is larger than the scene"):
        run_polsar_benchmark(cfg, log=lambda _: None)


def test_benchmark_reports_every_phase_and_its_progress(
        scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18 item 22: a log (not a terminal) shows numbered phases and progress lines with
    an estimate of the time left for the evaluation loops (32 silent minutes before)."""
    monkeypatch.setenv("GEOSSL_PROGRESS_S", "0")  # every update: the phases here are short
    cfg = PolsarBenchConfig(
        root=str(scene), out=str(tmp_path / "run"), patch=8, stride=4, block=16, budgets=(2,),
        seeds=2, methods=("simclr",), pretrain_steps=2, pretrain_batch=16, moco_queue=64,
        pretrain_stride=8, context=8, crop_scale=(0.4, 1.0), scratch_steps=2, threads=1,
        device="cpu", tsne=False, log_every=0, probe_folds=0, windows=(),
    )
    lines: list[str] = []
    run_polsar_benchmark(cfg, log=lines.append)
    phases = [line for line in lines if line.startswith("[")]
    assert [p.split("]")[0] + "]" for p in phases if "done in" not in p] == [
        f"[{i}/5]" for i in range(1, 6)]
    assert any("supervised from scratch" in p for p in phases)
    assert sum("done in" in p for p in phases) == 5
    err = capsys.readouterr().err.splitlines()
    for desc in ("hand-crafted", "geossl SimCLR", "random init", "supervised from scratch"):
        shown = [e for e in err if e.startswith(desc)]
        assert shown, (desc, err[-20:])
        assert any("<" in e and "/2 [" in e for e in shown), shown  # n/total [elapsed<left]
