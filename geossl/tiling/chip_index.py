"""The GeoParquet chip index: read, write, validate, and build it from chip headers.

One row per chip, with the columns fixed in ``docs/architecture.md`` (:data:`COLUMNS`): ``path``
is relative to the index file's folder; ``minx .. maxy`` are the bounds in the chip's own CRS and
``geometry`` is the footprint in EPSG:4326, so chips from several UTM zones share one index.

:func:`build_index` makes an index for any folder of GeoTIFF chips by reading only their headers
(in parallel). Chips written by ``geossl tile`` carry their scene, sensor, datetime, grid offset
and valid fraction as GeoTIFF tags (:data:`TAG_PREFIX`), so the index can be rebuilt from them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geossl.core.errors import DataError, GeosslWarning, first_line
from geossl.core.io import atomic_path, set_default_mode

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

# geopandas, pandas, shapely and pyproj are imported by the functions that use them: the tile
# and index tasks import this module on every Dask worker, and reading chip headers needs
# rasterio only (seconds less to start each worker process)

PathLike = str | os.PathLike[str]

#: the chip index columns, in order (``geometry`` last)
COLUMNS: tuple[str, ...] = (
    "chip_id", "path", "scene", "sensor", "datetime", "crs", "res", "row", "col",
    "height", "width", "bands", "valid_fraction", "minx", "miny", "maxx", "maxy", "geometry",
)  # fmt: skip
#: optional columns kept when present
OPTIONAL: tuple[str, ...] = ("label", "split")
#: ``row``/``col`` of a chip whose offset in its scene grid is unknown (a chip that
#: ``geossl tile`` did not cut: its header has no offset tags)
UNKNOWN_OFFSET = -1
#: default file name of an index in a chip folder
INDEX_NAME = "index.parquet"
#: prefix of the GeoTIFF metadata tags written by ``geossl tile``
TAG_PREFIX = "GEOSSL_"
#: suffixes of chip files picked up by :func:`build_index`
CHIP_SUFFIXES = (".tif", ".tiff")


def index_path(path: PathLike) -> Path:
    """The index file for ``path``: the file itself, or ``path/index.parquet`` for a folder."""
    p = Path(path)
    return p / INDEX_NAME if p.is_dir() else p


def index_row(
    chip_id: str, path: str, scene: str, sensor: str, datetime: Any, crs: str, res: float,
    row: int, col: int, height: int, width: int, bands: str, valid_fraction: float,
    bounds: Sequence[float],
) -> dict[str, Any]:
    """One chip-index row (every column of :data:`COLUMNS` but ``geometry``, in order).

    The one builder of index rows: ``geossl tile``, :func:`chip_row` (a chip's header) and the
    benchmarks' synthetic chips all make their rows here, and :func:`make_index` turns them
    into the index.

    Args:
        chip_id: unique chip id.
        path: chip file relative to the index file's folder (POSIX separators).
        scene: the scene the chip was cut from.
        sensor: its sensor (``""`` when unknown).
        datetime: acquisition time (ISO text, a timestamp, or ``None``/NaT).
        crs: the chip's CRS (``EPSG:32633`` or WKT).
        res: pixel size in CRS units.
        row: pixel row of the chip in its scene grid (:data:`UNKNOWN_OFFSET`: unknown).
        col: pixel column of the chip in its scene grid (:data:`UNKNOWN_OFFSET`: unknown).
        height: chip height in pixels.
        width: chip width in pixels.
        bands: comma-separated band names.
        valid_fraction: fraction of valid pixels.
        bounds: ``(left, bottom, right, top)`` or any two opposite corners, in ``crs``.
    """
    x0, y0, x1, y1 = (float(v) for v in bounds)
    return {
        "chip_id": chip_id, "path": path, "scene": scene, "sensor": sensor,
        "datetime": datetime, "crs": crs, "res": res, "row": int(row), "col": int(col),
        "height": int(height), "width": int(width), "bands": bands,
        "valid_fraction": valid_fraction, "minx": min(x0, x1), "miny": min(y0, y1),
        "maxx": max(x0, x1), "maxy": max(y0, y1),
    }


def make_index(rows: Sequence[dict[str, Any]] | pd.DataFrame) -> gpd.GeoDataFrame:
    """Build a chip index GeoDataFrame from rows holding every column but ``geometry``.

    Footprints in EPSG:4326 are computed from ``minx .. maxy`` and ``crs``, one CRS at a time
    (vectorised), so 100,000 rows take well under a second.

    Args:
        rows: dicts (or a DataFrame) with the columns of :data:`COLUMNS` except ``geometry``.

    Returns:
        the index, sorted by ``chip_id``, with a fresh RangeIndex.
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS if c != "geometry"})
    df = df.sort_values("chip_id", kind="stable").reset_index(drop=True)
    df["datetime"] = pd.to_datetime(df["datetime"], utc=True, errors="coerce")
    for col in ("row", "col", "height", "width"):
        df[col] = df[col].astype("int64")
    for col in ("res", "valid_fraction", "minx", "miny", "maxx", "maxy"):
        df[col] = df[col].astype("float64")
    for col in ("chip_id", "path", "scene", "sensor", "crs", "bands"):
        df[col] = df[col].fillna("").astype(str)
    geoms = np.empty(len(df), dtype=object)
    boxes = shapely.box(df["minx"].to_numpy(), df["miny"].to_numpy(), df["maxx"].to_numpy(),
                        df["maxy"].to_numpy())
    for crs, idx in df.groupby("crs").indices.items():
        if not crs:
            geoms[idx] = None  # chips without georeference have no footprint
            continue
        geoms[idx] = gpd.GeoSeries(boxes[idx], crs=crs).to_crs("EPSG:4326").to_numpy()
    for i, g in enumerate(geoms):
        if g is not None:
            geoms[i] = split_antimeridian(g)
    extra = [c for c in df.columns if c not in COLUMNS]
    cols = [c for c in COLUMNS if c != "geometry"] + extra
    return gpd.GeoDataFrame(df[cols], geometry=list(geoms), crs="EPSG:4326")


def split_antimeridian(geom: Any) -> Any:
    """A lon/lat footprint with every longitude in [-180, 180], split at the antimeridian.

    A chip crossing 180 degrees comes out of the reprojection with corners at -179.8 and 179.8
    (a polygon around the whole globe) or with longitudes past 180: it becomes a MultiPolygon of
    its parts east and west of the line (GeoJSON's rule, RFC 7946 section 3.1.9).
    """
    import shapely
    from shapely import affinity

    minx, _, maxx, _ = geom.bounds
    if maxx - minx <= 180 and -180 <= minx and maxx <= 180:
        return geom
    coords = shapely.get_coordinates(geom)
    if maxx - minx > 180:  # wrapped: put it on one side, 0 .. 360
        coords[:, 0] = np.where(coords[:, 0] < 0, coords[:, 0] + 360, coords[:, 0])
        geom = shapely.set_coordinates(geom, coords)
    parts = []
    for lo in (-540.0, -180.0, 180.0):
        piece = geom.intersection(shapely.box(lo, -90, lo + 360, 90))
        if not piece.is_empty:
            parts.append(affinity.translate(piece, xoff=-(lo + 180)))
    polys = [p for part in parts for p in getattr(part, "geoms", [part])
             if p.geom_type == "Polygon" and p.area > 0]
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def lonlat_centroids(geoms: Any) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes of the centroids of lon/lat footprints, right across 180.

    A footprint split at the antimeridian (:func:`split_antimeridian`) or wrapped around it has
    its plain centroid near longitude 0; here its western part is moved by 360 degrees first,
    and the centroid's longitude is brought back into [-180, 180).
    """
    import shapely

    g = np.asarray(geoms, dtype=object)
    lon = shapely.get_x(shapely.centroid(g))
    lat = shapely.get_y(shapely.centroid(g))
    b = shapely.bounds(g)
    wide = np.flatnonzero(b[:, 2] - b[:, 0] > 180)
    for i in wide:
        coords = shapely.get_coordinates(g[i])
        coords[:, 0] = np.where(coords[:, 0] < 0, coords[:, 0] + 360, coords[:, 0])
        c = shapely.centroid(shapely.set_coordinates(g[i], coords))
        lon[i] = (shapely.get_x(c) + 180) % 360 - 180
        lat[i] = shapely.get_y(c)
    return lon, lat


def validate_index(gdf: pd.DataFrame, path: PathLike | None = None) -> None:
    """Check that ``gdf`` has every chip index column and unique chip ids.

    Raises:
        DataError: a column is missing, or chip ids repeat.
    """
    missing = [c for c in COLUMNS if c not in gdf.columns]
    if missing:
        raise DataError(f"not a chip index: missing column(s) {', '.join(missing)}", path)
    if not gdf["chip_id"].is_unique:
        dup = gdf["chip_id"][gdf["chip_id"].duplicated()].iloc[0]
        raise DataError(f"chip index has duplicate chip_id {dup!r}", path)


def write_index(gdf: gpd.GeoDataFrame, path: PathLike) -> Path:
    """Validate and write a chip index as GeoParquet, atomically.

    Args:
        gdf: the index (see :func:`make_index`).
        path: destination ``.parquet`` file (or a folder: ``folder/index.parquet``).

    Returns:
        the file written.
    """
    from geossl.core.io import is_url

    dest: Any = os.fspath(path) if is_url(path) else Path(path)
    if isinstance(dest, Path) and dest.is_dir():
        dest = dest / INDEX_NAME
    validate_index(gdf, dest)
    with atomic_path(dest) as tmp:  # an object-store URL: written locally, then one PUT
        gdf.to_parquet(tmp, index=False)
        set_default_mode(tmp)
    return dest


def write_text(path: PathLike, text: str) -> None:
    """Write a small text file atomically, with default permissions."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
        set_default_mode(tmp)


def read_index(path: PathLike) -> gpd.GeoDataFrame:
    """Read and validate a chip index; opens no chip file.

    Args:
        path: the ``.parquet`` file, or a folder holding ``index.parquet``.

    Returns:
        the index; its folder is stored in ``gdf.attrs["root"]`` (chip paths are relative to it).

    Raises:
        DataError: missing, unreadable or invalid index.
    """
    file = index_path(path)
    if not file.is_file():
        raise DataError("chip index not found (write one with `geossl tile` or `geossl index`)",
                        file)
    import geopandas as gpd

    try:
        gdf = gpd.read_parquet(file)
    except Exception as err:  # pyarrow raises many types for corrupt files
        raise DataError(f"not a readable GeoParquet chip index ({first_line(err)})",
                        file) from err
    validate_index(gdf, file)
    gdf.attrs["root"] = str(file.parent.resolve())
    return gdf


def chip_row(file: PathLike, root: PathLike) -> dict[str, Any]:
    """Index row of one GeoTIFF chip, from its header (and ``geossl tile`` tags when present).

    Args:
        file: the chip.
        root: folder the ``path`` column is relative to.

    Returns:
        a row (every column but ``geometry``).

    Raises:
        DataError: unreadable chip.
    """
    import rasterio
    from rasterio.errors import RasterioError

    from geossl.tiling.scenes import band_name_from_file, parse_datetime

    file = Path(file)
    try:
        with rasterio.open(file) as src:
            tags = src.tags()
            descs = src.descriptions
            crs = src.crs
            bounds = src.bounds
            res = float(src.res[0])
            height, width, count = src.height, src.width, src.count
            g = {k[len(TAG_PREFIX):].lower(): v for k, v in tags.items()
                 if k.startswith(TAG_PREFIX)}
            valid = float(g["valid_fraction"]) if "valid_fraction" in g else _valid_fraction(src)
    except RasterioError as err:
        raise DataError(f"not a readable GeoTIFF chip ({first_line(err)})",
                        file) from err
    if g.get("bands"):
        bands = g["bands"]
    elif all(descs):
        bands = ",".join(str(d) for d in descs)
    elif count == 1 and band_name_from_file(file):
        bands = str(band_name_from_file(file))
    else:
        bands = ",".join(f"B{i + 1}" for i in range(count))
    rel = Path(os.path.relpath(file, root)).as_posix()
    dt = g.get("datetime") or parse_datetime(file.stem, file.parent.name)
    return index_row(g.get("chip_id") or file.stem, rel, g.get("scene") or file.parent.name,
                     g.get("sensor", ""), dt, _crs_string(crs), res,
                     int(g.get("row", UNKNOWN_OFFSET)), int(g.get("col", UNKNOWN_OFFSET)),
                     height, width, bands, valid, tuple(bounds))


def invalid_pixels(gdf: pd.DataFrame) -> np.ndarray:
    """Invalid pixels (NaN, inf, nodata, cloud when tiled) per chip, from ``valid_fraction``."""
    size = gdf["height"].to_numpy(np.float64) * gdf["width"].to_numpy(np.float64)
    return np.rint((1.0 - gdf["valid_fraction"].to_numpy(np.float64)) * size).astype(np.int64)


def _valid_fraction(src: Any) -> float:
    """Fraction of pixels valid in every band (finite, not the nodata value) of an open chip.

    Integer chips without a nodata value cannot hold an invalid pixel: their header is enough.
    Other chips (float, or with nodata) are read once, so the index records how many pixels
    later readers will fill instead of claiming 1.0.
    """
    nodatas = [nd for nd in src.nodatavals if nd is not None and not np.isnan(nd)]
    floating = any(np.issubdtype(np.dtype(d), np.floating) for d in src.dtypes)
    if not floating and not nodatas:
        return 1.0
    data = src.read()
    valid = np.ones(data.shape[1:], dtype=bool)
    for band, nodata in zip(data, src.nodatavals):
        if np.issubdtype(band.dtype, np.floating):
            valid &= np.isfinite(band)
        if nodata is not None and not np.isnan(nodata):
            valid &= band != nodata
    return float(valid.mean()) if valid.size else 1.0


def _crs_string(crs: Any) -> str:
    """``EPSG:32633`` when the CRS has an EPSG code, else its WKT; empty when None."""
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    if epsg is not None:
        return f"EPSG:{epsg}"
    from pyproj import CRS as ProjCRS

    return str(ProjCRS.from_user_input(crs.to_wkt()).to_string())


def _rows_chunk(args: tuple[list[str], str]) -> list[dict[str, Any]]:
    files, root = args
    import rasterio

    # no directory listing on open: with 100k files in one folder it dominates the open time
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        return [chip_row(f, root) for f in files]


def find_chips(folder: PathLike) -> list[Path]:
    """Every GeoTIFF below ``folder`` (hidden and temporary files excluded), sorted."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and
                             not d.endswith((".zarr", ".npy")))
        out.extend(Path(dirpath, f) for f in sorted(filenames)
                   if f.lower().endswith(CHIP_SUFFIXES) and not f.startswith("."))
    return out


def build_index(
    folder: PathLike,
    files: Iterable[PathLike] | None = None,
    workers: int = 0,
    bands: Sequence[str] | None = None,
    sensor: str | None = None,
    progress: bool = True,
    root: PathLike | None = None,
    scheduler: str | None = None,
) -> gpd.GeoDataFrame:
    """Build a chip index for a folder of GeoTIFF chips, reading only their headers.

    Args:
        folder: the chip folder (``path`` values are relative to it).
        files: the chips (default: every ``.tif`` below ``folder``).
        workers: processes of a local Dask cluster reading headers (0 or 1: in this process).
        bands: band names to record when the files carry none (one name per band).
        sensor: sensor name to record when the files carry none.
        progress: show a progress bar.
        root: folder the ``path`` column is relative to (default: ``folder``; use the folder
            of the index file when writing it elsewhere).
        scheduler: address of an existing Dask scheduler (default ``$DASK_SCHEDULER_ADDRESS``);
            header reads are tasks of chunks of files (see :mod:`geossl.runtime.dask`).

    Returns:
        the index (not written; see :func:`write_index`).

    Raises:
        DataError: no chip found, or an unreadable chip.
    """
    from geossl.runtime.dask import Runner

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("chip folder not found", folder)
    paths = [str(p) for p in (find_chips(folder) if files is None else files)]
    if not paths:
        raise DataError("no GeoTIFF chip (.tif) found in this folder", folder)
    base = str(Path(root) if root is not None else folder)
    rows: list[dict[str, Any]] = []
    # about 1 ms of CPU per chip header (measured: 0.56 s per 625 SEN12MS-like patches)
    with Runner(scheduler, workers, progress=progress, work_s=1e-3 * len(paths)) as runner:
        # one task per chunk of files: a few per worker (load balance) and at most 2,000 files
        n_workers = runner.n_workers() if runner.distributed else 1
        chunk = max(1, min(2000, -(-len(paths) // max(1, 4 * n_workers))))
        chunks = [(paths[i:i + chunk], base) for i in range(0, len(paths), chunk)]
        for part in runner.map(_rows_chunk, chunks, desc="index", unit="chunk"):
            rows.extend(part)
    import pandas as pd

    df = pd.DataFrame(rows)
    if bands:
        n = df["bands"].str.count(",") + 1
        if (n != len(bands)).any():
            raise DataError(f"--bands names {len(bands)} bands but chips have "
                            f"{sorted(set(n.tolist()))}", folder)
        df["bands"] = ",".join(bands)
    if sensor:
        df.loc[df["sensor"] == "", "sensor"] = sensor
    if not df["chip_id"].is_unique:
        # stems repeat across folders (e.g. B01.tif in every patch): use the relative path
        df["chip_id"] = df["path"].str.rsplit(".", n=1).str[0]
    warn_band_differences(df[["scene", "bands"]].to_dict("records"))
    return make_index(df)


def warn_band_differences(rows: Sequence[dict[str, Any]]) -> None:
    """Warn, naming the scene and the bands, when scenes were tiled with different band sets.

    ``geossl tile`` and ``geossl index`` both call it on the index rows.

    A scene missing a band (a failed download, an L1C/L2A mix) gives chips with fewer bands; the
    index then mixes band sets, and readers must select common bands (``--bands``).
    """
    per_scene: dict[str, list[str]] = {}
    for row in rows:
        per_scene.setdefault(str(row["scene"]), str(row["bands"]).split(","))
    if len({tuple(b) for b in per_scene.values()}) <= 1:
        return
    union: list[str] = []
    for bands in per_scene.values():
        union.extend(b for b in bands if b not in union)
    common = [b for b in union if all(b in bands for bands in per_scene.values())]
    for name, bands in sorted(per_scene.items()):
        missing = [b for b in union if b not in bands]
        if missing:
            warnings.warn(GeosslWarning(
                f"scene {name} lacks band(s) {','.join(missing)} that other scenes have: its "
                f"chips have {len(bands)} bands, the index mixes band sets; read it with "
                f"--bands {','.join(common)} (or tile with --bands)"), stacklevel=3)
