"""SEN12MS: Sentinel-1 / Sentinel-2 / MODIS land-cover patch triplets (Schmitt et al., 2019).

On-disk layout (the mediaTUM release, one folder per season-ROI and per sensor and scene)::

    ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<patch>.tif   2 bands VV, VH (float32 dB)
    ROIs1158_spring/s2_<scene>/ROIs1158_spring_s2_<scene>_p<patch>.tif   13 bands B01..B12 (uint16)
    ROIs1158_spring/lc_<scene>/ROIs1158_spring_lc_<scene>_p<patch>.tif   4 bands IGBP, LCCS-LC,
                                                                          LCCS-LU, LCCS-SH (uint8)
    ROIs1868_summer/...  ROIs1970_fall/...  ROIs2017_winter/...

Every patch is 256 x 256 px at 10 m in the UTM zone of its scene; the three files of a patch
share one grid. Scene numbers restart in every season folder, so a scene is identified by
``<roi>_<scene>`` (``"ROIs1158_spring_63"``) and a patch by ``<roi>_<scene>_<patch>``
(``"ROIs1158_spring_63_30"``).

Two views:

* :class:`SEN12MS`: a TorchGeo :class:`~torchgeo.datasets.RasterDataset` per sensor (sample
  with GeoSlice, combine sensors with ``&``), whose index also carries ``season``, ``roi``,
  ``scene``, ``patch`` and ``id`` columns parsed from the file names.
* :class:`SEN12MSPatches`: the patch-wise view for patch classification and SSL, built from
  directory listings only (no raster is opened to build it), with IGBP / DFC2020 scene labels
  and :meth:`SEN12MSPatches.footprints` for overlap-aware splits.

The official hold-out scenes (:data:`HOLDOUT_SCENES`, about 10 % of the patches, chosen to keep
the spatial and seasonal distributions) come from the SEN12MS toolbox,
``schmitt-muc/SEN12MS`` ``splits/SEN12MS_holdOutScenes.txt``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import torch
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from torchgeo.datasets import NonGeoDataset, RasterDataset
from torchgeo.datasets.errors import DatasetNotFoundError
from tqdm import tqdm

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.core.io import atomic_path, open_raster
from geossl.datasets import labels as lab
from geossl.datasets.base import GeosslDataset, PretrainingRequest, construct
from geossl.runtime.machine import available_cores

PathLike = str | os.PathLike[str]

#: season folders of the release, in order
ROIS: tuple[str, ...] = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
#: season name -> season folder
SEASON_ROI: dict[str, str] = {roi.split("_")[1]: roi for roi in ROIS}

#: band names per source
BANDS: dict[str, tuple[str, ...]] = {
    "s1": ("VV", "VH"),
    "s2": (
        "B01", "B02", "B03", "B04", "B05", "B06", "B07",
        "B08", "B8A", "B09", "B10", "B11", "B12",
    ),
    "lc": ("IGBP", "LCCS-LC", "LCCS-LU", "LCCS-SH"),
}  # fmt: skip

#: official hold-out scenes, ``splits/SEN12MS_holdOutScenes.txt`` of the SEN12MS toolbox
#: (github.com/schmitt-muc/SEN12MS, listed there as ``ROIs1158_spring/s1_63`` etc.)
HOLDOUT_SCENES: frozenset[str] = frozenset(
    [f"ROIs1158_spring_{s}" for s in (63, 146, 97, 124, 15, 17)]
    + [f"ROIs1868_summer_{s}" for s in (43, 131, 19, 104, 72, 15, 79)]
    + [f"ROIs1970_fall_{s}" for s in (120, 39, 144, 35, 61, 47, 30, 141)]
    + [f"ROIs2017_winter_{s}" for s in (64, 146, 32, 107, 135)]
)

#: file name of one SEN12MS patch
FILENAME_RE = re.compile(
    r"^(?P<roi>ROIs\d{4}_(?P<season>spring|summer|fall|winter))_(?P<src>s1|s2|lc)"
    r"_(?P<scene>\d+)_p(?P<patch>\d+)\.tif$"
)
_SCENE_DIR_RE = re.compile(r"^(?P<src>s1|s2|lc)_(?P<scene>\d+)$")
_SCENE_KEY_RE = re.compile(
    r"^(?P<roi>ROIs\d{4}_(?:spring|summer|fall|winter))[_/](?:(?:s1|s2|lc)_)?(?P<scene>\d+)$"
)

#: name of the footprint cache written beside the data by :meth:`SEN12MSPatches.footprints`
FOOTPRINT_CACHE = "sen12ms_footprints.parquet"


# --------------------------------------------------------------------------------------------
# small helpers (also used by geossl.datasets.bigearthnet)
# --------------------------------------------------------------------------------------------
def scene_key(roi: str, scene: int | str) -> str:
    """Unique scene id ``"<roi>_<scene>"``, e.g. ``"ROIs1158_spring_63"``."""
    return f"{roi}_{int(scene)}"


def patch_id(roi: str, scene: int | str, patch: int | str) -> str:
    """Unique patch id ``"<roi>_<scene>_<patch>"``, e.g. ``"ROIs1158_spring_63_30"``."""
    return f"{roi}_{int(scene)}_{int(patch)}"


def patch_path(root: PathLike, roi: str, scene: int, patch: int, src: str) -> Path:
    """Path of one SEN12MS patch file of source ``src`` (``s1``, ``s2`` or ``lc``)."""
    name = f"{roi}_{src}_{scene}_p{patch}.tif"
    return Path(root) / roi / f"{src}_{scene}" / name


def parse_scene(value: int | str) -> tuple[str | None, int]:
    """Parse a scene reference.

    Accepted: ``63`` (that scene number in any season), ``"ROIs1158_spring_63"`` or
    ``"ROIs1158_spring/s1_63"`` (the toolbox's format).

    Returns:
        ``(roi or None, scene number)``.

    Raises:
        ConfigError: not a scene reference.
    """
    if isinstance(value, int | np.integer):
        return None, int(value)
    text = str(value).strip()
    if text.isdigit():
        return None, int(text)
    match = _SCENE_KEY_RE.match(text)
    if match is None:
        raise ConfigError(
            f"unknown SEN12MS scene id {value!r} (expected e.g. 63, 'ROIs1158_spring_63' or "
            "'ROIs1158_spring/s1_63')"
        )
    return match["roi"], int(match["scene"])


def _seasons_to_rois(seasons: Sequence[str] | None) -> tuple[str, ...]:
    if seasons is None:
        return ROIS
    out = []
    for season in seasons:
        if season in SEASON_ROI:
            out.append(SEASON_ROI[season])
        elif season in ROIS:
            out.append(season)
        else:
            raise ConfigError(
                f"unknown SEN12MS season {season!r}, expected one of {sorted(SEASON_ROI)} "
                f"or {list(ROIS)}"
            )
    return tuple(out)


def _check_holdout(holdout: str | None) -> None:
    if holdout not in (None, "train", "holdout"):
        raise ConfigError(f"holdout must be None, 'train' or 'holdout', got {holdout!r}")


def header_info(path: PathLike) -> dict[str, Any]:
    """CRS, bounds and grid of a raster, read from its header only.

    Returns:
        dict with ``crs`` (e.g. ``"EPSG:32633"``), ``res``, ``height``, ``width``, ``minx``,
        ``miny``, ``maxx``, ``maxy``.

    Raises:
        DataError: missing, unreadable or not georeferenced file.
    """
    with open_raster(path) as src:
        return grid_info(src, path)


def grid_info(src: Any, path: PathLike) -> dict[str, Any]:
    """:func:`header_info` of an open rasterio dataset."""
    if src.crs is None:
        raise DataError("raster has no CRS", path)
    left, bottom, right, top = src.bounds
    return {
        "crs": crs_string(src.crs),
        "res": float(src.res[0]),
        "height": int(src.height),
        "width": int(src.width),
        "minx": float(left),
        "miny": float(bottom),
        "maxx": float(right),
        "maxy": float(top),
    }


def crs_string(crs: CRS) -> str:
    """Short CRS string: ``"EPSG:32633"`` when the CRS has an EPSG code, else WKT."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def footprint_geometry(frame: pd.DataFrame) -> gpd.GeoSeries:
    """EPSG:4326 footprint polygons of rows with ``crs, minx, miny, maxx, maxy`` columns.

    Rows are transformed per CRS (a dataset spans several UTM zones); polygon edges are
    densified so that the footprint stays exact after reprojection.
    """
    geoms = np.empty(len(frame), dtype=object)
    if len(frame):
        boxes = shapely.box(
            frame["minx"].to_numpy(float), frame["miny"].to_numpy(float),
            frame["maxx"].to_numpy(float), frame["maxy"].to_numpy(float),
        )  # fmt: skip
        codes = frame["crs"].to_numpy()
        for code in pd.unique(codes):
            sel = codes == code
            series = gpd.GeoSeries(boxes[sel], crs=ProjCRS.from_user_input(code))
            series = series.segmentize(max(1.0, float(np.nanmax(
                frame["maxx"].to_numpy(float)[sel] - frame["minx"].to_numpy(float)[sel]
            )) / 4))
            geoms[sel] = series.to_crs(4326).to_numpy()
    return gpd.GeoSeries(geoms, index=frame.index, crs="EPSG:4326")


def parallel_map(
    fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None, desc: str
) -> list[Any]:
    """``[fn(x) for x in items]`` in a thread pool (GDAL releases the GIL), with progress."""
    if workers is None:
        workers = min(8, available_cores() * 2)  # I/O threads: GDAL releases the GIL
    disable = len(items) < 1000
    if workers <= 1 or len(items) < 64:
        return [fn(x) for x in tqdm(items, desc=desc, disable=disable)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=64), total=len(items), desc=desc,
                         disable=disable))


def load_cache(path: Path) -> pd.DataFrame | None:
    """Read a footprint cache written by :func:`save_cache`; ``None`` when absent or stale."""
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as err:  # a corrupt cache is rebuilt, never fatal
        warnings.warn(f"{path}: ignoring unreadable footprint cache ({err})", stacklevel=3)
        return None


def update_cache(cached: pd.DataFrame | None, rows: Sequence[Mapping[str, Any]],
                 path: Path | None) -> pd.DataFrame:
    """A footprint cache (indexed by ``chip_id``) with ``rows`` added or replaced.

    Args:
        cached: the cache read by :func:`load_cache` (``None``: none yet).
        rows: newly read records, each with a ``chip_id``.
        path: where to save the updated cache (:func:`save_cache`); ``None``: not saved.

    Raises:
        DataError: neither a cache nor new rows (nothing to index).
    """
    new = pd.DataFrame(list(rows))
    if len(new):
        new = new.set_index("chip_id")
        cached = new if cached is None else pd.concat(
            [cached.drop(index=new.index, errors="ignore"), new])
        if path is not None:
            save_cache(cached.reset_index(), path)
    if cached is None:
        raise DataError("no sample to read footprints from", path)
    return cached


def save_cache(frame: pd.DataFrame, path: Path) -> None:
    """Write a footprint cache atomically; a read-only dataset folder only gives a warning."""
    try:
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    except OSError as err:
        warnings.warn(f"{path}: could not write footprint cache ({err})", stacklevel=3)


def read_image(path: PathLike, nbands: int, indexes: Sequence[int] | None = None) -> np.ndarray:
    """Read a raster as an array, with a one-line :class:`DataError` for any problem.

    Args:
        path: raster file.
        nbands: number of bands the file must have.
        indexes: 1-based bands to read (default all).

    Returns:
        array ``(bands, H, W)`` in the file's dtype.

    Raises:
        DataError: missing, unreadable or corrupt file, or wrong band count.
    """
    with open_raster(path) as src:
        return read_bands(src, path, nbands, indexes)


def read_bands(
    src: Any, path: PathLike, nbands: int, indexes: Sequence[int] | None = None
) -> np.ndarray:
    """:func:`read_image` from an open rasterio dataset."""
    if src.count != nbands:
        raise DataError(f"expected {nbands} bands, found {src.count}", path)
    try:
        return src.read(list(indexes) if indexes is not None else None)  # type: ignore[no-any-return]
    except RasterioError as err:
        raise DataError(f"corrupt raster ({first_line(err)})", path) from err


# --------------------------------------------------------------------------------------------
# geospatial view: one RasterDataset per sensor
# --------------------------------------------------------------------------------------------
class SEN12MS(RasterDataset):
    """SEN12MS as a TorchGeo raster dataset of one source (``s1``, ``s2`` or ``lc``).

    Patches of every scene are indexed with their footprint; the index (a GeoDataFrame) also
    has the columns ``roi`` (``"ROIs1158_spring"``), ``season`` (``"spring"``), ``scene``
    (unique scene id ``"ROIs1158_spring_63"``), ``patch`` (int) and ``id``
    (``"ROIs1158_spring_63_30"``), so they can drive splits and the pairing of sensors.

    ``s1`` and ``s2`` samples carry ``image`` (float32), ``lc`` samples carry ``mask`` (int64,
    the selected land-cover bands: ``bands=["IGBP"]`` gives a ``(H, W)`` IGBP map with the raw
    values 1..17; map them with :func:`geossl.datasets.labels.igbp_to_index`). With ``label``
    (``lc`` only) they also carry the scene ``label`` of the sampled window, computed from its
    IGBP pixels exactly as :class:`SEN12MSPatches` computes a patch's (:class:`SceneLabel`):
    geo-sampled chips of any size and position get scene labels.

    Scenes lie in different UTM zones; as in every TorchGeo raster dataset they are warped to
    ``crs`` (default: the CRS of the first file) when sampled.
    """

    filename_regex = FILENAME_RE.pattern
    separate_files = False

    def __init__(
        self,
        paths: PathLike | Iterable[PathLike] = "data",
        sensor: str = "s2",
        bands: Sequence[str] | None = None,
        seasons: Sequence[str] | None = None,
        scenes: Sequence[int | str] | None = None,
        crs: CRS | None = None,
        res: float | tuple[float, float] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        holdout: str | None = None,
        cache: bool = True,
        label: str | None = None,
        multilabel: bool = False,
        min_fraction: float = 0.1,
    ) -> None:
        """Index the patches of one source.

        Args:
            paths: SEN12MS root folder(s) (holding ``ROIs1158_spring`` ...) or files.
            sensor: ``"s1"``, ``"s2"`` or ``"lc"``.
            bands: bands to return (default all of the sensor; see :data:`BANDS`).
            seasons: keep these seasons (``"spring"`` or ``"ROIs1158_spring"``; default all).
            scenes: keep these scenes (``63`` in any season, or ``"ROIs1158_spring_63"``).
            crs: CRS to warp to (default: CRS of the first file).
            res: resolution in CRS units (default: of the first file).
            transforms: transform applied to each sample.
            holdout: ``"train"`` drops the official hold-out scenes, ``"holdout"`` keeps only
                them, ``None`` keeps all.
            cache: cache open file handles (TorchGeo).
            label: ``lc`` only: add the window's scene ``label`` in this scheme (``igbp``, 17
                classes, or ``dfc``, the 10-class simplified IGBP of DFC2020).
            multilabel: multi-hot of every class covering ``min_fraction`` of the window
                instead of the majority class.
            min_fraction: share of the window a class must cover (``multilabel``).

        Raises:
            ConfigError: unknown sensor, band, season, scene or holdout value; ``label`` for
                an image sensor or without the IGBP band.
            DataError: no matching patch found.
        """
        if sensor not in BANDS:
            raise ConfigError(f"unknown SEN12MS sensor {sensor!r}, expected s1, s2 or lc")
        _check_holdout(holdout)
        self.sensor = sensor
        self.all_bands = BANDS[sensor]
        self.is_image = sensor != "lc"
        self.filename_glob = f"ROIs*_{sensor}_*_p*.tif"
        unknown = [b for b in bands or () if b not in self.all_bands]
        if unknown:
            raise ConfigError(f"unknown {sensor} band(s) {unknown}, expected {self.all_bands}")
        self._rois = set(_seasons_to_rois(seasons))
        self._scenes = [parse_scene(s) for s in scenes] if scenes is not None else None
        self._holdout = holdout
        self.scene_label: SceneLabel | None = None
        if label is not None:
            if sensor != "lc":
                raise ConfigError(f"label={label!r} needs sensor='lc' (the land-cover maps), "
                                  f"not {sensor!r}")
            if bands is not None and "IGBP" not in bands:
                raise ConfigError("scene labels are computed from the IGBP band: include it in "
                                  "bands")
            self.scene_label = SceneLabel(label, multilabel, min_fraction,
                                          band=list(bands or self.all_bands).index("IGBP"))
        try:
            super().__init__(paths, crs=crs, res=res, bands=bands, transforms=transforms,
                             cache=cache)
        except DatasetNotFoundError as err:
            if scenes is not None:
                raise ConfigError(
                    f"unknown SEN12MS scene id(s) {list(scenes)}: no {sensor} patch of them was "
                    f"found (seasons={seasons}, holdout={holdout!r})"
                ) from err
            where = paths if isinstance(paths, str | os.PathLike) else ", ".join(map(str, paths))
            raise DataError(
                f"no SEN12MS {sensor} patches found (expected ROIs1158_spring/{sensor}_<scene>/"
                f"ROIs1158_spring_{sensor}_<scene>_p<patch>.tif)", str(where)
            ) from err
        meta = self.index["filepath"].map(lambda p: FILENAME_RE.match(os.path.basename(p)))
        self.index["roi"] = [m["roi"] for m in meta]
        self.index["season"] = [m["season"] for m in meta]
        self.index["scene"] = [scene_key(m["roi"], m["scene"]) for m in meta]
        self.index["patch"] = np.asarray([int(m["patch"]) for m in meta], dtype=np.int64)
        self.index["id"] = [patch_id(m["roi"], m["scene"], m["patch"]) for m in meta]
        if self._scenes is not None:
            _check_scenes_found(self._scenes, set(self.index["scene"]))

    def __getitem__(self, query: Any) -> dict[str, Any]:
        """The window's sample (see the class docstring), with its scene ``label`` if asked."""
        sample: dict[str, Any] = super().__getitem__(query)
        if self.scene_label is not None:
            sample = self.scene_label(sample)
        return sample

    @property
    def files(self) -> list[str]:
        """Files of the selected sensor, seasons, scenes and hold-out side."""
        out = []
        for path in super().files:
            match = FILENAME_RE.match(os.path.basename(path))
            if match is None or match["src"] != self.sensor or match["roi"] not in self._rois:
                continue
            if not _keep_scene(match["roi"], int(match["scene"]), self._scenes, self._holdout):
                continue
            out.append(path)
        return out


#: scene label schemes (``--label-scheme``): 17 IGBP classes, or the 10 DFC2020 classes
SCENE_LABEL_SCHEMES: tuple[str, ...] = tuple(lab.SCHEMES)


def scene_label_scheme(labels: str | bool | None) -> str | None:
    """The scene label scheme a pretraining request asks for (``True``: ``igbp``)."""
    return None if not labels else "igbp" if labels is True else str(labels)


class SceneLabel:
    """Sample transform: the scene ``label`` of a window from its IGBP ``mask``.

    The majority class (or, with ``multilabel``, every class covering ``min_fraction``) of the
    valid pixels, in the ``igbp`` or simplified ``dfc`` scheme, as
    :class:`SEN12MSPatches` labels whole patches. A class (not a closure), so it pickles into
    loader workers.
    """

    def __init__(self, scheme: str = "igbp", multilabel: bool = False,
                 min_fraction: float = 0.1, key: str = "mask", band: int = 0) -> None:
        """Configure the label.

        Args:
            scheme: ``igbp`` or ``dfc``.
            multilabel: multi-hot labels instead of the majority class.
            min_fraction: share of valid pixels a class must cover (``multilabel``).
            key: sample key of the land-cover mask.
            band: position of the IGBP band in a multi-band mask.

        Raises:
            ConfigError: unknown scheme.
        """
        if scheme not in lab.SCHEMES:
            raise ConfigError(f"label must be one of {', '.join(lab.SCHEMES)}, got {scheme!r}")
        self.scheme = scheme
        self.multilabel = multilabel
        self.min_fraction = min_fraction
        self.key = key
        self.band = band
        self.classes = lab.SCHEMES[scheme]

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Add ``label`` (int64 scalar, or float32 multi-hot) to ``sample``."""
        mask = np.asarray(sample[self.key])
        igbp = mask[self.band] if mask.ndim == 3 else mask
        index = lab.igbp_to_index(igbp, self.scheme)
        sample["label"] = lab.scene_label(index, len(self.classes), self.multilabel,
                                          self.min_fraction)
        return sample


class _ChipLabel(SceneLabel):
    """:class:`SceneLabel` of a multi-sensor chip: the land-cover map is a label, not a sensor.

    Drops the ``mask`` once the label is made and trims ``sensor_mask`` to the image sensors
    (the land cover is the last dataset of the multi-sensor index).
    """

    def __init__(self, scheme: str, multilabel: bool, sensors: int) -> None:
        super().__init__(scheme, multilabel)
        self.sensors = sensors

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = super().__call__(sample)
        sample.pop(self.key, None)
        if "sensor_mask" in sample:
            sample["sensor_mask"] = sample["sensor_mask"][: self.sensors]
        return sample


def pairing_dataset(
    root: PathLike,
    sensors: Sequence[str] = ("s1", "s2"),
    label: str | None = None,
    holdout: str | None = None,
    multilabel: bool = False,
) -> Any:
    """SEN12MS sensors as one GeoDataset keyed per sensor, for geo-sampled chips.

    A :class:`geossl.data.pairing.MultiSensorDataset` of :class:`SEN12MS` per sensor on the S2
    grid (the first sensor's when there is no S2); with ``label`` the IGBP map is read too and
    every sampled window carries its scene ``label`` (:class:`SceneLabel`). Sample it with a
    TorchGeo geo sampler, or as :class:`geossl.datasets.sen12ms_geo.SEN12MSGeoChips`
    (``geossl pretrain --data sen12ms-geo``: a grid of windows).

    Args:
        root: SEN12MS folder.
        sensors: ``s1`` and/or ``s2``.
        label: ``igbp`` or ``dfc`` scene labels of the windows; ``None`` for none.
        holdout: ``train`` / ``holdout`` side of the official hold-out scenes, ``None`` all.
        multilabel: multi-hot scene labels.

    Returns:
        the dataset.

    Raises:
        ConfigError: unknown sensor or scheme.
        DataError: missing data, or sensors that do not overlap.
    """
    from geossl.datasets.multisensor import MultiSensorDataset

    unknown = [s for s in sensors if s not in ("s1", "s2")]
    if unknown or not sensors:
        raise ConfigError(f"SEN12MS geo chips take sensors s1 and/or s2, got {list(sensors)}")
    datasets: dict[str, Any] = {s: SEN12MS(root, sensor=s, holdout=holdout) for s in sensors}
    transform = None
    if label is not None:
        transform = _ChipLabel(label, multilabel, sensors=len(sensors))
        datasets["lc"] = SEN12MS(root, sensor="lc", bands=["IGBP"], holdout=holdout)
    reference = "s2" if "s2" in sensors else sensors[0]
    ds = MultiSensorDataset(datasets, reference=reference, transforms=transform)
    ds.classes = transform.classes if transform is not None else ()  # type: ignore[attr-defined]
    return ds


def _keep_scene(
    roi: str, scene: int, scenes: list[tuple[str | None, int]] | None, holdout: str | None
) -> bool:
    if scenes is not None and not any(s == scene and r in (None, roi) for r, s in scenes):
        return False
    if holdout is not None:
        held = scene_key(roi, scene) in HOLDOUT_SCENES
        return held if holdout == "holdout" else not held
    return True


def _check_scenes_found(scenes: list[tuple[str | None, int]], found: set[str]) -> None:
    found_nums = {int(key.rsplit("_", 1)[1]) for key in found}
    for roi, scene in scenes:
        ok = scene in found_nums if roi is None else scene_key(roi, scene) in found
        if not ok:
            name = scene if roi is None else scene_key(roi, scene)
            raise ConfigError(f"unknown SEN12MS scene id {name!r}: no patch of it was found")


# --------------------------------------------------------------------------------------------
# patch-wise view
# --------------------------------------------------------------------------------------------
class SEN12MSPatches(GeosslDataset, NonGeoDataset):
    """SEN12MS patch triplets as a classification / SSL dataset.

    Each sample is a dict with ``image_s1`` (float32 ``(2, 256, 256)``, dB), ``image_s2``
    (float32 ``(13, 256, 256)``, raw digital numbers), ``image`` (alias when a single sensor is
    requested), ``id`` (``"ROIs1158_spring_63_30"``) and, when ``label`` is set, ``mask_lc``
    (int64 ``(H, W)`` 0-based IGBP or DFC2020 classes, :data:`~geossl.datasets.labels.IGNORE_INDEX`
    where invalid) and ``label`` (int64 most frequent class, or float32 multi-hot of every class
    covering >= ``min_fraction`` of the patch).

    The patch list is built from directory listings only (``os.scandir``), so the 180,662
    patches are indexed in about a second; no raster is opened until a sample is read. Values
    are returned raw (S1 in dB, possibly NaN in the one known broken patch
    ``ROIs1868_summer_146_202``; S2 uint16 reflectance x 10,000): normalisation is
    ``geossl.pretrained.normalize``'s job.
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("sensors", "label", "multilabel", "min_fraction", "ids", "holdout", "seasons",
                 "scenes", "transforms")

    sensors: tuple[str, ...] = ("s1", "s2")
    label_schemes = SCENE_LABEL_SCHEMES
    bands = BANDS

    def __init__(
        self,
        root: PathLike = "data",
        sensors: Sequence[str] = ("s1", "s2"),
        label: str | None = "igbp",
        multilabel: bool = False,
        min_fraction: float = 0.1,
        ids: Sequence[str] | None = None,
        holdout: str | None = None,
        seasons: Sequence[str] | None = None,
        scenes: Sequence[int | str] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Index the patches.

        Args:
            root: SEN12MS folder holding ``ROIs1158_spring``, ``ROIs1868_summer``, ...
            sensors: image sources to load, among ``"s1"`` and ``"s2"``.
            label: ``"igbp"`` (17 classes), ``"dfc"`` (10 DFC2020 classes) or ``None`` (no
                label: the ``lc`` files are then not needed).
            multilabel: multi-hot labels instead of the majority class.
            min_fraction: share of the patch a class must cover to be present (multi-label).
            ids: keep only these patch ids, in this order (one side of a saved split).
            holdout: ``"train"`` drops the official hold-out scenes, ``"holdout"`` keeps only
                them, ``None`` keeps all.
            seasons: keep these seasons (``"spring"`` or ``"ROIs1158_spring"``).
            scenes: keep these scenes (``63`` or ``"ROIs1158_spring_63"``).
            transforms: transform applied to each sample dict.

        Raises:
            ConfigError: bad option, unknown scene or patch id.
            DataError: dataset not found, or a patch lacks the file of one source.
        """
        sensors = tuple(sensors)
        if not sensors or any(s not in ("s1", "s2") for s in sensors):
            raise ConfigError(f"sensors must be a non-empty subset of ('s1', 's2'), got {sensors}")
        if label is not None and label not in lab.SCHEMES:
            raise ConfigError(f"label must be None, 'igbp' or 'dfc', got {label!r}")
        if not 0.0 < min_fraction <= 1.0:
            raise ConfigError(f"min_fraction must be in (0, 1], got {min_fraction}")
        _check_holdout(holdout)
        self.root = Path(root)
        self.sensors = sensors
        self.label = label
        self.multilabel = multilabel
        self.min_fraction = min_fraction
        self.transforms = transforms
        self.num_classes = len(lab.SCHEMES[label]) if label else 0
        self.classes = lab.SCHEMES[label] if label else ()
        sources = (*sensors, "lc") if label else sensors
        self.sources = sources

        scene_refs = [parse_scene(s) for s in scenes] if scenes is not None else None
        records = _scan(self.root, _seasons_to_rois(seasons), sources)
        if not records:
            raise DataError(
                "no SEN12MS patches found (expected ROIs1158_spring/s2_<scene>/"
                "ROIs1158_spring_s2_<scene>_p<patch>.tif)", self.root
            )
        if scene_refs is not None:
            _check_scenes_found(scene_refs, {scene_key(r, s) for r, s, _ in records})
        records = [
            rec for rec in records if _keep_scene(rec[0], rec[1], scene_refs, holdout)
        ]
        self._records: list[tuple[str, int, int]] = records
        if ids is not None:
            by_id = {patch_id(*rec): rec for rec in records}
            missing = [i for i in ids if str(i) not in by_id]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise ConfigError(
                    f"unknown SEN12MS patch id {missing[0]!r}{more} under {self.root} "
                    f"(with holdout={holdout!r})"
                )
            self._records = [by_id[str(i)] for i in ids]
        if not self._records:
            raise DataError(f"no SEN12MS patch left after filtering (holdout={holdout!r})",
                            self.root)

    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> Any:
        """The patches without their land cover, unless ``labels`` asks for scene labels.

        SSL needs no label: the lc files are not even opened, unless ``labels`` asks for
        scene labels (the online probe, t-SNE colours: ``True`` for IGBP, or a scheme, ``igbp``
        or ``dfc``). ``options`` (``--data-args``) may hold ``holdout: train`` (the training
        side of the official hold-out split, as the SEN12MS pretraining configs ask),
        ``seasons`` or ``scenes``.
        """
        return construct(cls, request.root, "", sensors=list(request.sensors),
                         label=scene_label_scheme(request.labels), ids=request.ids,
                         **request.options)

    # ---- index -----------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:  # type: ignore[override]
        """Patch ids in dataset order."""
        return [patch_id(*rec) for rec in self._records]

    def path(self, index: int, src: str) -> Path:
        """Path of the ``src`` file (``s1``, ``s2``, ``lc``) of patch ``index``."""
        roi, scene, patch = self._records[index]
        return patch_path(self.root, roi, scene, patch, src)

    def __len__(self) -> int:
        """Number of patches."""
        return len(self._records)

    # ---- samples ---------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load patch ``index``.

        Raises:
            DataError: a file is missing or corrupt, or the sources are not on one grid.
        """
        sample: dict[str, Any] = {}
        grid: tuple[Any, Any, Path] | None = None
        for src in self.sources:
            path = self.path(index, src)
            with open_raster(path) as ds:
                if grid is None:
                    grid = (ds.crs, ds.transform, path)
                elif ds.crs != grid[0]:
                    raise DataError(f"CRS mismatch: {ds.crs} here, {grid[0]} in {grid[2]}", path)
                elif not ds.transform.almost_equals(grid[1]):
                    raise DataError(f"grid differs from {grid[2]}", path)
                array = read_bands(ds, path, len(BANDS[src]), [1] if src == "lc" else None)
            if src == "lc":
                igbp = array[0]
                assert self.label is not None
                mask = lab.igbp_to_index(igbp, self.label)
                sample["mask_lc"] = torch.from_numpy(mask)
                sample["label"] = lab.scene_label(
                    mask, self.num_classes, self.multilabel, self.min_fraction
                )
            else:
                sample[f"image_{src}"] = torch.from_numpy(array.astype(np.float32))
        if len(self.sensors) == 1:
            sample["image"] = sample[f"image_{self.sensors[0]}"]
        sample["id"] = patch_id(*self._records[index])
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    # ---- footprints ------------------------------------------------------------------------
    def footprints(self, workers: int | None = None, cache: bool = True) -> gpd.GeoDataFrame:
        """Footprints of the patches, in the chip-index format, for splits.

        Headers (and, when labels are on, the IGBP band of the ``lc`` file) are read in a
        thread pool; results are cached in ``ROOT/sen12ms_footprints.parquet`` so that a second
        call (or another subset of the same data) does not reopen the files. The cache only
        grows: patches missing from it are read and appended.

        Args:
            workers: reader threads (default: 2 x available cores, at most 8).
            cache: read and update the cache file.

        Returns:
            GeoDataFrame, one row per patch in dataset order, with ``chip_id``, ``path`` (the
            first sensor's file, relative to ROOT), ``scene``, ``roi``, ``season``, ``patch``,
            ``sensor``, ``crs``, ``res``, ``height``, ``width``, ``minx``, ``miny``, ``maxx``,
            ``maxy`` (in the patch's own CRS), ``geometry`` (EPSG:4326) and, when labels are
            on, ``label`` (most frequent class in the dataset's scheme).

        Raises:
            DataError: a file is missing or unreadable.
        """
        need_counts = self.label is not None
        cache_path = self.root / FOOTPRINT_CACHE
        cached = load_cache(cache_path) if cache else None
        if cached is not None and "chip_id" in cached.columns:
            cached = cached.drop_duplicates("chip_id", keep="last").set_index("chip_id")
            if "igbp_counts" not in cached.columns:
                cached["igbp_counts"] = None
        else:
            cached = None
        ids = self.ids
        todo: list[int] = []
        for i, pid in enumerate(ids):
            if cached is None or pid not in cached.index:
                todo.append(i)
            elif need_counts and not isinstance(cached.at[pid, "igbp_counts"], np.ndarray | list):
                todo.append(i)

        def read(i: int) -> dict[str, Any]:
            if not need_counts:
                info = header_info(self.path(i, self.sensors[0]))
                info["igbp_counts"] = None
            else:
                # the lc file shares the grid of the images: one open gives header and labels
                path = self.path(i, "lc")
                with open_raster(path) as src:
                    info = grid_info(src, path)
                    igbp = read_bands(src, path, len(BANDS["lc"]), indexes=[1])[0]
                counts = np.bincount(igbp.ravel().astype(np.int64), minlength=256)[1:18]
                info["igbp_counts"] = counts.astype(np.int64).tolist()
            info["chip_id"] = ids[i]
            return info

        cached = update_cache(cached, parallel_map(read, todo, workers, "SEN12MS footprints"),
                              cache_path if cache else None)
        rows = cached.loc[ids].reset_index()
        out = pd.DataFrame(
            {
                "chip_id": rows["chip_id"].astype(str),
                "path": [
                    str(self.path(i, self.sensors[0]).relative_to(self.root))
                    for i in range(len(ids))
                ],
                "scene": [scene_key(r, s) for r, s, _ in self._records],
                "roi": [r for r, _, _ in self._records],
                "season": [r.split("_")[1] for r, _, _ in self._records],
                "patch": np.asarray([p for _, _, p in self._records], dtype=np.int64),
                "sensor": self.sensors[0],
            }
        )
        for col in ("crs", "res", "height", "width", "minx", "miny", "maxx", "maxy"):
            out[col] = rows[col].to_numpy()
        if need_counts:
            assert self.label is not None
            out["label"] = [
                _counts_label(np.asarray(c, dtype=np.int64), self.label)
                for c in rows["igbp_counts"]
            ]
        return gpd.GeoDataFrame(out, geometry=footprint_geometry(out), crs="EPSG:4326")


def _counts_label(igbp_counts: np.ndarray, scheme: str) -> int:
    """Majority class in ``scheme`` from the 17 IGBP pixel counts of a patch."""
    if scheme == "dfc":
        dfc = np.zeros(len(lab.DFC_CLASSES), dtype=np.int64)
        np.add.at(dfc, np.asarray(lab.IGBP_TO_DFC[1:]) - 1, igbp_counts)
        return lab.single_label(dfc)
    return lab.single_label(igbp_counts)


def _scan(root: Path, rois: Sequence[str], sources: Sequence[str]) -> list[tuple[str, int, int]]:
    """List ``(roi, scene, patch)`` of every patch that has a file for each source.

    Only directory listings are read. A patch that has the file of some sources but not of
    another is an incomplete download: :class:`DataError` naming the missing file.
    """
    records: list[tuple[str, int, int]] = []
    for roi in rois:
        season_dir = root / roi
        if not season_dir.is_dir():
            continue
        scenes: dict[int, set[str]] = {}
        with os.scandir(season_dir) as it:
            for entry in it:
                match = _SCENE_DIR_RE.match(entry.name)
                if match and match["src"] in sources and entry.is_dir():
                    scenes.setdefault(int(match["scene"]), set()).add(match["src"])
        for scene in sorted(scenes):
            per_src: dict[str, set[int]] = {}
            for src in sources:
                patches: set[int] = set()
                folder = season_dir / f"{src}_{scene}"
                if src in scenes[scene]:
                    prefix = f"{roi}_{src}_{scene}_p"
                    with os.scandir(folder) as it:
                        for entry in it:
                            name = entry.name
                            if name.startswith(prefix) and name.endswith(".tif"):
                                num = name[len(prefix) : -4]
                                if num.isdigit():
                                    patches.add(int(num))
                per_src[src] = patches
            union = set().union(*per_src.values())
            for src, patches in per_src.items():
                lacking = sorted(union - patches)
                if lacking:
                    path = patch_path(root, roi, scene, lacking[0], src)
                    more = f" ({len(lacking)} patches of this scene lack it)"
                    hint = "; label=None does without the lc files" if src == "lc" else ""
                    raise DataError(f"missing {src} file{more}{hint}", path)
            records.extend((roi, scene, patch) for patch in sorted(union))
    return records
