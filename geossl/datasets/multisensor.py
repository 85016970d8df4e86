"""Several sensors or dates of the same places as one dataset, aligned on the ground.

Each sensor keeps its own key (:mod:`geossl.core.pairing`): ``image_s1`` ``(2, H, W)``, ``image_s2``
``(13, H, W)``, ... all on one grid (the grid of a reference sensor), plus
``image_<sensor>_t2`` (a second date), ``mask`` when a label raster is joined, and
``sensor_mask``.

* :class:`MultiSensorDataset`: a TorchGeo :class:`~torchgeo.datasets.GeoDataset` over one
  raster dataset per sensor (e.g. :class:`geossl.datasets.ssl4eo.SSL4EOS12`, SEN12MS's
  :class:`~geossl.datasets.sen12ms.SEN12MS`), TorchGeo's ``IntersectionDataset`` keyed per
  sensor. Its index is the spatial intersection of the sensors' acquisitions (dates are
  ignored for the intersection: S1 and S2 taken on different days still pair;
  ``time_tolerance`` limits the gap), so every TorchGeo sampler (random, grid, pre-chipped)
  works over it; a query reads every sensor at the same bounds, resolution and CRS.
* :class:`PairedChips`: chip indexes of several sensors (``geossl tile`` output) joined on
  footprint; the partner chips are resampled onto the reference chip's grid.

Patch datasets that already return ``image_s1`` / ``image_s2`` on one grid
(:class:`~geossl.datasets.sen12ms.SEN12MSPatches`,
:class:`~geossl.datasets.bigearthnet.BigEarthNet`) need neither;
:class:`geossl.data.pairs.PairedView` reduces any of them to a pairing mode's keys.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import torch
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from torchgeo.datasets import GeoDataset, NonGeoDataset
from torchgeo.datasets.utils import GeoSlice

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import open_raster
from geossl.core.pairing import (
    SECOND_DATE,
    SENSOR_MASK,
    check_sensor_name,
    image_key,
    sensor_mask,
)
from geossl.datasets.protocol import DeclaredDataset

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# geospatial pairing over TorchGeo raster datasets
# --------------------------------------------------------------------------------------------
def _quiet() -> contextlib.AbstractContextManager[Any]:
    # TorchGeo prints "Converting ... CRS/res" when a dataset is moved to the reference grid
    return contextlib.redirect_stdout(io.StringIO())


def _where(ds: GeoDataset) -> str:
    paths = getattr(ds, "paths", None)
    if isinstance(paths, str | os.PathLike):
        return os.fspath(paths)
    if paths is not None:
        return ",".join(os.fspath(p) for p in paths)
    return type(ds).__name__


def _times(iv: pd.IntervalIndex) -> np.ndarray:
    """Middle of each interval in ns as float; NaN for open-ended (undated) intervals."""
    # in ns whatever the index's unit (pandas 2 may store datetime64[us])
    left = pd.DatetimeIndex(iv.left).as_unit("ns").asi8.astype(np.float64)
    right = pd.DatetimeIndex(iv.right).as_unit("ns").asi8.astype(np.float64)
    undated = (iv.left == pd.Timestamp.min) | (iv.right == pd.Timestamp.max)
    return np.where(undated, np.nan, (left + right) / 2)


class MultiSensorDataset(GeoDataset):
    """Several sensors of the same places as one TorchGeo GeoDataset, keyed per sensor.

    Example::

        s1 = SSL4EOS12(root, "s1")
        s2 = SSL4EOS12(root, "s2c")
        ds = MultiSensorDataset({"s1": s1, "s2": s2}, reference="s2")
        sampler = geossl.core.compat.random_sampler(ds, size=128, length=1000)
        loader = DataLoader(ds, sampler=sampler, collate_fn=geossl.core.compat.stack_samples)
        # batch["image_s1"]: (B, 2, 128, 128), batch["image_s2"]: (B, 13, 128, 128), one grid

    Each index row is one combination of acquisitions (one per sensor, plus a second date of
    the ``temporal`` sensor) whose footprints intersect; its geometry is the intersection and
    its time interval spans those acquisitions, so a sampler's query identifies the row. Every
    sensor is read at the query's bounds on the reference grid (CRS and resolution of the
    ``reference`` sensor unless ``crs`` / ``res`` are given): the views are co-registered by
    construction. Raster datasets that are not images (``is_image = False``, e.g. SEN12MS
    ``lc``) give ``mask`` (``mask_<name>`` when there are several).
    """

    def __init__(
        self,
        datasets: Mapping[str, GeoDataset],
        reference: str | None = None,
        dates: str = "any",
        time_tolerance: str | pd.Timedelta | None = None,
        temporal: str | None = None,
        crs: CRS | None = None,
        res: float | tuple[float, float] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Intersect the sensors' indexes.

        Args:
            datasets: one GeoDataset per sensor name (``{"s1": ..., "s2": ...}``), in sensor
                order (the order of ``sensor_mask``).
            reference: sensor whose grid (CRS, resolution) every sensor is read on (default
                ``s2`` when present, else the first).
            dates: ``"any"``: for each reference acquisition, the acquisition of every other
                sensor closest in time; ``"all"``: every combination of acquisitions.
            time_tolerance: largest time gap to a reference acquisition (e.g. ``"30D"``);
                None ignores dates entirely (spatial-only intersection).
            temporal: also pair each acquisition of this sensor with a later one of the same
                place, returned as ``image_<temporal>_t2`` (all later dates with
                ``dates="all"``, the next one otherwise).
            crs: CRS to read in (default: the reference's).
            res: resolution to read at (default: the reference's).
            transforms: applied to each sample.

        Raises:
            ConfigError: no dataset, unknown reference / temporal sensor, bad ``dates``.
            DataError: the sensors do not overlap (naming both), or no two dates of
                ``temporal`` overlap.
        """
        if not datasets:
            raise ConfigError("MultiSensorDataset needs at least one dataset")
        names = list(datasets)
        for name in names:
            check_sensor_name(name)
            if not isinstance(datasets[name], GeoDataset):
                raise ConfigError(f"sensor {name!r} is not a TorchGeo GeoDataset")
        if reference is None:
            reference = "s2" if "s2" in datasets else names[0]
        if reference not in datasets:
            raise ConfigError(f"unknown reference sensor {reference!r}; have {', '.join(names)}")
        if temporal is not None and temporal not in datasets:
            raise ConfigError(f"unknown temporal sensor {temporal!r}; have {', '.join(names)}")
        if dates not in ("any", "all"):
            raise ConfigError(f"dates must be 'any' or 'all', got {dates!r}")
        self.datasets = dict(datasets)
        self.sensors = names
        self.reference = reference
        self.temporal = temporal
        self.transforms = transforms
        tol = None if time_tolerance is None else pd.Timedelta(time_tolerance).value
        ref = self.datasets[reference]
        crs = crs if crs is not None else ref.crs
        res = res if res is not None else ref.res
        with _quiet():
            for ds in self.datasets.values():
                ds.crs = crs
                ds.res = res
        self._res = (float(res), float(res)) if isinstance(res, int | float) else (
            float(res[0]), float(res[1]))
        # slots: (slot name, sensor); slot "<s>_t2" is the second date of sensor s
        self.slots: list[tuple[str, str]] = [(reference, reference)]
        self.slots += [(n, n) for n in names if n != reference]
        if temporal is not None:
            self.slots.append((f"{temporal}{SECOND_DATE}", temporal))
        base = self._frame(reference, reference)
        for slot, sensor in self.slots[1:]:
            base = self._join(base, slot, sensor, dates, tol)
        lefts = np.min(np.stack([base[f"_l_{s}"].to_numpy() for s, _ in self.slots]), 0)
        rights = np.max(np.stack([base[f"_r_{s}"].to_numpy() for s, _ in self.slots]), 0)
        self.index = gpd.GeoDataFrame(
            base.drop(columns=[c for c in base.columns if c.startswith("_t_")]),
            geometry="geometry", crs=crs,
        )
        self.index.index = pd.IntervalIndex.from_arrays(
            pd.DatetimeIndex(lefts), pd.DatetimeIndex(rights), closed="both", name="datetime")
        masks = [s for s, sensor in self.slots if not getattr(self.datasets[sensor], "is_image",
                                                                True)]
        self._mask_key = {s: ("mask" if len(masks) == 1 else f"mask_{s}") for s in masks}

    # ---- index construction ------------------------------------------------------------------
    def _frame(self, slot: str, sensor: str) -> gpd.GeoDataFrame:
        idx = self.datasets[sensor].index
        iv = pd.IntervalIndex(idx.index)
        frame = gpd.GeoDataFrame({
            f"_row_{slot}": np.arange(len(idx)),
            f"_l_{slot}": iv.left.to_numpy(),
            f"_r_{slot}": iv.right.to_numpy(),
            f"_t_{slot}": _times(iv),
        }, geometry=idx.geometry.to_numpy(), crs=idx.crs)
        frame = frame[~frame.geometry.is_empty]
        return frame

    def _join(self, base: gpd.GeoDataFrame, slot: str, sensor: str, dates: str,
              tol: int | None) -> gpd.GeoDataFrame:
        other = self._frame(slot, sensor)
        left_i, right_i = other.sindex.query(base.geometry.to_numpy(), predicate="intersects")
        a = base.iloc[left_i].reset_index(drop=True)
        b = other.iloc[right_i].drop(columns="geometry").reset_index(drop=True)
        geom = shapely.intersection(base.geometry.to_numpy()[left_i],
                                    other.geometry.to_numpy()[right_i])
        joined = gpd.GeoDataFrame(pd.concat([a.drop(columns="geometry"), b], axis=1),
                                  geometry=geom, crs=base.crs)
        keep = ~shapely.is_empty(geom) & (shapely.area(geom) > 0)
        t_ref = joined[f"_t_{self.reference}"].to_numpy()
        t_new = joined[f"_t_{slot}"].to_numpy()
        gap = np.abs(np.nan_to_num(t_new - t_ref, nan=0.0))
        if slot.endswith(SECOND_DATE):
            first = joined[f"_t_{sensor}"].to_numpy()
            keep &= np.nan_to_num(t_new, nan=-np.inf) > np.nan_to_num(first, nan=np.inf)
            gap = t_new - first
        elif tol is not None:
            keep &= gap <= tol
        joined = joined[keep].assign(_gap=gap[keep], _area=-shapely.area(geom[keep]))
        if joined.empty:
            names = f"{self.reference} ({_where(self.datasets[self.reference])}) and {sensor} " \
                    f"({_where(self.datasets[sensor])})"
            if slot.endswith(SECOND_DATE):
                raise DataError(f"temporal pairing needs two dates of {sensor} at one place; "
                                f"none found in {_where(self.datasets[sensor])}")
            if keep.any() or not len(left_i):
                why = "no spatial overlap" if not len(left_i) else "no overlap"
            else:
                why = f"no overlap within the time tolerance {pd.Timedelta(tol or 0)}"
            raise DataError(f"sensors {names} have {why}")
        if dates == "any":  # one partner per base row: the closest in time, then the one
            # sharing the most area (a patch's own partner, not a half-overlapping neighbour)
            joined = joined.sort_values(["_gap", "_area"], kind="stable")
            key = [c for c in joined.columns if c.startswith("_row_") and c != f"_row_{slot}"]
            joined = joined.drop_duplicates(subset=key, keep="first").sort_index()
        return joined.drop(columns=["_gap", "_area"]).reset_index(drop=True)

    # ---- sampling ------------------------------------------------------------------------------
    def _row(self, x: slice, y: slice, t: slice) -> int:
        box = shapely.box(x.start, y.start, x.stop, y.stop)
        hits = self.index.sindex.query(box, predicate="intersects")
        if not len(hits):
            raise IndexError(f"query {(x, y, t)} not found in index with bounds {self.bounds}")
        iv = pd.IntervalIndex(self.index.index[hits])
        t0, t1 = pd.Timestamp(t.start), pd.Timestamp(t.stop)
        ok = (iv.left <= t1) & (iv.right >= t0)
        hits, iv = hits[ok], iv[ok]
        if not len(hits):
            raise IndexError(f"query {(x, y, t)} not found in index with bounds {self.bounds}")
        exact = (iv.left == t0) & (iv.right == t1)
        area = shapely.area(shapely.intersection(self.index.geometry.to_numpy()[hits], box))
        best = np.lexsort((hits, -area, ~np.asarray(exact)))[0]
        return int(hits[best])

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Read every sensor at the query's bounds on the reference grid.

        Returns:
            ``image_<sensor>`` (float32 ``(C, H, W)``, same ``H, W`` for all),
            ``image_<temporal>_t2``, ``mask`` for label rasters, ``sensor_mask`` (ones),
            ``crs`` and ``bounds`` (the resolved query).

        Raises:
            IndexError: the query lies outside the index.
        """
        x, y, t = self._disambiguate_slice(query)
        xres, yres = self.res
        x = slice(x.start, x.stop, x.step or xres)
        y = slice(y.start, y.stop, y.step or yres)
        row = self.index.iloc[self._row(x, y, t)]
        sample: dict[str, Any] = {}
        for slot, sensor in self.slots:
            q = (x, y, slice(row[f"_l_{slot}"], row[f"_r_{slot}"]))
            sub = self.datasets[sensor][q]
            if slot in self._mask_key:
                sample[self._mask_key[slot]] = sub["mask"]
            else:
                sample[image_key(sensor, slot != sensor)] = sub["image"].float()
        sample[SENSOR_MASK] = torch.ones(len(self.sensors), dtype=torch.float32)
        sample["crs"] = self.crs
        sample["bounds"] = (x, y, t)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def __str__(self) -> str:
        return (f"MultiSensorDataset({', '.join(self.sensors)}; reference {self.reference})\n"
                f"    bbox: {self.bounds}\n    size: {len(self)}")


# --------------------------------------------------------------------------------------------
# chip indexes of several sensors
# --------------------------------------------------------------------------------------------
class PairedChips(DeclaredDataset, NonGeoDataset):
    """Chips of several sensors joined on footprint, resampled onto the reference chip's grid.

    Each index is a chip index (``geossl tile`` / :mod:`geossl.tiling.chip_index`: ``chip_id``,
    ``path``, ``crs``, ``minx .. maxy``, ``datetime`` ...). A reference chip pairs with the chip
    of another sensor whose bounds match it within ``tolerance`` metres on every side (in the
    reference chip's CRS), the closest in time when several do. Samples carry
    ``image_<sensor>`` (float32, the reference chip's height and width),
    ``image_<temporal>_t2`` (a later chip of the same footprint), ``sensor_mask``, ``id`` (the
    reference ``chip_id``), ``crs`` and ``bounds`` (float64 ``(4,)``).

    A :class:`~geossl.datasets.protocol.DeclaredDataset` (built by
    :func:`geossl.datasets.chips.paired_chips`, not by the registry): it declares ``sensors``
    (the indexes' sensors, the order of ``sensor_mask``) and ``ids`` (the reference chip
    ids, in sample order).
    """

    #: the sensors of the indexes, in order (set per instance)
    sensors: tuple[str, ...] = ()
    #: the reference chip ids, in sample order
    ids: list[str]

    def __init__(
        self,
        indexes: Mapping[str, gpd.GeoDataFrame | PathLike],
        reference: str | None = None,
        tolerance: float | None = None,
        temporal: str | None = None,
        require: str = "all",
        roots: Mapping[str, PathLike] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Join the indexes.

        Args:
            indexes: one chip index (GeoDataFrame or GeoParquet path) per sensor, in order.
            reference: sensor whose chips define the samples and the grid (default ``s2`` or
                the first).
            tolerance: largest bound difference in metres (default: one reference pixel).
            temporal: also pair each chip of this sensor with a later chip of the same
                footprint (``image_<temporal>_t2``).
            require: ``"all"``: keep reference chips with a partner in every sensor;
                ``"reference"``: keep every reference chip, a missing sensor is zero-filled and
                flagged 0 in ``sensor_mask`` (partial fusion).
            roots: folder each index's ``path`` column is relative to (default
                ``gdf.attrs["root"]``, set by :func:`geossl.tiling.chip_index.read_index`).
            transforms: applied to each sample.

        Raises:
            ConfigError: unknown reference / temporal sensor, bad ``require``.
            DataError: unreadable index, or no chip pairs (naming both indexes).
        """
        from geossl.tiling import chip_index

        if not indexes:
            raise ConfigError("PairedChips needs at least one chip index")
        names = list(indexes)
        reference = reference or ("s2" if "s2" in indexes else names[0])
        if reference not in indexes:
            raise ConfigError(f"unknown reference sensor {reference!r}; have {', '.join(names)}")
        if temporal is not None and temporal not in indexes:
            raise ConfigError(f"unknown temporal sensor {temporal!r}; have {', '.join(names)}")
        if require not in ("all", "reference"):
            raise ConfigError(f"require must be 'all' or 'reference', got {require!r}")
        self.sensors = tuple(names)
        self.reference = reference
        self.temporal = temporal
        self.transforms = transforms
        self.frames: dict[str, gpd.GeoDataFrame] = {}
        self.roots: dict[str, Path] = {}
        self.where: dict[str, str] = {}
        for name, idx in indexes.items():
            if isinstance(idx, gpd.GeoDataFrame | pd.DataFrame):
                gdf = idx.reset_index(drop=True)
                where = f"{name} index"
            else:
                gdf = chip_index.read_index(idx).reset_index(drop=True)
                where = os.fspath(idx)
            root = (roots or {}).get(name)
            if root is None:
                attrs = idx.attrs if isinstance(idx, pd.DataFrame) else gdf.attrs
                root = attrs.get("root")
            if root is None:
                raise ConfigError(f"chip index of {name!r} has no root folder; pass roots=")
            self.frames[name] = gdf
            self.roots[name] = Path(root)
            self.where[name] = where
        ref = self.frames[reference]
        self.channels = {n: len(str(f["bands"].iloc[0]).split(",")) if "bands" in f.columns
                         and len(f) else 1 for n, f in self.frames.items()}
        res = ref["res"].to_numpy(np.float64) if "res" in ref.columns else np.ones(len(ref))
        self.tolerance = tolerance
        tol = res * 0.999 if tolerance is None else np.full(len(ref), float(tolerance))
        pairs: dict[str, np.ndarray] = {}
        for name in names:
            if name == reference:
                continue
            pairs[name] = self._match(ref, self.frames[name], tol, later=False)
            if require == "all" and not (pairs[name] >= 0).any():
                raise DataError(f"no chip of {name} ({self.where[name]}) matches a chip of "
                                f"{reference} ({self.where[reference]}): the sensors do not "
                                "overlap")
        if temporal is not None:
            first = np.arange(len(ref)) if temporal == reference else pairs[temporal]
            pairs[f"{temporal}{SECOND_DATE}"] = self._match(ref, self.frames[temporal], tol,
                                                            later=True, after=first)
        keep = np.ones(len(ref), dtype=bool)
        if require == "all":
            for p in pairs.values():
                keep &= p >= 0
        elif temporal is not None:
            keep &= pairs[f"{temporal}{SECOND_DATE}"] >= 0
        if not keep.any():
            raise DataError(f"no {reference} chip ({self.where[reference]}) has a partner in "
                            f"every sensor ({', '.join(self.where[n] for n in names)})")
        self.rows = np.flatnonzero(keep)
        self.pairs = {k: v[keep] for k, v in pairs.items()}
        self.ids = ref["chip_id"].astype(str).to_numpy()[self.rows].tolist()

    @staticmethod
    def _bounds_in(frame: gpd.GeoDataFrame, crs: str) -> np.ndarray:
        b = frame[["minx", "miny", "maxx", "maxy"]].to_numpy(np.float64).copy()
        other = frame["crs"].astype(str).to_numpy() != crs
        if other.any():
            geo = gpd.GeoSeries(frame.geometry.to_numpy()[other], crs=frame.crs).to_crs(crs)
            b[other] = shapely.bounds(geo.to_numpy())
        return b

    def _match(self, ref: gpd.GeoDataFrame, other: gpd.GeoDataFrame, tol: np.ndarray,
               later: bool, after: np.ndarray | None = None) -> np.ndarray:
        """Position in ``other`` of the partner of every reference chip (-1: none)."""
        out = np.full(len(ref), -1, dtype=np.int64)
        t_ref = _chip_times(ref)
        t_other = _chip_times(other)
        for crs in ref["crs"].astype(str).unique():
            rows = np.flatnonzero(ref["crs"].astype(str).to_numpy() == crs)
            rb = ref[["minx", "miny", "maxx", "maxy"]].to_numpy(np.float64)[rows]
            ob = self._bounds_in(other, crs)
            tree = shapely.STRtree(shapely.box(*ob.T))
            qi, oi = tree.query(shapely.box(*rb.T), predicate="intersects")
            diff = np.abs(rb[qi] - ob[oi]).max(1)
            ok = diff <= tol[rows][qi]
            if later:
                base_t = t_ref[rows][qi] if after is None else np.where(
                    after[rows][qi] >= 0, t_other[np.maximum(after[rows][qi], 0)], np.nan)
                ok &= t_other[oi] > base_t
            qi, oi = qi[ok], oi[ok]
            gap = np.abs(np.nan_to_num(t_other[oi] - t_ref[rows][qi], nan=0.0))
            order = np.lexsort((oi, gap, qi))
            qi, oi = qi[order], oi[order]
            first = np.unique(qi, return_index=True)[1]
            out[rows[qi[first]]] = oi[first]
        return out

    def __len__(self) -> int:
        """Number of paired samples."""
        return len(self.rows)

    def _path(self, sensor: str, pos: int) -> Path:
        return self.roots[sensor] / str(self.frames[sensor]["path"].iloc[pos])

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Read the reference chip and its partners on the reference chip's grid.

        Raises:
            DataError: a chip file is missing or unreadable.
        """
        r = int(self.rows[index])
        ref_path = self._path(self.reference, r)
        with open_raster(ref_path) as src:
            grid = (src.crs, src.transform, src.width, src.height)
            ref_img = src.read(out_dtype=np.float32)
        sample: dict[str, Any] = {}
        present = []
        slots = [(s, s) for s in self.sensors]
        if self.temporal is not None:
            slots.append((f"{self.temporal}{SECOND_DATE}", self.temporal))
        for slot, sensor in slots:
            if slot == self.reference:
                img = ref_img
            else:
                pos = int(self.pairs[slot][index])
                if pos < 0:
                    img = np.zeros((self.channels[sensor], grid[3], grid[2]), np.float32)
                else:
                    img = _read_on_grid(self._path(sensor, pos), *grid)
            if slot in self.sensors:
                present.append(slot == self.reference or int(self.pairs[slot][index]) >= 0)
            sample[image_key(sensor, slot != sensor)] = torch.from_numpy(img)
        sample[SENSOR_MASK] = sensor_mask(present)
        sample["id"] = self.ids[index]
        sample["crs"] = str(self.frames[self.reference]["crs"].iloc[r])
        b = self.frames[self.reference][["minx", "miny", "maxx", "maxy"]].iloc[r]
        sample["bounds"] = torch.tensor(b.to_numpy(np.float64))
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


def _chip_times(frame: pd.DataFrame) -> np.ndarray:
    if "datetime" not in frame.columns:
        return np.full(len(frame), np.nan)
    t = pd.to_datetime(frame["datetime"], utc=True, errors="coerce")
    ns = t.dt.as_unit("ns").astype("int64").astype(np.float64)
    return np.where(t.isna(), np.nan, ns)


def _read_on_grid(path: Path, crs: CRS, transform: Any, width: int, height: int) -> np.ndarray:
    """All bands of a raster resampled (bilinear) onto the given grid; 0 outside the file."""
    with open_raster(path) as src:
        if src.crs == crs and src.transform.almost_equals(transform) and \
                (src.width, src.height) == (width, height):
            return np.asarray(src.read(out_dtype=np.float32))
        try:
            with WarpedVRT(src, crs=crs, transform=transform, width=width, height=height,
                           resampling=Resampling.bilinear, nodata=0,
                           dtype="float32") as vrt:
                return np.asarray(vrt.read(out_dtype=np.float32))
        except rasterio.errors.RasterioError as err:
            raise DataError(f"cannot resample onto the reference grid ({err})", path) from err
