"""``geossl compare`` with an embedding-product row (``kind: product``).

The products are built with known vectors, one per chip of a fake EuroSAT-MS layout: one with
geossl's own GeoParquet writer (footprints from the chips' georeferencing), one hand-made in
the Major-TOM / EarthEmbeddings layout (``grid_cell`` id, ``centre_lon``/``centre_lat``). The
oracle of tests/test_compare.py (spies on the probe) checks that the product row learned from
the same draws as every other row, and the features it learned from are compared with the
product's vectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import geossl.compare.rows as rows_mod
from geossl.cli import main
from geossl.compare.rows import parse_row
from tests.test_compare import (
    EUROSAT_BANDS,
    Spy,
    assert_each_fails_in_one_line,
    eurosat,
    write_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
__all__ = ["eurosat"]  # the fixture, imported for pytest

CHIP = 160.0  # 16 px x 10 m


def _chips(root: Path) -> tuple[list[str], list[int], list[str]]:
    """Chip ids of the fake EuroSAT (as geossl names them), their class, the test side's ids."""
    from geossl.eval.data import resolve
    from tests.data.aid.data import EUROSAT_CLASSES

    res = resolve("eurosat", root, None, "train", "test", out=None)
    classes = list(EUROSAT_CLASSES)
    ids = [str(i) for i in res.ids]
    return ids, [classes.index(i.split("/")[0]) for i in ids], [ids[p] for p in res.test]


def _vectors(ids: list[str], labels: list[int], dim: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vec = rng.normal(size=(len(ids), dim)).astype(np.float32)
    vec[np.arange(len(ids)), np.asarray(labels) % dim] += 2.0
    return {i: v for i, v in zip(ids, vec)}


def geossl_product(path: Path, vectors: dict[str, np.ndarray]) -> Path:
    """GeoParquet with geossl's writer; footprints from the chips' transforms (UTM 32N)."""
    from geossl.embeddings.records import make_table, write_geoparquet

    ids = list(vectors)
    n = np.array([int(i.rsplit("_", 1)[1].split(".")[0]) for i in ids])
    minx = 593926.0 + 640 * n
    bounds = np.stack([minx, np.full(len(n), 5300811.0 - CHIP), minx + CHIP,
                       np.full(len(n), 5300811.0)], axis=1)
    table = make_table(ids, np.stack(list(vectors.values())), bounds, "EPSG:32632",
                       source="test")
    return write_geoparquet(table, path)


def majortom_product(path: Path, vectors: dict[str, np.ndarray],
                     column: str = "embedding") -> Path:
    """Hand-made Major-TOM / EarthEmbeddings layout: grid_cell ids, centre lon/lat, vectors."""
    ids = list(vectors)
    pd.DataFrame({"grid_cell": ids, "centre_lon": 9.0, "centre_lat": 47.8,
                  "timestamp": pd.Timestamp("2021-05-01", tz="UTC"),
                  column: list(vectors.values())}).to_parquet(path)
    return path


class FeatureSpy:
    """Records the (train, test) features every probe/kNN of a given width was handed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, spy: Spy) -> None:
        self.probe: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.knn: list[tuple[torch.Tensor, torch.Tensor, frozenset[str]]] = []
        probe, knn, feats = (rows_mod.linear_probe, rows_mod.knn_scores,
                             rows_mod.product_feature_set)

        def product_spy(*a: Any, **kw: Any) -> Any:
            fs = feats(*a, **kw)
            spy.train_sets.append(fs)  # the oracle matches the probe's rows back to chips
            return fs

        def probe_rec(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                      k: int, **kw: Any) -> Any:
            self.probe.append((train_x.clone(), test_x.clone()))
            return probe(train_x, train_y, test_x, k, **kw)

        def knn_rec(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                    num_classes: int, **kw: Any) -> Any:
            fs = next(f for f in spy.train_sets if f.features.shape[1] == train_x.shape[1])
            eq = (train_x[:, None, :] == fs.features[None, :, :]).all(-1)
            assert bool(eq.any(1).all())
            ids = frozenset(fs.ids[int(j)] for j in eq.float().argmax(1))
            self.knn.append((train_x.clone(), test_x.clone(), ids))
            return knn(train_x, train_y, test_x, num_classes, **kw)

        monkeypatch.setattr(rows_mod, "product_feature_set", product_spy)
        monkeypatch.setattr(rows_mod, "linear_probe", probe_rec)
        monkeypatch.setattr(rows_mod, "knn_scores", knn_rec)


def _stack(vectors: dict[str, np.ndarray], ids: list[str]) -> torch.Tensor:
    return torch.from_numpy(np.stack([vectors[i] for i in ids]))


def test_product_row_from_flags_same_draws_and_the_products_vectors(
        eurosat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, labels, test_ids = _chips(eurosat)
    vectors = _vectors(ids, labels, dim=7, seed=1)
    prod = geossl_product(tmp_path / "emb.parquet", vectors)
    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", 13, EUROSAT_BANDS)
    spy = Spy(monkeypatch)
    feats = FeatureSpy(monkeypatch, spy)
    out = tmp_path / "cmp"
    rc = main(["compare", "--data", "eurosat", "--root", str(eurosat), "--ckpt", str(ckpt),
               "--row", f"emb=product:{prod}", "--baselines", "band-means",
               "--labels-per-class", "1,2", "--seeds", "0,1,2", "--out", str(out),
               "--accelerator", "cpu", "--batch-size", "8", "--no-plots"])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    row = {r["name"]: r for r in res["rows"]}["emb"]
    assert row["kind"] == "product" and row["method"] == "embedding-product"
    assert row["num_features"] == 7 and row["product"] == str(prod)
    assert row["backbone"] == "embedding product (geoparquet)"

    # (b) the oracle: 3 rows x 3 seeds x 2 budgets, every draw learned from one sample set
    assert spy.calls == 3 * 3 * 2
    assert sorted(spy.seen) == sorted({(d["seed"], d["n_labels"]) for d in res["draws"]})
    assert len(spy.seen) == 6
    for key, sets in spy.seen.items():
        assert len(sets) == 3 and len(set(sets)) == 1, key
    for d in res["draws"]:
        assert frozenset(d["ids"]) == spy.seen[(d["seed"], d["n_labels"])][0]

    # (a) the product row's features are the product's vectors, for the drawn chips in draw
    # order and for every test chip
    mine = [(tr, te) for tr, te in feats.probe if tr.shape[1] == 7]
    assert len(mine) == len(res["draws"]) == 6
    assert len(test_ids) == res["meta"]["n_test"]
    for (train_x, test_x), d in zip(mine, res["draws"]):
        torch.testing.assert_close(train_x, _stack(vectors, d["ids"]), rtol=0, atol=0)
        torch.testing.assert_close(test_x, _stack(vectors, test_ids), rtol=0, atol=0)
    md = (out / "compare.md").read_text()
    assert "| emb | product | 1/class | 3 |" in md


def test_product_row_from_yaml_torchgeo_layout_knn_and_column(
        eurosat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, labels, _ = _chips(eurosat)
    vectors = _vectors(ids, labels, dim=6, seed=2)
    mt = majortom_product(tmp_path / "majortom.parquet", vectors)
    other = _vectors(ids, labels, dim=5, seed=3)
    vec_col = majortom_product(tmp_path / "other.parquet", other, column="vec")
    spy = Spy(monkeypatch)
    feats = FeatureSpy(monkeypatch, spy)
    config = tmp_path / "compare.yaml"
    config.write_text(
        "rows:\n"
        "  - {name: rand, kind: random, backbone: test_resnet}\n"
        f"  - {{name: mt, kind: product, product: {mt}, protocol: knn}}\n"
        f"  - {{name: other, kind: product, product: {vec_col}, column: vec}}\n"
        "reference: rand\n"
        "labels_per_class: 2\n"
        "seeds: 0,1\n")
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--data", "eurosat", "--root",
                 str(eurosat), "--out", str(out), "--accelerator", "cpu", "--batch-size", "8",
                 "--no-plots"]) == 0
    res = json.loads((out / "compare.json").read_text())
    info = {r["name"]: r for r in res["rows"]}
    assert info["mt"]["protocol"] == "knn" and info["other"]["column"] == "vec"
    assert {r["row"]: r["info"] for r in res["runs"]}["mt"] == {"k": 6}  # 2 labels x 3 classes
    # the kNN row learned from the draws every probe row learned from, on the product's vectors
    assert len(feats.knn) == len(res["draws"]) == 2
    for (train_x, _, knn_ids), d in zip(feats.knn, res["draws"]):
        assert knn_ids == frozenset(d["ids"])
        torch.testing.assert_close(train_x, _stack(vectors, d["ids"]), rtol=0, atol=0)
        assert spy.seen[(d["seed"], d["n_labels"])] == [frozenset(d["ids"])] * 2  # rand, other
    five = [tr for tr, _ in feats.probe if tr.shape[1] == 5]
    for train_x, d in zip(five, res["draws"]):
        torch.testing.assert_close(train_x, _stack(other, d["ids"]), rtol=0, atol=0)


def test_product_bad_input_is_one_line_exit_2_nothing_written(
        eurosat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids, labels, _ = _chips(eurosat)
    vectors = _vectors(ids, labels, dim=4, seed=4)
    short = majortom_product(tmp_path / "short.parquet",
                             {i: v for i, v in vectors.items() if i != ids[0]})
    noemb = tmp_path / "noemb.parquet"
    pd.DataFrame({"chip_id": ids, "centre_lon": 9.0, "centre_lat": 47.8,
                  "vec": list(vectors.values())}).to_parquet(noemb)
    good = majortom_product(tmp_path / "good.parquet", vectors)
    base = ["compare", "--data", "eurosat", "--root", str(eurosat), "--accelerator", "cpu",
            "--baselines", "band-means", "--no-plots"]
    cases = [
        (["--row", f"short=product:{short}"], f"row 'short' (product): {short}: embedding "
                                              f"product has no vector for 1 of"),
        (["--product", str(noemb)], "GeoParquet has no 'embedding' column"),
        (["--product", str(tmp_path / "missing.parquet")], "embeddings not found"),
        (["--rows", json.dumps([{"name": "g", "kind": "product", "product": str(good),
                                 "protocol": "finetune"}])], "frozen features only"),
        (["--row", "product"], "needs 'product: PATH'"),
    ]
    assert_each_fails_in_one_line(base, cases, tmp_path, capsys)
    # the missing chip is named
    assert main([*base, "--row", f"short=product:{short}", "--out", str(tmp_path / "o")]) == 2
    assert f"e.g. {ids[0]}" in capsys.readouterr().err


def test_parse_product_row() -> None:
    r = parse_row("product:/data/gse/eurosat_2021.parquet")
    assert (r.name, r.kind, r.options) == ("eurosat_2021", "product",
                                           {"product": "/data/gse/eurosat_2021.parquet"})
    assert parse_row("emb=product:out/emb.zarr/").name == "emb"
    assert parse_row("product:out/emb.zarr/").name == "emb"
    assert parse_row({"kind": "product", "product": "tessera"}).name == "tessera"


@pytest.mark.parametrize("formats", [
    "geoparquet", pytest.param("zarr,geoparquet,cog", marks=pytest.mark.slow)])
def test_embed_products_of_a_checkpoint_score_as_the_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], formats: str) -> None:
    """``geossl embed`` of a checkpoint over ``geossl tile`` chips, as product rows (its
    GeoParquet by chip id; slow: also its zarr cube and its COG, by footprint), is the
    checkpoint's own features: every run scores exactly as the ckpt row.
    """
    from geossl.tiling import chip_index
    from geossl.tiling.tile import TileOptions, tile
    from tests.data.chips.data import generate_major_tom

    tile([generate_major_tom(tmp_path / "mt", size10=96)], tmp_path / "chips",
         TileOptions(size=16, stride=16), progress=False)
    chips = tmp_path / "chips"
    gdf = chip_index.read_index(chips)
    gdf["landcover"] = ["water" if i % 3 else "land" for i in range(len(gdf))]
    chip_index.write_index(gdf, chips)
    bands = str(gdf["bands"].iloc[0]).split(",")
    ckpt = write_checkpoint(tmp_path / "r.ckpt", len(bands), bands, "s2")
    assert main(["embed", str(ckpt), str(chips / "index.parquet"), "--format", formats,
                 "--out", str(tmp_path / "e.zarr"), "--size", "16",
                 "--accelerator", "cpu"]) == 0
    products = {"e": "e.parquet", "cube": "e.zarr", "cog": "e.tif"}
    if formats == "geoparquet":
        products = {"e": "e.parquet"}
    extra = [f"--row={n}=product:{tmp_path / f}" for n, f in products.items()]
    out = tmp_path / "cmp"
    assert main(["compare", "--data", "chips", "--root", str(chips), "--label-column",
                 "landcover", "--row", f"own=ckpt:{ckpt}", *extra,
                 "--labels-per-class", "2", "--seeds", "0,1,2",
                 "--out", str(out), "--accelerator", "cpu", "--no-plots"]) == 0
    capsys.readouterr()
    res = json.loads((out / "compare.json").read_text())
    runs: dict[str, dict[int, Any]] = {}
    for r in res["runs"]:
        runs.setdefault(r["row"], {})[r["seed"]] = r["metrics"]
    assert set(runs) == {"own", *products} and len(runs["e"]) == 3
    for name in products:
        for seed, m in runs["own"].items():
            assert runs[name][seed]["oa"] == pytest.approx(m["oa"], abs=1e-6), (name, seed)
    rows = {r["name"]: r for r in res["rows"]}
    kinds = {"e": "geoparquet", "cube": "cube", "cog": "raster"}
    for name in products:
        assert rows[name]["backbone"] == f"embedding product ({kinds[name]})"
    assert {rows[n]["num_features"] for n in rows} == {rows["own"]["num_features"]}
