from __future__ import annotations

import json
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geossl import splits as S
from geossl.core.errors import ConfigError, DataError
from geossl.testing.footprints import make_footprints


@pytest.fixture(scope="module")
def gdf() -> gpd.GeoDataFrame:
    return make_footprints(n_patches=3000, n_scenes=24, seed=1)


def _boxes(bounds: list[tuple[float, float, float, float]], crs: str = "EPSG:32633",
           labels: list[int] | None = None) -> gpd.GeoDataFrame:
    b = np.asarray(bounds, dtype=np.float64)
    frame = pd.DataFrame({"chip_id": [f"c{i}" for i in range(len(b))], "crs": crs,
                          "minx": b[:, 0], "miny": b[:, 1], "maxx": b[:, 2], "maxy": b[:, 3]})
    if labels is not None:
        frame["label"] = labels
    geo = gpd.GeoSeries(shapely.box(*b.T), crs=crs).to_crs(4326)
    return gpd.GeoDataFrame(frame, geometry=geo.to_numpy(), crs=4326)


def _clusters(n: int = 400, classes: int = 4, seed: int = 0) -> gpd.GeoDataFrame:
    """n isolated clusters of 2 x 2 overlapping 100 m chips; label per cluster."""
    rng = np.random.default_rng(seed)
    bounds, labels = [], []
    for k in range(n):
        x0, y0 = (k % 20) * 1000.0, (k // 20) * 1000.0
        lab = int(rng.integers(classes))
        for dx in (0, 50):
            for dy in (0, 50):
                bounds.append((x0 + dx, y0 + dy, x0 + dx + 100, y0 + dy + 100))
                labels.append(lab)
    return _boxes(bounds, labels=labels)


def _no_cross_pairs(gdf: gpd.GeoDataFrame, split: pd.Series, buffer: float = 0.0) -> bool:
    fp = S.footprints(gdf)
    i, j = S.conflict_pairs(fp, buffer)
    a, b = split.to_numpy()[i], split.to_numpy()[j]
    cross = (a != b) & (a != S.DROP) & (b != S.DROP)
    return not cross.any()


@pytest.mark.parametrize("strategy", ["overlap", "block", "scene", "nonoverlapping"])
def test_zero_leakage_strategies(gdf: gpd.GeoDataFrame, strategy: str) -> None:
    split = S.make_splits(gdf, strategy, (0.7, 0.3), seed=0, block_size=12800)
    assert split.index.equals(gdf.index)
    assert set(split.unique()) <= {"train", "test", S.DROP}
    rep = S.leakage_report(gdf, split)
    assert len(rep) == 1
    assert rep.loc[0, "leaking_a"] == 0 and rep.loc[0, "leaking_b"] == 0
    assert rep.loc[0, "overlap_km2"] == 0.0
    assert _no_cross_pairs(gdf, split)
    # disjoint by construction (one name per chip) and both sides non-empty
    assert rep.loc[0, "n_a"] > 0 and rep.loc[0, "n_b"] > 0
    if strategy in ("overlap", "scene"):
        assert (split != S.DROP).all()
        assert abs(split.attrs["fractions"]["test"] - 0.3) < 0.06


def test_random_leaks(gdf: gpd.GeoDataFrame) -> None:
    split = S.make_splits(gdf, "random", (0.8, 0.2), seed=0)
    assert abs((split == "test").mean() - 0.2) < 1e-3
    rep = S.leakage_report(gdf, split)
    assert rep.loc[0, "leaking_a"] > 0 and rep.loc[0, "leaking_b"] > 0
    assert rep.loc[0, "overlap_km2"] > 0
    # chips are 2.56 km wide: the leaking area of a chip is its whole footprint
    assert rep.loc[0, "leaking_area_b_km2"] == pytest.approx(rep.loc[0, "leaking_b"] * 2.56**2)


def test_overlap_groups_whole(gdf: gpd.GeoDataFrame) -> None:
    fp = S.footprints(gdf)
    groups = S.overlap_groups(fp)
    split = S.make_splits(gdf, "overlap", (0.8, 0.2), seed=3)
    per_group = pd.Series(split.to_numpy()).groupby(groups).nunique()
    assert (per_group == 1).all()
    # a SEN12MS-like scene is one connected grid of half-overlapping patches
    assert len(np.unique(groups)) == gdf["scene"].nunique()


def test_three_way_and_determinism(gdf: gpd.GeoDataFrame) -> None:
    a = S.make_splits(gdf, "overlap", (0.6, 0.2, 0.2), seed=7)
    b = S.make_splits(gdf, "overlap", (0.6, 0.2, 0.2), seed=7)
    c = S.make_splits(gdf, "overlap", (0.6, 0.2, 0.2), seed=8)
    assert set(a.unique()) == {"train", "val", "test"}
    assert a.equals(b)
    assert not a.equals(c)
    rep = S.leakage_report(gdf, a)
    assert len(rep) == 3 and (rep["leaking_a"] == 0).all()
    for name, f in zip(["train", "val", "test"], [0.6, 0.2, 0.2]):
        assert abs(a.attrs["fractions"][name] - f) < 0.06


def test_stratified_group_level() -> None:
    frame = _clusters()
    split = S.make_splits(frame, "overlap", (0.75, 0.25), seed=0)
    assert _no_cross_pairs(frame, split)
    for _, part in split.groupby(frame["label"]):
        assert abs((part == "test").mean() - 0.25) <= 0.03
    # without the label column the per-class fractions are not controlled, overall ones are
    plain = S.make_splits(frame.drop(columns="label"), "overlap", (0.75, 0.25), seed=0)
    assert abs((plain == "test").mean() - 0.25) <= 0.01
    rnd = S.make_splits(frame, "random", (0.75, 0.25), seed=0)
    for _, part in rnd.groupby(frame["label"]):
        assert abs((part == "test").mean() - 0.25) <= 0.01


def test_touching_is_not_overlap_and_buffer_metres() -> None:
    # a | b touch along x = 100; c lies 50 m right of b
    frame = _boxes([(0, 0, 100, 100), (100, 0, 200, 100), (250, 0, 350, 100)])
    fp = S.footprints(frame)
    assert len(S.conflict_pairs(fp, 0.0)[0]) == 0
    i, j = S.conflict_pairs(fp, 40.0)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1)]
    i, j = S.conflict_pairs(fp, 60.0)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 2)]
    assert S.nonoverlapping_subset(frame).all()
    assert S.nonoverlapping_subset(frame, buffer=60.0).tolist() == [True, False, True]


def test_cross_utm_zone_overlap() -> None:
    # the same 1 km square near the 12 E meridian (zone border), once in zone 32 and once in 33
    sq = gpd.GeoSeries([shapely.box(11.995, 45.0, 12.005, 45.009)], crs=4326)
    b32 = sq.to_crs(32632).total_bounds
    b33 = sq.to_crs(32633).total_bounds
    far = sq.to_crs(32633).translate(50_000).total_bounds
    frame = pd.concat([_boxes([tuple(b32)], "EPSG:32632"), _boxes([tuple(b33)], "EPSG:32633"),
                       _boxes([tuple(far)], "EPSG:32633")], ignore_index=True)
    frame["chip_id"] = ["z32", "z33", "far"]
    fp = S.footprints(frame)
    i, j = S.conflict_pairs(fp)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1)]


def test_cross_utm_zone_overlap_without_geometry() -> None:
    """A chip index with bounds and crs columns only: the overlap across zones still counts."""
    sq = gpd.GeoSeries([shapely.box(11.995, 45.0, 12.005, 45.009)], crs=4326)
    rows = [("z32", "EPSG:32632", *sq.to_crs(32632).total_bounds),
            ("z33", "EPSG:32633", *sq.to_crs(32633).total_bounds)]
    frame = pd.DataFrame(rows, columns=["chip_id", "crs", "minx", "miny", "maxx", "maxy"])
    i, j = S.conflict_pairs(S.footprints(frame))
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]
    rep = S.leakage_report(frame, pd.Series(["train", "test"]))
    assert (rep.loc[0, "leaking_a"], rep.loc[0, "leaking_b"]) == (1, 1)
    a, b = (gpd.GeoSeries([shapely.segmentize(shapely.box(*r[2:]), 10.0)], crs=r[1])
            .to_crs(6933).iloc[0] for r in rows)  # the two boxes, on an equal-area map
    assert rep.loc[0, "overlap_km2"] == pytest.approx(a.intersection(b).area / 1e6, rel=1e-3)


def test_nonoverlapping_pairwise_and_maximal(gdf: gpd.GeoDataFrame) -> None:
    sub = gdf.iloc[:600]
    keep = S.nonoverlapping_subset(sub)
    kept = sub[keep]
    # brute force over all pairs on the small set: no two kept chips share area
    b = kept[["minx", "miny", "maxx", "maxy"]].to_numpy()
    same = kept["crs"].to_numpy()[:, None] == kept["crs"].to_numpy()[None, :]
    w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    inter = (w > 1e-3) & (h > 1e-3) & same
    np.fill_diagonal(inter, False)
    assert not inter.any()
    # maximal: every left-out chip overlaps a kept one
    rb = sub[~keep][["minx", "miny", "maxx", "maxy"]].to_numpy()
    w = np.minimum(rb[:, None, 2], b[None, :, 2]) - np.maximum(rb[:, None, 0], b[None, :, 0])
    h = np.minimum(rb[:, None, 3], b[None, :, 3]) - np.maximum(rb[:, None, 1], b[None, :, 1])
    rsame = sub[~keep]["crs"].to_numpy()[:, None] == kept["crs"].to_numpy()[None, :]
    assert ((w > 1e-3) & (h > 1e-3) & rsame).any(1).all()
    # half-overlapping grid: raster order keeps about one patch in four
    assert 0.2 < keep.mean() < 0.3
    assert (S.nonoverlapping_subset(sub, seed=1) != keep).any()


def test_block_buffer_drops_and_report_buffer(gdf: gpd.GeoDataFrame) -> None:
    split = S.make_splits(gdf, "block", (0.8, 0.2), block_size=10240, buffer=1000, seed=0)
    assert (split == S.DROP).sum() > 0
    assert split.attrs["dropped"] == int((split == S.DROP).sum())
    rep = S.leakage_report(gdf, split, buffer=1000)
    assert rep.loc[0, "leaking_a"] == 0 and rep.loc[0, "buffer_m"] == 1000
    assert _no_cross_pairs(gdf, split, 1000)
    # a zero-buffer block split still drops the chips straddling block borders
    plain = S.make_splits(gdf, "block", (0.8, 0.2), block_size=10240, seed=0)
    assert (plain == S.DROP).sum() < (split == S.DROP).sum()
    assert S.leakage_report(gdf, plain).loc[0, "leaking_b"] == 0


def test_scene_lists(gdf: gpd.GeoDataFrame) -> None:
    scenes = sorted(gdf["scene"].unique())
    split = S.make_splits(gdf, "scene", (0.8, 0.2), test_scenes=scenes[:3])
    assert set(gdf.loc[split == "test", "scene"]) == set(scenes[:3])
    assert (split[gdf["scene"].isin(scenes[:3])] == "test").all()
    with pytest.raises(ConfigError, match="unknown scene id 'nope'"):
        S.make_splits(gdf, "scene", (0.8, 0.2), test_scenes=["nope", scenes[0]])
    # SEN12MS official hold-out: ROIs1158_spring_63 etc.; the generator names scenes alike
    frame = gdf.copy()
    frame.loc[frame["scene"] == scenes[0], "scene"] = "ROIs1158_spring_63"
    hold = S.make_splits(frame, "scene", (0.8, 0.2), holdout="sen12ms")
    assert set(frame.loc[hold == "test", "scene"]) == {"ROIs1158_spring_63"}
    with pytest.raises(DataError, match="hold-out"):
        S.make_splits(gdf, "scene", (0.8, 0.2), holdout="sen12ms")


def test_bad_inputs(gdf: gpd.GeoDataFrame) -> None:
    with pytest.raises(ConfigError, match="unknown split strategy"):
        S.make_splits(gdf, "kfold")
    with pytest.raises(ConfigError, match="fractions"):
        S.make_splits(gdf, "overlap", (0.5, 0.2))
    one_scene = gdf[gdf["scene"] == gdf["scene"].iloc[0]]
    with pytest.raises(DataError, match="split 'test' is empty"):
        S.make_splits(one_scene, "overlap", (0.8, 0.2))
    with pytest.raises(DataError, match="no footprints to split"):
        S.make_splits(gdf.iloc[:0], "overlap")
    with pytest.raises(DataError, match="no footprints: expected a geometry"):
        S.make_splits(pd.DataFrame({"chip_id": ["a", "b"]}), "overlap")
    mixed = _boxes([(0, 0, 100, 100), (500, 0, 600, 100)])
    mixed.loc[1, "crs"] = ""
    with pytest.raises(DataError, match="mix a pixel grid"):
        S.make_splits(mixed, "overlap")


def test_save_load_roundtrip(gdf: gpd.GeoDataFrame, tmp_path: Path) -> None:
    split = S.make_splits(gdf, "block", (0.8, 0.2), block_size=10240, seed=0)
    path = S.save_splits(tmp_path / "splits.json", split, gdf)
    doc = json.loads(path.read_text())
    assert doc["strategy"] == "block" and doc["params"]["block_size"] == 10240
    assert sum(len(v) for v in doc["splits"].values()) == len(gdf)
    back = S.load_splits(path, gdf)
    assert back.equals(split.astype(object)) or (back.to_numpy() == split.to_numpy()).all()
    by_id = S.load_splits(path)
    assert by_id.loc[gdf["chip_id"].iloc[0]] == split.iloc[0]
    pq = S.save_splits(tmp_path / "splits.parquet", split, gdf)
    assert (S.load_splits(pq, gdf).to_numpy() == split.to_numpy()).all()
    assert gpd.read_parquet(pq)["split"].tolist() == split.tolist()
    # unknown ids, malformed files, duplicates
    with pytest.raises(DataError, match="not in the footprints"):
        S.load_splits(path, gdf.iloc[:100])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json"):
        S.load_splits(bad)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"strategy": "x", "params": {}, "splits": {"train": ["a"],
                                                                          "test": ["a"]}}))
    with pytest.raises(DataError, match="more than once"):
        S.load_splits(dup)
    with pytest.raises(DataError, match="not found"):
        S.load_splits(tmp_path / "missing.json")


def test_torchgeo_index_geographic(tmp_path: Path) -> None:
    from geossl.datasets.ssl4eo import SSL4EOS12
    from tests.data.ssl4eo.data import generate

    generate(tmp_path, locations=("0000200", "0000201", "0000202", "0000203"),
             products=("s2a",), size=24)
    index = SSL4EOS12(tmp_path, "s2a").index  # EPSG:4326, two dates per location
    split = S.make_splits(index, "overlap", (0.5, 0.5), seed=0)
    # both dates of a location share a footprint: always on the same side
    loc = index["location"].to_numpy()
    for name in np.unique(loc):
        assert split[loc == name].nunique() == 1
    assert S.leakage_report(index, split).loc[0, "leaking_a"] == 0


@pytest.mark.slow
def test_full_sen12ms_scale_is_fast() -> None:
    full = make_footprints()
    t0 = time.perf_counter()
    split = S.make_splits(full, "overlap", (0.8, 0.2), seed=0)
    rep = S.leakage_report(full, split)
    assert time.perf_counter() - t0 < 30
    assert rep.loc[0, "leaking_a"] == 0


# -- checkerboard ------------------------------------------------------------------------------
def _pixel_grid(size: int = 8, step: int = 4, extent: int = 64, crs: object = "pixel"
                ) -> gpd.GeoDataFrame:
    """Square patches on a pixel grid (x = col, y = -row), like PolSAR patch footprints."""
    from geossl.datasets.polsar import PIXEL_CRS

    r, c = np.meshgrid(np.arange(0, extent - size + 1, step),
                       np.arange(0, extent - size + 1, step), indexing="ij")
    r, c = r.ravel(), c.ravel()
    return gpd.GeoDataFrame(
        {"chip_id": [f"r{a}_c{b}" for a, b in zip(r, c)], "row": r, "col": c},
        geometry=shapely.box(c, -(r + size), c + size, -r),
        crs=PIXEL_CRS if crs == "pixel" else crs)


def test_checkerboard_pattern_disjoint_no_leak(gdf: gpd.GeoDataFrame) -> None:
    grid = _pixel_grid()
    split = S.make_splits(grid, "checkerboard", (0.5, 0.5), block_size=32,
                          origin=(0.0, 0.0))
    r, c = grid["row"].to_numpy(), grid["col"].to_numpy()
    inside = (r // 32 == (r + 7) // 32) & (c // 32 == (c + 7) // 32)
    expected = np.where(inside, np.where((r // 32 + c // 32) % 2 == 0, "train", "test"),
                        S.DROP)
    assert (split.to_numpy() == expected).all()
    # disjoint: no pixel covered by a train and a test patch
    cover = {k: np.zeros((64, 64), bool) for k in ("train", "test")}
    for a, b, s in zip(r, c, split):
        if s in cover:
            cover[s][a:a + 8, b:b + 8] = True
    assert cover["train"].any() and cover["test"].any()
    assert not (cover["train"] & cover["test"]).any()
    rep = S.leakage_report(grid, split)
    assert rep.loc[0, "leaking_a"] == 0 and rep.loc[0, "overlap_px2"] == 0
    # on the SEN12MS-like layout (12 UTM zones): zero leakage, about half each side, determinism
    a = S.make_splits(gdf, "checkerboard", (0.5, 0.5), block_size=10240, seed=0)
    b = S.make_splits(gdf, "checkerboard", (0.5, 0.5), block_size=10240, seed=5)
    assert a.equals(b) and a.attrs["strategy"] == "checkerboard"
    assert S.leakage_report(gdf, a).loc[0, ["leaking_a", "leaking_b"]].tolist() == [0, 0]
    assert _no_cross_pairs(gdf, a)
    assert abs(a.attrs["fractions"]["test"] - 0.5) < 0.05
    # every kept chip lies inside one 10240 m block of its own colour
    kept = a != S.DROP
    bx = gdf[["minx", "maxx"]].to_numpy()[kept.to_numpy()] // 10240
    assert (bx[:, 0] == np.floor((gdf["maxx"].to_numpy()[kept.to_numpy()] - 1e-6) / 10240)).all()


def test_checkerboard_centroid_buffer_and_colours(gdf: gpd.GeoDataFrame) -> None:
    fp = S.footprints(gdf)
    foot = S.make_splits(gdf, "checkerboard", (0.5, 0.5), block_size=10240, fp=fp)
    cent = S.make_splits(gdf, "checkerboard", (0.5, 0.5), block_size=10240, fp=fp,
                         assign="centroid")
    # centroid assignment keeps more chips, still without leakage, and stays balanced
    assert (cent == S.DROP).sum() < (foot == S.DROP).sum()
    assert _no_cross_pairs(gdf, cent)
    assert abs(cent.attrs["fractions"]["test"] - 0.5) < 0.05
    # kept chips of neighbouring blocks are >= 1280 m apart (stride); a wider buffer drops more
    buf = S.make_splits(gdf, "checkerboard", (0.5, 0.5), block_size=10240, buffer=1500, fp=fp)
    assert (buf == S.DROP).sum() > (foot == S.DROP).sum()
    assert S.leakage_report(gdf, foot, buffer=1500).loc[0, "leaking_a"] > 0
    assert S.leakage_report(gdf, buf, buffer=1500).loc[0, "leaking_a"] == 0
    three = S.make_splits(gdf, "checkerboard", (1 / 3, 1 / 3, 1 / 3), block_size=10240, fp=fp)
    assert set(three.unique()) == {"train", "val", "test", S.DROP}
    assert (S.leakage_report(gdf, three)[["leaking_a", "leaking_b"]] == 0).all().all()
    # a non-overlapping tiling not aligned with the blocks: centroid assignment drops nothing
    tiles = _pixel_grid(size=10, step=10, extent=100)
    assert (S.checkerboard_split(tiles, 32, assign="centroid") != S.DROP).all()
    assert (S.checkerboard_split(tiles, 32) == S.DROP).any()


def test_checkerboard_bad_input(gdf: gpd.GeoDataFrame) -> None:
    with pytest.raises(ConfigError, match="fractions are equal"):
        S.make_splits(gdf, "checkerboard", (0.8, 0.2))
    with pytest.raises(ConfigError, match="assignment"):
        S.make_splits(gdf, "checkerboard", (0.5, 0.5), assign="middle")
    with pytest.raises(ConfigError, match="block size"):
        S.make_splits(gdf, "checkerboard", (0.5, 0.5), block_size=0)
    # one block only: the test side is empty, a one-line error
    with pytest.raises(DataError, match="split 'test' is empty"):
        S.make_splits(_pixel_grid(), "checkerboard", (0.5, 0.5), block_size=1000)
    assert S.checkerboard_split(_pixel_grid().iloc[:0], 32).empty


def test_checkerboard_across_utm_zones() -> None:
    # the same square seen in zones 32 and 33: a block size where the two copies take different
    # colours must drop one of them
    sq = gpd.GeoSeries([shapely.box(11.995, 45.0, 12.005, 45.009)], crs=4326)
    frame = pd.concat([_boxes([tuple(sq.to_crs(32632).total_bounds)], "EPSG:32632"),
                       _boxes([tuple(sq.to_crs(32633).total_bounds)], "EPSG:32633")],
                      ignore_index=True)
    frame["chip_id"] = ["z32", "z33"]
    for size in np.arange(5_000.0, 300_000.0, 5_000.0):
        own = [S.checkerboard_split(frame.iloc[[k]], size).iloc[0] for k in (0, 1)]
        if S.DROP not in own and own[0] != own[1]:
            break
    else:
        pytest.fail("no block size gives the two copies different colours")
    split = S.checkerboard_split(frame, size)
    assert (split == S.DROP).sum() == 1 and set(split) - {S.DROP} <= set(own)


# -- footprints in a pixel grid (no georeferenced CRS) -----------------------------------------
@pytest.mark.parametrize("crs", ["pixel", None])
def test_pixel_grid_footprints_report_units(crs: object) -> None:
    grid = _pixel_grid(crs=crs)
    fp = S.footprints(grid)
    assert fp.planar and fp.unit == ("px" if crs == "pixel" else "units")
    assert np.allclose(fp.area, 64.0)  # 8 x 8 pixels, no reprojection
    unit = fp.unit
    spaced = _pixel_grid(step=11, extent=96, crs=crs)  # 3 px gaps: every chip its own group
    for strategy, frame in (("overlap", spaced), ("block", grid), ("nonoverlapping", grid),
                            ("checkerboard", grid)):
        split = S.make_splits(frame, strategy, (0.5, 0.5), block_size=16, seed=0, label=None,
                              buffer=2)
        assert split.attrs["params"]["unit"] == unit
        rep = S.leakage_report(frame, split, buffer=2)
        assert rep.loc[0, "leaking_a"] == 0 and rep.loc[0, "n_b"] > 0, strategy
        assert f"overlap_{unit}2" in rep.columns and f"buffer_{unit}" in rep.columns
        assert rep.attrs["area_unit"] == f"{unit}2" and rep.attrs["length_unit"] == unit
    # random leaks, in pixels: two 8 x 8 patches 4 px apart share 32 px²
    pair = grid[grid["chip_id"].isin(["r0_c0", "r0_c4"])]
    split = pd.Series(["train", "test"], index=pair.index)
    rep = S.leakage_report(pair, split)
    assert rep.loc[0, f"overlap_{unit}2"] == 32.0
    assert rep.loc[0, f"leaking_area_a_{unit}2"] == 64.0
    # buffer in pixels: patches 4 px apart (edge to edge) conflict within 5 px, not within 3
    apart = grid[grid["chip_id"].isin(["r0_c0", "r0_c12"])]
    assert len(S.conflict_pairs(S.footprints(apart), 3.0)[0]) == 0
    assert len(S.conflict_pairs(S.footprints(apart), 5.0)[0]) == 1


def test_chip_index_without_crs_is_planar() -> None:
    frame = _boxes([(0, 0, 10, 10), (5, 0, 15, 10), (40, 0, 50, 10)])
    frame["crs"] = ""
    frame = frame.set_geometry([None] * 3)
    fp = S.footprints(frame)
    assert fp.planar and fp.unit == "units"
    i, j = S.conflict_pairs(fp)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1)]


# -- stratification tolerance --------------------------------------------------------------------
def test_stratified_fractions_within_tolerance(gdf: gpd.GeoDataFrame) -> None:
    """Stated tolerance: overall and per-class fractions within 0.05 (attrs record both)."""
    for strategy in ("overlap", "block", "random"):
        split = S.make_splits(gdf, strategy, (0.7, 0.3), seed=0, block_size=10240)
        assert split.attrs["fraction_error"] <= 0.05, strategy
        assert split.attrs["params"]["stratify"] == "single-label"
        assert split.attrs["class_fraction_error"] is not None
    # chip by chip every class is split exactly (rounding); whole groups: see the clusters test
    assert split.attrs["class_fraction_error"] <= 0.01


def _multilabel_clusters(n: int = 400, seed: int = 0) -> gpd.GeoDataFrame:
    """Clusters of 4 overlapping chips sharing a multi-label set; class 5 is rare (~5 %)."""
    frame = _clusters(n, seed=seed).drop(columns="label")
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n):
        cls = sorted(set(rng.choice(5, size=int(rng.integers(1, 4)), replace=False).tolist())
                     | ({5} if rng.random() < 0.05 else set()))
        labels += [",".join(map(str, cls))] * 4
    frame["label"] = labels  # BigEarthNet-style comma-separated class indices
    return frame


def test_multilabel_stratification() -> None:
    frame = _multilabel_clusters()
    hot = np.stack([np.isin(np.arange(6), [int(x) for x in v.split(",")])
                    for v in frame["label"]])

    def worst(split: pd.Series) -> float:
        test = (split == "test").to_numpy()
        return float(np.abs(hot[test].sum(0) / hot.sum(0) - 0.25).max())

    split = S.make_splits(frame, "overlap", (0.75, 0.25), seed=0)
    assert split.attrs["params"]["stratify"] == "multi-label"
    assert _no_cross_pairs(frame, split)
    assert abs(split.attrs["fractions"]["test"] - 0.25) <= 0.02
    assert worst(split) <= 0.05 and split.attrs["class_fraction_error"] <= 0.05
    # the same clusters without labels: per-class fractions are not controlled
    plain = S.make_splits(frame.drop(columns="label"), "overlap", (0.75, 0.25), seed=0)
    assert worst(plain) > worst(split)
    # lists of indices work the same, and chip by chip (random) too
    frame["label"] = [[int(x) for x in v.split(",")] for v in frame["label"]]
    rnd = S.make_splits(frame, "random", (0.75, 0.25), seed=1)
    assert worst(rnd) <= 0.02 and abs(rnd.attrs["fractions"]["test"] - 0.25) <= 0.01
    again = S.make_splits(frame, "overlap", (0.75, 0.25), seed=0)
    assert again.equals(split)


def test_read_footprints_ssl4eo_and_polsar(tmp_path: Path) -> None:
    from tests.data.polsar.data import generate as polsar
    from tests.data.ssl4eo.data import generate as ssl4eo

    ssl4eo(tmp_path / "ssl4eo", locations=("0000200", "0000201"), products=("s2c",), size=12)
    frame = S.read_footprints(data="ssl4eo", root=tmp_path / "ssl4eo")
    assert len(frame) == 4 and frame.crs.to_epsg() == 4326
    assert isinstance(frame.index, pd.RangeIndex)
    polsar(tmp_path / "polsar", rows=64, cols=192, c3=False)
    grid = S.read_footprints(data="polsar", root=tmp_path / "polsar")
    from geossl.datasets.polsar import PolSAR

    ds = PolSAR(tmp_path / "polsar", in_memory=False)
    assert grid["chip_id"].tolist() == ds.ids  # the ids --splits later selects
    assert S.footprints(grid).unit == "px"
    assert len(grid) == 3 and grid.geometry.iloc[1].bounds == (64.0, -64.0, 128.0, 0.0)


# ---- an independent brute-force oracle across UTM zones (issue 11) ---------------------------
# Every pair of footprints is decided on its own: both boxes are densified in their own CRS and
# reprojected with pyproj into an azimuthal equidistant projection centred between them, where
# shapely measures their distance and shared area. Nothing of geossl.splits is used.


def _zone_pairs(lat: float, gaps: list[float], size: float = 1000.0) -> pd.DataFrame:
    """Chips on both sides of the 12 E zone border (32N | 33N) at about ``lat`` degrees.

    Pair ``k`` (0.1 degree further north each): A in zone 32 with its east edge through the
    border point, B in zone 33 with its west edge ``gaps[k]`` metres further east (negative:
    overlapping), C in zone 33 sharing B's east edge exactly (touching), D in zone 33 120 m east
    of C.
    """
    from pyproj import Geod, Transformer

    geod = Geod(ellps="WGS84")
    t32 = Transformer.from_crs(4326, 32632, always_xy=True)
    t33 = Transformer.from_crs(4326, 32633, always_xy=True)
    rows = []
    for k, gap in enumerate(gaps):
        la = lat + 0.1 * k
        x, y = t32.transform(12.0, la)
        rows.append(("EPSG:32632", x - size, y - size / 2, x, y + size / 2))
        lon_q, lat_q, _ = geod.fwd(12.0, la, 90.0 if gap >= 0 else 270.0, abs(gap))
        x, y = t33.transform(lon_q, lat_q)
        b = (x, y - size / 2, x + size, y + size / 2)
        rows.append(("EPSG:32633", *b))
        rows.append(("EPSG:32633", b[2], b[1], b[2] + size, b[3]))
        rows.append(("EPSG:32633", b[2] + size + 120.0, b[1], b[2] + 2 * size + 120.0, b[3]))
    frame = pd.DataFrame(rows, columns=["crs", "minx", "miny", "maxx", "maxy"])
    frame.insert(0, "chip_id", [f"{lat:g}_{k}" for k in range(len(frame))])
    return frame


def _with_geometry(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """The frame as a chip index: EPSG:4326 footprints from the corners, per CRS."""
    geoms = np.empty(len(frame), dtype=object)
    for crs, idx in frame.groupby("crs").indices.items():
        part = frame.iloc[idx]
        box = shapely.box(part["minx"], part["miny"], part["maxx"], part["maxy"])
        geoms[idx] = gpd.GeoSeries(box, crs=crs).to_crs(4326).to_numpy()
    return gpd.GeoDataFrame(frame, geometry=list(geoms), crs=4326)


def _oracle(frame: pd.DataFrame) -> dict[tuple[int, int], tuple[float, float]]:
    """(distance m, shared area m²) of every pair that is at most 2 km apart."""
    from pyproj import Geod, Transformer

    geod = Geod(ellps="WGS84")
    # the boxes, densified every 10 m in their own CRS, to longitude / latitude
    rings = []
    to_lonlat = {crs: Transformer.from_crs(crs, 4326, always_xy=True)
                 for crs in frame["crs"].unique()}
    for r in frame.itertuples():
        box = shapely.segmentize(shapely.box(r.minx, r.miny, r.maxx, r.maxy), 10.0)
        rings.append(np.column_stack(
            to_lonlat[r.crs].transform(*np.asarray(box.exterior.coords).T)))
    lon = np.array([ring[:-1, 0].mean() for ring in rings])
    lat = np.array([ring[:-1, 1].mean() for ring in rings])
    radius = np.hypot(frame["maxx"] - frame["minx"], frame["maxy"] - frame["miny"]).to_numpy()
    out = {}
    n = len(frame)
    local: dict[tuple[float, float], Transformer] = {}
    for i in range(n):
        _, _, dist = geod.inv(np.full(n - i - 1, lon[i]), np.full(n - i - 1, lat[i]),
                              lon[i + 1:], lat[i + 1:])
        for j in np.flatnonzero(dist - radius[i] / 2 - radius[i + 1:] / 2 < 2000.0) + i + 1:
            # azimuthal equidistant centred within 0.1 degree of the pair: distances within
            # ~15 km of the centre are exact to < 1e-5
            centre = (round((lat[i] + lat[j]) / 2, 1), round((lon[i] + lon[j]) / 2, 1))
            if centre not in local:
                local[centre] = Transformer.from_crs(
                    4326, f"+proj=aeqd +lat_0={centre[0]} +lon_0={centre[1]} +datum=WGS84 "
                    "+units=m +no_defs", always_xy=True)
            a, b = (shapely.Polygon(np.column_stack(local[centre].transform(*rings[k].T)))
                    for k in (i, j))
            out[(i, int(j))] = (float(a.distance(b)), float(a.intersection(b).area))
    return out


def _oracle_conflicts(truth: dict[tuple[int, int], tuple[float, float]], buffer: float,
                      slack: float = 0.0) -> set[tuple[int, int]]:
    if buffer > 0:
        return {p for p, (d, _) in truth.items() if d <= buffer + slack}
    return {p for p, (_, area) in truth.items() if area > (0.5 if slack == 0 else 0.0)}


GAPS = [-300.0, -20.0, 0.0, 40.0, 100.0, 140.0, 165.0, 400.0]


@pytest.fixture(scope="module")
def zones() -> pd.DataFrame:
    return pd.concat([_zone_pairs(lat, GAPS) for lat in (0.5, 45.0, 75.0, 80.0, -62.0)],
                     ignore_index=True)


@pytest.fixture(scope="module")
def zone_truth(zones: pd.DataFrame) -> dict[tuple[int, int], tuple[float, float]]:
    return _oracle(zones)


@pytest.mark.parametrize("geometry", [True, False], ids=["geometry", "bounds_only"])
@pytest.mark.parametrize("buffer", [0.0, 150.0])
def test_conflicts_match_oracle_across_utm_zones(zones: pd.DataFrame, zone_truth: dict[
        tuple[int, int], tuple[float, float]], geometry: bool, buffer: float) -> None:
    frame = _with_geometry(zones) if geometry else zones
    i, j = S.conflict_pairs(S.footprints(frame), buffer)
    found = set(zip(i.tolist(), j.tolist()))
    must = _oracle_conflicts(zone_truth, buffer)
    may = _oracle_conflicts(zone_truth, buffer, slack=1.0)
    # the layout has cross-zone conflicts at every latitude, and pairs that only touch
    cross = {p for p in must if zones["crs"].iloc[p[0]] != zones["crs"].iloc[p[1]]}
    assert len(cross) >= 5 * (3 if buffer == 0 else 5)
    assert not must - found, sorted(must - found)  # never misses a conflict
    assert not found - may, sorted(found - may)  # and invents none


@pytest.mark.parametrize("strategy", ["overlap", "block", "nonoverlapping", "checkerboard"])
@pytest.mark.parametrize("buffer", [0.0, 150.0])
def test_no_train_test_pair_conflicts_by_oracle(zones: pd.DataFrame, zone_truth: dict[
        tuple[int, int], tuple[float, float]], strategy: str, buffer: float) -> None:
    must = _oracle_conflicts(zone_truth, buffer)
    for seed in range(4):
        extra = {"assign": "centroid"} if strategy == "checkerboard" else {}
        split = S.make_splits(zones, strategy, (0.5, 0.5), seed=seed, buffer=buffer,
                              block_size=1000.0, **extra).to_numpy()
        leaks = [(a, b) for a, b in must
                 if split[a] != split[b] and S.DROP not in (split[a], split[b])]
        assert not leaks, (seed, leaks)


def test_max_scale_6933_bounds_the_projection() -> None:
    from pyproj import Proj

    proj = Proj("EPSG:6933")
    lats = np.array([0.0, 20.0, 30.0, 45.0, 60.0, 73.0, 75.0, 80.0, 85.0, 89.0])
    factors = proj.get_factors(np.full(len(lats), 12.0), lats)
    largest = np.maximum(factors.meridional_scale, factors.parallel_scale)
    np.testing.assert_array_less(largest, S.max_scale_6933(lats) * (1 + 1e-9))
    assert S.max_scale_6933(80.0) > 3.0  # where the old fixed factor 3 missed neighbours
