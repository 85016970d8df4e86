"""Embedding products in: geossl's own and others', as an :class:`EmbeddingTable` or per chip.

:func:`load_embeddings` opens whatever a user points at:

* a zarr cube written by ``geossl embed`` (``OUT.zarr``);
* GeoParquet (a file or a folder of ``.parquet``) with an ``embedding`` list column, in
  geossl's layout or in the layouts TorchGeo reads (``EarthEmbeddings``, ``MajorTOMEmbeddings``,
  ``ClayEmbeddings``, ``EarthIndexEmbeddings``: a geometry or ``centre_lon``/``centre_lat``);
* a raster product, one band per dimension (a GeoTIFF or a folder of them): Google Satellite
  Embedding (AlphaEarth, 64 bands ``A00..A63``; int8 tiles are de-quantised as Google
  documents: ``(v / 127.5) ** 2 * sign(v)``, -128 = nodata) or Tessera (``grid_*.tiff``,
  128 bands). Each ``pool`` x ``pool`` block of pixels becomes one record (the mean of its
  valid pixels).

:func:`product_features` turns a product into one vector per chip of a dataset, keyed by chip
id (GeoParquet rows whose id is a chip id) or by footprint (the mean of the product's records
whose centre lies in the chip's footprint; for rasters, the mean of the valid pixels under
it): the feature source that ``geossl evaluate`` (and ``compare``) use beside an encoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geossl.core.errors import DataError
from geossl.embeddings.records import (
    EmbeddingTable,
    make_table,
    read_geoparquet,
    table_from_cube,
)

PathLike = str | os.PathLike[str]
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")
#: records a raster product becomes at most by default (the pooling grows to stay below)
MAX_RASTER_RECORDS = 250_000


def kind_of(path: PathLike) -> str:
    """``cube``, ``geoparquet`` or ``raster``.

    Raises:
        DataError: missing, or none of those.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("embeddings not found", p)
    if p.is_dir():
        if (p / "zarr.json").is_file() or (p / ".zgroup").is_file():
            return "cube"
        if any(p.glob("*.parquet")):
            return "geoparquet"
        if any(f.suffix.lower() in RASTER_SUFFIXES for f in p.iterdir()):
            return "raster"
        raise DataError("folder holds no embeddings (zarr cube, .parquet or GeoTIFF)", p)
    if p.suffix.lower() in (".parquet", ".geoparquet"):
        return "geoparquet"
    if p.suffix.lower() in RASTER_SUFFIXES:
        return "raster"
    raise DataError("not an embedding product (zarr cube, GeoParquet or GeoTIFF)", p)


def load_embeddings(path: PathLike, column: str = "embedding",
                    pool: int | None = None) -> EmbeddingTable:
    """Open embeddings of any supported kind as one table (see the module docstring).

    Args:
        path: zarr cube, GeoParquet file/folder, or GeoTIFF file/folder.
        column: the vector column of a GeoParquet product.
        pool: pixels per side averaged into one record of a raster product (default: 1, or
            more to keep at most :data:`MAX_RASTER_RECORDS` records).

    Raises:
        DataError: unreadable or unsupported input.
    """
    kind = kind_of(path)
    if kind == "cube":
        return table_from_cube(path)
    if kind == "geoparquet":
        return read_geoparquet(path, column=column)
    return raster_table(path, pool=pool)


# --------------------------------------------------------------------------------------------
# raster products (GSE / Tessera style)
# --------------------------------------------------------------------------------------------
def raster_files(path: PathLike) -> list[Path]:
    """The GeoTIFFs of a raster product (a file, or every GeoTIFF of a folder)."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.iterdir()
                                           if f.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise DataError("no GeoTIFF in the embedding product", p)
    return files


def read_raster_block(src: Any, window: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(D, h, w)`` float32 vectors of a raster product and the ``(h, w)`` valid mask.

    int8 rasters are Google Satellite Embedding tiles: de-quantised, -128 is nodata.
    """
    raw = src.read(window=window, boundless=True, fill_value=src.nodata or 0)
    if raw.dtype == np.int8:
        valid = (raw != -128).all(axis=0)
        v = raw.astype(np.float32) / 127.5
        data = v * np.abs(v)  # (v / 127.5) ** 2 * sign(v)
    else:
        data = raw.astype(np.float32)
        valid = np.isfinite(data).all(axis=0)
        if src.nodata is not None and np.isfinite(src.nodata):
            valid &= ~(raw == src.nodata).all(axis=0)
        valid &= (data != 0).any(axis=0)  # all-zero pixels: outside the product's coverage
    return data, valid


def _year(name: str) -> Any:
    import re

    m = re.search(r"(?<!\d)(19|20)(\d{2})(?!\d)", name)
    return f"{m.group(1)}{m.group(2)}-01-01" if m else None


def raster_table(path: PathLike, pool: int | None = None) -> EmbeddingTable:
    """A raster product as records, one per ``pool`` x ``pool`` pixel block."""
    import rasterio
    from rasterio.windows import Window

    files = raster_files(path)
    tables = []
    for f in files:
        try:
            src = rasterio.open(f)
        except Exception as err:
            raise DataError(f"unreadable raster product ({type(err).__name__})", f) from err
        with src:
            if src.crs is None:
                raise DataError("raster product has no CRS", f)
            step = pool or max(1, int(np.ceil(np.sqrt(src.width * src.height * len(files)
                                                      / MAX_RASTER_RECORDS))))
            ids, vecs, bounds = [], [], []
            for r in range(0, src.height, step):
                data, valid = read_raster_block(src, Window(0, r, src.width, step))
                for c in range(0, src.width, step):
                    ok = valid[:, c:c + step]
                    if not ok.any():
                        continue
                    block = data[:, :, c:c + step][:, ok]
                    vecs.append(block.mean(axis=1))
                    ids.append(f"{f.stem}_{r}_{c}")
                    w = Window(c, r, min(step, src.width - c), min(step, src.height - r))
                    bounds.append(rasterio.windows.bounds(w, src.transform))
            if ids:
                b = np.asarray(bounds)
                b = np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                              np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], 1)
                tables.append(make_table(ids, np.stack(vecs), b, src.crs, times=_year(f.name),
                                         scene=str(f), size=step, source=str(f)))
    if not tables:
        raise DataError("raster product holds no valid pixel", Path(path))
    if len(tables) == 1:
        return tables[0]
    import geopandas as gpd
    import pandas as pd

    frame = gpd.GeoDataFrame(pd.concat([t.frame for t in tables], ignore_index=True),
                             geometry="geometry", crs=4326)
    return EmbeddingTable(frame, np.concatenate([t.vectors for t in tables]), str(path))


# --------------------------------------------------------------------------------------------
# per-chip features (evaluate / compare)
# --------------------------------------------------------------------------------------------
def product_features(product: PathLike, ids: Sequence[str], footprints: Any = None,
                     column: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """One vector per chip from an embedding product.

    Args:
        product: zarr cube, GeoParquet or raster product (see :func:`load_embeddings`).
        ids: the chips, in the order wanted.
        footprints: GeoDataFrame of the chips' footprints with a ``chip_id`` column (any CRS),
            used for chips the product does not name.
        column: the vector column of a GeoParquet product.

    Returns:
        ``(vectors (N, D) float32, found (N,) bool)``; rows not found are zeros.

    Raises:
        DataError: unreadable product, or no chip found at all.
    """
    n = len(ids)
    kind = kind_of(product)
    if kind == "raster":
        if footprints is None:
            raise DataError("a raster embedding product needs the chips' footprints "
                            "(the dataset declares none)", Path(product))
        return _raster_features(product, ids, footprints)
    table = load_embeddings(product, column=column)
    out = np.zeros((n, table.dim), dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    by_id = {cid: i for i, cid in enumerate(table.ids)}
    for k, cid in enumerate(ids):
        i = by_id.get(str(cid))
        if i is not None:
            out[k], found[k] = table.vectors[i], True
    if not found.all() and footprints is not None:
        _by_footprint(table, ids, footprints, out, found)
    if not found.any():
        raise DataError(f"no chip of the dataset is in the embedding product ({n} chips, "
                        f"{len(table)} records; neither ids nor footprints match)",
                        Path(product))
    return out, found


def _footprints_for(ids: Sequence[str], footprints: Any) -> Any:
    fp = footprints
    if "chip_id" in fp.columns:
        fp = fp.set_index(fp["chip_id"].astype(str))
    else:
        fp = fp.set_index(fp.index.astype(str))
    return fp.reindex([str(i) for i in ids])


def _by_footprint(table: EmbeddingTable, ids: Sequence[str], footprints: Any,
                  out: np.ndarray, found: np.ndarray) -> None:
    """Fill the chips not found by id: mean of the records whose centre is in the footprint."""
    import geopandas as gpd
    from shapely import points

    fp = _footprints_for(ids, footprints).to_crs(4326)
    centres = gpd.GeoDataFrame(geometry=points(table.frame["centre_lon"],
                                               table.frame["centre_lat"]), crs=4326)
    want = fp.reset_index(drop=True)
    want["k"] = np.arange(len(want))
    want = want[~found & want.geometry.notna().to_numpy()]
    if want.empty:
        return
    hits = gpd.sjoin(centres, want[["k", "geometry"]], predicate="within")
    for k, rows in hits.groupby("k").groups.items():
        out[int(k)] = table.vectors[np.asarray(list(rows))].mean(axis=0)
        found[int(k)] = True


def _raster_features(product: PathLike, ids: Sequence[str],
                     footprints: Any) -> tuple[np.ndarray, np.ndarray]:
    import rasterio
    from rasterio.windows import from_bounds

    fp = _footprints_for(ids, footprints)
    n = len(ids)
    out: np.ndarray | None = None
    found = np.zeros(n, dtype=bool)
    for f in raster_files(product):
        with rasterio.open(f) as src:
            if out is None:
                out = np.zeros((n, src.count), dtype=np.float32)
            elif src.count != out.shape[1]:
                raise DataError(f"raster has {src.count} bands, the product's first "
                                f"{out.shape[1]}", f)
            local = fp.to_crs(src.crs)
            left, bottom, right, top = src.bounds
            for k in range(n):
                g = local.geometry.iloc[k]
                if found[k] or g is None or g.is_empty:
                    continue
                x0, y0, x1, y1 = g.bounds
                if x1 <= left or x0 >= right or y1 <= bottom or y0 >= top:
                    continue
                win = from_bounds(x0, y0, x1, y1, src.transform).round_offsets().round_lengths()
                if win.width < 1 or win.height < 1:
                    continue
                data, valid = read_raster_block(src, win)
                if valid.any():
                    out[k] = data[:, valid].mean(axis=1)
                    found[k] = True
    if out is None or not found.any():
        raise DataError(f"no chip of the dataset lies on the raster embedding product "
                        f"({n} chips)", Path(product))
    return out, found


# --------------------------------------------------------------------------------------------
# chip pictures (search mosaic, map pop-ups)
# --------------------------------------------------------------------------------------------
def chip_picture(record: Any) -> np.ndarray | None:
    """An RGB picture ``(h, w, 3)`` in [0, 1] of a chip's pixels, or ``None`` when unknown.

    Read from the chip's own file (``image``) or from its scene (``scene``, ``row``, ``col``,
    ``size``); rendered by :func:`geossl.viz.plots.composite`.
    """
    from geossl.viz import plots

    try:
        image = str(record.get("image") or "")
        if image and Path(image).is_file():
            import rasterio

            with rasterio.open(image) as src:
                data = src.read(out_dtype=np.float32)
                names = [d or f"B{i + 1}" for i, d in enumerate(src.descriptions)]
            return plots.composite(np.nan_to_num(data), names)
        scene, size = str(record.get("scene") or ""), int(record.get("size", -1))
        row, col = int(record.get("row", -1)), int(record.get("col", -1))
        if not scene or size < 1 or row < 0 or col < 0 or not Path(scene).exists():
            return None
        if scene.lower().endswith((".parquet", ".geoparquet")):
            return None
        from geossl.tiling.scenes import SceneReader, open_scene

        opened = open_scene(Path(scene))
        reader = SceneReader(opened)
        try:
            data, valid = reader.read(row, col, size, size)
        finally:
            reader.close()
        arr = np.where(valid, data.astype(np.float32), 0.0)
        return plots.composite(arr, list(opened.band_names))
    except Exception:
        return None
