"""Overlap-aware train/val/test splits of footprints, with a leakage report.

Works on any GeoDataFrame of footprints: a chip index (``geossl tile``), a TorchGeo
``GeoDataset.index`` or :meth:`geossl.datasets.sen12ms.SEN12MSPatches.footprints`. Every split
function returns a :class:`pandas.Series` of split names (``train``, ``val``, ``test``, or
``drop`` for chips removed to keep the splits apart) indexed like the input.

Strategies (:func:`make_splits`):

``overlap``
    chips that conflict (their footprints share interior area, or with ``buffer`` > 0 lie within
    ``buffer`` metres of each other) are grouped into connected components; whole components go
    to one split. Zero leakage by construction, nothing dropped.
``block``
    square blocks of ``block_size`` metres (a chip belongs to the block of its centre); whole
    blocks go to one split; then every chip that conflicts with a chip of another split is
    labelled ``drop`` (the one of the earlier split in ``names``: train loses the border band,
    not test). Zero leakage by construction.
``scene``
    whole scenes (column ``scene``); scenes that overlap each other are merged first. With an
    explicit test list (``test_scenes``, or ``holdout="sen12ms"`` for the official SEN12MS
    hold-out scenes) those scenes are the test side and conflicting chips of the other sides are
    dropped. Zero leakage by construction.
``random``
    chip by chip, for comparison only: overlapping chips fall on both sides (see the report).
``nonoverlapping``
    a greedy maximal subset of pairwise non-conflicting chips (the rest is ``drop``), split at
    random: zero leakage since no two kept chips overlap.
``checkerboard``
    square blocks of ``block_size`` CRS units coloured like a chessboard (block row ``i``
    counted down from ``origin``, column ``j`` from its left; colour ``(i + j) mod k`` for
    ``k`` splits, so blocks sharing an edge never share a split). A chip takes the colour of
    the one block its footprint lies in; a chip that straddles a block border is ``drop``
    (``assign="footprint"``, the default), or takes the colour of the block of its centre
    (``assign="centroid"``: fewer chips lost, then a chip that still conflicts with a chip of
    another split is dropped as in ``block``). ``buffer`` > 0 also drops the chips (of the
    earlier split) lying within ``buffer`` of another split. The fractions are those of the
    pattern, so they must be equal (``0.5, 0.5``); no stratification. Zero leakage by
    construction.

All strategies are deterministic given ``seed`` and (but ``checkerboard``) stratified by class
when a label column exists. Single-label: each group counts under its majority class; groups
are placed largest first into the split furthest below its target, so the achieved fractions
differ from the requested ones by at most about one group (block, scene) per class.
Multi-label (cells holding several class indices, e.g. BigEarthNet's ``"3,7,12"``): iterative
stratification (Sechidis et al., 2011, simplified for groups: groups visited by the rarity of
their rarest label, each placed where its labels and the chip count are most in deficit). The
achieved fractions are returned in ``series.attrs["fractions"]`` (a warning is issued beyond
``tolerance``, default 0.05), the largest gap in ``attrs["fraction_error"]`` and the largest
per-class gap (classes with >= 5 expected chips in the smallest split) in
``attrs["class_fraction_error"]``.

Metric coordinates: distances and areas are computed per CRS group, each footprint in a metric
CRS: the chip's own projected CRS when the frame has the chip-index columns ``minx .. maxy`` and
``crs`` (UTM for SEN12MS and ``geossl tile`` chips: exact boxes, no reprojection), else the
frame's CRS when projected, else (geographic footprints) the UTM zone of each footprint's
centre. Chips of different CRS groups (UTM zones) are compared in two steps: candidates are
found in the equal-area CRS EPSG:6933 with each buffer enlarged by that projection's largest
scale factor at the footprint's latitude (:func:`max_scale_6933`: 1.15 at the equator, 3 at 73
degrees, unbounded towards the poles), so no neighbour is missed at any latitude; each candidate
pair is then decided in a transverse Mercator projection centred on it (scale error below
1e-4), with the footprints densified every :data:`DENSIFY_M` metres in their own CRS so that
their straight edges stay straight. Frames with ``minx .. maxy`` and ``crs`` columns but no
georeferenced geometry get their EPSG:4326 footprints from those bounds. Two footprints that
only touch (shared edge, overlap below :data:`EPS_M` = 1 mm) do not conflict.

Pixel grids: footprints without a georeferenced CRS (``crs`` None, or a local engineering CRS
such as :data:`geossl.datasets.polsar.PIXEL_CRS` of a PolSAR scene without map information) are
used as they are, planar, in their own units (pixels for a pixel grid): ``buffer`` and
``block_size`` are then in those units, nothing is reprojected, footprints of different local
CRSs are never compared, and the leakage report names its columns after the unit
(``overlap_px2``, ``buffer_px``, ... instead of ``overlap_km2``, ``buffer_m``). Mixing such
footprints with georeferenced ones is an error.

Files: :func:`save_splits` writes JSON ``{"strategy", "params", "splits": {name: [ids]}}`` or a
GeoParquet copy of the footprints with a ``split`` column; :func:`load_splits` reads both and
checks the ids against the footprints.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geossl.errors import ConfigError, DataError
from geossl.io import atomic_path, atomic_write_text, check_writable, jsonable

PathLike = str | os.PathLike[str]

#: split strategies of :func:`make_splits`
STRATEGIES = ("overlap", "block", "scene", "random", "nonoverlapping", "checkerboard")
#: default block side (``block``, ``checkerboard``): 4 SEN12MS patches (256 px at 10 m = 2560 m)
#: per side, so that few patches straddle a block border (see geossl/conf/split.yaml)
DEFAULT_BLOCK_SIZE = 10240.0
#: how ``checkerboard`` places a chip: in the block holding its footprint, or its centre
ASSIGN_MODES = ("footprint", "centroid")
#: label of chips removed to keep splits apart
DROP = "drop"
#: overlap below this many metres (shared edges, rounding) is not an overlap
EPS_M = 1e-3
#: CRS in which candidate pairs across CRS groups are found and cross-group overlap areas are
#: measured (equal-area, metres; cylindrical with standard parallel 30 degrees)
COMMON_CRS = "EPSG:6933"
#: vertex spacing (metres) of footprints reprojected to decide a pair across CRS groups
DENSIFY_M = 100.0
#: relative slack of the cross-group decision (transverse Mercator scale error, < 4e-5 within
#: half a degree of its central meridian)
CROSS_CRS_TOLERANCE = 1e-4
#: columns tried, in order, for chip ids
ID_COLUMNS = ("chip_id", "id", "patch_id")
_BOUNDS = ["minx", "miny", "maxx", "maxy"]


# --------------------------------------------------------------------------------------------
# metric footprints and the conflict graph
# --------------------------------------------------------------------------------------------
@dataclass
class Footprints:
    """Footprints in metric coordinates (or in a pixel grid's own units), grouped by CRS.

    Attributes:
        group: CRS group of each row.
        crs: the metric CRS of each group (None for a group without a georeferenced CRS).
        geoms: footprint of each row in its group's CRS.
        bounds: ``(n, 4)`` bounds of ``geoms``.
        boxes: True when every footprint is an axis-aligned rectangle (fast paths).
        lonlat: footprints in EPSG:4326 (for cross-group comparisons), or None.
        unit: length unit of ``geoms``: ``"m"``, or for planar footprints without a
            georeferenced CRS ``"px"`` (a pixel grid) or ``"units"`` (unknown CRS units).
    """

    group: np.ndarray
    crs: list[CRS | None]
    geoms: np.ndarray
    bounds: np.ndarray
    boxes: bool
    lonlat: np.ndarray | None
    unit: str = "m"

    @property
    def planar(self) -> bool:
        """True when the footprints are not georeferenced (pixel grid, local CRS, no CRS)."""
        return self.unit != "m"

    @property
    def area(self) -> np.ndarray:
        """Area of each footprint in ``unit`` squared (m² when georeferenced)."""
        if self.boxes:
            b = self.bounds
            return np.asarray((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        return np.asarray(shapely.area(self.geoms))

    def __len__(self) -> int:
        return len(self.group)


def _metric_crs(crs: Any) -> bool:
    c = CRS.from_user_input(crs)
    if not c.is_projected:
        return False
    unit = c.axis_info[0].unit_name if c.axis_info else ""
    return unit in ("metre", "meter", "m")


def _is_missing(value: Any) -> bool:
    """A ``crs`` cell that holds no CRS (None, NaN, '', 'None')."""
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", "None", "none", "nan")


def _local_crs(crs: Any) -> CRS | None:
    """The CRS when it is a local (engineering) one that cannot be reprojected, else None."""
    c = CRS.from_user_input(crs)
    return c if (c.is_engineering or not (c.is_projected or c.is_geographic)) else None


def _planar_unit(crs_list: Sequence[CRS | None]) -> str:
    """``"px"`` when every CRS is a pixel grid (its name says so), else ``"units"``."""
    if crs_list and all(c is not None and "pixel" in c.name.lower() for c in crs_list):
        return "px"
    return "units"


def _utm_zones(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    zone = np.clip(np.floor((np.asarray(lon) + 180.0) / 6.0).astype(np.int64) + 1, 1, 60)
    return np.where(np.asarray(lat) >= 0, 32600 + zone, 32700 + zone)


def _planar(group: np.ndarray, crs_list: list[CRS | None], geoms: np.ndarray) -> Footprints:
    """Footprints used as they are, in their CRS units (no georeferenced CRS)."""
    bounds = shapely.bounds(geoms)
    box_area = (bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])
    boxes = bool(np.allclose(shapely.area(geoms), box_area, rtol=1e-9, atol=1e-6))
    return Footprints(np.asarray(group, np.int64), crs_list, geoms, bounds, boxes, None,
                      _planar_unit(crs_list))


def footprints(gdf: pd.DataFrame) -> Footprints:
    """Metric footprints of a frame (see the module docstring for the CRS rules).

    Args:
        gdf: chip index / TorchGeo index / any GeoDataFrame of footprints.

    Returns:
        the metric footprints, or planar ones in the CRS units for footprints without a
        georeferenced CRS (pixel grids).

    Raises:
        DataError: no footprint information, a CRS that cannot be read, or georeferenced
            footprints mixed with pixel-grid ones.
    """
    n = len(gdf)
    has_geo = isinstance(gdf, gpd.GeoDataFrame) and gdf.geometry.name in gdf.columns
    if has_geo and (gdf.crs is None or _local_crs(gdf.crs) is not None) and not (
            set(_BOUNDS) <= set(gdf.columns) and "crs" in gdf.columns):
        own = None if gdf.crs is None else CRS.from_user_input(gdf.crs)
        return _planar(np.zeros(n, np.int64), [own], gdf.geometry.to_numpy())
    lonlat = None
    if has_geo and gdf.crs is not None and _local_crs(gdf.crs) is None:
        geo = gdf.geometry
        lonlat = (geo if CRS.from_user_input(gdf.crs).equals(CRS.from_epsg(4326))
                  else geo.to_crs(4326)).to_numpy()
    if set(_BOUNDS) <= set(gdf.columns) and "crs" in gdf.columns:
        raw = gdf["crs"].to_numpy(dtype=object)
        missing = np.asarray([_is_missing(v) for v in raw], dtype=bool)
        codes, uniques = pd.factorize(np.where(missing, "", raw.astype(str)))
        try:
            crs_list: list[CRS | None] = [None if u == "" else CRS.from_user_input(str(u))
                                          for u in uniques]
        except Exception as err:
            raise DataError(f"footprints have an unreadable crs value ({err})") from err
        is_local = [c is None or _local_crs(c) is not None for c in crs_list]
        b = gdf[_BOUNDS].to_numpy(np.float64)
        if all(is_local):
            return _planar(codes.astype(np.int64), crs_list,
                           shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
        if any(is_local):
            raise DataError("footprints mix a pixel grid (no georeferenced crs) with "
                            "georeferenced ones; split them separately")
        if all(_metric_crs(c) for c in crs_list):
            geoms = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
            if lonlat is None and len(crs_list) > 1:
                # no georeferenced geometry: without EPSG:4326 footprints, chips of different
                # CRSs (UTM zones) could never be compared; build them from the bounds
                lonlat = np.empty(n, dtype=object)
                for k, c in enumerate(crs_list):
                    sel = codes == k
                    lonlat[sel] = gpd.GeoSeries(geoms[sel], crs=c).to_crs(4326).to_numpy()
            return Footprints(codes.astype(np.int64), crs_list, geoms, b, True, lonlat)
        if not has_geo:  # geographic own CRS: make 4326 geometries from the bounds
            per = []
            for k, c in enumerate(crs_list):
                rows = gdf[codes == k]
                box = shapely.box(*rows[_BOUNDS].to_numpy(np.float64).T)
                per.append(gpd.GeoSeries(box, index=rows.index, crs=c).to_crs(4326))
            lonlat = pd.concat(per).loc[gdf.index].to_numpy()
    if lonlat is None:
        raise DataError("no footprints: expected a geometry column or minx, miny, maxx, maxy "
                        "and crs columns")
    if has_geo and gdf.crs is not None and _metric_crs(gdf.crs):
        geoms = gdf.geometry.to_numpy()
        crs_list = [CRS.from_user_input(gdf.crs)]
        group = np.zeros(n, dtype=np.int64)
    else:
        cent = shapely.centroid(lonlat)
        epsg = _utm_zones(shapely.get_x(cent), shapely.get_y(cent))
        group, uniq = pd.factorize(epsg)
        crs_list = [CRS.from_epsg(int(e)) for e in uniq]
        geoms = np.empty(n, dtype=object)
        for k, c in enumerate(crs_list):
            sel = group == k
            geoms[sel] = gpd.GeoSeries(lonlat[sel], crs=4326).to_crs(c).to_numpy()
    bounds = shapely.bounds(geoms)
    box_area = (bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])
    boxes = bool(np.allclose(shapely.area(geoms), box_area, rtol=1e-9, atol=1e-6))
    return Footprints(np.asarray(group, np.int64), crs_list, geoms, bounds, boxes, lonlat)


def _query(geoms: np.ndarray, bounds: np.ndarray | None, boxes: bool, buffer: float,
           other: np.ndarray | None = None, other_bounds: np.ndarray | None = None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i in geoms, j in other) that conflict; ``other`` defaults to ``geoms``."""
    if buffer > 0:
        targets = geoms if other is None else other
        tree = shapely.STRtree(targets)
        i, j = tree.query(geoms, predicate="dwithin", distance=buffer)
        return i, j
    # interiors must meet: shrink by EPS_M so that footprints that only touch do not conflict
    if boxes and bounds is not None:
        e = np.array([EPS_M, EPS_M, -EPS_M, -EPS_M])
        a = shapely.box(*(bounds + e).T)
        b = a if other is None else shapely.box(*(np.asarray(other_bounds) + e).T)
    else:
        a = shapely.buffer(geoms, -EPS_M, join_style="mitre")
        b = a if other is None else shapely.buffer(other, -EPS_M, join_style="mitre")
    tree = shapely.STRtree(b)
    i, j = tree.query(a, predicate="intersects")
    return i, j


def conflict_pairs(fp: Footprints, buffer: float = 0.0,
                   rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of conflicting footprints, found with a spatial index (no all-pairs loop).

    Two footprints conflict when their interiors intersect or, with ``buffer`` > 0, when they
    lie within ``buffer`` metres of each other.

    Args:
        fp: metric footprints.
        buffer: distance in metres.
        rows: restrict to these row positions (default all).

    Returns:
        ``(i, j)`` row positions with ``i < j``, each pair once.
    """
    if buffer < 0:
        raise ConfigError(f"buffer must be >= 0 (metres, or pixel-grid units), got {buffer}")
    rows = np.arange(len(fp)) if rows is None else np.asarray(rows, dtype=np.int64)
    out_i, out_j = [], []
    groups = np.unique(fp.group[rows])
    for g in groups:
        idx = rows[fp.group[rows] == g]
        i, j = _query(fp.geoms[idx], fp.bounds[idx], fp.boxes, buffer)
        out_i.append(idx[i])
        out_j.append(idx[j])
    if len(groups) > 1:  # neighbours across CRS groups, compared in an equal-area CRS
        ci, cj = _cross_group_pairs(fp, rows, groups, buffer)
        out_i.append(ci)
        out_j.append(cj)
    i = np.concatenate(out_i) if out_i else np.zeros(0, np.int64)
    j = np.concatenate(out_j) if out_j else np.zeros(0, np.int64)
    keep = i < j
    return i[keep], j[keep]


def max_scale_6933(lat: np.ndarray | float) -> np.ndarray:
    """Largest scale factor of EPSG:6933 at latitude ``lat`` (degrees), over all directions.

    A cylindrical equal-area projection with standard parallel 30 degrees stretches east-west
    distances by ``cos 30 / cos lat`` and north-south ones by ``cos lat / cos 30``; a distance
    ``d`` on the ground is at most ``d * max_scale_6933(lat)`` on the map. (The former fixed
    factor 3 was exceeded above 73 degrees.)
    """
    c = np.cos(np.radians(np.clip(np.abs(np.asarray(lat, dtype=np.float64)), 0.0, 89.999)))
    c30 = np.cos(np.radians(30.0))
    return np.asarray(np.maximum(c30 / c, c / c30))


def _cross_group_pairs(fp: Footprints, rows: np.ndarray, groups: np.ndarray,
                       buffer: float) -> tuple[np.ndarray, np.ndarray]:
    """Conflicting pairs of footprints of different CRS groups (see the module docstring)."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if fp.planar:
        return empty  # footprints of different local CRSs (pixel grids) are never compared
    if fp.lonlat is None:
        if len(groups) > 1:
            raise DataError("footprints in several CRSs but no EPSG:4326 footprint to compare "
                            "them by")
        return empty
    sub = fp.lonlat[rows]
    common = gpd.GeoSeries(sub, crs=4326).to_crs(COMMON_CRS).to_numpy()
    b = shapely.bounds(common)
    llb = shapely.bounds(sub)
    # the reach of each footprint on the map: the buffer (and a slack for the curvature of
    # edges reprojected through their corners only) times the largest scale at its latitude
    lat = np.maximum(np.abs(llb[:, 1]), np.abs(llb[:, 3])) + (buffer + 1.0) / 110_000.0
    own = fp.bounds[rows]
    side = np.maximum(own[:, 2] - own[:, 0], own[:, 3] - own[:, 1])
    reach = (buffer * (1.0 + CROSS_CRS_TOLERANCE) + 0.01 * side + 1.0) * max_scale_6933(lat)
    env = {}
    for g in groups:
        sel = fp.group[rows] == g
        gb, gr = b[sel], reach[sel].max()
        env[g] = (gb[:, 0].min() - gr, gb[:, 1].min() - gr, gb[:, 2].max() + gr,
                  gb[:, 3].max() + gr)
    cand_i, cand_j = [], []
    for a_pos, ga in enumerate(groups):
        for gb_ in groups[a_pos + 1:]:
            ea, eb = env[ga], env[gb_]
            if ea[0] > eb[2] or eb[0] > ea[2] or ea[1] > eb[3] or eb[1] > ea[3]:
                continue  # the two groups are far apart: no pair possible
            in_a = np.flatnonzero((fp.group[rows] == ga) & _inside(b, eb))
            in_b = np.flatnonzero((fp.group[rows] == gb_) & _inside(b, ea))
            if not len(in_a) or not len(in_b):
                continue
            tree = shapely.STRtree(common[in_b])
            i, j = tree.query(common[in_a], predicate="dwithin",
                              distance=reach[in_a] + reach[in_b].max())
            cand_i.append(rows[in_a[i]])
            cand_j.append(rows[in_b[j]])
    if not cand_i:
        return empty
    ci, cj = np.concatenate(cand_i), np.concatenate(cand_j)
    keep = _decide_cross_pairs(fp, ci, cj, buffer)
    pi, pj = ci[keep], cj[keep]
    return np.minimum(pi, pj), np.maximum(pi, pj)


def _decide_cross_pairs(fp: Footprints, i: np.ndarray, j: np.ndarray,
                        buffer: float) -> np.ndarray:
    """Whether each candidate pair across CRS groups conflicts, decided on a local map.

    Both footprints are densified every :data:`DENSIFY_M` metres in their own CRS and
    projected to a transverse Mercator (scale 1) centred on the nearest half degree of the first
    footprint's longitude; there distances and areas are within :data:`CROSS_CRS_TOLERANCE`.
    """
    out = np.zeros(len(i), dtype=bool)
    if not len(i):
        return out
    assert fp.lonlat is not None
    lon = shapely.get_x(shapely.centroid(fp.lonlat[i]))
    lon0 = np.round(np.asarray(lon) * 2.0) / 2.0
    for centre in np.unique(lon0):
        sel = np.flatnonzero(lon0 == centre)
        local = CRS.from_proj4(f"+proj=tmerc +lat_0=0 +lon_0={centre} +k=1 +x_0=0 +y_0=0 "
                               "+datum=WGS84 +units=m +no_defs")
        rows = np.unique(np.concatenate([i[sel], j[sel]]))
        geoms: dict[int, Any] = {}
        for g in np.unique(fp.group[rows]):
            part = rows[fp.group[rows] == g]
            dense = shapely.segmentize(fp.geoms[part], DENSIFY_M)
            moved = gpd.GeoSeries(dense, crs=fp.crs[int(g)]).to_crs(local).to_numpy()
            geoms.update(zip(part.tolist(), moved))
        a = np.empty(len(sel), dtype=object)
        a[:] = [geoms[k] for k in i[sel].tolist()]
        c = np.empty(len(sel), dtype=object)
        c[:] = [geoms[k] for k in j[sel].tolist()]
        if buffer > 0:
            limit = buffer * (1.0 + CROSS_CRS_TOLERANCE) + EPS_M
            out[sel] = shapely.dwithin(a, c, limit)
        else:
            # interiors must meet (as within a group): shrink both by EPS_M first
            out[sel] = shapely.intersects(shapely.buffer(a, -EPS_M, join_style="mitre"),
                                          shapely.buffer(c, -EPS_M, join_style="mitre"))
    return out


def _inside(b: np.ndarray, env: tuple[float, float, float, float]) -> np.ndarray:
    return np.asarray((b[:, 2] >= env[0]) & (b[:, 0] <= env[2])
                      & (b[:, 3] >= env[1]) & (b[:, 1] <= env[3]))


def overlap_groups(fp: Footprints, buffer: float = 0.0,
                   pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Connected components of the conflict graph: one group id per row."""
    i, j = conflict_pairs(fp, buffer) if pairs is None else pairs
    n = len(fp)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def nonoverlapping_subset(
    gdf: pd.DataFrame, buffer: float = 0.0, seed: int | None = None,
    fp: Footprints | None = None,
) -> np.ndarray:
    """A greedy maximal subset of pairwise non-conflicting footprints.

    Chips are visited in raster order (per CRS group, top row first, left to right), or in a
    random order when ``seed`` is given; a chip is kept when no kept chip conflicts with it.
    Every chip left out conflicts with a kept one (maximality), no two kept chips conflict.

    Args:
        gdf: footprints.
        buffer: minimum distance in metres between kept chips (0: interiors disjoint).
        seed: visit in a random order drawn with this seed.
        fp: precomputed :func:`footprints` of ``gdf``.

    Returns:
        boolean mask over the rows of ``gdf``.
    """
    fp = footprints(gdf) if fp is None else fp
    n = len(fp)
    i, j = conflict_pairs(fp, buffer)
    adj = coo_matrix((np.ones(2 * len(i), dtype=np.int8),
                      (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n)).tocsr()
    if seed is None:
        order = np.lexsort((fp.bounds[:, 0], -fp.bounds[:, 3], fp.group))
    else:
        order = np.random.default_rng(seed).permutation(n)
    keep = np.zeros(n, dtype=bool)
    blocked = np.zeros(n, dtype=bool)
    indptr, indices = adj.indptr, adj.indices
    # a plain loop: greedy independent sets are sequential by nature; O(n + edges)
    for v in order.tolist():
        if blocked[v]:
            continue
        keep[v] = True
        blocked[indices[indptr[v]:indptr[v + 1]]] = True
    return keep


# --------------------------------------------------------------------------------------------
# assignment of groups to splits
# --------------------------------------------------------------------------------------------
def _check_fractions(fractions: Sequence[float], names: Sequence[str] | None,
                     single: bool = False) -> tuple[np.ndarray, list[str]]:
    """Fractions and split names; ``single`` allows one fraction (1: a subset, not a split)."""
    frac = np.asarray([float(f) for f in fractions], dtype=np.float64)
    if len(frac) < (1 if single else 2) or np.any(frac <= 0) or abs(frac.sum() - 1.0) > 1e-6:
        least = ">= 1" if single else ">= 2"
        raise ConfigError(f"fractions must be {least} positive numbers summing to 1, got "
                          f"{list(fractions)}")
    if names is None:
        names = ["train"] if len(frac) == 1 else ["train", "test"] if len(frac) == 2 else (
            ["train", "val", "test"] if len(frac) == 3 else [f"split{k}" for k in range(len(frac))])
    names = [str(n) for n in names]
    if len(names) != len(frac) or len(set(names)) != len(names) or DROP in names:
        raise ConfigError(f"split names {names} must be distinct, not {DROP!r}, one per fraction")
    return frac, names


_INDEX_LIST = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*$")


def _strata(gdf: pd.DataFrame, label: str | None) -> np.ndarray | None:
    """Class per row: ``(n,)`` int codes (single-label), ``(n, L)`` bool (multi-label), or None.

    Multi-label cells hold class indices (a list, tuple or int array, or a comma-separated
    string such as BigEarthNet's ``"3,7,12"``) or a boolean multi-hot array; a column where
    such cells cannot be read is not stratified on.
    """
    if label is None or label not in gdf.columns:
        return None
    col = gdf[label]
    if col.map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
        return _multi_hot(col.tolist())
    strings = col.dropna().astype(str)
    if len(strings) and strings.str.contains(",").any() and \
            strings.map(lambda v: not v.strip() or bool(_INDEX_LIST.match(v))).all():
        return _multi_hot(col.tolist())
    codes, _ = pd.factorize(col.astype(str))
    return np.asarray(codes, np.int64)


def _multi_hot(values: list[Any]) -> np.ndarray | None:
    """``(n, L)`` bool from multi-label cells, or None when a cell cannot be read."""
    rows: list[list[int]] = []
    try:
        for v in values:
            if isinstance(v, np.ndarray) and v.dtype == bool:
                rows.append(np.flatnonzero(v).tolist())
            elif isinstance(v, list | tuple | np.ndarray):
                rows.append([int(x) for x in v])
            elif isinstance(v, str):
                rows.append([int(x) for x in v.split(",")] if v.strip() else [])
            elif v is None or (isinstance(v, float) and np.isnan(v)):
                rows.append([])
            else:
                return None
    except (TypeError, ValueError):
        return None
    width = 1 + max((max(r) for r in rows if r), default=-1)
    if width == 0 or any(min(r) < 0 for r in rows if r):
        return None
    out = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        out[i, r] = True
    return out


def _assign_multilabel(group: np.ndarray, frac: np.ndarray, rng: np.random.Generator,
                       labels: np.ndarray) -> np.ndarray:
    """Split index per row, whole groups together, by iterative stratification of labels.

    A simplification of Sechidis et al. (2011) for groups: groups are visited by the rarity of
    their rarest label (then largest first, random among equals); each goes to the split with
    the largest deficit, the deficit being that of the group's labels (each relative to its
    total, weighted by the group's count of it) plus the overall deficit in chips. Groups
    without labels count the overall deficit only.
    """
    n = len(group)
    gid, ginv = np.unique(group, return_inverse=True)
    ng, nl = len(gid), labels.shape[1]
    sizes = np.bincount(ginv, minlength=ng).astype(np.float64)
    counts = np.zeros((ng, nl))
    np.add.at(counts, ginv, labels.astype(np.float64))
    total = counts.sum(0)
    share = counts / np.where(total > 0, total, 1.0)[None, :]  # share of each label's total
    weight = counts.sum(1)
    rarity = np.where(counts > 0, total[None, :], np.inf).min(1)
    order = np.lexsort((rng.random(ng), -sizes, rarity))
    # deficits relative to each split's target (1: nothing placed yet, 0: target met), so that
    # a large split does not win every group just for being large
    deficit_l = np.ones((len(frac), nl))
    deficit = np.ones(len(frac))
    target = frac * n
    gsplit = np.zeros(ng, np.int64)
    for g in order.tolist():
        score = deficit.copy()
        if weight[g] > 0:
            score += deficit_l @ counts[g] / weight[g]
        k = int(np.argmax(score))
        gsplit[g] = k
        deficit_l[k] -= share[g] / frac[k]
        deficit[k] -= sizes[g] / target[k]
    return gsplit[ginv]


def _assign(group: np.ndarray, frac: np.ndarray, rng: np.random.Generator,
            strata: np.ndarray | None) -> np.ndarray:
    """Split index per row, whole groups together, per stratum (majority class of a group).

    ``strata`` ``(n, L)`` (multi-label) goes to :func:`_assign_multilabel`.
    """
    if strata is not None and strata.ndim == 2:
        return _assign_multilabel(group, frac, rng, strata)
    n = len(group)
    gid, ginv = np.unique(group, return_inverse=True)
    sizes = np.bincount(ginv)
    if strata is None:
        gstrat = np.zeros(len(gid), np.int64)
    elif len(gid) == n:  # singletons: the class of the chip
        gstrat = np.zeros(len(gid), np.int64)
        gstrat[ginv] = strata
    else:  # majority class of each group
        counts = pd.crosstab(ginv, strata)
        gstrat = counts.to_numpy().argmax(1)
        gstrat = np.asarray(counts.columns.to_numpy()[gstrat], np.int64)
    gsplit = np.zeros(len(gid), np.int64)
    if np.all(sizes == 1):  # singletons: exact counts per class, vectorised
        for s in np.unique(gstrat):
            perm = rng.permutation(np.flatnonzero(gstrat == s))
            cuts = np.round(np.cumsum(frac)[:-1] * len(perm)).astype(np.int64)
            for k, part in enumerate(np.split(perm, cuts)):
                gsplit[part] = k
        return gsplit[ginv]
    # biggest groups first (random order within a size octave); each goes to the split furthest
    # below its target: its class's deficit plus the overall deficit, both in chips, so that
    # the overall term outweighs the class term of a small class (a class of one or two groups
    # cannot be balanced; every such class's group must not go to the largest split) while a
    # large class is balanced too; relative deficits (1 - have / target) overfill small
    # splits with coarse groups (0.6/0.2/0.2 over 24 scenes gave 0.5/0.25/0.25)
    nstrat = int(gstrat.max()) + 1
    class_total = np.bincount(gstrat, weights=sizes, minlength=nstrat)
    target_c = class_total[:, None] * frac[None, :]
    target = frac * n
    have_c = np.zeros((nstrat, len(frac)))
    have = np.zeros(len(frac))
    octave = np.floor(np.log2(sizes)).astype(np.int64)
    order = np.lexsort((rng.random(len(gid)), -octave))
    for g in order.tolist():
        c = gstrat[g]
        score = (target_c[c] - have_c[c]) + (target - have)
        k = int(np.argmax(score))
        gsplit[g] = k
        have_c[c, k] += sizes[g]
        have[k] += sizes[g]
    out = gsplit[ginv]
    assert len(out) == n
    return out


def _drop_conflicts(split: np.ndarray, pairs: tuple[np.ndarray, np.ndarray],
                    priority: np.ndarray | None = None) -> np.ndarray:
    """Mark with -1 one chip of every pair whose chips lie in different splits.

    The dropped chip is the one of the split with the lower priority (default: lower split
    index, i.e. train before val before test). One pass suffices: each cross pair loses one
    chip and dropping never creates a new cross pair.
    """
    i, j = pairs
    si, sj = split[i], split[j]
    cross = (si != sj) & (si >= 0) & (sj >= 0)
    i, j, si, sj = i[cross], j[cross], si[cross], sj[cross]
    rank = np.arange(split.max() + 1) if priority is None else priority
    victim = np.where(rank[si] <= rank[sj], i, j)
    out = split.copy()
    out[victim] = -1
    return out


def checkerboard_codes(
    fp: Footprints,
    block_size: float,
    k: int = 2,
    origin: tuple[float, float] | None = None,
    assign: str = "footprint",
    buffer: float = 0.0,
) -> np.ndarray:
    """Split index per row for a checkerboard of ``k`` colours (-1: dropped).

    Block ``(i, j)``: row ``i`` counted down from ``origin``'s ``y``, column ``j`` right from
    its ``x`` (default ``(0, 0)`` of each CRS, so the grid does not move with the data);
    blocks are half-open (a footprint touching a border from one side is not in the other
    block). Colour ``(i + j) mod k``. See the module docstring for ``assign`` and ``buffer``.

    Args:
        fp: footprints.
        block_size: block side in CRS units (metres, or pixels for a pixel grid).
        k: number of colours (splits).
        origin: ``(x, y)`` of a block corner.
        assign: ``"footprint"`` (drop border-straddlers) or ``"centroid"``.
        buffer: also drop chips of an earlier split within this distance of a later one.

    Returns:
        ``(n,)`` int64 split index per row, -1 for dropped rows.

    Raises:
        ConfigError: bad block size, colour count or ``assign``.
    """
    if not block_size > 0:
        raise ConfigError(f"checkerboard block size must be positive, got {block_size}")
    if k < 2:
        raise ConfigError(f"a checkerboard needs at least 2 colours, got {k}")
    if assign not in ASSIGN_MODES:
        raise ConfigError(f"unknown checkerboard assignment {assign!r}; use "
                          f"{' or '.join(ASSIGN_MODES)}")
    n = len(fp)
    if n == 0:
        return np.zeros(0, np.int64)
    x0, y0 = (0.0, 0.0) if origin is None else (float(origin[0]), float(origin[1]))
    b = fp.bounds
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    if assign == "centroid":
        j0 = np.floor((cx - x0) / block_size)
        i0 = np.floor((y0 - cy) / block_size)
        single = np.ones(n, dtype=bool)
    else:  # half-open blocks: a footprint ending on a border lies in one block
        eps = 1e-9 * block_size
        j0 = np.floor((b[:, 0] - x0) / block_size)
        j1 = np.floor((b[:, 2] - x0 - eps) / block_size)
        i0 = np.floor((y0 - b[:, 3]) / block_size)
        i1 = np.floor((y0 - b[:, 1] - eps) / block_size)
        single = (j0 == j1) & (i0 == i1)
    colour = np.mod(i0 + j0, k).astype(np.int64)
    split = np.where(single, colour, -1)
    # centroid assignment, a buffer or neighbours across CRS groups: chips of different colours
    # may still conflict; one chip of each such pair is dropped (a no-op for footprint
    # assignment at buffer 0 in one CRS, where kept chips lie inside single blocks)
    if assign == "centroid" or buffer > 0 or len(np.unique(fp.group)) > 1:
        # the victim is the chip whose centre lies nearer its block's border (symmetric between
        # colours, unlike ``block``'s train-loses rule), ties: the earlier split's chip
        left, top = x0 + j0 * block_size, y0 - i0 * block_size
        depth = np.minimum.reduce([cx - left, left + block_size - cx, top - cy,
                                   cy - (top - block_size)])
        i, j = conflict_pairs(fp, buffer)
        si, sj = split[i], split[j]
        cross = (si != sj) & (si >= 0) & (sj >= 0)
        i, j, si, sj = i[cross], j[cross], si[cross], sj[cross]
        first = np.where(depth[i] != depth[j], depth[i] < depth[j], si <= sj)
        split = split.copy()
        split[np.where(first, i, j)] = -1
    return split


def checkerboard_split(
    gdf: pd.DataFrame,
    block_size: float,
    names: Sequence[str] = ("train", "test"),
    origin: tuple[float, float] | None = None,
    assign: str = "footprint",
    buffer: float = 0.0,
    fp: Footprints | None = None,
) -> pd.Series:
    """Checkerboard split names per row (``drop`` for removed chips), without any checks.

    The building block of ``make_splits(..., strategy="checkerboard")`` (which also checks
    that no split is empty and records the achieved fractions); see
    :func:`checkerboard_codes` for the arguments. Works on footprints in a pixel grid
    (``block_size`` and ``buffer`` in pixels).

    Returns:
        split names indexed like ``gdf`` (an empty Series for an empty frame).
    """
    names = [str(x) for x in names]
    if len(gdf) == 0:
        return pd.Series([], index=gdf.index, dtype=object, name="split")
    fp = footprints(gdf) if fp is None else fp
    codes = checkerboard_codes(fp, block_size, len(names), origin, assign, buffer)
    labels = np.asarray([*names, DROP], dtype=object)
    return pd.Series(labels[np.where(codes < 0, len(names), codes)], index=gdf.index,
                     dtype=object, name="split")


# --------------------------------------------------------------------------------------------
# the split functions
# --------------------------------------------------------------------------------------------
def make_splits(
    gdf: pd.DataFrame,
    strategy: str = "overlap",
    fractions: Sequence[float] = (0.8, 0.2),
    names: Sequence[str] | None = None,
    seed: int = 0,
    buffer: float = 0.0,
    block_size: float = DEFAULT_BLOCK_SIZE,
    label: str | None = "label",
    scene: str = "scene",
    test_scenes: Sequence[str] | None = None,
    holdout: str | None = None,
    tolerance: float = 0.05,
    origin: tuple[float, float] | None = None,
    assign: str = "footprint",
    fp: Footprints | None = None,
) -> pd.Series:
    """Split footprints into disjoint sets (see the module docstring for each strategy).

    Args:
        gdf: footprints (chip index, TorchGeo index, SEN12MS footprints, ...).
        strategy: ``overlap``, ``block``, ``scene``, ``random``, ``nonoverlapping`` or
            ``checkerboard``.
        fractions: fraction of chips per split (2: train/test, 3: train/val/test).
        names: split names (default from the number of fractions).
        seed: random seed; the same seed gives the same split.
        buffer: metres (pixel-grid units for footprints without a georeferenced CRS); chips
            closer than this conflict (``overlap``, ``block``, ``scene``, ``nonoverlapping``,
            ``checkerboard``: none of them end up in different splits).
        block_size: side of the blocks in metres, or pixel-grid units (``block``,
            ``checkerboard``).
        label: class column to stratify on, when present: one class per chip, or several
            (lists of class indices, comma-separated index strings, multi-hot bool arrays).
        scene: scene column (``scene``).
        test_scenes: scene ids forming the test side (``scene``); unknown ids are an error.
        holdout: ``"sen12ms"``: the official SEN12MS hold-out scenes are the test side.
        tolerance: warn when an achieved fraction is further than this from its target.
        origin: ``(x, y)`` corner of the checkerboard (default ``(0, 0)`` of each CRS).
        assign: ``checkerboard``: ``"footprint"`` drops chips straddling a block border,
            ``"centroid"`` places them by their centre.
        fp: precomputed :func:`footprints` of ``gdf``.

    Returns:
        split name per row, indexed like ``gdf``; ``attrs`` hold ``strategy``, ``params`` and
        the achieved ``fractions``.

    Raises:
        ConfigError: unknown strategy, bad fractions or names, unknown scene ids.
        DataError: no footprints, or a split would be empty.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown split strategy {strategy!r}; use one of "
                          f"{', '.join(STRATEGIES)}")
    # nonoverlapping with one fraction (1): the subset itself, all of it on one side
    frac, names = _check_fractions(fractions, names, single=strategy == "nonoverlapping")
    if len(gdf) == 0:
        raise DataError("no footprints to split")
    if not block_size > 0:
        raise ConfigError(f"block size must be > 0 (metres, or pixel-grid units), got "
                          f"{block_size}")
    if strategy == "checkerboard" and not np.allclose(frac, 1.0 / len(frac), atol=1e-6):
        even = ",".join(f"{1.0 / len(frac):.4g}" for _ in frac)
        raise ConfigError(f"a checkerboard alternates blocks: its fractions are equal (e.g. "
                          f"--fractions {even}), got {frac.tolist()}")
    rng = np.random.default_rng(seed)
    strata = _strata(gdf, label)
    if strategy != "random" and fp is None:
        fp = footprints(gdf)
    params: dict[str, Any] = {"fractions": frac.tolist(), "names": names, "seed": seed,
                              "buffer": buffer, "label": label if strata is not None else None}
    if strata is not None:
        params["stratify"] = "multi-label" if strata.ndim == 2 else "single-label"
    if strategy == "random":
        split = _assign(np.arange(len(gdf)), frac, rng, strata)
    elif strategy == "overlap":
        assert fp is not None
        groups = overlap_groups(fp, buffer)
        params["groups"] = int(groups.max() + 1)
        split = _assign(groups, frac, rng, strata)
    elif strategy == "block":
        assert fp is not None
        params["block_size"] = block_size
        b = fp.bounds
        bx = np.floor((b[:, 0] + b[:, 2]) / 2 / block_size).astype(np.int64)
        by = np.floor((b[:, 1] + b[:, 3]) / 2 / block_size).astype(np.int64)
        blocks = pd.MultiIndex.from_arrays([fp.group, bx, by]).factorize()[0]
        params["blocks"] = int(blocks.max() + 1)
        split = _assign(blocks, frac, rng, strata)
        split = _drop_conflicts(split, conflict_pairs(fp, buffer))
    elif strategy == "scene":
        assert fp is not None
        split = _scene_split(gdf, fp, frac, names, rng, strata, buffer, scene, test_scenes,
                             holdout, params)
        if test_scenes is not None or holdout is not None:
            tolerance = np.inf  # the listed scenes fix the test side, not the fractions
    elif strategy == "nonoverlapping":
        assert fp is not None
        keep = nonoverlapping_subset(gdf, buffer, None, fp)
        params["kept"] = int(keep.sum())
        split = np.full(len(gdf), -1, np.int64)
        kept = np.flatnonzero(keep)
        split[kept] = _assign(np.arange(len(kept)), frac, rng,
                              None if strata is None else strata[kept])
    else:  # checkerboard: the pattern fixes the sides; fractions are the pattern's
        assert fp is not None
        if assign not in ASSIGN_MODES:
            raise ConfigError(f"unknown checkerboard assignment {assign!r}; use "
                              f"{' or '.join(ASSIGN_MODES)}")
        params.update(block_size=block_size, assign=assign, label=None,
                      origin=None if origin is None else [float(v) for v in origin])
        params.pop("stratify", None)
        split = checkerboard_codes(fp, block_size, len(names), origin, assign, buffer)
        tolerance = np.inf
    if fp is not None and fp.planar:
        params["unit"] = fp.unit
    return _finish(gdf, split, names, frac, strategy, params, tolerance,
                   strata if params.get("label") is not None else None)


def _scene_split(gdf: pd.DataFrame, fp: Footprints, frac: np.ndarray, names: list[str],
                 rng: np.random.Generator, strata: np.ndarray | None, buffer: float,
                 scene: str, test_scenes: Sequence[str] | None, holdout: str | None,
                 params: dict[str, Any]) -> np.ndarray:
    if scene not in gdf.columns:
        raise ConfigError(f"scene split needs a {scene!r} column (have {', '.join(gdf.columns)})")
    scenes = gdf[scene].astype(str).to_numpy()
    pairs = conflict_pairs(fp, buffer)
    if holdout is not None:
        if holdout != "sen12ms":
            raise ConfigError(f"unknown hold-out list {holdout!r} (known: sen12ms)")
        from geossl.datasets.sen12ms import HOLDOUT_SCENES

        test_scenes = sorted(set(scenes) & set(HOLDOUT_SCENES))
        params["holdout"] = holdout
        if not test_scenes:
            raise DataError("no SEN12MS hold-out scene in the footprints: the test side would "
                            "be empty")
    if test_scenes is None:
        # scenes overlapping each other are merged, so whole merged scenes never leak
        codes, _ = pd.factorize(scenes)
        i, j = pairs
        n = int(codes.max()) + 1
        graph = coo_matrix((np.ones(len(i), np.int8), (codes[i], codes[j])), shape=(n, n))
        _, merged = connected_components(graph, directed=False)
        return _assign(np.asarray(merged)[codes], frac, rng, strata)
    wanted = [str(s) for s in test_scenes]
    present = set(scenes)
    unknown = [s for s in wanted if s not in present]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown scene id {unknown[0]!r}{more}: not in the {scene!r} column")
    params["test_scenes"] = wanted
    is_test = np.isin(scenes, wanted)
    split = np.full(len(gdf), len(frac) - 1, np.int64)
    rest = np.flatnonzero(~is_test)
    if len(rest):
        sub = frac[:-1] / frac[:-1].sum()
        if len(sub) == 1:
            split[rest] = 0
        else:
            codes, _ = pd.factorize(scenes[rest])
            split[rest] = _assign(codes, sub, rng, None if strata is None else strata[rest])
    # scenes of different sides that overlap: drop the non-test chips of the overlap
    return _drop_conflicts(split, pairs)


def _class_fraction_error(split: np.ndarray, frac: np.ndarray,
                          strata: np.ndarray | None) -> float | None:
    """Largest gap between a class's achieved and requested fractions (kept chips only).

    Only classes expected to have at least 5 chips in the smallest split are counted (smaller
    ones cannot be split to a tolerance); None without labels or without such a class.
    """
    if strata is None:
        return None
    kept = split >= 0
    onehot = strata if strata.ndim == 2 else (
        strata[:, None] == np.arange(int(strata.max()) + 1)[None, :])
    onehot = np.asarray(onehot[kept], dtype=np.float64)
    per_split = np.stack([onehot[split[kept] == k].sum(0) for k in range(len(frac))])
    total = per_split.sum(0)
    ok = total * frac.min() >= 5
    if not ok.any():
        return None
    achieved = per_split[:, ok] / total[ok]
    return float(np.abs(achieved - frac[:, None]).max())


def _finish(gdf: pd.DataFrame, split: np.ndarray, names: list[str], frac: np.ndarray,
            strategy: str, params: dict[str, Any], tolerance: float,
            strata: np.ndarray | None = None) -> pd.Series:
    labels = np.asarray([*names, DROP], dtype=object)
    out = pd.Series(labels[np.where(split < 0, len(names), split)], index=gdf.index,
                    name="split")
    counts = np.bincount(split[split >= 0], minlength=len(names))
    for name, c in zip(names, counts):
        if c == 0:
            raise DataError(f"split {name!r} is empty with strategy {strategy!r} "
                            f"({len(gdf)} chips, fractions {frac.tolist()}): too few groups; "
                            "try another strategy, smaller blocks or a smaller buffer")
    achieved = counts / max(counts.sum(), 1)
    out.attrs["strategy"] = strategy
    out.attrs["params"] = params
    out.attrs["fractions"] = {n: float(a) for n, a in zip(names, achieved)}
    out.attrs["dropped"] = int((split < 0).sum())
    worst = float(np.abs(achieved - frac).max())
    out.attrs["fraction_error"] = worst
    out.attrs["class_fraction_error"] = _class_fraction_error(split, frac, strata)
    if worst > tolerance:
        warnings.warn(f"{strategy} split: achieved fractions {np.round(achieved, 3).tolist()} "
                      f"differ from {frac.tolist()} by {worst:.3f} (> {tolerance}); groups are "
                      "too large for these fractions", stacklevel=3)
    return out


# --------------------------------------------------------------------------------------------
# leakage report
# --------------------------------------------------------------------------------------------
def _align(gdf: pd.DataFrame, splits: pd.Series | Mapping[str, Sequence[str]]) -> np.ndarray:
    """Split name per row of ``gdf`` (None where the row is in no split)."""
    if isinstance(splits, pd.Series) and splits.index.equals(gdf.index):
        return splits.astype(object).where(splits.notna(), None).to_numpy()
    ids = chip_ids(gdf)
    if isinstance(splits, pd.Series):
        mapping = {str(k): v for k, v in splits.items()}
    else:
        mapping = {str(i): name for name, members in splits.items() for i in members}
    unknown = set(mapping) - set(ids)
    if unknown:
        raise DataError(f"{len(unknown)} split id(s) not in the footprints, e.g. "
                        f"{sorted(unknown)[0]!r}")
    return np.asarray([mapping.get(i) for i in ids], dtype=object)


def report_units(fp: Footprints) -> tuple[str, str, float]:
    """Area unit, length unit and the divisor from ``fp.unit``² to the area unit.

    ``("km2", "m", 1e6)`` for georeferenced footprints; ``("px2", "px", 1.0)`` for a pixel
    grid, ``("units2", "units", 1.0)`` for other footprints without a georeferenced CRS.
    """
    if not fp.planar:
        return "km2", "m", 1e6
    return f"{fp.unit}2", fp.unit, 1.0


def leakage_report(
    gdf: pd.DataFrame,
    splits: pd.Series | Mapping[str, Sequence[str]],
    buffer: float = 0.0,
    fp: Footprints | None = None,
) -> pd.DataFrame:
    """How much each pair of splits leaks into each other.

    For every pair of splits ``(a, b)`` (``drop`` and unassigned rows excluded): the number of
    chips of ``a`` that conflict with (share area with, or lie within ``buffer`` metres of) a chip
    of ``b``, the same for ``b``, their areas, and the summed area of the pairwise overlaps.

    Units are in the column names: km² and m for georeferenced footprints
    (``leaking_area_a_km2``, ``overlap_km2``, ``buffer_m``, ...); for footprints without a
    georeferenced CRS the CRS units: ``..._px2`` / ``buffer_px`` for a pixel grid, else
    ``..._units2`` / ``buffer_units`` (:func:`report_units`). ``attrs`` hold ``area_unit`` and
    ``length_unit``.

    Args:
        gdf: footprints.
        splits: split name per row (a :func:`make_splits` result), or ``{name: [ids]}``.
        buffer: distance in metres, or CRS units for a pixel grid (0: shared interior only).
        fp: precomputed :func:`footprints` of ``gdf``.

    Returns:
        one row per pair of splits with columns ``split_a``, ``split_b``, ``n_a``, ``n_b``,
        ``leaking_a``, ``leaking_b``, ``leaking_area_a_<A>``, ``leaking_area_b_<A>``,
        ``overlap_<A>``, ``buffer_<L>`` (``A, L`` = ``km2, m`` when georeferenced).
    """
    fp = footprints(gdf) if fp is None else fp
    area_unit, length_unit, scale = report_units(fp)
    names_per_row = _align(gdf, splits)
    valid = np.asarray([n is not None and n != DROP for n in names_per_row])
    names = list(dict.fromkeys(n for n in names_per_row[valid]))
    order = {"train": 0, "val": 1, "test": 2}
    names.sort(key=lambda n: (order.get(n, 3), n))
    code = np.full(len(gdf), -1, np.int64)
    for k, name in enumerate(names):
        code[names_per_row == name] = k
    rows = np.flatnonzero(code >= 0)
    i, j = conflict_pairs(fp, buffer, rows)
    area = fp.area
    inter = _pair_overlap(fp, i, j)
    cols = ["split_a", "split_b", "n_a", "n_b", "leaking_a", "leaking_b",
            f"leaking_area_a_{area_unit}", f"leaking_area_b_{area_unit}", f"overlap_{area_unit}",
            f"buffer_{length_unit}"]
    out = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            ab = (code[i] == a) & (code[j] == b)
            ba = (code[i] == b) & (code[j] == a)
            side_a = np.unique(np.concatenate([i[ab], j[ba]]))
            side_b = np.unique(np.concatenate([j[ab], i[ba]]))
            out.append(dict(zip(cols, [
                names[a], names[b], int((code == a).sum()), int((code == b).sum()),
                len(side_a), len(side_b), float(area[side_a].sum() / scale),
                float(area[side_b].sum() / scale), float(inter[ab | ba].sum() / scale),
                float(buffer)])))
    report = pd.DataFrame(out, columns=cols)
    report.attrs["area_unit"] = area_unit
    report.attrs["length_unit"] = length_unit
    return report


def _pair_overlap(fp: Footprints, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Intersection area (m², or CRS units²) of each pair; across CRS groups in EPSG:6933."""
    out = np.zeros(len(i))
    same = fp.group[i] == fp.group[j]
    if fp.boxes:
        bi, bj = fp.bounds[i[same]], fp.bounds[j[same]]
        w = np.minimum(bi[:, 2], bj[:, 2]) - np.maximum(bi[:, 0], bj[:, 0])
        h = np.minimum(bi[:, 3], bj[:, 3]) - np.maximum(bi[:, 1], bj[:, 1])
        out[same] = np.clip(w, 0, None) * np.clip(h, 0, None)
    else:
        out[same] = shapely.area(shapely.intersection(fp.geoms[i[same]], fp.geoms[j[same]]))
    if (~same).any() and fp.lonlat is not None:
        a = gpd.GeoSeries(fp.lonlat[i[~same]], crs=4326).to_crs(COMMON_CRS).to_numpy()
        b = gpd.GeoSeries(fp.lonlat[j[~same]], crs=4326).to_crs(COMMON_CRS).to_numpy()
        out[~same] = shapely.area(shapely.intersection(a, b))
    return out


# --------------------------------------------------------------------------------------------
# ids, files
# --------------------------------------------------------------------------------------------
def chip_ids(gdf: pd.DataFrame) -> list[str]:
    """The id of every row.

    From the ``chip_id``, ``id`` or ``patch_id`` column, a unique ``filepath`` (TorchGeo index),
    else the frame's index.

    Raises:
        DataError: the ids are not unique.
    """
    col = next((c for c in ID_COLUMNS if c in gdf.columns), None)
    if col is None and "filepath" in gdf.columns and gdf["filepath"].is_unique:
        col = "filepath"
    ids = (gdf[col] if col is not None else gdf.index.to_series()).astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise DataError(f"chip ids ({col or 'index'}) are not unique")
    return ids


def save_splits(
    path: PathLike,
    splits: pd.Series,
    gdf: pd.DataFrame | None = None,
    strategy: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Path:
    """Write splits atomically.

    JSON ``{"strategy", "params", "splits": {name: [ids]}}``, or, for a ``.parquet`` path, the
    footprints as GeoParquet with a ``split`` column.

    Args:
        path: ``.json`` or ``.parquet`` file.
        splits: split name per row of ``gdf`` (or indexed by chip id when ``gdf`` is None).
        gdf: the footprints the split was made on (required for GeoParquet).
        strategy: strategy name (default ``splits.attrs["strategy"]``).
        params: strategy parameters (default ``splits.attrs["params"]``).

    Returns:
        the written path.
    """
    path = Path(path)
    strategy = strategy or splits.attrs.get("strategy")
    params = dict(params if params is not None else splits.attrs.get("params", {}))
    ids = chip_ids(gdf) if gdf is not None else [str(i) for i in splits.index]
    names = splits.to_numpy()
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        if gdf is None:
            raise ConfigError("writing splits as GeoParquet needs the footprints (gdf)")
        out = gdf.copy()
        out["split"] = names
        out.attrs = {}
        with atomic_path(path) as tmp:
            out.to_parquet(tmp)
        return path
    groups: dict[str, list[str]] = {}
    for i, name in zip(ids, names):
        if isinstance(name, str):
            groups.setdefault(name, []).append(i)
    doc = {"strategy": strategy, "params": jsonable(params), "splits": groups}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def load_splits(path: PathLike, gdf: pd.DataFrame | None = None) -> pd.Series:
    """Read a split file written by :func:`save_splits` (JSON or GeoParquet).

    Args:
        path: the file.
        gdf: footprints to align with; every id of the file must be one of its chips.

    Returns:
        split name per row of ``gdf`` (None for rows in no split), or, without ``gdf``, per chip
        id (the Series' index); ``attrs`` hold ``strategy`` and ``params``.

    Raises:
        DataError: missing or malformed file, an id listed twice, or ids unknown to ``gdf``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("split file not found (write one with `geossl split`)", path)
    strategy: str | None = None
    params: dict[str, Any] = {}
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        try:
            frame = pd.read_parquet(path)
        except Exception as err:
            raise DataError(f"not a readable split GeoParquet ({str(err).splitlines()[0]})",
                            path) from err
        if "split" not in frame.columns:
            raise DataError("GeoParquet has no 'split' column", path)
        try:
            ids = chip_ids(frame)
        except DataError as err:
            raise DataError(str(err), path) from err
        series = pd.Series(frame["split"].to_numpy(), index=pd.Index(ids, name="chip_id"))
        series = series[series.notna()]
    else:
        try:
            doc = json.loads(path.read_text())
            groups = doc["splits"]
            if not isinstance(groups, dict):
                raise TypeError("'splits' is not an object")
            strategy, params = doc.get("strategy"), doc.get("params") or {}
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"not a split file ({err})", path) from err
        ids, names = [], []
        for name, members in groups.items():
            ids += [str(m) for m in members]
            names += [str(name)] * len(members)
        series = pd.Series(names, index=pd.Index(ids, name="chip_id"), dtype=object)
    if not series.index.is_unique:
        dup = series.index[series.index.duplicated()][0]
        raise DataError(f"chip id {dup!r} is listed more than once", path)
    series.name = "split"
    if gdf is not None:
        try:
            aligned = _align(gdf, series)
        except DataError as err:
            raise DataError(str(err), path) from err
        series = pd.Series(aligned, index=gdf.index, name="split", dtype=object)
    series.attrs["strategy"] = strategy
    series.attrs["params"] = params
    return series


def split_names(splits: pd.Series) -> dict[str, int]:
    """Number of chips per split name."""
    return {str(k): int(v) for k, v in splits.value_counts().items()}


# --------------------------------------------------------------------------------------------
# footprints of a dataset (for the CLI)
# --------------------------------------------------------------------------------------------
def read_footprints(index: PathLike | None = None, data: str | None = None,
                    root: PathLike | None = None,
                    data_args: dict[str, Any] | None = None) -> gpd.GeoDataFrame:
    """Footprints from a GeoParquet file (chip index or any footprint table) or a dataset.

    A dataset (built by :func:`geossl.datasets.registry.get_dataset`) gives its footprints by its
    ``footprints()`` (SEN12MS, BigEarthNet), by its grid of patches (``ids``, ``rows``,
    ``cols``, ``patch_size`` and ``transform``: a PolSAR scene, whose patch ids ``r<row>_c<col>``
    are what ``--splits`` later selects), or by its TorchGeo ``index`` (SSL4EO-S12, one row per
    acquisition, ids from ``filepath``).

    Args:
        index: GeoParquet with footprints (a chip index, a SEN12MS footprint cache, ...).
        data: dataset name (``--data``) whose footprints, patch grid or ``index`` gives
            footprints.
        root: dataset folder.
        data_args: more dataset constructor arguments (e.g. ``{"holdout": "train"}``: the
            SEN12MS training scenes only).

    Returns:
        the footprints.

    Raises:
        ConfigError: neither ``index`` nor ``data``/``root`` given, or a dataset without
            footprints.
        DataError: unreadable file.
    """
    if index is not None:
        path = Path(index)
        if path.is_dir():
            path = path / "index.parquet"
        if not path.is_file():
            raise DataError("footprint index not found", path)
        try:
            return gpd.read_parquet(path)
        except Exception as err:
            first = str(err).strip().splitlines()
            raise DataError(f"not a readable GeoParquet ({first[0] if first else err})",
                            path) from err
    if data is None or root is None:
        raise ConfigError("give --index FILE, or --data NAME and --root DIR")
    from geossl.datasets.base import footprints_of
    from geossl.datasets.registry import get_dataset

    found = footprints_of(get_dataset(data, root, **(data_args or {})))
    if found is None:
        raise ConfigError(f"dataset {data!r} has no footprints to split (use --index)")
    return found


def load_split_ids(path: str | Path, split: str) -> list[str]:
    """Ids of one side of a saved split (``geossl split`` JSON or GeoParquet).

    Args:
        path: split file.
        split: ``train``, ``val`` or ``test``.

    Returns:
        the chip / patch ids in that split.

    Raises:
        DataError: unreadable file.
        ConfigError: the split is absent or empty.
    """
    loaded: Any = load_splits(path)
    if isinstance(loaded, dict) and "splits" in loaded:
        loaded = loaded["splits"]
    if isinstance(loaded, dict):
        ids = loaded.get(split)
        if ids is None:
            raise ConfigError(f"split {split!r} not in {path} (has {', '.join(map(str, loaded))})")
        ids = list(ids)
    else:  # a pandas Series of split names indexed by id
        series = getattr(loaded, "splits", loaded)
        ids = [str(i) for i, s in series.items() if s == split]
    if not ids:
        raise ConfigError(f"split {split!r} of {path} is empty")
    return [str(i) for i in ids]


def split_and_save(
    out: PathLike,
    index: PathLike | None = None,
    data: str | None = None,
    root: PathLike | None = None,
    strategy: str = "overlap",
    fractions: Sequence[float] = (0.8, 0.2),
    names: Sequence[str] | None = None,
    seed: int = 0,
    buffer: float = 0.0,
    block_size: float = DEFAULT_BLOCK_SIZE,
    label: str | None = "label",
    test_scenes: Sequence[str] | None = None,
    holdout: str | None = None,
    report: bool = False,
    origin: tuple[float, float] | None = None,
    assign: str = "footprint",
    data_args: dict[str, Any] | None = None,
) -> tuple[pd.Series, pd.DataFrame | None, str]:
    """What ``geossl split`` does: read footprints, split, save, optionally report leakage.

    Returns:
        the split, the leakage report (when asked) and a text summary to print.
    """
    check_writable(out, folder=False)  # before reading and splitting
    gdf = read_footprints(index, data, root, data_args)
    fp = footprints(gdf) if report or strategy != "random" else None
    splits = make_splits(gdf, strategy, fractions, names, seed, buffer, block_size, label,
                         test_scenes=test_scenes, holdout=holdout, origin=origin,
                         assign=assign, fp=fp)
    path = save_splits(out, splits, gdf)
    counts = ", ".join(f"{k} {v}" for k, v in split_names(splits).items())
    frac = ", ".join(f"{k} {v:.3f}" for k, v in splits.attrs["fractions"].items())
    lines = [f"{strategy} split of {len(gdf)} chips: {counts} (fractions {frac}; max error "
             f"{splits.attrs['fraction_error']:.3f}) -> {path}"]
    table = None
    if report:
        fp = footprints(gdf) if fp is None else fp
        table = leakage_report(gdf, splits, buffer, fp)
        area_unit, length_unit, _ = report_units(fp)
        where = "" if not fp.planar else " (no georeferenced CRS: pixel-grid / CRS units)"
        lines.append(f"leakage report: areas in {area_unit}, distances in {length_unit}{where}")
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return splits, table, "\n".join(lines)
