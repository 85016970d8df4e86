"""SSL4EO-S12 (Wang et al., 2022): Sentinel-1/2 time series of 250k locations, as raster datasets.

On-disk layout (one folder per product, one GeoTIFF per band, several dates per location)::

    s1/<location>/<S1A_IW_GRDH_1SDV_<start>_<stop>_...>/{VV,VH}.tif + metadata.json
    s2a/<location>/<start>_<stop>_T<tile>/{B1..B12, B8A}.tif + metadata.json   (L2A, 12 bands)
    s2c/<location>/<start>_<stop>_T<tile>/{B1..B12, B8A, B10}.tif + metadata.json  (L1C, 13)

Each location is about 264 x 264 px at 10 m (S2 20 m bands 132 px, 60 m bands 44 px), in
EPSG:4326; S1 and S2 of a location lie on slightly different grids and dates.
:class:`SSL4EOS12` is a TorchGeo :class:`~torchgeo.datasets.RasterDataset` of one product
(``separate_files``: band files are merged and resampled to one grid, the grid of a 10 m band by
default); its index has one row per acquisition with ``location``, ``acquisition`` and the
acquisition time. Combine products with :class:`geossl.datasets.multisensor.MultiSensorDataset`
(:func:`pairing_dataset` does it for ``geossl pretrain --data ssl4eo``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from rasterio.crs import CRS
from torchgeo.datasets import RasterDataset
from torchgeo.datasets.errors import DatasetNotFoundError

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.base import GeosslDataset, PretrainingRequest
from geossl.datasets.multisensor import MultiSensorDataset

PathLike = str | os.PathLike[str]

#: bands per product folder
BANDS: dict[str, tuple[str, ...]] = {
    "s1": ("VV", "VH"),
    "s2a": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"),
    "s2c": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"),
}
#: ``--sensors`` names -> product folders (the first present under the root is read)
SENSOR_PRODUCTS: dict[str, tuple[str, ...]] = {
    "s1": ("s1",), "s2": ("s2c", "s2a"), "s2c": ("s2c",), "s2a": ("s2a",),
}
#: bands whose grid is used by default (10 m)
_REFERENCE_BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")
_DATETIME_RE = re.compile(r"(\d{8}T\d{6})")
#: one band file of an acquisition
FILENAME_RE = r"^(?P<band>B\d{1,2}A?|VV|VH)\.tif$"


def acquisition_time(folder: PathLike) -> datetime | None:
    """Acquisition time of a product folder: from its name, else ``metadata.json``."""
    name = os.path.basename(os.fspath(folder))
    match = _DATETIME_RE.search(name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    meta = Path(folder) / "metadata.json"
    try:
        ms = json.loads(meta.read_text())["system:time_start"]
        return datetime.fromtimestamp(float(ms) / 1000.0, tz=UTC)
    except (OSError, ValueError, KeyError, TypeError):
        return None


# RasterDataset's ``bands`` (a tuple of this product's bands) is the protocol's list for one sensor
class SSL4EOS12(GeosslDataset, RasterDataset):  # type: ignore[misc]
    """One SSL4EO-S12 product (``s1``, ``s2a`` or ``s2c``) as a TorchGeo raster dataset.

    Samples carry ``image`` (float32 ``(C, H, W)``, bands in ``bands`` order, S1 in dB, S2 raw
    digital numbers), ``crs`` and ``bounds``, as every TorchGeo raster dataset. The index has
    one row per acquisition (product folder) with the columns ``filepath`` (the reference band's
    file), ``location``, ``acquisition`` and ``sensor``; its time interval is the acquisition
    second, so a query with that interval reads that date only.
    """

    #: decided per instance (``sensor=``: s1, s2a or s2c)
    sensors: tuple[str, ...] = ()
    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("sensor", "bands", "locations", "crs", "res", "transforms", "cache")

    filename_regex = FILENAME_RE
    separate_files = True
    # one product per instance (``sensor``): the samples carry one plain ``image``
    geo_sampled = True

    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> Any:
        """The products of ``sensors`` paired on the ground, read through a grid of windows.

        :func:`pairing_dataset`, read in ``patch_size`` windows (default 64 px) inside every
        footprint, or where ``--sampler`` puts them (``request.sampler``).

        Raises:
            ConfigError: ``ids`` (a split of SSL4EO is made on a tiled chip index), or
                ``options`` (``--data-args``, ``--bands``: not supported here).
        """
        from geossl.datasets.geogrid import DEFAULT_GEO_PATCH, GeoSamples

        if request.ids is not None:
            raise ConfigError("--splits is not supported with --data ssl4eo; tile it with "
                              "`geossl tile` and split the chip index")
        if request.options:
            raise ConfigError(f"--data ssl4eo takes no {', '.join(sorted(request.options))} "
                              "option (--data-args, --bands); tile it with `geossl tile` first")
        multi = pairing_dataset(request.root, request.sensors,
                                temporal=request.pairing == "temporal")
        return GeoSamples(multi, request.patch_size or DEFAULT_GEO_PATCH, root=request.root,
                          sampler=request.sampler, seed=request.seed)

    def footprints(self) -> Any:
        """The acquisitions' index, one row per acquisition.

        ``location``, ``acquisition``, ``sensor`` and the footprint; the time interval is
        dropped (GeoParquet cannot hold it).
        """
        return self.index.reset_index(drop=True)

    def __init__(
        self,
        root: PathLike = "data",
        sensor: str = "s2c",
        bands: Sequence[str] | None = None,
        locations: Iterable[str] | None = None,
        crs: CRS | None = None,
        res: float | tuple[float, float] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache: bool = True,
    ) -> None:
        """Index the acquisitions of one product.

        Args:
            root: SSL4EO-S12 folder holding ``s1``, ``s2a``, ``s2c``.
            sensor: ``"s1"``, ``"s2a"`` or ``"s2c"``.
            bands: bands to return (default all of the product, see :data:`BANDS`).
            locations: keep only these location ids (folder names).
            crs: CRS to warp to (default the CRS of the first file).
            res: resolution in CRS units (default that of the first 10 m band).
            transforms: applied to each sample.
            cache: cache open file handles (TorchGeo).

        Raises:
            ConfigError: unknown product or band.
            DataError: no acquisition found, or an acquisition lacks a band file.
        """
        if sensor not in BANDS:
            raise ConfigError(f"unknown SSL4EO-S12 sensor {sensor!r}; use one of "
                              f"{', '.join(BANDS)}")
        self.all_bands = BANDS[sensor]
        bands = tuple(bands) if bands is not None else self.all_bands
        unknown = [b for b in bands if b not in self.all_bands]
        if unknown or not bands:
            raise ConfigError(f"unknown {sensor} band(s) {unknown}; expected {self.all_bands}")
        self.sensor = sensor
        self.root = Path(root)
        folder = self.root / sensor
        if not folder.is_dir():
            raise DataError(f"no SSL4EO-S12 {sensor} folder (expected {sensor}/<location>/"
                            "<acquisition>/<band>.tif)", folder)
        ref = next((b for b in _REFERENCE_BANDS if b in bands), bands[0])
        self.reference_band = ref
        self.filename_glob = f"{ref}.tif"
        self._locations = None if locations is None else {str(x) for x in locations}
        try:
            super().__init__(folder, crs=crs, res=res, bands=bands, transforms=transforms,
                             cache=cache)
        except DatasetNotFoundError as err:
            raise DataError(f"no SSL4EO-S12 {sensor} acquisition with a {ref}.tif found",
                            folder) from err
        acq = [Path(p).parent for p in self.index["filepath"]]
        for a in acq:
            missing = [b for b in bands if not (a / f"{b}.tif").is_file()]
            if missing:
                raise DataError(f"missing band file(s) {', '.join(missing)}", a)
        times = [acquisition_time(a) for a in acq]
        left = [pd.Timestamp(t).tz_localize(None) if t else pd.Timestamp.min for t in times]
        right = [x + pd.Timedelta(seconds=1) - pd.Timedelta(microseconds=1)
                 if x is not pd.Timestamp.min else pd.Timestamp.max for x in left]
        self.index.index = pd.IntervalIndex.from_arrays(left, right, closed="both",
                                                        name="datetime")
        self.index["location"] = [a.parent.name for a in acq]
        self.index["acquisition"] = [a.name for a in acq]
        self.index["sensor"] = sensor

    @property
    def files(self) -> list[str]:
        """Reference-band files of the selected locations."""
        out = super().files
        if self._locations is not None:
            out = [f for f in out if Path(f).parent.parent.name in self._locations]
        return out


def product_for(root: PathLike, sensor: str) -> str:
    """The product folder read for a sensor name (:data:`SENSOR_PRODUCTS`).

    ``s1`` -> ``s1``; ``s2`` -> ``s2c`` (L1C, 13 bands) when present, else ``s2a`` (L2A,
    12 bands); ``s2c`` and ``s2a`` -> themselves.

    Raises:
        ConfigError: unknown sensor name.
        DataError: none of its product folders exists under ``root``.
    """
    if sensor not in SENSOR_PRODUCTS:
        raise ConfigError(f"unknown SSL4EO-S12 sensor {sensor!r}; use one of "
                          f"{', '.join(SENSOR_PRODUCTS)}")
    options = SENSOR_PRODUCTS[sensor]
    for product in options:
        if (Path(root) / product).is_dir():
            return product
    raise DataError(f"no SSL4EO-S12 folder for sensor {sensor} (expected "
                    f"{' or '.join(options)})", root)


def pairing_dataset(root: PathLike, sensors: Sequence[str], temporal: bool = False) -> Any:
    """The SSL4EO-S12 products of ``sensors`` as one GeoDataset keyed per sensor.

    A :class:`geossl.datasets.multisensor.MultiSensorDataset` on the grid of the first Sentinel-2
    sensor (the first sensor when there is none): each S2 acquisition is paired with the S1
    acquisition of the same location closest in time; with ``temporal`` the first sensor is
    also paired with its next acquisition of the same location (``image_<sensor>_t2``).

    Args:
        root: SSL4EO-S12 folder holding ``s1``, ``s2a``, ``s2c``.
        sensors: sensor names (``s1``, ``s2``, ``s2a``, ``s2c``; see :func:`product_for`).
        temporal: add the second date of the first sensor.

    Returns:
        the dataset, to be read through a TorchGeo geo sampler.

    Raises:
        ConfigError: unknown sensor.
        DataError: missing products, no overlap, or no second date.
    """
    datasets = {s: SSL4EOS12(root, product_for(root, s)) for s in sensors}
    reference = next((s for s in sensors if s.startswith("s2")), sensors[0])
    return MultiSensorDataset(datasets, reference=reference,
                              temporal=sensors[0] if temporal else None)
