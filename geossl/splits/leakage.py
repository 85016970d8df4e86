"""The leakage report: how much of each pair of splits overlaps, or lies within a buffer.

Part of :mod:`geossl.splits` (see its docstring for the strategies and the metric rules).
"""


from __future__ import annotations

from collections.abc import Mapping, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geossl.core.errors import DataError
from geossl.splits.assign import DROP
from geossl.splits.footprints import COMMON_CRS, Footprints, chip_ids, conflict_pairs, footprints


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


