from __future__ import annotations

import json
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geossl.data import splits as S
from geossl.errors import ConfigError, DataError
from tests.data.footprints import make_footprints


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
    nocrs = gpd.GeoDataFrame({"chip_id": ["a"]}, geometry=[shapely.box(0, 0, 1, 1)])
    with pytest.raises(DataError, match="no CRS"):
        S.make_splits(nocrs, "overlap")


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
    from geossl.data.ssl4eo import SSL4EOS12
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
