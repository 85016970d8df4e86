"""Raw GeoTIFF scenes as one TorchGeo raster dataset, read in windows (``--data rasters``).

For pretraining straight from scenes, without tiling them first: every scene below ``ROOT`` is
one TorchGeo :class:`~torchgeo.datasets.RasterDataset` record, and ``geossl pretrain --data
rasters`` reads ``--patch-size`` windows through geossl's in-footprint grid or TorchGeo's own
samplers (``--sampler``, :mod:`geossl.datasets.geogrid`). Two layouts, the ones
:func:`geossl.tiling.scenes.find_scenes` finds:

* band folders, one file per band (``B02.tif``, ``..._B8A_20m.tif``; a Major-TOM cell, an
  SSL4EO-S12 acquisition): every band is read on the grid of the first scene's CRS at the finest
  band's resolution (TorchGeo resamples coarser bands on read);
* multi-band GeoTIFFs (one scene per file, the same band count in every file).

Scenes in several CRSs (Major-TOM cells in different UTM zones) are reprojected on read to the
first scene's CRS, as TorchGeo does. Samples are ``{"image": float32 (C, H, W), "crs",
"bounds"}`` with the raw values (Sentinel-2 DN): normalisation is the data module's, by
sensor. Tiling (``geossl tile``) stays the fast path for repeated epochs: a window here is a
warped read of several files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from torchgeo.datasets import RasterDataset

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.base import GeosslDataset, PretrainingRequest

PathLike = str | os.PathLike[str]


def _band_of(path: Path) -> str | None:
    from geossl.tiling.scenes import band_name_from_file

    return band_name_from_file(path)


class SceneRasters(GeosslDataset, RasterDataset):  # type: ignore[misc]
    """Every scene below a folder as one TorchGeo raster dataset (module docstring).

    Attributes:
        bands: band names in channel order (band folders: sorted like the tiler sorts them;
            multi-band files: ``B1..Bn`` unless the file names its bands).
        scenes: the scene folders or files, sorted.
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("sensor", "bands", "res")

    #: decided per instance (``sensor``): a plain ``image`` stands for it
    sensors: tuple[str, ...] = ()
    geo_sampled: ClassVar[bool] = True
    is_image = True

    def __init__(self, root: PathLike = "data", sensor: str = "s2",
                 bands: Sequence[str] | None = None, res: float | None = None) -> None:
        """Index the scenes (headers only).

        Args:
            root: folder searched for scenes (band folders or multi-band GeoTIFFs).
            sensor: the sensor the scenes come from (``s2``, ``s1``, ...): it chooses the
                normalisation.
            bands: band names to read, in order (default: every band of the scenes).
            res: pixel size of the common grid (default: the finest band's).

        Raises:
            DataError: no scene, or scenes whose bands differ.
        """
        from geossl.tiling.scenes import find_scenes, is_band_folder

        path = Path(root)
        self.scenes = find_scenes([path])
        self.sensor = sensor
        folders = [s for s in self.scenes if s.is_dir() and is_band_folder(s)]
        if folders and len(folders) != len(self.scenes):
            raise DataError("mixes band folders and single raster files; give one layout", path)
        if folders:
            self._band_folders(folders, bands, path)
            paths: list[str] = [str(s) for s in folders]
        else:
            self._multiband(bands, path)
            paths = [str(s) for s in self.scenes]
        self._one_crs(path)
        try:
            super().__init__(paths=paths, bands=self._read_bands, res=res)
        except (FileNotFoundError, ValueError) as err:  # TorchGeo: no file matched / bad band
            raise DataError(f"cannot index the scenes as a raster dataset ({err})", path) from err
        self.bands = list(self._read_bands)

    def _one_crs(self, root: Path) -> None:
        """Refuse scenes in several CRSs: TorchGeo would warp them all onto the first one's grid.

        Two Major-TOM cells in UTM zones far apart become a footprint thousands of km wide, read
        as no-data windows; tiling keeps each scene in its own CRS instead.
        """
        import rasterio

        crss: dict[str, str] = {}
        for scene in self.scenes:
            file = next(iter(sorted(scene.glob(self.filename_glob)))) if scene.is_dir() else scene
            with rasterio.open(file) as src:
                crss.setdefault(str(src.crs), scene.name)
        if len(crss) > 1:
            names = ", ".join(f"{c} ({s})" for c, s in list(crss.items())[:3])
            raise ConfigError(f"scenes in {len(crss)} CRSs: {names}; one raster dataset warps "
                              "them onto one grid: give a folder of scenes in one CRS, or tile "
                              f"them with `geossl tile` (each chip keeps its CRS) ({root})")

    def _band_folders(self, folders: list[Path], bands: Sequence[str] | None,
                      root: Path) -> None:
        """Set the glob and regex that find each folder's first band and name its band file."""
        from geossl.tiling.scenes import _band_sort_key

        first = folders[0]
        files = {b: p.name for p in sorted(first.iterdir())
                 if p.is_file() and (b := _band_of(p)) is not None}
        if not files:
            raise DataError("no band file (B02.tif, ..._VV.tif) in this scene folder", first)
        have = sorted(files, key=_band_sort_key)
        for other in folders[1:]:
            theirs = {b for p in other.iterdir() if p.is_file() and (b := _band_of(p))}
            if theirs != set(have):
                raise DataError(f"has bands {sorted(theirs)} but {first.name} has {have}; "
                                "give scenes of one product", other)
        chosen = list(bands) if bands else have
        missing = [b for b in chosen if b not in files]
        if missing:
            raise ConfigError(f"--bands {','.join(missing)}: not among the scenes' bands "
                              f"{','.join(have)} ({root})")
        # TorchGeo indexes the files matching the glob and takes the grid (resolution) of the
        # first: the glob names the finest band's file, with its band name as the regex's
        # ``band`` group, so that TorchGeo finds every other band by substituting it
        import rasterio

        def pixel(band: str) -> float:
            with rasterio.open(first / files[band]) as src:
                return float(abs(src.res[0]))

        finest = min(have, key=pixel)
        name = files[finest]
        stem_at = name.upper().find(finest.upper())
        prefix, suffix = name[:stem_at], name[stem_at + len(finest):]
        self.filename_glob = name
        self.filename_regex = (f"^{re.escape(prefix)}(?P<band>[A-Za-z0-9]+)"
                               f"{re.escape(suffix)}$")
        self.separate_files = True
        self.all_bands = tuple(have)
        self._read_bands = tuple(chosen)

    def _multiband(self, bands: Sequence[str] | None, root: Path) -> None:
        """Multi-band files: one record per file, bands ``B1..Bn`` (or the files' own names)."""
        import rasterio

        counts = set()
        for scene in self.scenes:
            with rasterio.open(scene) as src:
                counts.add(src.count)
                names = [d for d in src.descriptions]
        if len(counts) != 1:
            raise DataError(f"scenes have different band counts {sorted(counts)}", root)
        n = counts.pop()
        have = [d if d else f"B{i + 1}" for i, d in enumerate(names)] \
            if len(set(names)) == n and all(names) else [f"B{i + 1}" for i in range(n)]
        chosen = list(bands) if bands else have
        missing = [b for b in chosen if b not in have]
        if missing:
            raise ConfigError(f"--bands {','.join(missing)}: not among the scenes' bands "
                              f"{','.join(have)} ({root})")
        self.filename_glob = "*"
        self.filename_regex = ".*"
        self.separate_files = False
        self.all_bands = tuple(have)
        self._read_bands = tuple(chosen)

    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> Any:
        """The scenes read in ``--patch-size`` windows (default 64) where ``--sampler`` puts them.

        ``options``: ``bands`` (``--bands``), ``res`` (``--data-args '{res: 10}'``).

        Raises:
            ConfigError: ``ids`` (split a tiled chip index instead), several sensors or pairs,
                an unknown option.
        """
        from geossl.datasets.geogrid import DEFAULT_GEO_PATCH, GeoSamples

        if request.ids is not None:
            raise ConfigError("--splits is not supported with --data rasters; tile the scenes "
                              "with `geossl tile` and split the chip index")
        if len(request.sensors) != 1 or request.pairing not in ("aug",):
            raise ConfigError("--data rasters reads one sensor with --pairing aug; tile the "
                              "scenes for geo, fusion or temporal pairs")
        opts = dict(request.options)
        unknown = sorted(set(opts) - {"bands", "res"})
        if unknown:
            raise ConfigError(f"dataset 'rasters' takes no argument {unknown[0]!r}")
        ds = cls(request.root, request.sensors[0], **opts)
        samples = GeoSamples(ds, request.patch_size or DEFAULT_GEO_PATCH, root=request.root,
                             sampler=request.sampler, seed=request.seed)
        samples.bands = {request.sensors[0]: list(ds._read_bands)}
        return samples
