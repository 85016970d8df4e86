"""Lightning data module for self-supervised pretraining.

One module for every dataset and pairing mode: it builds the dataset (SEN12MS, BigEarthNet,
AID/UC Merced, PolSAR, SSL4EO-S12 read through a grid of geo queries, or a chip index written by
``geossl tile``), restricts it to one side of a saved overlap-aware split, keys every image per
sensor (``image_s1``, ``image_s2``, ...), crops to the patch size, normalises per sensor (its
default normaliser, a named one, or a ``geossl stats`` file) and hands batches to the method,
which makes the views and augments them on the device.

Speed notes (the GPU must not starve):

* A batch carries only the tensors the pairing mode needs (``pairing_keys``) plus ``index``:
  labels, masks, bounds and CRS are dropped before collation, so workers pickle little.
* Normalisation runs once per *batch* inside the worker (in :class:`_Collate`), vectorised over
  the batch, not per sample in the main process.
* Pinned memory when a GPU is present, persistent workers, a deep prefetch queue.

DeepCluster support: :meth:`SSLDataModule.cluster_dataloader` (no shuffle, no augmentation, every
batch carries ``index``) and :meth:`SSLDataModule.set_sample_weights` (uniform sampling over
pseudo-labels through a :class:`~torch.utils.data.WeightedRandomSampler`, picked up when the
trainer reloads the training loader every epoch).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler
from torch.utils.data._utils.collate import default_collate

from geossl.errors import ConfigError, DataError
from geossl.pairing import SENSOR_MASK, image_key, key_sensor, pairing_keys

#: datasets whose samples carry one ``image`` of a single sensor, with the sensor it stands for
SINGLE_SENSOR = {"aid": "rgb", "ucmerced": "rgb", "eurosat": "s2", "folder": "rgb", "scenes": "rgb",
                 "polsar": "polsar"}

#: keys a batch may carry besides the per-sensor images
_EXTRA_KEYS = (SENSOR_MASK,)
#: batch key: how many image values of the batch were NaN/inf and filled with 0
FILLED_KEY = "filled_values"


# --------------------------------------------------------------------------------------------
# normalisation contract (geossl.data.normalize)
# --------------------------------------------------------------------------------------------
def sensor_normalizer(sensor: str) -> Callable[[Tensor], Tensor] | None:
    """The batch-wise normaliser :mod:`geossl.data.normalize` has under ``sensor``'s name.

    Args:
        sensor: sensor name (``s1``, ``s2``, ``rgb``, ...).

    Returns:
        a picklable callable mapping a ``(B, C, H, W)`` float tensor to its normalised version,
        or ``None`` when the sensor has no registered normalisation.
    """
    from geossl.data import normalize

    try:
        return normalize.get_normalizer(sensor)
    except (KeyError, ValueError, ConfigError):
        return None


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------
def build_dataset(
    data: str,
    root: str | Path,
    sensors: Sequence[str],
    pairing: str,
    index: str | Path | None = None,
    ids: Sequence[str] | None = None,
    patch_size: int | None = None,
) -> Dataset[dict[str, Any]]:
    """Build the raw dataset for pretraining.

    Args:
        data: dataset name (``sen12ms``, ``bigearthnet``, ``aid``, ``ucmerced``, ``eurosat``,
            ``polsar``, ``chips``; any other name goes through :mod:`geossl.datasets.registry`).
        root: dataset folder.
        sensors: sensors to load.
        pairing: pairing mode (``temporal`` asks the dataset for a second date).
        index: chip index file for ``chips`` (default ``ROOT/index.parquet``).
        ids: restrict to these sample ids (one side of a split), when the dataset supports it.
        patch_size: patch size for datasets cut on a grid (PolSAR).

    Returns:
        a map-style dataset of sample dicts.

    Raises:
        ConfigError: unknown dataset or option.
        DataError: missing or unreadable data.
    """
    root = Path(root)
    if not root.exists():
        raise DataError("dataset folder not found", root)
    ids_kw: dict[str, Any] = {} if ids is None else {"ids": list(ids)}
    if data == "sen12ms":
        from geossl.datasets.sen12ms import SEN12MSPatches

        # label=None: SSL needs no land cover, so the lc files are not even opened
        return SEN12MSPatches(root, sensors=tuple(sensors), label=None, **ids_kw)
    if data == "bigearthnet":
        from geossl.datasets.bigearthnet import BigEarthNet
        from geossl.datasets.registry import bigearthnet_version

        return BigEarthNet(root, sensors=tuple(sensors), version=bigearthnet_version(root),
                           **ids_kw)
    if data in ("aid", "ucmerced", "eurosat", "folder", "scenes"):
        from geossl.datasets import aid

        cls = {"aid": aid.AID, "ucmerced": aid.UCMerced, "eurosat": aid.EuroSAT,
               "folder": aid.SceneFolder, "scenes": aid.SceneFolder}[data]
        # pretrain on the dataset's own training side unless a split file says otherwise
        return cls(root, split="all" if ids is not None else "train", **ids_kw)
    if data == "polsar":
        from geossl.datasets.polsar import PolSAR

        return PolSAR(root, patch_size=patch_size or 64, **ids_kw)
    if data == "ssl4eo":
        if ids is not None:
            raise ConfigError("--splits is not supported with --data ssl4eo; tile it with "
                              "`geossl tile` and split the chip index")
        from geossl.datasets.ssl4eo import pairing_dataset

        multi = pairing_dataset(root, sensors, temporal=pairing == "temporal")
        return GeoSamples(multi, patch_size or DEFAULT_GEO_PATCH, root=root)
    if data == "chips":
        path = Path(index) if index else root / "index.parquet"
        if not path.exists():
            raise DataError("chip index not found (write one with `geossl tile`)", path)
        if pairing == "temporal" or len(sensors) > 1:
            return _paired_chips(path, sensors, pairing)
        from geossl.datasets.chips import ChipDataset
        from geossl.tiling import chip_index

        gdf = chip_index.read_index(path)
        part = sensor_chips(gdf, sensors[0], path)
        if len(part) == len(gdf):  # one sensor: the index as it is (and its packed store)
            return ChipDataset(path, **ids_kw)  # type: ignore[no-any-return]
        if ids is not None:  # a split of the whole index: its chips of this sensor
            have = set(part["chip_id"].astype(str))
            ids_kw["ids"] = [i for i in ids if i in have]
            if not ids_kw["ids"]:
                raise DataError(f"no chip of sensor {sensors[0]!r} in the split", path)
        return ChipDataset(part, root=gdf.attrs.get("root", path.parent),  # type: ignore[no-any-return]
                           **ids_kw)
    try:
        from geossl.datasets.registry import get_dataset  # type: ignore[import-not-found]
    except ImportError as err:  # pragma: no cover - while the registry does not exist
        raise ConfigError(f"unknown dataset {data!r}") from err
    return get_dataset(data, str(root), **ids_kw)  # type: ignore[no-any-return]


def sensor_chips(gdf: Any, sensor: str, path: str | Path | None = None) -> Any:
    """The rows of a chip index that hold ``sensor`` (its ``sensor`` column).

    An index whose chips record no sensor (``geossl index`` without ``--sensor``) is taken
    whole, as one sensor; otherwise only the chips of ``sensor`` are kept.

    Args:
        gdf: chip index.
        sensor: sensor name (``--sensors``).
        path: the index file, for error messages.

    Returns:
        the index rows of that sensor (``gdf`` itself when it records no sensor).

    Raises:
        DataError: the index records sensors but none of its chips is ``sensor``.
    """
    if "sensor" not in gdf.columns:
        return gdf
    names = gdf["sensor"].fillna("").astype(str)
    if not (names != "").any():
        return gdf
    if bool((names == sensor).all()):
        return gdf
    part = gdf[(names == sensor).to_numpy()].reset_index(drop=True)
    if not len(part):
        have = ", ".join(sorted({n or "(none)" for n in names.unique()}))
        raise DataError(f"no chip of sensor {sensor!r} in the index (has {have})", path)
    return part


def _paired_chips(path: Path, sensors: Sequence[str], pairing: str) -> Dataset[dict[str, Any]]:
    """Chips of several sensors (the index's ``sensor`` column) or dates, joined on footprint."""
    from geossl.datasets.multisensor import PairedChips
    from geossl.tiling import chip_index

    gdf = chip_index.read_index(path)
    root = gdf.attrs.get("root", path.parent)
    if len(sensors) == 1:
        # temporal: dates of one sensor; chips of other sensors would pair with them on
        # footprint (and then fail to stack: different band counts)
        indexes = {sensors[0]: sensor_chips(gdf, sensors[0], path)}
    else:
        if "sensor" not in gdf.columns:
            raise DataError("chip index has no 'sensor' column to pair sensors with", path)
        indexes = {}
        for s in sensors:
            part = gdf[gdf["sensor"].astype(str) == s].reset_index(drop=True)
            if not len(part):
                have = ", ".join(sorted(map(str, gdf["sensor"].unique())))
                raise DataError(f"no chip of sensor {s!r} in the index (has {have})", path)
            indexes[s] = part
    return PairedChips(  # type: ignore[no-any-return]
        indexes,
        reference=sensors[-1] if len(sensors) > 1 else sensors[0],
        temporal=sensors[0] if pairing == "temporal" else None,
        require="reference" if pairing == "partial-fusion" else "all",
        roots={s: root for s in indexes},
    )


#: window size in pixels of geo queries when no --patch-size is given
DEFAULT_GEO_PATCH = 64


def _starts(lo: float, hi: float, size: float) -> list[float]:
    """Starts of windows of ``size`` inside ``[lo, hi]`` that cover it.

    A step of ``size``; the last window is moved back to end at ``hi`` (overlapping its
    neighbour) so that the edge is covered.
    """
    n = int((hi - lo) / size + 1e-9)
    starts = [lo + k * size for k in range(n)]
    if n and starts[-1] + size < hi - 1e-9 * max(1.0, abs(hi)):
        starts.append(hi - size)
    return starts


def geo_grid(dataset: Any, size: int) -> list[tuple[slice, slice, slice]]:
    """Queries of ``size`` x ``size`` pixel windows lying inside each index row's footprint.

    Unlike TorchGeo 0.8's :class:`~torchgeo.samplers.GridGeoSampler`, whose last row and column
    of windows reach past the footprint (read as zeros, i.e. no data), every window here lies
    inside the bounds of its row; the last one is moved back to end on the edge. The time slice
    is the row's interval, so a query selects its row's acquisitions.
    """
    rx, ry = dataset.res
    w, h = size * rx, size * ry
    queries: list[tuple[slice, slice, slice]] = []
    for geom, interval in zip(dataset.index.geometry, dataset.index.index, strict=True):
        xmin, ymin, xmax, ymax = geom.bounds
        t = slice(interval.left, interval.right)
        for y0 in _starts(ymin, ymax, h):
            for x0 in _starts(xmin, xmax, w):
                queries.append((slice(x0, x0 + w), slice(y0, y0 + h), t))
    return queries


class GeoSamples(Dataset[dict[str, Any]]):
    """A TorchGeo GeoDataset seen through a fixed grid of geo queries, as a map-style dataset.

    The queries (:func:`geo_grid`: ``size`` pixel windows inside every index row) are laid
    once, so sample ``i`` is always the same window (DeepCluster's pseudo-labels stay attached
    to it) and the data module shuffles positions as for any other dataset. Used for
    ``--data ssl4eo`` (a :class:`~geossl.data.pairing.MultiSensorDataset`).
    """

    def __init__(self, dataset: Any, size: int, root: str | Path | None = None) -> None:
        """Lay the grid of queries.

        Args:
            dataset: a TorchGeo GeoDataset (e.g. a ``MultiSensorDataset``).
            size: window size in pixels (at the dataset's resolution).
            root: the dataset folder (for messages).

        Raises:
            ConfigError: no window of that size fits in any footprint.
        """
        self.dataset = dataset
        self.size = int(size)
        self.root = None if root is None else Path(root)
        self.queries = geo_grid(dataset, self.size)
        if not self.queries:
            rx, ry = dataset.res
            widths = [(g.bounds[2] - g.bounds[0]) / rx for g in dataset.index.geometry]
            heights = [(g.bounds[3] - g.bounds[1]) / ry for g in dataset.index.geometry]
            big = f"{max(widths, default=0):.0f} x {max(heights, default=0):.0f}"
            raise ConfigError(f"patch size {self.size} is larger than every footprint of the "
                              f"dataset (at most {big} px); lower --patch-size")
        subsets = getattr(dataset, "datasets", None)
        #: band names per sensor
        self.bands: dict[str, list[str]] | None = None
        if isinstance(subsets, dict):
            self.bands = {str(k): [str(b) for b in getattr(v, "bands", ())]
                          for k, v in subsets.items()}

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.queries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """The sample of window ``i``."""
        return self.dataset[self.queries[i]]  # type: ignore[no-any-return]


def _dataset_ids(dataset: Any) -> list[str] | None:
    """Sample ids of ``dataset`` in order, read from its index (no sample is loaded)."""
    for attr in ("ids", "patch_ids", "chip_ids"):
        value = getattr(dataset, attr, None)
        if value is not None and not callable(value):
            return [str(v) for v in value]
    index = getattr(dataset, "index", None)
    for col in ("id", "chip_id", "patch_id"):
        if index is not None and hasattr(index, "columns") and col in index.columns:
            return [str(v) for v in index[col]]
    return None


def load_split_ids(path: str | Path, split: str) -> list[str]:
    """Ids of one side of a saved split (``geossl split`` JSON or GeoParquet).

    Args:
        path: split file.
        split: ``train``, ``val`` or ``test``.

    Returns:
        the chip / patch ids in that split.

    Raises:
        DataError: unreadable file.
        ConfigError: the split is absent or empty.
    """
    from geossl.splits import load_splits

    loaded: Any = load_splits(path)
    if isinstance(loaded, dict) and "splits" in loaded:
        loaded = loaded["splits"]
    if isinstance(loaded, dict):
        ids = loaded.get(split)
        if ids is None:
            raise ConfigError(f"split {split!r} not in {path} (has {', '.join(map(str, loaded))})")
        ids = list(ids)
    else:  # a pandas Series of split names indexed by id
        series = getattr(loaded, "splits", loaded)
        ids = [str(i) for i, s in series.items() if s == split]
    if not ids:
        raise ConfigError(f"split {split!r} of {path} is empty")
    return [str(i) for i in ids]


# --------------------------------------------------------------------------------------------
# per-sample view and batch collation (both run inside the loader workers)
# --------------------------------------------------------------------------------------------
class SSLSamples(Dataset[dict[str, Any]]):
    """Samples reduced to what SSL needs: per-sensor images, the sensor mask and ``index``.

    Renames a single-sensor ``image`` to ``image_<sensor>``, keeps only ``keys`` (plus
    ``sensor_mask`` when the dataset gives one), crops every image to ``patch_size`` at one random
    offset shared by all keys (the sensors stay co-registered; centre crop when ``train`` is
    false) and adds ``index``, the position in this dataset (DeepCluster's pseudo-labels).
    """

    def __init__(
        self,
        base: Dataset[dict[str, Any]],
        keys: Sequence[str],
        single_sensor: str | None = None,
        patch_size: int | None = None,
        indices: Sequence[int] | None = None,
        train: bool = True,
    ) -> None:
        """Wrap a dataset.

        Args:
            base: dataset returning sample dicts.
            keys: image keys to keep (e.g. ``image_s1``, ``image_s2``).
            single_sensor: sensor name for a dataset returning a plain ``image``.
            patch_size: crop size in pixels (``None``: keep the full sample).
            indices: positions of ``base`` to use (one side of a split); all when ``None``.
            train: random crops when true, centre crops otherwise.
        """
        self.base = base
        self.keys = list(keys)
        self.single_sensor = single_sensor
        self.patch_size = patch_size
        self.indices = None if indices is None else list(indices)
        self.train = train

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)  # type: ignore[arg-type]

    def with_train(self, train: bool) -> SSLSamples:
        """The same samples with random (``True``) or centre (``False``) crops."""
        return SSLSamples(self.base, self.keys, self.single_sensor, self.patch_size,
                          self.indices, train)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.indices[i] if self.indices is not None else i
        sample = self.base[j]
        if self.single_sensor is not None and "image" in sample:
            sample[image_key(self.single_sensor)] = sample.pop("image")
        out: dict[str, Any] = {}
        for key in self.keys:
            if key not in sample:
                have = ", ".join(k for k in sample if k.startswith("image"))
                if key.endswith("_t2"):
                    raise ConfigError(
                        f"temporal pairing needs a second date ({key!r}) but "
                        f"{type(self.base).__name__} gives {have or 'no images'}"
                    )
                raise DataError(f"sample {j} has no {key!r} (has {have or 'no images'})",
                                getattr(self.base, "root", None))
            out[key] = torch.as_tensor(sample[key])
        for key in _EXTRA_KEYS:
            if key in sample:
                out[key] = torch.as_tensor(sample[key])
        if self.patch_size is not None:
            self._crop(out)
        out["index"] = i
        return out

    def _crop(self, out: dict[str, Any]) -> None:
        size = int(self.patch_size)  # type: ignore[arg-type]
        h, w = out[self.keys[0]].shape[-2:]
        if h < size or w < size:
            raise ConfigError(f"patch size {size} is larger than the samples ({h} x {w})")
        if h == size and w == size:
            return
        if self.train:
            top, left = random.randint(0, h - size), random.randint(0, w - size)
        else:
            top, left = (h - size) // 2, (w - size) // 2
        for key in self.keys:
            out[key] = out[key][..., top : top + size, left : left + size]


class _Collate:
    """Collate a list of samples and normalise each sensor's images once for the whole batch.

    A class (not a closure) so that it pickles into worker processes.
    """

    def __init__(self, normalizers: dict[str, Callable[[Tensor], Tensor]]) -> None:
        self.normalizers = normalizers

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = default_collate(samples)
        filled = torch.zeros((), dtype=torch.int64)
        for key, value in list(batch.items()):
            if not key.startswith("image_"):
                continue
            value = value.float()
            bad = ~torch.isfinite(value)
            norm = self.normalizers.get(key_sensor(key))
            if norm is not None:
                value = norm(value)
            # a single NaN (SEN12MS has a broken S1 patch; nodata in chips) would poison the
            # loss of the whole batch: zero is the band mean after normalisation. Counted (raw
            # values or normalised ones that are not finite), so the run can say how many.
            filled += (bad | ~torch.isfinite(value)).sum()
            batch[key] = torch.nan_to_num_(value, nan=0.0, posinf=0.0, neginf=0.0)
        batch[FILLED_KEY] = filled
        return batch


# --------------------------------------------------------------------------------------------
# the data module
# --------------------------------------------------------------------------------------------
class SSLDataModule(LightningDataModule):
    """Batches of co-registered per-sensor images for self-supervised pretraining."""

    def __init__(
        self,
        data: str,
        root: str | Path,
        sensors: Sequence[str] = ("s1", "s2"),
        pairing: str = "geo",
        batch_size: int = 64,
        workers: int = 0,
        patch_size: int | None = None,
        splits: str | Path | None = None,
        split: str = "train",
        index: str | Path | None = None,
        normalize: bool = True,
        drop_last: bool = True,
        prefetch_factor: int = 4,
        pin_memory: bool | None = None,
        dataset: Dataset[dict[str, Any]] | None = None,
        norm_names: Mapping[str, str] | None = None,
        stats: str | Path | None = None,
    ) -> None:
        """Configure the data module (nothing is read until :meth:`setup`).

        Args:
            data: dataset name: ``sen12ms``, ``bigearthnet``, ``aid``, ``ucmerced``, ``polsar``,
                ``ssl4eo``, ``chips``.
            root: dataset folder (for ``chips``, the folder of the chip index).
            sensors: sensors to load, e.g. ``("s1", "s2")``.
            pairing: pairing mode; decides which keys each batch carries.
            batch_size: samples per batch (per device).
            workers: loader worker processes.
            patch_size: crop every sample to this size (``None``: full samples; for
                ``ssl4eo``, the size of the grid windows, default :data:`DEFAULT_GEO_PATCH`).
            splits: a split file written by ``geossl split``; only ``split`` ids are used.
            split: which side of ``splits`` to train on.
            index: chip index for ``chips`` (default ``ROOT/index.parquet``).
            normalize: per-sensor normalisation (S1 dB clipping, S2 reflectance scaling, ...;
                see ``norm_names`` and ``stats``). A sensor with no normalisation of its own
                name, no ``norm_names`` entry and no ``stats`` entry is a :class:`ConfigError`.
            drop_last: drop the last incomplete training batch (contrastive losses like full
                batches).
            prefetch_factor: batches prefetched per worker.
            pin_memory: pin host memory (default: when CUDA is available).
            dataset: use this dataset instead of building one from ``data``/``root`` (its
                samples must carry the per-sensor keys or ``image``).
            norm_names: sensor -> normaliser name of :mod:`geossl.data.normalize` (e.g.
                ``{"s2": "s2_offset"}``, ``{"x": "none"}`` for raw values); overrides the
                sensor's default and ``stats``.
            stats: a ``geossl stats`` JSON file: the sensors without a ``norm_names`` entry are
                standardised with its per-band mean and std.
        """
        super().__init__()
        self.data = data
        self.root = Path(root)
        self.sensors = [s.strip() for s in sensors]
        self.pairing = pairing
        self.batch_size = batch_size
        self.workers = workers
        self.patch_size = patch_size
        self.splits = splits
        self.split = split
        self.index = index
        self.normalize = normalize
        self.drop_last = drop_last
        self.prefetch_factor = prefetch_factor
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._base = dataset
        self.norm_names = {str(k): str(v) for k, v in (norm_names or {}).items()}
        self.stats = stats
        self.keys = pairing_keys(pairing, self.sensors)
        self.train_dataset: SSLSamples | None = None
        self.sample_weights: Tensor | None = None
        self._collate = _Collate({})
        #: band names per sensor and normaliser per sensor (set by setup; checkpoint metadata)
        self.bands: dict[str, list[str]] | None = None
        self.normalization: dict[str, str] | None = None
        self._filled: Tensor | None = None

    # -- setup ------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the dataset (once), restricted to the split, and the batch collation."""
        if self.train_dataset is not None:
            return
        ids = load_split_ids(self.splits, self.split) if self.splits else None
        base = self._base
        passed_ids = False
        if base is None:
            base = build_dataset(self.data, self.root, self.sensors, self.pairing, self.index, ids,
                                 self.patch_size)
            passed_ids = ids is not None and _dataset_restricted(base, ids)
        indices = None
        if ids is not None and not passed_ids:
            indices = _positions(base, ids, self.splits)
        single = None
        if len(self.sensors) == 1 and self.pairing != "fusion":
            single = self.sensors[0]
        elif self.data in SINGLE_SENSOR:
            single = self.sensors[0] if self.sensors else SINGLE_SENSOR[self.data]
        self.train_dataset = SSLSamples(base, self.keys, single, self.patch_size, indices)
        if len(self.train_dataset) == 0:
            raise DataError("no samples to train on", self.root)
        if self.drop_last and len(self.train_dataset) < self.batch_size:
            raise ConfigError(
                f"batch size {self.batch_size} is larger than the {len(self.train_dataset)} "
                "training samples; lower --batch-size"
            )
        sensors = sorted({key_sensor(k) for k in self.keys})
        self.bands = _band_names(self.data, base, sensors)
        normalizers: dict[str, Callable[[Tensor], Tensor]] = {}
        record: dict[str, Any] = {}
        if self.normalize and not getattr(base, "normalized", False):
            normalizers, record = self._normalizers(sensors)
        self._collate = _Collate(normalizers)
        # sensor -> name for geossl.data.normalize.get_normalizer, or {"mean", "std"} from a
        # statistics file (what evaluation reapplies)
        self.normalization = record or None

    def _normalizers(
        self, sensors: Sequence[str]
    ) -> tuple[dict[str, Callable[[Tensor], Tensor]], dict[str, Any]]:
        """Normaliser per sensor and its record (a name, or the statistics' mean and std)."""
        from geossl.data import normalize

        unknown = sorted(set(self.norm_names) - set(sensors))
        if unknown:
            raise ConfigError(f"--normalization names sensor(s) {', '.join(unknown)} not in "
                              f"--sensors {','.join(self.sensors)}")
        normalizers: dict[str, Callable[[Tensor], Tensor]] = {}
        record: dict[str, Any] = {}
        from_stats = [s for s in sensors if s not in self.norm_names and self.stats]
        doc = normalize.load_stats(self.stats) if from_stats and self.stats else None
        for sensor in sensors:
            if sensor in self.norm_names:
                name = self.norm_names[sensor]
                normalizers[sensor] = normalize.get_normalizer(name)
                record[sensor] = name
            elif doc is not None:
                names = (self.bands or {}).get(sensor)
                mean, std = normalize.sensor_stats(doc, sensor, sole=len(from_stats) == 1,
                                                   bands=names)
                self._check_stats_bands(sensor, len(mean))
                normalizers[sensor] = normalize.Standardize(mean, std)
                record[sensor] = {"mean": mean, "std": std}
            else:
                norm = sensor_normalizer(sensor)
                if norm is None:
                    raise ConfigError(
                        f"no normalisation for sensor {sensor!r}: give --normalization "
                        f"{sensor}=NAME (one of {', '.join(sorted(normalize.NORMALIZERS))}), "
                        f"{sensor}=none for raw values, or --stats FILE from `geossl stats`")
                normalizers[sensor] = norm
                record[sensor] = sensor
        return normalizers, record

    def _check_stats_bands(self, sensor: str, count: int) -> None:
        """Refuse statistics whose band count differs from the samples' (first sample)."""
        assert self.train_dataset is not None
        sample = self.train_dataset[0]
        for key in self.keys:
            if key_sensor(key) == sensor and key in sample:
                bands = int(sample[key].shape[-3])
                if bands != count:
                    raise ConfigError(f"the statistics have {count} band(s) for {sensor} but "
                                      f"the samples have {bands}", self.stats)
                return

    @property
    def num_samples(self) -> int:
        """Number of training samples (after :meth:`setup`)."""
        self.setup()
        assert self.train_dataset is not None
        return len(self.train_dataset)

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch on one device."""
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # -- loaders ----------------------------------------------------------------------------
    def _loader(
        self,
        dataset: Dataset[dict[str, Any]],
        sampler: Sampler[int] | None,
        shuffle: bool,
        drop_last: bool,
    ) -> DataLoader[dict[str, Any]]:
        extra: dict[str, Any] = {}
        if self.workers > 0:
            extra = {"persistent_workers": True, "prefetch_factor": self.prefetch_factor}
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.workers,
            collate_fn=self._collate,
            pin_memory=self.pin_memory,
            drop_last=drop_last,
            **extra,
        )

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Shuffled training batches (weighted sampling after :meth:`set_sample_weights`)."""
        self.setup()
        assert self.train_dataset is not None
        sampler: Sampler[int] | None = None
        if self.sample_weights is not None:
            sampler = WeightedRandomSampler(
                self.sample_weights.double(),  # type: ignore[arg-type]
                num_samples=len(self.train_dataset), replacement=True
            )
        else:
            sampler = RandomSampler(self.train_dataset)
        return self._loader(self.train_dataset, sampler, True, self.drop_last)

    def cluster_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Every training sample once, in order, centre-cropped, batches carrying ``index``.

        Used by DeepCluster to extract the features it clusters (no augmentation is applied
        here; the methods augment on the device only in their training step).
        """
        self.setup()
        assert self.train_dataset is not None
        return self._loader(self.train_dataset.with_train(False), None, False, False)

    def set_sample_weights(self, weights: Tensor | Sequence[float] | None) -> None:
        """Sample the training set with these per-sample weights from the next epoch on.

        Args:
            weights: one non-negative weight per training sample (DeepCluster: the inverse of
                the size of each sample's pseudo-label cluster), or ``None`` for uniform
                shuffling again.

        Raises:
            ValueError: if the number of weights does not match the training samples.
        """
        if weights is None:
            self.sample_weights = None
            return
        w = torch.as_tensor(weights, dtype=torch.float64).flatten().cpu()
        if len(w) != self.num_samples:
            raise ValueError(f"{len(w)} weights for {self.num_samples} samples")
        if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("sample weights must be finite, non-negative, not all zero")
        self.sample_weights = w

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Add up the batch's filled (NaN/inf) values, on its device (no host sync)."""
        if isinstance(batch, dict) and FILLED_KEY in batch:
            count = batch.pop(FILLED_KEY)
            self._filled = count if self._filled is None else self._filled + count
        return batch

    def filled_values(self) -> int:
        """Image values that were NaN/inf and filled with 0 in the batches trained on so far."""
        return 0 if self._filled is None else int(self._filled)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed state: the DeepCluster sample weights survive a resume."""
        return {"sample_weights": self.sample_weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.sample_weights = state_dict.get("sample_weights")


def _band_names(data: str, base: Any, sensors: Sequence[str]) -> dict[str, list[str]] | None:
    """Band names per sensor, from the dataset (stored in checkpoints by the methods)."""
    known: dict[str, Sequence[str]] = {}
    if data == "sen12ms":
        from geossl.datasets.sen12ms import BANDS

        known = dict(BANDS)
    elif data == "bigearthnet":
        from geossl.datasets import bigearthnet

        known = {"s1": bigearthnet.S1_BANDS, "s2": bigearthnet.S2_BANDS}
    names = getattr(base, "bands", None)
    if isinstance(names, dict):
        known = {**known, **names}
    elif isinstance(names, list | tuple) and len(sensors) == 1:
        known = {sensors[0]: names}
    out = {s: [str(b) for b in known[s]] for s in sensors if s in known}
    return out or None


def _dataset_restricted(dataset: Any, ids: Sequence[str]) -> bool:
    """Whether the dataset was built on exactly ``ids`` (it accepted the ``ids`` argument)."""
    found = _dataset_ids(dataset)
    return found is not None and set(found) <= set(ids)


def _positions(dataset: Any, ids: Sequence[str], path: Any) -> list[int]:
    """Positions in ``dataset`` of the samples whose id is in ``ids``."""
    found = _dataset_ids(dataset)
    if found is None:
        name = type(dataset).__name__
        raise ConfigError(f"dataset {name} has no sample ids; cannot apply {path}")
    wanted = set(ids)
    positions = [i for i, sid in enumerate(found) if sid in wanted]
    if not positions:
        raise ConfigError(f"no sample of the dataset is in the split file {path}")
    missing = len(wanted) - len(positions)
    if missing > 0:
        # ids of a split that the dataset does not hold: a split of another dataset
        raise DataError(f"{missing} ids of the split are not in the dataset", path)
    return positions
