"""``geossl demo`` on the built-in real Sentinel-2 crop (geossl/demo/scene), end to end."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.windows import Window

from geossl.cli import main
from geossl.demo import SCENE, builtin_scene
from geossl.demo import run as demo
from geossl.tiling.chip_index import read_index

#: a 3.84 km crop of the sample holding water, marsh and fields (10 m pixels; multiples of 6 so
#: that the 20 m and 60 m bands are cut on their own pixel edges)
CROP_ROW, CROP_COL, CROP_PX = 768, 576, 384
#: tiny demo: 32 px chips (144 of them), 2 pretraining steps on 16 px views
TINY = ["--size", "32", "--steps", "2", "--batch-size", "16", "--crop-size", "16",
        "--clusters", "3"]
#: metrics per table row: linear and kNN (OA, AA, macro-F1), k-means (NMI, ARI, matched acc)
METRICS_PER_ROW = 9


def crop_sample(dest: Path) -> Path:
    """Write a crop of every band of the built-in scene, each at its own resolution."""
    dest.mkdir(parents=True, exist_ok=True)
    for band in sorted(builtin_scene().glob("s2_B*.tif")):
        with rasterio.open(band) as src:
            f = src.res[0] / 10.0
            win = Window(CROP_COL / f, CROP_ROW / f, CROP_PX / f, CROP_PX / f)
            profile = {"driver": "GTiff", "height": int(win.height), "width": int(win.width),
                       "count": 1, "dtype": src.dtypes[0], "crs": src.crs,
                       "transform": src.window_transform(win)}
            with rasterio.open(dest / f"{band.stem}.tif", "w", **profile) as dst:
                dst.write(src.read(1, window=win), 1)
    return dest


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The whole demo through the CLI on a crop of the sample, at a tiny setting."""
    root = tmp_path_factory.mktemp("demo")
    scene = crop_sample(root / "scene")
    out = root / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main(["demo", "--out", str(out), "--scene", str(scene), *TINY])
    assert status == 0
    return out, buf.getvalue()


def test_builtin_scene_is_the_recorded_one() -> None:
    """The shipped band files are byte for byte those SOURCE.md records (13 bands, CC0)."""
    source = (SCENE.parent / "SOURCE.md").read_text()
    recorded = dict(re.findall(r"\| (s2_\w+\.tif) \| ([0-9a-f]{64}) \|", source))
    assert len(recorded) == 13 and "CC0" in source
    shipped = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(builtin_scene().glob("s2_B*.tif"))}
    assert shipped == recorded
    with rasterio.open(SCENE / "s2_B02.tif") as b02, rasterio.open(SCENE / "s2_B01.tif") as b01:
        assert b02.crs.to_epsg() == 32618 and b02.res == (10.0, 10.0)
        assert b02.shape == (1947, 1933) and b02.dtypes[0] == "uint16"
        assert b01.res == (60.0, 60.0) and b02.profile["compress"] == "deflate"


def test_demo_tiles_the_real_sample(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    ctx = demo.run_demo(demo.DemoContext(out=out, size=128), demo.STAGES[:3])
    gdf = read_index(out / "chips")
    assert len(gdf) == 15 * 15  # 1947 x 1933 px at 10 m: 15 x 15 full 128 px chips
    assert len(gdf["bands"].iloc[0].split(",")) == 13 and set(gdf["sensor"]) == {"s2"}
    assert set(gdf["crs"]) == {"EPSG:32618"}
    png = out / "quicklook.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and ctx.outputs["quick-look"] == png
    assert (out / "chips" / "packed" / "chips.npy").is_file()
    row = gdf[(gdf["row"] == 128) & (gdf["col"] == 256)].iloc[0]
    with rasterio.open(out / "chips" / row["path"]) as chip, \
            rasterio.open(builtin_scene() / "s2_B02.tif") as b02:
        assert chip.crs == b02.crs
        np.testing.assert_array_equal(chip.read(2), b02.read(1, window=Window(256, 128, 128, 128)))


def _metric_values(rows: list[dict]) -> list[float]:
    return [float(v) for row in rows for part in ("linear", "knn", "kmeans")
            for k, v in row[part].items() if k in ("oa", "aa", "f1_macro", "nmi", "ari", "acc")]


def test_demo_pretrains_evaluates_and_maps(tiny_demo: tuple[Path, str]) -> None:
    import torch

    from geossl.datasets.chips import ChipDataset
    from geossl.pretrained.checkpoint import load_encoder

    out, text = tiny_demo
    # a Lightning checkpoint of the pretrain code path, loadable as an encoder of 13-band chips
    ckpt = out / "pretrain" / "checkpoints" / "last.ckpt"
    encoder, meta = load_encoder(ckpt)
    assert meta["backbone"] == "resnet18" and meta["method"] == "simclr"
    assert meta["pairing"] == "aug" and meta["bands"]["s2"][10] == "B10"
    assert meta["crop_size"] == 16
    chip = ChipDataset(out / "chips")[0]["image"].float()[None]
    with torch.no_grad():
        assert encoder.eval()(chip).shape == (1, 512)
    assert (out / "pretrain" / "config.yaml").is_file()
    # table, printed and written, honest about its labels, one row per feature set
    table = (out / "table.md").read_text()
    assert "spectral-index proxy labels, not ground truth" in table
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == "spectral-index proxy labels, not ground truth"
    names = [r["features"] for r in results["rows"]]
    assert names[0].startswith("SSL (simclr, 2 steps)") and names[1].startswith("random init")
    assert names[2].startswith("band means (13")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == names
    for row in rows:
        assert row in text  # the printed table is the written one
    assert len(results["classes"]) >= 2 and results["pretrain"]["steps"] == 2
    assert results["pretrain"]["view_size"] == 16
    values = _metric_values(results["rows"])
    assert len(values) == 3 * METRICS_PER_ROW
    assert all(math.isfinite(v) for v in values)
    # ARI lies in [-0.5, 1]; every other metric in [0, 1]
    assert all(0.0 <= v <= 1.0 for row in results["rows"] for part in ("linear", "knn")
               for k, v in row[part].items() if k in ("oa", "aa", "f1_macro"))
    assert all(-0.5 <= row["kmeans"]["ari"] <= 1 and 0 <= row["kmeans"]["nmi"] <= 1
               for row in results["rows"])
    for name in ("tsne.png", "neighbours.png", "cluster_map.png", "quicklook.png",
                 "pretrain/loss_curve.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # label-free cluster map: georeferenced, one pixel per chip-grid window
    with rasterio.open(out / "cluster_map.tif") as cm:
        assert cm.crs.to_epsg() == 32618 and cm.shape == (12, 12)
        ids = cm.read(1)
    assert set(np.unique(ids)) <= {0, 1, 2}
    assert (out / "embedding.zarr").is_dir()
    # the closing summary lists every file written
    listing = text[text.index("files written:"):]
    for path in (ckpt, out / "table.md", out / "results.json", out / "tsne.png",
                 out / "cluster_map.tif", out / "splits.json", out / "proxy_labels.csv"):
        assert str(path) in listing
    assert "done in" in text


def test_demo_split_does_not_leak(tiny_demo: tuple[Path, str]) -> None:
    from geossl.splits import leakage_report, load_splits

    out, _ = tiny_demo
    gdf = read_index(out / "chips")
    splits = load_splits(out / "splits.json", gdf)
    assert set(splits) <= {"train", "test", "drop"} and (splits == "test").any()
    report = leakage_report(gdf, splits)
    assert int(report["overlap_km2"].sum()) == 0 and int(report["leaking_a"].sum()) == 0
    # pretraining saw training chips only
    results = json.loads((out / "results.json").read_text())
    assert results["pretrain"]["training_chips"] == int((splits == "train").sum())


def test_demo_proxy_labels_match_the_chips(tiny_demo: tuple[Path, str]) -> None:
    from geossl.datasets.chips import ChipDataset
    from geossl.demo import proxy_labels as pl

    out, _ = tiny_demo
    table = pd.read_csv(out / "proxy_labels.csv")
    ds = ChipDataset(out / "chips")
    assert table["chip_id"].tolist() == ds.ids
    for i in (0, len(ds) // 2, len(ds) - 1):
        img = ds[i]["image"].numpy()
        lab, pur, _ = pl.chip_labels(img[None], ds.bands, purity=0.6)
        assert table["label"].iloc[i] == lab[0]
        assert table["purity"].iloc[i] == pytest.approx(pur[0], abs=1e-4)
        np.testing.assert_allclose(table["mean_B08"].iloc[i],
                                   img[ds.bands.index("B08")].mean() / 1e4, rtol=1e-5)
    counts = table["proxy_class"].value_counts()
    assert counts.get("water", 0) > 0 and counts.get("dense vegetation", 0) > 0


def test_demo_stages_extensible(tmp_path: Path) -> None:
    seen: list[str] = []
    ctx = demo.DemoContext(out=tmp_path, scene=tmp_path)
    demo.run_demo(ctx, stages=[("a", lambda c: seen.append("a")),
                               ("b", lambda c: seen.append(str(c.scene)))])
    assert seen == ["a", str(tmp_path)]
    assert [name for name, _ in demo.STAGES] == [
        "locate", "tile", "quicklook", "labels", "split", "pretrain", "features", "evaluate",
        "pictures", "map"]


def test_rerun_replaces_only_a_previous_pretraining_run(tmp_path: Path) -> None:
    from geossl.core.errors import ConfigError

    run = tmp_path / "pretrain"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("method: simclr\n")
    (run / "checkpoints" / "step=9.ckpt").write_bytes(b"old")
    demo.fresh_run_dir(run)
    assert not run.exists()
    demo.fresh_run_dir(run)  # nothing there: fine
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a demo pretraining run"):
        demo.fresh_run_dir(other)
    assert (other / "notes.txt").read_text() == "keep"


def test_evaluate_features_scores_separable_and_random_features() -> None:
    import torch

    from geossl.demo import evaluate as demo_eval

    rng = np.random.default_rng(0)
    n, k = 120, 3
    labels = np.arange(n) % k
    labels[::10] = -1  # unlabelled chips are left out
    centres = rng.normal(size=(k, 8)) * 10
    good = centres[np.maximum(labels, 0)] + rng.normal(size=(n, 8))
    noise = rng.normal(size=(n, 8))
    train = np.arange(n) < 80
    test = ~train
    rows = demo_eval.evaluate_features(
        {"good": torch.as_tensor(good), "noise": torch.as_tensor(noise)}, labels, train, test, k)
    by = {r["features"]: r for r in rows}
    assert by["good"]["dim"] == 8
    for part in ("linear", "knn"):
        assert by["good"][part]["oa"] == 1.0 and by["good"][part]["f1_macro"] == 1.0
        assert by["noise"][part]["oa"] < 0.7
        assert np.sum(by["good"][part]["confusion"]) == int(((labels >= 0) & test).sum())
    assert by["good"]["kmeans"]["nmi"] > 0.95 and by["good"]["kmeans"]["ari"] > 0.95
    assert by["noise"]["kmeans"]["ari"] < 0.2
    md = demo_eval.markdown_table(rows, "t", ["a note"])
    assert "not ground truth" in md and "| good | 1.000 |" in md and md.endswith("- a note\n")


def test_demo_with_a_broken_installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import geossl.demo

    partial = tmp_path / "scene"
    partial.mkdir()
    (partial / "s2_B02.tif").write_bytes((SCENE / "s2_B02.tif").read_bytes())
    monkeypatch.setattr(geossl.demo, "SCENE", partial)
    assert main(["demo", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if "error" in line]  # after the progress lines
    assert len(error) == 1 and "lacks 12 band file(s)" in error[0]
    assert "reinstall geossl" in error[0] and str(partial) in error[0] and "Traceback" not in err


@pytest.mark.slow
def test_demo_default_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert len(read_index(out / "chips")) == 30 * 30
    assert results["pretrain"]["steps"] == 60 and len(results["rows"]) == 3
    assert all(math.isfinite(v) for v in _metric_values(results["rows"]))
    assert "not ground truth" in text and "files written:" in text
