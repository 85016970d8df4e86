"""Embedding products out (GeoParquet, COG) and in (others' GeoParquet, GSE/Tessera rasters),
search (exact, ANN index reuse, filters, negatives, bad input), the offline map in Chromium,
evaluate on a product, bench search; the acceptance run on the real Major-TOM cell."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import xarray as xr
from affine import Affine

from geossl.cli import main
from geossl.core.errors import ConfigError, DataError
from geossl.embeddings.products import load_embeddings, product_features
from geossl.embeddings.records import read_geoparquet, table_from_cube
from geossl.embeddings.search import Query, search
from geossl.inference.embed import EmbedConfig, embed
from tests.conftest import real_path
from tests.test_embed import ORIGIN, _geotiff, _source

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCENE = "S2A_MSIL2A_20220706T085611_N0400_R007_T33NZA_20220706T153419.tif"


def _cube_vectors(cube: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cube values ``(D, ny, nx)`` and the finite mask."""
    v = xr.open_zarr(cube)["embedding"].values
    return v, np.isfinite(v).all(0)


@pytest.fixture
def products(tmp_path: Path) -> dict[str, Path]:
    tif = _geotiff(tmp_path / SCENE, bands=3, h=96, w=128)
    res = embed(EmbedConfig(_source(3), tif, tmp_path / "e.zarr", size=32, stride=32,
                            accelerator="cpu", format="zarr,geoparquet,cog", progress=False))
    return {"scene": tif, **res.products}


def test_geoparquet_and_cog_equal_the_cube(products: dict[str, Path]) -> None:
    import duckdb
    import geopandas as gpd
    import pyarrow.parquet as pq

    cube, pq_path, cog = products["zarr"], products["geoparquet"], products["cog"]
    vals, ok = _cube_vectors(cube)
    assert ok.all() and vals.shape == (8, 3, 4)
    schema = pq.read_schema(pq_path)
    assert str(schema.field("embedding").type) == "list<element: float>"
    gdf = gpd.read_parquet(pq_path)
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == 12
    assert set(gdf["crs"]) == {"EPSG:32633"}
    assert str(gdf["timestamp"].iloc[0]) == "2022-07-06 08:56:11+00:00"
    row = gdf[gdf["chip_id"] == f"{SCENE.split('.')[0]}_32_64"].iloc[0]
    np.testing.assert_array_equal(np.asarray(row["embedding"]), vals[:, 1, 2])
    # native bounds of window (row 32, col 64) and its centre inside the 4326 footprint
    assert (row["minx"], row["maxy"]) == (ORIGIN[0] + 640, ORIGIN[1] - 320)
    assert row["maxx"] - row["minx"] == 320 and row["size"] == 32
    from shapely import Point

    assert row.geometry.contains(Point(row["centre_lon"], row["centre_lat"]))
    # duckdb reads it as-is
    rel = duckdb.sql(f"SELECT chip_id, embedding FROM '{pq_path}' ORDER BY chip_id")
    assert rel is not None
    got = rel.fetchall()
    assert len(got) == 12 and len(got[0][1]) == 8
    # the COG: one band per dimension, the cube's grid, named bands
    with rasterio.open(cog) as f:
        assert f.count == 8 and f.dtypes[0] == "float32" and f.crs.to_epsg() == 32633
        assert f.descriptions[:2] == ("emb_000", "emb_001")
        assert f.transform == Affine(320, 0, ORIGIN[0], 0, -320, ORIGIN[1])
        assert f.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(f.read(), vals)
    # and geossl reads its own GeoParquet back unchanged
    table = read_geoparquet(pq_path)
    np.testing.assert_array_equal(table.vectors, table_from_cube(cube).vectors)


def test_cog_reads_in_torchgeo_rasterdataset(products: dict[str, Path]) -> None:
    from torchgeo.datasets import RasterDataset

    vals, _ = _cube_vectors(products["zarr"])
    ds = RasterDataset(paths=[str(products["cog"])])
    b = ds.bounds
    if hasattr(b, "minx"):  # TorchGeo 0.8.1: BoundingBox
        sample = ds[b]
    else:  # 0.10: slices
        sample = ds[b[0], b[1], b[2]] if len(b) >= 3 else ds[b[0], b[1]]
    img = sample["image"].numpy()
    assert img.shape == vals.shape
    np.testing.assert_allclose(img, vals)


def test_torchgeo_embedding_datasets_read_geoparquet(products: dict[str, Path]) -> None:
    import torchgeo.datasets as tgd

    if not hasattr(tgd, "EarthEmbeddings"):
        pytest.skip("this TorchGeo has no EarthEmbeddings (0.9+)")
    table = read_geoparquet(products["geoparquet"])
    for cls in (tgd.EarthEmbeddings, getattr(tgd, "MajorTOMEmbeddings")):  # noqa: B009
        ds = cls(root=products["geoparquet"])
        assert len(ds) == len(table)
        for i in (0, len(ds) - 1):
            s = ds[i]
            np.testing.assert_array_equal(s["embedding"].numpy(), table.vectors[i])
            assert float(s["x"]) == pytest.approx(table.frame["centre_lon"].iloc[i])
            assert float(s["y"]) == pytest.approx(table.frame["centre_lat"].iloc[i])
            # TorchGeo keeps x, y and t as float32 tensors (t to within 128 s)
            assert float(s["t"]) == pytest.approx(
                pd.Timestamp("2022-07-06T08:56:11Z").timestamp(), abs=128)


def test_format_without_zarr_keeps_only_the_products(tmp_path: Path) -> None:
    tif = _geotiff(tmp_path / "s.tif", bands=3, h=64, w=64)
    res = embed(EmbedConfig(_source(3), tif, tmp_path / "e.zarr", size=32, accelerator="cpu",
                            format="geoparquet", progress=False))
    assert not (tmp_path / "e.zarr").exists() and (tmp_path / "e.parquet").is_file()
    assert set(res.products) == {"geoparquet"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet", "s.tif"]
    with pytest.raises(ConfigError, match="--format"):
        embed(EmbedConfig(_source(3), tif, tmp_path / "f.zarr", size=32, accelerator="cpu",
                          format="zarr,png"))


def test_cli_embed_format_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tif = _geotiff(tmp_path / "s.tif", bands=3, h=64, w=64)
    assert main(["embed", str(tmp_path / "x.ckpt"), str(tif), "--out", str(tmp_path / "o.zarr"),
                 "--format", "zarr,png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format: unknown format 'png'" in err[0]
    assert not (tmp_path / "o.zarr").exists()


def test_chip_index_records_keep_the_chip_ids(tmp_path: Path) -> None:
    from geossl.tiling.tile import TileOptions, tile
    from tests.data.chips.data import generate_major_tom

    folder = generate_major_tom(tmp_path / "mt", size10=96)
    tile([folder], tmp_path / "chips", TileOptions(size=32, stride=32), progress=False)
    index = tmp_path / "chips" / "index.parquet"
    res = embed(EmbedConfig(_source(12), index, tmp_path / "c.zarr", accelerator="cpu",
                            format="zarr,geoparquet", progress=False))
    chips = pd.read_parquet(index)
    table = read_geoparquet(res.products["geoparquet"])
    assert sorted(table.ids) == sorted(chips["chip_id"])
    assert all(Path(p).is_file() for p in table.frame["image"])
    assert (table.frame["timestamp"].notna()).all()


# --------------------------------------------------------------------------------------------
# external products
# --------------------------------------------------------------------------------------------
def _majortom_layout(path: Path, n: int = 6, dim: int = 4) -> tuple[Path, np.ndarray]:
    """Embeddings in the Major-TOM / EarthEmbeddings layout: centre lon/lat, no geometry."""
    rng = np.random.default_rng(1)
    vec = rng.normal(size=(n, dim)).astype(np.float32)
    df = pd.DataFrame({"grid_cell": [f"g{i}" for i in range(n)],
                       "centre_lon": 15.0 + 0.01 * np.arange(n), "centre_lat": [36.1] * n,
                       "timestamp": pd.Timestamp("2021-05-01", tz="UTC"),
                       "embedding": list(vec)})
    df.to_parquet(path)
    return path, vec


def test_external_geoparquet_layout(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely import box

    path, vec = _majortom_layout(tmp_path / "mt_emb.parquet")
    table = load_embeddings(path)
    assert table.ids == [f"g{i}" for i in range(6)] and table.dim == 4
    np.testing.assert_array_equal(table.vectors, vec)
    # per-chip features: by id, then by footprint (centre within)
    fps = gpd.GeoDataFrame({"chip_id": ["a", "g3"]},
                           geometry=[box(15.005, 36.09, 15.025, 36.11), box(0, 0, 1, 1)],
                           crs=4326)
    out, found = product_features(path, ["a", "g3", "zz"], fps)
    assert found.tolist() == [True, True, False]
    np.testing.assert_allclose(out[0], vec[1:3].mean(0))
    np.testing.assert_array_equal(out[1], vec[3])
    bad = tmp_path / "noemb.parquet"
    pd.DataFrame({"centre_lon": [1.0], "centre_lat": [2.0], "vec": [[1.0]]}).to_parquet(bad)
    with pytest.raises(DataError, match="no 'embedding' column"):
        load_embeddings(bad)


def _gse_tile(path: Path, dim: int = 64) -> np.ndarray:
    """A GSE-style int8 tile (A00..A63, -128 nodata) on a 10 m UTM grid; returns float values."""
    rng = np.random.default_rng(2)
    q = rng.integers(-127, 128, size=(dim, 20, 20)).astype(np.int8)
    q[:, 0, 0] = -128
    with rasterio.open(path, "w", driver="GTiff", height=20, width=20, count=dim, dtype="int8",
                       crs="EPSG:32633", nodata=-128,
                       transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])) as dst:
        dst.write(q)
        dst.descriptions = tuple(f"A{i:02d}" for i in range(dim))
    v = q.astype(np.float32) / 127.5
    return v * np.abs(v)


def test_raster_products_per_chip(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely import box

    folder = tmp_path / "gse"
    folder.mkdir()
    deq = _gse_tile(folder / "gse_2021.tif")
    fps = gpd.GeoDataFrame({"chip_id": ["c0", "c1", "out"]}, geometry=[
        box(ORIGIN[0], ORIGIN[1] - 100, ORIGIN[0] + 100, ORIGIN[1]),
        box(ORIGIN[0] + 100, ORIGIN[1] - 200, ORIGIN[0] + 200, ORIGIN[1] - 100),
        box(0, 0, 10, 10)], crs=32633)
    out, found = product_features(folder, ["c0", "c1", "out"], fps)
    assert found.tolist() == [True, True, False]
    block = deq[:, :10, :10].reshape(64, -1)[:, 1:]  # pixel (0, 0) is nodata
    np.testing.assert_allclose(out[0], block.mean(1), rtol=1e-5)
    np.testing.assert_allclose(out[1], deq[:, 10:20, 10:20].reshape(64, -1).mean(1), rtol=1e-5)
    table = load_embeddings(folder, pool=10)
    assert len(table) == 4 and table.dim == 64
    assert str(table.frame["timestamp"].iloc[0]).startswith("2021-01-01")
    # a Tessera-style float tile searched by a chip id of its own records
    tess = tmp_path / "grid_15.00_36.10_2024.tiff"
    with rasterio.open(tess, "w", driver="GTiff", height=8, width=8, count=128,
                       dtype="float32", crs="EPSG:4326",
                       transform=Affine(1e-4, 0, 15.0, 0, -1e-4, 36.1)) as dst:
        dst.write(np.random.default_rng(3).normal(size=(128, 8, 8)).astype(np.float32))
    t = load_embeddings(tess)
    assert len(t) == 64
    res = search(t, Query(chip_ids=[t.ids[5]]), k=3, log=lambda *_: None)
    assert res.hits["chip_id"].iloc[0] == t.ids[5]


# --------------------------------------------------------------------------------------------
# search
# --------------------------------------------------------------------------------------------
def test_search_by_chip_point_polygon_vector(products: dict[str, Path], tmp_path: Path) -> None:
    table = read_geoparquet(products["geoparquet"])
    cid = table.ids[5]
    res = search(table, Query(chip_ids=[cid]), k=4)
    assert res.method == "exact" and len(res.hits) == 4
    assert res.hits["chip_id"].iloc[0] == cid and res.hits["score"].iloc[0] == pytest.approx(1.0)
    xn = table.vectors / np.linalg.norm(table.vectors, axis=1, keepdims=True)
    expected = np.argsort(-(xn @ xn[5]), kind="stable")[:4]
    assert res.hits["chip_id"].tolist() == [table.ids[i] for i in expected]
    assert np.all(np.diff(res.hits["score"]) <= 0)
    # a point inside chip 5's footprint gives the same query
    r = table.frame.iloc[5]
    by_point = search(table, Query(points=[(r["centre_lon"], r["centre_lat"])]), k=4)
    assert by_point.hits["chip_id"].tolist() == res.hits["chip_id"].tolist()
    # a polygon: the mean of the chips it meets
    poly = {"type": "Polygon", "coordinates": [[[r["centre_lon"] - 1e-4, r["centre_lat"]],
                                                 [r["centre_lon"] + 1e-4, r["centre_lat"]],
                                                 [r["centre_lon"], r["centre_lat"] + 1e-4],
                                                 [r["centre_lon"] - 1e-4, r["centre_lat"]]]]}
    by_poly = search(table, Query(polygon=json.dumps(poly)), k=1)
    assert by_poly.hits["chip_id"].iloc[0] == cid
    # a vector, and negatives push the first hit away
    by_vec = search(table, Query(vector=table.vectors[5]), k=1)
    assert by_vec.hits["chip_id"].iloc[0] == cid
    second = res.hits["chip_id"].iloc[1]
    neg = search(table, Query(chip_ids=[cid], negatives=[second], beta=2.0), k=4)
    assert second not in neg.hits["chip_id"].tolist()[:2]
    # filters: bbox on the centres, dates on the timestamps
    west = float(table.frame["centre_lon"].min())
    kept = search(table, Query(chip_ids=[cid]), k=20, bbox=(west - 1, -90, west + 1e-6, 90))
    assert (kept.hits["centre_lon"] <= west + 1e-6).all() and len(kept.hits) == 3
    with pytest.raises(ConfigError, match="keeps no chip"):
        search(table, Query(chip_ids=[cid]), dates=("2023-01-01", None))
    assert len(search(table, Query(chip_ids=[cid]), k=50, dates=("2022-07-01", "2022-07-31"))
               .hits) == 12


def test_ann_index_saved_reused_and_rebuilt(products: dict[str, Path], tmp_path: Path) -> None:
    table = read_geoparquet(products["geoparquet"])
    idx = tmp_path / "e.parquet.faiss"
    logs: list[str] = []
    first = search(table, Query(chip_ids=[table.ids[0]]), k=5, method="ann", index_file=idx,
                   log=logs.append)
    assert first.method == "ann" and first.index == "built" and idx.is_file()
    exact = search(table, Query(chip_ids=[table.ids[0]]), k=5, method="exact")
    assert first.hits["chip_id"].tolist() == exact.hits["chip_id"].tolist()
    again = search(table, Query(chip_ids=[table.ids[0]]), k=5, method="ann", index_file=idx)
    assert again.index == "reused"
    table.vectors[3] += 1.0  # the embeddings changed: the saved index is stale
    changed = search(table, Query(chip_ids=[table.ids[0]]), k=5, method="ann", index_file=idx)
    assert changed.index == "rebuilt"
    assert json.loads(idx.with_name(idx.name + ".json").read_text())["hash"] == \
        table.content_hash()


def test_cli_search_writes_results(products: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import geopandas as gpd

    table = read_geoparquet(products["geoparquet"])
    out = tmp_path / "hits"
    assert main(["search", str(products["zarr"]), "--chip", table.ids[2], "--k", "3",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["hits.geojson", "hits.parquet",
                                                     "mosaic.png", "search.json"]
    hits = gpd.read_parquet(out / "hits.parquet")
    assert hits.crs.to_epsg() == 4326 and hits["chip_id"].iloc[0] == table.ids[2]
    assert json.loads((out / "hits.geojson").read_text())["features"][0]["properties"][
        "rank"] == 1
    from PIL import Image

    assert Image.open(out / "mosaic.png").size[0] > 200
    assert capsys.readouterr().out.splitlines()[0].split()[1] == "1.000000"


@pytest.mark.parametrize("case", ["point", "polygon", "vector", "no-embedding", "chip"])
def test_cli_search_bad_input(products: dict[str, Path], tmp_path: Path, case: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    emb = str(products["geoparquet"])
    far = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    (tmp_path / "far.geojson").write_text(json.dumps(far))
    bad = tmp_path / "noemb.parquet"
    pd.DataFrame({"centre_lon": [1.0], "centre_lat": [2.0]}).to_parquet(bad)
    args = {"point": [emb, "--point", "100,10"],
            "polygon": [emb, "--polygon", str(tmp_path / "far.geojson")],
            "vector": [emb, "--vector", "1,2,3"],
            "no-embedding": [str(bad), "--chip", "x"],
            "chip": [emb, "--chip", "nope"]}[case]
    out = tmp_path / "o"
    assert main(["search", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geossl search: error:")
    assert {"point": "outside every chip footprint", "polygon": "covers no chip",
            "vector": "3 values but the embeddings have 8", "no-embedding": "no 'embedding'",
            "chip": "no chip 'nope'"}[case] in err[0]
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# map
# --------------------------------------------------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (apt-get install chromium)")


def render(html: Path, tmp_path: Path) -> tuple[str, np.ndarray]:
    """Open ``html`` in headless Chromium: the DOM after scripts ran, and a screenshot."""
    exe = _chromium()
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--allow-file-access-from-files", "--window-size=800,600",
              f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    dom = subprocess.run([*common, "--virtual-time-budget=3000", "--dump-dom",
                          html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", html.as_uri()], capture_output=True,
                   timeout=120)
    from PIL import Image

    return dom, np.asarray(Image.open(shot).convert("RGB"))


def test_map_renders_in_chromium(products: dict[str, Path], tmp_path: Path) -> None:
    table = read_geoparquet(products["geoparquet"])
    hits = tmp_path / "hits"
    assert main(["search", str(products["geoparquet"]), "--chip", table.ids[0], "--k", "3",
                 "--out", str(hits)]) == 0
    clusters = tmp_path / "clusters.tif"
    from geossl.inference.embed import write_cluster_map

    with rasterio.open(products["cog"]) as f:
        crs, t = f.crs, f.transform
    write_cluster_map(products["zarr"], clusters, 2, crs, t)
    html = tmp_path / "map.html"
    assert main(["map", "--scene", str(products["scene"]), "--clusters", str(clusters),
                 "--embeddings", str(products["geoparquet"]), "--hits", str(hits),
                 "--out", str(html)]) == 0
    text = html.read_text()
    # nothing is fetched: no external script, stylesheet or CSS url()
    assert "<script src" not in text and "<link" not in text and "url(http" not in text
    dom, shot = render(html, tmp_path)
    assert 'data-ready="1"' in dom, "the page's script did not finish"
    assert 'data-count="' not in dom, "JavaScript errors: " + dom[dom.find("geossl-errors"):][:300]
    assert dom.count("leaflet-image-layer") >= 2  # quick-look and clusters
    assert dom.count("leaflet-interactive") >= 3 + len(table)  # hits and chip footprints
    assert "leaflet-control-layers" in dom
    assert shot.std() > 10 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50  # not blank


def test_map_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["map", "--out", str(tmp_path / "m.html")]) == 2
    assert "nothing to draw" in capsys.readouterr().err
    assert main(["map", "--hits", str(tmp_path), "--out", str(tmp_path / "m.html")]) == 2
    assert "hits.parquet" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# evaluate on an embedding product, bench search
# --------------------------------------------------------------------------------------------
class _Chips(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int) -> None:
        self.labels = [i % 2 for i in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": torch.zeros(3, 8, 8), "label": torch.tensor(self.labels[i]),
                "id": f"chip{i}"}


def test_evaluate_on_an_embedding_product(tmp_path: Path) -> None:
    from geossl.eval.config import EvaluateConfig
    from geossl.eval.run import evaluate

    n = 40
    rng = np.random.default_rng(0)
    ds = _Chips(n)
    vec = 0.2 * rng.normal(size=(n, 6)).astype(np.float32)
    vec[np.arange(n), np.asarray(ds.labels)] += 1.0  # the product separates the two classes
    prod = tmp_path / "prod.parquet"
    pd.DataFrame({"chip_id": [f"chip{i}" for i in range(n)], "centre_lon": 0.0,
                  "centre_lat": 0.0, "embedding": list(vec)}).to_parquet(prod)
    splits = {"train": [f"chip{i}" for i in range(0, 30)],
              "test": [f"chip{i}" for i in range(30, n)]}
    res = evaluate(EvaluateConfig(f"product:{prod}", data=ds, protocol="linear,knn",
                                  splits=splits, accelerator="cpu", no_plots=True, out=None))
    acc = {r["protocol"]: r["metrics"]["accuracy"] for r in res["runs"]}
    assert acc["linear"] >= 0.9
    assert res["meta"]["method"] == "embedding-product"
    with pytest.raises(ConfigError, match="finetune"):
        evaluate(EvaluateConfig(f"product:{prod}", data=ds, protocol="finetune", splits=splits,
                                accelerator="cpu", out=None))
    short = tmp_path / "short.parquet"
    pd.DataFrame({"chip_id": ["chip0"], "centre_lon": 0.0, "centre_lat": 0.0,
                  "embedding": [vec[0]]}).to_parquet(short)
    with pytest.raises(DataError, match="no vector for 29 of 30"):
        evaluate(EvaluateConfig(f"product:{short}", data=ds, protocol="linear", splits=splits,
                                accelerator="cpu", out=None))


def test_bench_search_small(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    assert main(["bench", "search", "--n", "3000", "--queries", "20", "--ef-search", "64",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    methods = [r["method"] for r in res["records"]]
    assert methods == ["exact (numpy)", "ANN faiss HNSW"]
    ann = res["records"][1]
    assert 0.9 <= ann["recall@10"] <= 1.0 and ann["p50_ms"] > 0 and ann["build_s"] > 0
    text = capsys.readouterr().out
    assert "p50 speed-up vs exact" in text and "load average" in text and "target" in text


# --------------------------------------------------------------------------------------------
# acceptance on the real Major-TOM cell
# --------------------------------------------------------------------------------------------
@pytest.mark.real
@pytest.mark.slow
def test_real_major_tom_products_search_map(tmp_path: Path) -> None:
    from geossl.tiling.tile import TileOptions, tile

    cell = real_path("major_tom_s2l2a", "0U", "0U_199R")
    scene = next(p for p in cell.iterdir() if p.is_dir())
    tile([scene], tmp_path / "chips", TileOptions(size=128, stride=128), progress=False)
    index = tmp_path / "chips" / "index.parquet"
    res = embed(EmbedConfig(_source(12), index, tmp_path / "mt.zarr", accelerator="cpu",
                            format="zarr,geoparquet,cog", clusters=3, progress=False))
    vals, ok = _cube_vectors(res.cube)
    table = read_geoparquet(res.products["geoparquet"])
    assert len(table) == int(ok.sum()) > 50
    assert sorted(table.ids) == sorted(pd.read_parquet(index)["chip_id"])
    cube_table = table_from_cube(res.cube)
    np.testing.assert_array_equal(table.vectors, cube_table.vectors)
    with rasterio.open(res.products["cog"]) as f:
        np.testing.assert_array_equal(np.nan_to_num(f.read()), np.nan_to_num(vals))
    import torchgeo.datasets as tgd

    if hasattr(tgd, "EarthEmbeddings"):
        ee = tgd.EarthEmbeddings(root=res.products["geoparquet"])
        for i in (0, len(ee) // 2):
            np.testing.assert_array_equal(ee[i]["embedding"].numpy(), table.vectors[i])
    hits = tmp_path / "hits"
    assert main(["search", str(res.products["geoparquet"]), "--chip", table.ids[7], "--k", "5",
                 "--out", str(hits)]) == 0
    found = json.loads((hits / "search.json").read_text())["hits"]
    assert found[0]["chip_id"] == table.ids[7] and found[0]["score"] == pytest.approx(1.0)
    assert len(found) == 5 and found[1]["score"] <= found[0]["score"]
    html = tmp_path / "map.html"
    assert main(["map", "--scene", str(scene), "--clusters", str(res.cluster_map),
                 "--hits", str(hits), "--out", str(html)]) == 0
    dom, shot = render(html, tmp_path)
    assert 'data-ready="1"' in dom and 'data-count="' not in dom
    assert shot.std() > 10
