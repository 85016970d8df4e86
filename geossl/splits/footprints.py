"""Metric footprints of chips and the conflict graph (which chips overlap or lie within a buffer).

Part of :mod:`geossl.splits` (see its docstring for the strategies and the metric rules).
"""


from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geossl.core.errors import ConfigError, DataError
from geossl.tiling.chip_index import lonlat_centroids

PathLike = str | os.PathLike[str]
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
        epsg = _utm_zones(*lonlat_centroids(lonlat))  # right across the antimeridian too
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
    lon, _ = lonlat_centroids(fp.lonlat[i])
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
