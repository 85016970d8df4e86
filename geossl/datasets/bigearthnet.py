"""BigEarthNet v1 and v2 (reBEN): Sentinel-2 (and paired Sentinel-1) multi-label patches.

Layouts read (``root`` is the folder that holds the dataset's top folders):

**v1** (BigEarthNet-S2 v1.0 and BigEarthNet-S1 v1.0)::

    BigEarthNet-v1.0/<patch>/<patch>_B01.tif ... <patch>_B12.tif    12 bands (B8A, no B10)
    BigEarthNet-v1.0/<patch>/<patch>_labels_metadata.json          {"labels": [CORINE names], ...}
    BigEarthNet-S1-v1.0/<s1patch>/<s1patch>_VV.tif, _VH.tif
    BigEarthNet-S1-v1.0/<s1patch>/<s1patch>_labels_metadata.json   {"corresponding_s2_patch": ...}

  ``root`` may also be the ``BigEarthNet-v1.0`` folder itself (S2 only).

**v2** (reBEN, Clasen et al. 2024)::

    BigEarthNet-S2/<S2 product>/<S2 product>_<x>_<y>/<patch>_B01.tif ... _B12.tif
    BigEarthNet-S1/<S1 product>/<S1 product>_<tile>_<x>_<y>/<s1patch>_VV.tif, _VH.tif
    Reference_Maps/<S2 product>/<patch>/<patch>_reference_map.tif  (CLC codes, uint16, 10 m)
    metadata.parquet   patch_id, labels (19-class names), split, country, s1_name, ...

  Without ``metadata.parquet`` (e.g. a partial download) patches are listed from the folders,
  S1 patches are paired with the S2 patch of the same tile and grid cell (``<tile>_<x>_<y>``,
  the closest acquisition when several) and labels come from ``Reference_Maps`` (every CLC
  class present in the map). When some patch has no reference map, labels are switched off for
  the whole dataset (a warning says so) and samples carry no ``label``.

Bands are resampled to one 10 m grid of 120 x 120 px: the 20 m (60 px) and 60 m (20 px) bands are
upsampled bilinearly (``torch.nn.functional.interpolate``, ``align_corners=False``, i.e. pixels as
areas, so the patch footprint is unchanged). Values stay raw (S2 digital numbers, S1 dB).

Labels: multi-hot float32 over the 19-class nomenclature or the 43 CORINE classes
(:mod:`geossl.datasets.labels`). v2 metadata labels are 19-class; ``num_classes=43`` on v2 reads the
reference maps.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import atomic_write_text, open_raster
from geossl.datasets import labels as lab
from geossl.datasets.base import GeosslDataset
from geossl.datasets.sen12ms import (
    footprint_geometry,
    header_info,
    load_cache,
    parallel_map,
    read_bands,
    read_image,
    update_cache,
)

PathLike = str | os.PathLike[str]

#: Sentinel-2 bands, in the order of ``image_s2``
S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip
#: Sentinel-1 bands, in the order of ``image_s1``
S1_BANDS: tuple[str, ...] = ("VV", "VH")
#: bands per sensor
BANDS: dict[str, tuple[str, ...]] = {"s1": S1_BANDS, "s2": S2_BANDS}
#: side of the common 10 m grid
PATCH_SIZE = 120

V1_S2_DIR = "BigEarthNet-v1.0"
V1_S1_DIR = "BigEarthNet-S1-v1.0"
V2_S2_DIR = "BigEarthNet-S2"
V2_S1_DIR = "BigEarthNet-S1"
V2_MAPS_DIR = "Reference_Maps"
V2_METADATA = "metadata.parquet"

_DATE_RE = re.compile(r"(\d{8}T\d{6})")
_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


@dataclass
class _Patch:
    """Where one S2 patch (and its S1 pair) lives, and its labels when known up front."""

    id: str
    s2_dir: Path
    s1_dir: Path | None = None
    labels: list[int] | None = None
    split: str | None = None
    country: str | None = None


def season_of(month: int) -> str:
    """Meteorological season (northern hemisphere, as all BigEarthNet tiles) of a month."""
    return ("winter", "spring", "summer", "fall")[(month % 12) // 3]


def _date(name: str) -> pd.Timestamp | None:
    match = _DATE_RE.search(name)
    return pd.Timestamp(pd.to_datetime(match[1], format="%Y%m%dT%H%M%S")) if match else None


def _v2_s2_key(patch: str) -> tuple[str, str, str] | None:
    """(tile, x, y) of a v2 S2 patch ``S2A_MSIL2A_<date>_N9999_R022_T33UUP_75_43``."""
    parts = patch.split("_")
    if len(parts) < 4 or not parts[-3].startswith("T"):
        return None
    return parts[-3][1:], parts[-2], parts[-1]


def _v2_s1_key(patch: str) -> tuple[str, str, str] | None:
    """(tile, x, y) of a v2 S1 patch ``S1A_IW_GRDH_1SDV_<date>_33UUP_70_48``."""
    parts = patch.split("_")
    return (parts[-3], parts[-2], parts[-1]) if len(parts) >= 4 else None


def _subdirs(path: Path) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def layout_version(root: str | os.PathLike[str]) -> int:
    """BigEarthNet version of the layout under ``root`` (1 or 2), read from its folders.

    v2 (reBEN): ``BigEarthNet-S2/`` or ``metadata.parquet``; v1: ``BigEarthNet-v1.0/``, or
    ``root`` is that folder itself (``<patch>/<patch>_labels_metadata.json``). Anything else is
    taken as v2, whose reader then says what is missing.
    """
    path = Path(root)
    if (path / V2_S2_DIR).is_dir() or (path / V2_METADATA).is_file():
        return 2
    if (path / V1_S2_DIR).is_dir() or (path / V1_S1_DIR).is_dir():
        return 1
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir() and (Path(entry.path) /
                                       f"{entry.name}_labels_metadata.json").is_file():
                    return 1
    except OSError:
        pass
    return 2


class BigEarthNet(GeosslDataset, NonGeoDataset):
    """BigEarthNet v1 / v2 as a multi-label classification and SSL dataset.

    Samples are dicts with ``image_s2`` (float32 ``(12, 120, 120)``), ``image_s1`` (float32
    ``(2, 120, 120)``, dB) as requested, ``image`` (alias when one sensor), ``label`` (float32
    multi-hot ``(num_classes,)``, absent only when no label source exists) and ``id`` (the S2
    patch name). The dataset is indexed by S2 patches; S1 patches are their pairs.
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("version", "sensors", "num_classes", "ids", "split", "transforms")

    sensors: tuple[str, ...] = ("s1", "s2")
    bands = BANDS
    splits = ("train", "val", "test")

    @classmethod
    def layout_args(cls, root: Path) -> dict[str, Any]:
        """``version`` read from the folder layout (:func:`layout_version`)."""
        return {"version": layout_version(root)}

    @classmethod
    def has_split(cls, root: Path, **kwargs: Any) -> bool:
        """The official split of a v2 ``metadata.parquet`` with a ``split`` column."""
        version = kwargs.get("version") or layout_version(root)
        meta = Path(root) / V2_METADATA
        if version != 2 or not meta.is_file():
            return False
        try:
            import pyarrow.parquet as pq

            return "split" in pq.read_schema(meta).names
        except Exception:  # unreadable: the reader reports it when the dataset is built
            return True

    def __init__(
        self,
        root: PathLike = "data",
        version: int = 2,
        sensors: Sequence[str] = ("s2",),
        num_classes: int = 19,
        ids: Sequence[str] | None = None,
        split: str | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Index the patches.

        Args:
            root: folder holding the dataset (see the module docstring for the layouts).
            version: 1 or 2.
            sensors: ``("s2",)``, ``("s1",)`` or ``("s1", "s2")``.
            num_classes: 19 (BigEarthNet nomenclature) or 43 (CORINE level 3).
            ids: keep these S2 patch names, in this order.
            split: v2 only: keep the official ``train``, ``val``/``validation`` or ``test``
                split of ``metadata.parquet``; ``None`` or ``"all"`` keeps every patch.
            transforms: transform applied to each sample dict.

        Raises:
            ConfigError: bad option or unknown patch id.
            DataError: dataset not found, or unreadable metadata.
        """
        sensors = tuple(sensors)
        if not sensors or any(s not in ("s1", "s2") for s in sensors) or len(set(sensors)) != len(
            sensors
        ):
            raise ConfigError(f"sensors must be ('s2',), ('s1',) or ('s1', 's2'), got {sensors}")
        if version not in (1, 2):
            raise ConfigError(f"BigEarthNet version must be 1 or 2, got {version!r}")
        if num_classes not in (19, 43):
            raise ConfigError(f"num_classes must be 19 or 43, got {num_classes!r}")
        if split == "all":
            split = None
        if split is not None and (version != 2 or split not in _SPLITS):
            raise ConfigError(
                f"split={split!r}: official splits are read from the v2 metadata.parquet "
                "(train, val, test, or all); use ids= for other splits"
            )
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("BigEarthNet folder not found", self.root)
        self.version = version
        self.sensors = sensors
        self.num_classes = num_classes
        self.classes = lab.BEN19_CLASSES if num_classes == 19 else lab.CORINE_CLASSES
        self.transforms = transforms
        #: where labels come from: "metadata", "json", "reference_maps" or None
        self.label_source: str | None
        patches = self._index_v1() if version == 1 else self._index_v2(split)
        if "s1" in sensors:
            unpaired = [p.id for p in patches if p.s1_dir is None]
            if unpaired:
                warnings.warn(
                    f"{self.root}: {len(unpaired)} of {len(patches)} S2 patches have no S1 "
                    f"pair and are left out (first: {unpaired[0]})",
                    stacklevel=2,
                )
                patches = [p for p in patches if p.s1_dir is not None]
        if ids is not None:
            by_id = {p.id: p for p in patches}
            missing = [str(i) for i in ids if str(i) not in by_id]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise ConfigError(f"unknown BigEarthNet patch id {missing[0]!r}{more}")
            patches = [by_id[str(i)] for i in ids]
        if not patches:
            raise DataError(f"no BigEarthNet v{version} patch found for sensors {sensors}",
                            self.root)
        self._patches = patches

    # ---- indexing --------------------------------------------------------------------------
    def _index_v1(self) -> list[_Patch]:
        s2_root = self.root / V1_S2_DIR
        if not s2_root.is_dir():
            s2_root = self.root
        s1_root = self.root / V1_S1_DIR
        names = [n for n in _subdirs(s2_root) if n != V1_S1_DIR]
        if not names:
            raise DataError(f"no BigEarthNet v1 patch found (expected {V1_S2_DIR}/<patch>/)",
                            s2_root)
        patches = [_Patch(n, s2_root / n) for n in names]
        self.label_source = "json"
        if "s1" in self.sensors:
            if not s1_root.is_dir():
                raise DataError("Sentinel-1 folder not found (needed for sensors with s1)",
                                s1_root)
            pairs = self._v1_pairs(s1_root)
            for p in patches:
                s1 = pairs.get(p.id)
                p.s1_dir = None if s1 is None else s1_root / s1
        return patches

    def _v1_pairs(self, s1_root: Path) -> dict[str, str]:
        """S2 name -> S1 name, from ``corresponding_s2_patch`` of every S1 json (cached)."""
        cache = self.root / "bigearthnet_v1_s1_pairs.json"
        s1_names = _subdirs(s1_root)
        if cache.exists():
            try:
                pairs: dict[str, str] = json.loads(cache.read_text())
                if len(set(pairs.values()) & set(s1_names)) == len(s1_names):
                    return pairs
            except (OSError, ValueError):
                pass

        def read(name: str) -> tuple[str, str]:
            path = s1_root / name / f"{name}_labels_metadata.json"
            meta = _read_json(path)
            s2 = meta.get("corresponding_s2_patch")
            if not isinstance(s2, str):
                raise DataError("no corresponding_s2_patch in S1 metadata", path)
            return s2, name

        pairs = dict(parallel_map(read, s1_names, None, "BigEarthNet S1 pairs"))
        try:
            atomic_write_text(cache, json.dumps(pairs))
        except OSError as err:
            warnings.warn(f"{cache}: could not write pairing cache ({err})", stacklevel=3)
        return pairs

    def _index_v2(self, split: str | None) -> list[_Patch]:
        s2_root, s1_root = self.root / V2_S2_DIR, self.root / V2_S1_DIR
        maps = self.root / V2_MAPS_DIR
        meta_path = self.root / V2_METADATA
        if not s2_root.is_dir() and "s2" in self.sensors:
            raise DataError(f"{V2_S2_DIR} folder not found", s2_root)
        if "s1" in self.sensors and not s1_root.is_dir():
            raise DataError("Sentinel-1 folder not found (needed for sensors with s1)", s1_root)
        if meta_path.exists():
            patches = self._v2_from_metadata(meta_path, split)
        else:
            if split is not None:
                raise ConfigError(f"split={split!r} needs {meta_path}, which does not exist")
            patches = self._v2_from_folders(s2_root, s1_root)
        # labels: metadata names (19 classes), else reference maps (any nomenclature)
        if self.label_source == "metadata" and self.num_classes == 19:
            return patches
        if maps.is_dir():
            lacking = [p.id for p in patches if not self._map_path(p).exists()]
            if not lacking:
                self.label_source = "reference_maps"
                return patches
            reason = f"{len(lacking)} of {len(patches)} patches have no reference map " \
                     f"(first: {lacking[0]})"
        else:
            reason = f"neither {V2_METADATA} nor {V2_MAPS_DIR} exists"
        if self.num_classes == 43 and self.label_source == "metadata":
            raise ConfigError(
                "num_classes=43 on BigEarthNet v2 needs the Reference_Maps "
                f"(metadata labels are 19-class): {reason}"
            )
        warnings.warn(f"{self.root}: labels disabled, {reason}", stacklevel=3)
        self.label_source = None
        return patches

    def _v2_from_metadata(self, path: Path, split: str | None) -> list[_Patch]:
        try:
            meta = pd.read_parquet(path)
        except Exception as err:
            raise DataError(f"unreadable metadata parquet ({type(err).__name__}: {err})",
                            path) from err
        for col in ("patch_id", "labels"):
            if col not in meta.columns:
                raise DataError(f"metadata has no {col!r} column", path)
        if split is not None:
            if "split" not in meta.columns:
                raise DataError("metadata has no 'split' column", path)
            meta = meta[meta["split"] == _SPLITS[split]]
        s2_root, s1_root = self.root / V2_S2_DIR, self.root / V2_S1_DIR
        patches = []
        has_s1 = "s1_name" in meta.columns
        for row in meta.itertuples(index=False):
            pid = str(row.patch_id)
            s1_name = str(row.s1_name) if has_s1 and isinstance(row.s1_name, str) else None
            try:
                labels = lab.ben19_names_to_indices([str(n) for n in row.labels])  # type: ignore[union-attr]
            except KeyError as err:
                raise DataError(f"patch {pid}: {err.args[0]}", path) from err
            patches.append(
                _Patch(
                    id=pid,
                    s2_dir=s2_root / "_".join(pid.split("_")[:-2]) / pid,
                    s1_dir=None if s1_name is None
                    else s1_root / "_".join(s1_name.split("_")[:-3]) / s1_name,
                    labels=labels,
                    split=getattr(row, "split", None),
                    country=getattr(row, "country", None),
                )
            )
        self.label_source = "metadata"
        return patches

    def _v2_from_folders(self, s2_root: Path, s1_root: Path) -> list[_Patch]:
        patches = [
            _Patch(name, s2_root / product / name)
            for product in _subdirs(s2_root)
            for name in _subdirs(s2_root / product)
        ]
        if not patches:
            raise DataError(
                f"no BigEarthNet v2 patch found (expected {V2_S2_DIR}/<product>/<patch>/)",
                s2_root,
            )
        if "s1" in self.sensors:
            by_key: dict[tuple[str, str, str], list[Path]] = {}
            for product in _subdirs(s1_root):
                for name in _subdirs(s1_root / product):
                    key = _v2_s1_key(name)
                    if key is not None:
                        by_key.setdefault(key, []).append(s1_root / product / name)
            for p in patches:
                key = _v2_s2_key(p.id)
                candidates = by_key.get(key, []) if key else []
                if candidates:
                    p.s1_dir = _closest_in_time(p.id, candidates)
        self.label_source = None
        return patches

    def _map_path(self, patch: _Patch) -> Path:
        product = "_".join(patch.id.split("_")[:-2])
        return self.root / V2_MAPS_DIR / product / patch.id / f"{patch.id}_reference_map.tif"

    # ---- dataset API -----------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:  # type: ignore[override]
        """S2 patch names in dataset order."""
        return [p.id for p in self._patches]

    def __len__(self) -> int:
        """Number of patches."""
        return len(self._patches)

    def band_paths(self, index: int, sensor: str) -> list[Path]:
        """Band files of patch ``index`` for ``sensor``, in band order."""
        p = self._patches[index]
        if sensor == "s2":
            return [p.s2_dir / f"{p.id}_{b}.tif" for b in S2_BANDS]
        if p.s1_dir is None:
            raise DataError(f"patch {p.id} has no Sentinel-1 pair", self.root)
        return [p.s1_dir / f"{p.s1_dir.name}_{b}.tif" for b in S1_BANDS]

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load patch ``index``.

        Raises:
            DataError: a band file is missing or corrupt, or bands / sensors disagree on CRS
                or footprint.
        """
        sample: dict[str, Any] = {}
        crs_ref: tuple[Any, Path] | None = None
        for sensor in self.sensors:
            image, crs, path = self._load_sensor(index, sensor)
            if crs_ref is not None and crs != crs_ref[0]:
                raise DataError(f"CRS mismatch: {crs} here, {crs_ref[0]} in {crs_ref[1]}", path)
            crs_ref = (crs, path)
            sample[f"image_{sensor}"] = image
        if len(self.sensors) == 1:
            sample["image"] = sample[f"image_{self.sensors[0]}"]
        indices = self.label_indices(index)
        if indices is not None:
            sample["label"] = lab.multi_hot(indices, self.num_classes)
        sample["id"] = self._patches[index].id
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _load_sensor(self, index: int, sensor: str) -> tuple[Tensor, Any, Path]:
        """Bands of one sensor on the 120 x 120 grid, with the CRS and the first band's path."""
        bands = []
        ref: tuple[Any, Any, Path] | None = None
        for path in self.band_paths(index, sensor):
            with open_raster(path) as src:
                if ref is None:
                    ref = (src.crs, src.bounds, path)
                elif src.crs != ref[0]:
                    raise DataError(f"CRS mismatch: {src.crs} here, {ref[0]} in {ref[2]}", path)
                elif not np.allclose(tuple(src.bounds), tuple(ref[1]), atol=src.res[0] / 100):
                    raise DataError(f"footprint {tuple(src.bounds)} differs from {ref[2]}", path)
                array = read_bands(src, path, 1)
            band = torch.from_numpy(array.astype(np.float32))[None]  # (1, 1, h, w)
            if band.shape[-2:] != (PATCH_SIZE, PATCH_SIZE):
                band = F.interpolate(band, size=(PATCH_SIZE, PATCH_SIZE), mode="bilinear",
                                     align_corners=False)
            bands.append(band[0, 0])
        assert ref is not None
        return torch.stack(bands), ref[0], ref[2]

    def label_indices(self, index: int) -> list[int] | None:
        """Class indices of patch ``index`` (``None`` when labels are off).

        Raises:
            DataError: missing or invalid label file.
        """
        p = self._patches[index]
        if self.label_source == "metadata":
            return p.labels
        if self.label_source == "json":
            path = p.s2_dir / f"{p.id}_labels_metadata.json"
            names = _read_json(path).get("labels")
            if not isinstance(names, list):
                raise DataError("no 'labels' list in label metadata", path)
            try:
                return lab.corine_names_to_indices(names, self.num_classes)
            except KeyError as err:
                raise DataError(str(err.args[0]), path) from err
        if self.label_source == "reference_maps":
            path = self._map_path(p)
            codes = np.unique(read_image(path, 1))
            return lab.clc_codes_to_indices(codes.tolist(), self.num_classes)
        return None

    # ---- footprints ------------------------------------------------------------------------
    def footprints(self, workers: int | None = None, cache: bool = True) -> gpd.GeoDataFrame:
        """Footprints of the patches, in the chip-index format, for splits.

        Headers of the first band (S2 ``B02``, or S1 ``VV`` when S1 only) and the label files are
        read in a thread pool and cached in ``ROOT/bigearthnet_v<version>_footprints.parquet``.

        Returns:
            GeoDataFrame in dataset order with ``chip_id`` (S2 patch name), ``path`` (first band
            file relative to ROOT), ``scene`` (S2 product), ``season``, ``datetime`` (UTC),
            ``patch`` (``"<x>_<y>"`` grid cell), ``sensor``, ``crs``, ``res``, ``height``,
            ``width``, ``minx``, ``miny``, ``maxx``, ``maxy`` (own CRS), ``geometry``
            (EPSG:4326), ``label`` (comma-separated class indices, when labels are on) and,
            from the v2 metadata, ``split`` and ``country``.
        """
        sensor = "s2" if "s2" in self.sensors else "s1"
        band = 1 if sensor == "s2" else 0  # B02 (10 m) or VV
        label_col = f"labels{self.num_classes}_{self.label_source}"
        cache_path = self.root / f"bigearthnet_v{self.version}_footprints.parquet"
        cached = load_cache(cache_path) if cache else None
        if cached is not None and "chip_id" in cached.columns:
            cached = cached.drop_duplicates("chip_id", keep="last").set_index("chip_id")
            if label_col not in cached.columns:
                cached[label_col] = None
        else:
            cached = None
        cheap_labels = self.label_source in (None, "metadata")
        todo = [
            i for i, p in enumerate(self._patches)
            if cached is None or p.id not in cached.index
            or (not cheap_labels and not isinstance(cached.at[p.id, label_col], str))
        ]  # fmt: skip

        def read(i: int) -> dict[str, Any]:
            info = header_info(self.band_paths(i, sensor)[band])
            info["chip_id"] = self._patches[i].id
            if not cheap_labels:
                info[label_col] = ",".join(map(str, self.label_indices(i) or []))
            return info

        cached = update_cache(cached, parallel_map(read, todo, workers, "BigEarthNet footprints"),
                              cache_path if cache else None)
        rows = cached.loc[self.ids].reset_index()
        dates = [_date(p.id) for p in self._patches]
        out = pd.DataFrame(
            {
                "chip_id": rows["chip_id"].astype(str),
                "path": [
                    os.path.relpath(self.band_paths(i, sensor)[band], self.root)
                    for i in range(len(self))
                ],
                "scene": ["_".join(p.id.split("_")[:-2]) for p in self._patches],
                "season": [season_of(d.month) if d is not None else None for d in dates],
                "datetime": pd.DatetimeIndex(
                    [d if d is not None else pd.NaT for d in dates]
                ).tz_localize("UTC"),
                "patch": ["_".join(p.id.split("_")[-2:]) for p in self._patches],
                "sensor": sensor,
            }
        )
        for col in ("crs", "res", "height", "width", "minx", "miny", "maxx", "maxy"):
            out[col] = rows[col].to_numpy()
        if self.label_source == "metadata":
            out["label"] = [",".join(map(str, p.labels or [])) for p in self._patches]
        elif self.label_source is not None:
            out["label"] = rows[label_col].to_numpy()
        if self.label_source == "metadata":
            out["split"] = [p.split for p in self._patches]
            out["country"] = [p.country for p in self._patches]
        return gpd.GeoDataFrame(out, geometry=footprint_geometry(out), crs="EPSG:4326")


def _closest_in_time(s2_name: str, candidates: list[Path]) -> Path:
    """The S1 patch folder acquired closest to the S2 patch (the first one if undated)."""
    date = _date(s2_name)
    if date is None:
        return candidates[0]

    def gap(path: Path) -> float:
        other = _date(path.name)
        return abs((other - date).total_seconds()) if other is not None else float("inf")

    return min(candidates, key=gap)


def _read_json(path: Path) -> dict[str, Any]:
    """Read a json object, with one-line :class:`DataError` on any problem."""
    if not path.exists():
        raise DataError("label metadata file not found", path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"unreadable json ({err})", path) from err
    if not isinstance(data, dict):
        raise DataError("expected a json object", path)
    return data
