"""The embedding record: chip id, footprint, CRS, time, vector, one row per chip.

One schema, :class:`EmbeddingTable`, read and written by everything that handles embeddings:
the zarr cube of ``geossl embed`` is turned into it (:func:`table_from_cube`), it is written as
GeoParquet (:func:`write_geoparquet`) and read back from GeoParquet files written by geossl or
by others (:func:`read_geoparquet`), and the search index and the map read it.

GeoParquet columns (one row per chip), readable as-is by TorchGeo's ``EarthEmbeddings`` and
``MajorTOMEmbeddings`` (they read ``embedding``, ``centre_lon``, ``centre_lat`` and
``timestamp``), geopandas and duckdb:

============== ===============================================================================
``chip_id``    str, unique
``embedding``  list<float32>, the vector
``geometry``   footprint polygon, EPSG:4326 (WKB, GeoParquet metadata)
``centre_lon`` float64, degrees
``centre_lat`` float64, degrees
``timestamp``  UTC timestamp of the scene, null when the scene has none
``crs``        the chip's native CRS (e.g. ``EPSG:32633``)
``minx`` ...   ``minx, miny, maxx, maxy``: footprint bounds in the native CRS
``scene``      the scene (or chip index) the chip was cut from
``row, col``   pixel offset of the chip in the scene grid (-1 when unknown)
``size``       chip size in pixels of the scene grid (-1 when unknown)
``image``      path of the chip's own raster when it has one (a ``geossl tile`` chip), else ""
============== ===============================================================================
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geossl.core.errors import DataError
from geossl.core.io import atomic_path

PathLike = str | os.PathLike[str]

#: columns of a geossl embedding GeoParquet besides ``embedding`` and ``geometry``
META_COLUMNS = ("chip_id", "centre_lon", "centre_lat", "timestamp", "crs", "minx", "miny",
                "maxx", "maxy", "scene", "row", "col", "size", "image")
#: columns that name a chip in others' products, tried in this order
ID_COLUMNS = ("chip_id", "id", "unique_id", "grid_cell", "product_id", "patch_id")


@dataclasses.dataclass
class EmbeddingTable:
    """Embeddings of chips with their place and time.

    Attributes:
        frame: GeoDataFrame, one row per chip (:data:`META_COLUMNS` + ``geometry`` in
            EPSG:4326), indexed ``0..N-1``.
        vectors: ``(N, D)`` float32, row ``i`` is chip ``frame.iloc[i]``.
        source: where the table was read from (for messages and index keys).
        left_out: windows of the cube it was made from (:func:`table_from_cube`) that had
            no finite vector (no valid pixel) and are not in it.
    """

    frame: Any  # geopandas.GeoDataFrame
    vectors: np.ndarray
    source: str = ""
    #: windows of the source cube without a finite vector, not in the table
    left_out: int = 0

    def __post_init__(self) -> None:
        """Check that frame and vectors agree."""
        if len(self.frame) != len(self.vectors):
            raise ValueError(f"{len(self.frame)} rows but {len(self.vectors)} vectors")

    def __len__(self) -> int:
        """Number of chips."""
        return len(self.vectors)

    @property
    def dim(self) -> int:
        """Vector length."""
        return int(self.vectors.shape[1])

    @property
    def ids(self) -> list[str]:
        """Chip ids, in row order."""
        return [str(v) for v in self.frame["chip_id"]]

    def subset(self, rows: Any) -> EmbeddingTable:
        """The rows ``rows`` (positions or a boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        frame = self.frame.iloc[rows].reset_index(drop=True)
        return EmbeddingTable(frame, self.vectors[rows], self.source)

    def content_hash(self) -> str:
        """A hash of the ids and vectors (changes whenever an embedding changes)."""
        import hashlib

        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.vectors, dtype=np.float32).tobytes())
        h.update("\n".join(self.ids).encode())
        return h.hexdigest()[:16]


def _frame(rows: dict[str, Any], geometry: Any, crs: Any = "EPSG:4326") -> Any:
    import geopandas as gpd

    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry=geometry, crs=crs)


def _utc(values: Any) -> pd.Series:
    """Timestamps as a UTC ``datetime64`` series (NaT where unknown)."""
    s = pd.to_datetime(pd.Series(values), utc=True, errors="coerce")
    return s.astype("datetime64[us, UTC]")


def make_table(ids: Sequence[str], vectors: np.ndarray, bounds: np.ndarray, crs: Any, *,
               times: Any = None, scene: str = "", rows: Any = None, cols: Any = None,
               size: Any = None, images: Sequence[str] | None = None,
               source: str = "") -> EmbeddingTable:
    """Build a table from native-CRS bounds: footprints and centres go to EPSG:4326.

    Args:
        ids: chip ids (unique).
        vectors: ``(N, D)``.
        bounds: ``(N, 4)`` ``minx, miny, maxx, maxy`` in ``crs``.
        crs: native CRS of every chip.
        times: one time per chip (or one for all), ``None`` when unknown.
        scene: scene the chips come from.
        rows: pixel rows of the chips in the scene grid.
        cols: pixel columns.
        size: chip size in pixels.
        images: path of each chip's raster ("" when none).
        source: where the vectors come from.
    """
    import geopandas as gpd
    from pyproj import CRS, Transformer
    from shapely import box

    n = len(ids)
    bounds = np.asarray(bounds, dtype=np.float64).reshape(n, 4)
    native = CRS.from_user_input(crs)
    boxes = gpd.GeoSeries(box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3]),
                          crs=native)
    # densify so that a UTM square stays close to its true shape in degrees
    footprints = boxes.segmentize(max(1e-9, float(np.nanmax(bounds[:, 2] - bounds[:, 0]))
                                      / 4 if n else 1.0)).to_crs(4326)
    to_ll = Transformer.from_crs(native, 4326, always_xy=True)
    lon, lat = to_ll.transform((bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2)

    def ints(v: Any) -> np.ndarray:
        return np.full(n, -1, dtype=np.int64) if v is None else np.broadcast_to(
            np.asarray(v, dtype=np.int64), (n,)).copy()

    if times is None or np.ndim(times) == 0:
        times = [times] * n
    data = {
        "chip_id": [str(i) for i in ids], "centre_lon": np.asarray(lon, dtype=np.float64),
        "centre_lat": np.asarray(lat, dtype=np.float64), "timestamp": _utc(times).to_numpy(),
        "crs": native.to_string(), "minx": bounds[:, 0], "miny": bounds[:, 1],
        "maxx": bounds[:, 2], "maxy": bounds[:, 3], "scene": scene, "row": ints(rows),
        "col": ints(cols), "size": ints(size),
        "image": list(images) if images is not None else [""] * n,
    }
    frame = _frame(data, footprints.to_numpy())
    frame["timestamp"] = _utc(times).to_numpy()
    return EmbeddingTable(frame, np.ascontiguousarray(vectors, dtype=np.float32), source)


# --------------------------------------------------------------------------------------------
# the zarr cube of ``geossl embed``
# --------------------------------------------------------------------------------------------
def _attr(attrs: dict[str, Any], name: str) -> Any:
    v = attrs.get("geossl_" + name)
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def table_from_cube(cube: PathLike) -> EmbeddingTable:
    """The chips of an embedding cube written by ``geossl embed``, one record per window.

    A window of a scene grid gets the id ``<scene name>_<row>_<col>`` (its pixel offset in the
    scene grid), its footprint (``size`` x ``size`` pixels around the cube cell's centre) and
    the scene's acquisition time when its name or metadata has one. A cube made from a
    ``geossl tile`` chip index takes the chips' own ids, times and files from that index.
    Windows without an embedding (NaN) are left out, counted in ``left_out``.

    Raises:
        DataError: not a geossl embedding cube.
    """
    import rioxarray  # noqa: F401 - registers the .rio accessor
    import xarray as xr

    path = Path(cube)
    try:
        ds = xr.open_zarr(path, consolidated=True, decode_coords="all")
        emb = ds["embedding"]
    except Exception as err:
        raise DataError(f"not an embedding cube ({type(err).__name__})", path) from err
    size, stride = _attr(ds.attrs, "size"), _attr(ds.attrs, "stride")
    scene = str(_attr(ds.attrs, "scene") or "")
    if not isinstance(size, int) or not isinstance(stride, int):
        raise DataError("embedding cube lacks geossl_size / geossl_stride attributes", path)
    crs = ds.rio.crs
    t = ds.rio.transform()
    values = np.asarray(emb.values, dtype=np.float32)  # (D, ny, nx)
    _, ny, nx = values.shape
    ii, jj = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    ok = np.isfinite(values).all(axis=0)
    ii, jj = ii[ok], jj[ok]
    vectors = values[:, ii, jj].T
    cx, cy = ds["x"].values[jj], ds["y"].values[ii]
    px, py = abs(t.a) / stride, abs(t.e) / stride
    half_x, half_y = size * px / 2, size * py / 2
    bounds = np.stack([cx - half_x, cy - half_y, cx + half_x, cy + half_y], axis=1)
    if scene.lower().endswith((".parquet", ".geoparquet")):
        table = _chip_index_records(Path(scene), vectors, bounds, crs, ii * stride, jj * stride,
                                    size, path)
    else:
        name = Path(scene).name.split(".")[0] if scene else path.name.removesuffix(".zarr")
        ids = [f"{name}_{r}_{c}" for r, c in zip(ii * stride, jj * stride)]
        table = make_table(ids, vectors, bounds, crs, times=_scene_time(scene), scene=scene,
                           rows=ii * stride, cols=jj * stride, size=size, source=str(path))
    table.left_out = int((~ok).sum())
    return table


def _scene_time(scene: str) -> Any:
    """The scene's acquisition time (``None`` when it has none or cannot be opened)."""
    from geossl.tiling.scenes import open_scene, parse_datetime

    if not scene:
        return None
    p = Path(scene)
    try:
        return open_scene(p).datetime if p.exists() else parse_datetime(p.name)
    except Exception:
        return parse_datetime(p.name)


def _chip_index_records(index: Path, vectors: np.ndarray, bounds: np.ndarray, crs: Any,
                        rows: np.ndarray, cols: np.ndarray, size: int,
                        cube: Path) -> EmbeddingTable:
    """Records of a cube made from a chip index: ids, times and files from the index."""
    from pyproj import CRS

    try:
        df = pd.read_parquet(index)
    except Exception as err:
        raise DataError(f"chip index of the cube is unreadable ({type(err).__name__})",
                        index) from err
    want = CRS.from_user_input(crs)
    if "crs" in df.columns:
        df = df[[CRS.from_user_input(c) == want for c in df["crs"].astype(str)]]
    ccx = ((df["minx"] + df["maxx"]) / 2).to_numpy()
    ccy = ((df["miny"] + df["maxy"]) / 2).to_numpy()
    res = (bounds[0, 2] - bounds[0, 0]) / max(1, size)
    ids, images, times, keep = [], [], [], []
    for k, (bx, by) in enumerate(zip((bounds[:, 0] + bounds[:, 2]) / 2,
                                     (bounds[:, 1] + bounds[:, 3]) / 2)):
        hit = np.flatnonzero((np.abs(ccx - bx) < res / 2) & (np.abs(ccy - by) < res / 2))
        if len(hit) == 0:
            continue
        row = df.iloc[int(hit[0])]
        keep.append(k)
        ids.append(str(row["chip_id"]))
        images.append(str((index.parent / str(row["path"])).resolve()) if "path" in row else "")
        times.append(row["datetime"] if "datetime" in row else None)
    keep_a = np.asarray(keep, dtype=np.int64)
    return make_table(ids, vectors[keep_a], bounds[keep_a], crs, times=times, scene=str(index),
                      rows=rows[keep_a], cols=cols[keep_a], size=size, images=images,
                      source=str(cube))


# --------------------------------------------------------------------------------------------
# GeoParquet
# --------------------------------------------------------------------------------------------
def write_geoparquet(table: EmbeddingTable, path: PathLike) -> Path:
    """Write the table as GeoParquet (``embedding`` as a float32 list column), atomically."""
    dest = Path(path)
    frame = table.frame.copy()
    vec = np.ascontiguousarray(table.vectors, dtype=np.float32)
    frame.insert(1, "embedding", list(vec))  # numpy float32 rows -> list<float32>
    with atomic_path(dest) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd", write_covering_bbox=False)
    return dest


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
        if not files:
            raise DataError("folder holds no .parquet file", path)
        return files
    if not path.is_file():
        raise DataError("embeddings not found", path)
    return [path]


def read_geoparquet(path: PathLike, column: str = "embedding") -> EmbeddingTable:
    """Read embeddings from GeoParquet (geossl's or another product's layout).

    Accepts a file or a folder of ``.parquet`` files with a list column ``column`` and either a
    GeoParquet geometry (footprints, or points) or ``centre_lon``/``centre_lat``; the chip id is
    the first of :data:`ID_COLUMNS` present, else the row number. Missing geossl columns are
    filled (``timestamp`` NaT, native CRS EPSG:4326, ...).

    Raises:
        DataError: unreadable file, no ``column``, no position, vectors of different lengths.
    """
    import geopandas as gpd
    import pyarrow.parquet as pq
    from shapely import points

    src = Path(path)
    frames, vecs = [], []
    for f in _parquet_files(src):
        try:
            names = pq.read_schema(f).names
        except Exception as err:
            raise DataError(f"not a Parquet file ({type(err).__name__})", f) from err
        if column not in names:
            raise DataError(f"GeoParquet has no '{column}' column (columns: "
                            f"{', '.join(n for n in names if not n.startswith('__'))})", f)
        try:
            df: Any = gpd.read_parquet(f)
        except Exception:
            df = pd.read_parquet(f)
        if not isinstance(df, gpd.GeoDataFrame):
            if {"centre_lon", "centre_lat"} <= set(df.columns):
                df = gpd.GeoDataFrame(df, geometry=points(df["centre_lon"], df["centre_lat"]),
                                      crs=4326)
            elif {"lon", "lat"} <= set(df.columns):
                df = gpd.GeoDataFrame(df, geometry=points(df["lon"], df["lat"]), crs=4326)
            else:
                raise DataError("embeddings have neither a geometry nor centre_lon/centre_lat",
                                f)
        if df.crs is None:
            df = df.set_crs(4326)
        elif not df.crs.equals(4326) and df.crs.to_epsg() != 4326:
            df = df.to_crs(4326)
        try:
            vec = np.stack([np.asarray(v, dtype=np.float32) for v in df[column]])
        except ValueError as err:
            raise DataError(f"'{column}' vectors have different lengths", f) from err
        if vec.ndim != 2:
            raise DataError(f"'{column}' is not a list column of numbers", f)
        frames.append(df.drop(columns=[column]))
        vecs.append(vec)
    dims = {v.shape[1] for v in vecs}
    if len(dims) > 1:
        raise DataError(f"files hold vectors of different lengths {sorted(dims)}", src)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = gpd.GeoDataFrame(frame, geometry=frame.geometry.name, crs=4326).reset_index(
        drop=True)
    _fill(frame)
    return EmbeddingTable(frame, np.concatenate(vecs), str(src))


def _fill(frame: Any) -> None:
    """Add the geossl columns another product lacks, in place."""
    n = len(frame)
    idc = next((c for c in ID_COLUMNS if c in frame.columns), None)
    frame["chip_id"] = (frame[idc].astype(str) if idc is not None
                        else pd.Series([str(i) for i in range(n)], index=frame.index))
    if "centre_lon" not in frame.columns or "centre_lat" not in frame.columns:
        c = frame.geometry.representative_point()
        frame["centre_lon"], frame["centre_lat"] = c.x.to_numpy(), c.y.to_numpy()
    if "timestamp" not in frame.columns:
        frame["timestamp"] = pd.Series([pd.NaT] * n, index=frame.index, dtype="datetime64[us, UTC]")
    else:
        frame["timestamp"] = _utc(frame["timestamp"]).to_numpy()
    if "crs" not in frame.columns:
        frame["crs"] = "EPSG:4326"
        b = frame.geometry.bounds
        for k in ("minx", "miny", "maxx", "maxy"):
            frame[k] = b[k].to_numpy()
    for k, default in (("scene", ""), ("row", -1), ("col", -1), ("size", -1), ("image", "")):
        if k not in frame.columns:
            frame[k] = default


# --------------------------------------------------------------------------------------------
# COG
# --------------------------------------------------------------------------------------------
def write_cog(cube: PathLike, path: PathLike, block_rows: int = 256) -> Path:
    """Write the cube as a Cloud-Optimised GeoTIFF, one band per dimension, atomically.

    Bands are float32 named ``emb_000``, ``emb_001``, ... (band descriptions, as QGIS shows
    them), NaN is nodata, pixels are the cube's windows (its CRS and transform); averaged
    overviews are built by GDAL's COG driver where the raster is larger than one block.
    """
    import rasterio
    import rasterio.shutil
    import rioxarray  # noqa: F401
    import xarray as xr
    from rasterio.windows import Window

    ds = xr.open_zarr(cube, consolidated=True, decode_coords="all")
    emb = ds["embedding"]
    n_feat, ny, nx = emb.shape
    profile = {"driver": "GTiff", "height": ny, "width": nx, "count": n_feat,
               "dtype": "float32", "crs": ds.rio.crs, "transform": ds.rio.transform(),
               "nodata": float("nan"), "tiled": True, "blockxsize": 256, "blockysize": 256,
               "interleave": "band", "BIGTIFF": "IF_SAFER"}
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".gtiff.part", dir=dest.parent)
    os.close(fd)
    raw = Path(name)  # a tiled GeoTIFF first: GDAL's COG driver only copies a whole raster
    try:
        with rasterio.open(raw, "w", **profile) as dst:
            for r0 in range(0, ny, block_rows):
                r1 = min(ny, r0 + block_rows)
                dst.write(np.asarray(emb.isel(y=slice(r0, r1)).values, dtype=np.float32),
                          window=Window(0, r0, nx, r1 - r0))
            dst.descriptions = tuple(f"emb_{i:03d}" for i in range(n_feat))
            dst.update_tags(geossl_source=str(cube))
        with atomic_path(dest) as tmp:
            rasterio.shutil.copy(raw, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="3",
                                 OVERVIEWS="AUTO", RESAMPLING="AVERAGE", BLOCKSIZE="256",
                                 BIGTIFF="IF_SAFER")
    finally:
        raw.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------------------------
# formats of ``geossl embed --format``
# --------------------------------------------------------------------------------------------
FORMATS = ("zarr", "geoparquet", "cog")


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """``"zarr,geoparquet"`` -> ``["zarr", "geoparquet"]`` (checked, de-duplicated).

    Raises:
        ConfigError: an unknown format or none at all.
    """
    from geossl.core.errors import ConfigError

    if formats is None:
        return ["zarr"]
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = list(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ConfigError(f"--format: unknown format {bad[0] if bad else '(empty)'!r}; "
                          f"choose from {', '.join(FORMATS)} (comma-separated)")
    return out


def product_paths(cube: PathLike, formats: Sequence[str]) -> dict[str, Path]:
    """Where each format goes: ``BASE.zarr``, ``BASE.parquet``, ``BASE.tif`` beside the cube."""
    p = Path(cube)
    base = p.with_name(p.name.removesuffix(".zarr"))
    names = {"zarr": p, "geoparquet": base.with_name(base.name + ".parquet"),
             "cog": base.with_name(base.name + ".tif")}
    return {f: names[f] for f in formats}


@dataclasses.dataclass
class ProductsWritten:
    """What :func:`write_products` wrote.

    Attributes:
        paths: format -> path (``zarr``: the cube itself).
        rows: rows of the GeoParquet (``None`` when not asked).
        left_out: windows of the cube without a finite vector (no valid pixel: NaN), left out
            of the GeoParquet rather than written as NaN rows (in the COG they are nodata).
    """

    paths: dict[str, Path]
    rows: int | None = None
    left_out: int = 0


def write_products(cube: PathLike, formats: Sequence[str]) -> ProductsWritten:
    """Write the GeoParquet and/or COG of a finished cube (the zarr cube is the cube itself)."""
    paths = product_paths(cube, formats)
    done = ProductsWritten(paths)
    if "geoparquet" in paths:
        table = table_from_cube(cube)
        write_geoparquet(table, paths["geoparquet"])
        done.rows = len(table)
        done.left_out = table.left_out
    if "cog" in paths:
        write_cog(cube, paths["cog"])
    return done
