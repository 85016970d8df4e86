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

import os
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler
from torch.utils.data._utils.collate import default_collate

from geossl.core.errors import ConfigError, DataError
from geossl.core.pairing import SENSOR_MASK, image_key, key_sensor, pairing_keys
from geossl.data.pairs import select_keys
from geossl.datasets.protocol import (
    OPAQUE,
    DatasetWrapper,
    bands_of_sensors,
    class_names,
    declared_sensors,
    is_normalized,
    sample_ids,
    single_sensor,
)
from geossl.datasets.registry import pretraining_dataset
from geossl.pretrained.normalize import sensor_normalizer
from geossl.runtime.devices import resolve_device
from geossl.splits import load_split_ids

#: keys a batch may carry besides the per-sensor images
_EXTRA_KEYS = (SENSOR_MASK,)
#: batch key: how many image values of the batch were NaN/inf and filled with 0
FILLED_KEY = "filled_values"


# --------------------------------------------------------------------------------------------
# per-sample view and batch collation (both run inside the loader workers)
# --------------------------------------------------------------------------------------------
class SSLSamples(DatasetWrapper, Dataset[dict[str, Any]]):
    """Samples reduced to what SSL needs: per-sensor images, the sensor mask and ``index``.

    Renames a single-sensor ``image`` to ``image_<sensor>`` and reduces each sample to the keys
    of the pairing mode over ``sensors`` with :func:`geossl.data.pairs.select_keys` (the one
    implementation of the pairing's keys and masks: a sensor missing from a sample is
    zero-filled for ``partial-fusion`` when its band count is known, and a ``sensor_mask`` the
    dataset gives in its own sensor order is reordered to ``sensors``). A batch carries that
    ``sensor_mask`` when the dataset gives one or the mode is ``partial-fusion``; labels,
    masks, ids, bounds and CRS are dropped (``label`` is kept with ``keep_label``). Every image
    is cropped to ``patch_size`` at one random offset shared by all keys (the sensors stay
    co-registered; centre crop when ``train`` is false) and ``index``, the position in this
    dataset (DeepCluster's pseudo-labels), is added.

    A :class:`~geossl.datasets.protocol.DatasetWrapper`: its ``sensors``, ``bands``,
    ``classes`` and ``normalized`` are the wrapped dataset's (the online probe reads the class
    names through it); it states no per-sample declarations (one side of a split, cropped).
    """

    def __init__(
        self,
        base: Dataset[dict[str, Any]],
        pairing: str,
        sensors: Sequence[str],
        single_sensor: str | None = None,
        patch_size: int | None = None,
        indices: Sequence[int] | None = None,
        train: bool = True,
        keep_label: bool = False,
        channels: Mapping[str, int] | None = None,
    ) -> None:
        """Wrap a dataset.

        Args:
            base: dataset returning sample dicts.
            pairing: pairing mode (:data:`geossl.core.pairing.PAIRING_MODES`).
            sensors: sensors in use, in order (the mode's keys are
                :func:`geossl.core.pairing.pairing_keys` of these).
            single_sensor: sensor name for a dataset returning a plain ``image``.
            patch_size: crop size in pixels (``None``: keep the full sample).
            indices: positions of ``base`` to use (one side of a split); all when ``None``.
            train: random crops when true, centre crops otherwise.
            keep_label: keep the sample's ``label`` (online probe, t-SNE colours).
            channels: band count per sensor (``partial-fusion`` zero-fills a missing sensor
                with that many bands; without it a missing sensor is an error).
        """
        self.base = base
        self.pairing = pairing
        self.sensors = [str(s) for s in sensors]
        self.keep_label = keep_label
        self.keys = pairing_keys(pairing, self.sensors)
        self.single_sensor = single_sensor
        self.patch_size = patch_size
        self.indices = None if indices is None else list(indices)
        self.train = train
        self.channels = dict(channels or {})
        #: the order of a ``sensor_mask`` the dataset's samples carry (its declared sensors)
        self.source_sensors = list(declared_sensors(base)) or None

    @property
    def wrapped(self) -> Any:
        """The dataset whose samples are reduced (its sensors, bands and classes are these)."""
        return self.base

    def stated(self) -> Mapping[str, Any]:
        """No per-sample declarations: one side of a split, in its own order, cropped."""
        return OPAQUE

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)  # type: ignore[arg-type]

    def with_train(self, train: bool) -> SSLSamples:
        """The same samples with random (``True``) or centre (``False``) crops."""
        return SSLSamples(self.base, self.pairing, self.sensors, self.single_sensor,
                          self.patch_size, self.indices, train, self.keep_label, self.channels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.indices[i] if self.indices is not None else i
        sample = self.base[j]
        if self.single_sensor is not None and "image" in sample:
            sample[image_key(self.single_sensor)] = sample.pop("image")
        fill = self.pairing == "partial-fusion"
        try:
            selected = select_keys(sample, self.pairing, self.sensors, self.channels,
                                   self.source_sensors)
        except DataError:
            self._missing_key(sample, j)  # name the sample and the dataset when a key lacks
            raise
        out: dict[str, Any] = {key: torch.as_tensor(selected[key]) for key in self.keys}
        if fill or SENSOR_MASK in sample:
            out[SENSOR_MASK] = torch.as_tensor(selected[SENSOR_MASK])
        if self.keep_label and "label" in sample:
            out["label"] = torch.as_tensor(sample["label"])
        if self.patch_size is not None:
            self._crop(out)
        out["index"] = i
        return out

    def _missing_key(self, sample: Mapping[str, Any], j: int) -> None:
        """Raise the error of a key of the mode that sample ``j`` lacks (none: return).

        Called when :func:`~geossl.data.pairs.select_keys` refused the sample, so that the
        message names the sample, the dataset's folder and, for ``temporal``, the second date.

        Raises:
            ConfigError: the dataset gives no second date for ``temporal`` pairing.
            DataError: the sample lacks an image of the mode (not zero-filled).
        """
        fill = self.pairing == "partial-fusion"
        for key in self.keys:
            if key in sample or (fill and key_sensor(key) in self.channels):
                continue
            have = ", ".join(k for k in sample if k.startswith("image"))
            if key.endswith("_t2"):
                raise ConfigError(
                    f"temporal pairing needs a second date ({key!r}) but "
                    f"{type(self.base).__name__} gives {have or 'no images'}"
                )
            raise DataError(f"sample {j} has no {key!r} (has {have or 'no images'})",
                            getattr(self.base, "root", None))

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
        data_args: Mapping[str, Any] | None = None,
        band_selection: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        labels: bool = False,
        label_scheme: str | None = None,
        sampler: str = "grid",
        seed: int = 0,
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
            norm_names: sensor -> normaliser name of :mod:`geossl.pretrained.normalize` (e.g.
                ``{"s2": "s2_offset"}``, ``{"x": "none"}`` for raw values); overrides the
                sensor's default and ``stats``.
            stats: a ``geossl stats`` JSON file: the sensors without a ``norm_names`` entry are
                standardised with its per-band mean and std.
            data_args: further dataset constructor arguments (``--data-args``), e.g.
                ``{"holdout": "train"}``: SEN12MS without the official hold-out scenes.
            band_selection: band names to load, in this order (``--bands``): read by datasets
                that select bands (chips), sliced from the samples of the others
                (:class:`geossl.datasets.bands.SelectBands`).
            labels: batches also carry each sample's ``label`` when the dataset has one (the
                online probe and t-SNE snapshots of :mod:`geossl.training.monitor`); a dataset whose
                labels cost extra reads (SEN12MS land cover) then reads them (``label_scheme``).
                See :attr:`has_labels`.
            label_scheme: SEN12MS scene labels: ``igbp`` (17 classes, default) or ``dfc``
                (10-class simplified IGBP).
            sampler: where the windows of a geo dataset come from: ``grid`` (geossl's grid
                inside every footprint), ``torchgeo-grid`` or ``torchgeo-random`` (TorchGeo's
                samplers, drawn once; see :mod:`geossl.datasets.geogrid`).
            seed: seed of a random sampler.
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
        # pinned host memory pays off only when batches go to a GPU
        self.pin_memory = resolve_device().type == "cuda" if pin_memory is None else pin_memory
        self._base = dataset
        self.norm_names = {str(k): str(v) for k, v in (norm_names or {}).items()}
        self.stats = stats
        self.data_args = dict(data_args or {})
        if isinstance(band_selection, Mapping):  # per sensor: {s2: [B04, ...], s1: [VV]}
            self.data_args["bands"] = {str(k): [str(b) for b in v]
                                       for k, v in band_selection.items()}
        elif band_selection:
            self.data_args["bands"] = [str(b) for b in band_selection]
        self.labels = labels
        self.label_scheme = label_scheme
        self.sampler = sampler
        self.seed = seed
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
            labels = (self.label_scheme or True) if self.labels else None
            base = pretraining_dataset(self.data, self.root, self.sensors, self.pairing, ids=ids,
                                       patch_size=self.patch_size, index=self.index,
                                       options=self.data_args,
                                       labels=labels, sampler=self.sampler, seed=self.seed)
            passed_ids = ids is not None and _dataset_restricted(base, ids)
        elif self.label_scheme is not None:
            raise ConfigError("--label-scheme chooses the labels a dataset is built with; "
                              "this data module was given a dataset")
        indices = None
        if ids is not None and not passed_ids:
            indices = _positions(base, ids, self.splits)
        single = None
        if len(self.sensors) == 1 and self.pairing != "fusion":
            single = self.sensors[0]
        elif single_sensor(base) is not None:  # the dataset's samples carry one plain image
            single = self.sensors[0] if self.sensors else single_sensor(base)
        # band counts per sensor: partial fusion zero-fills a sensor a sample lacks
        channels = {k: len(v) for k, v in (bands_of_sensors(base, self.sensors) or {}).items()}
        self.train_dataset = SSLSamples(base, self.pairing, self.sensors, single,
                                        self.patch_size, indices, keep_label=self.labels,
                                        channels=channels)
        if len(self.train_dataset) == 0:
            raise DataError("no samples to train on", self.root)
        if self.drop_last and len(self.train_dataset) < self.batch_size:
            raise ConfigError(
                f"batch size {self.batch_size} is larger than the {len(self.train_dataset)} "
                "training samples; lower --batch-size"
            )
        sensors = sorted({key_sensor(k) for k in self.keys})
        self.bands = bands_of_sensors(base, sensors)
        normalizers: dict[str, Callable[[Tensor], Tensor]] = {}
        record: dict[str, Any] = {}
        if self.normalize and not is_normalized(base):
            normalizers, record = self._normalizers(sensors)
        self._collate = _Collate(normalizers)
        # sensor -> name for geossl.pretrained.normalize.get_normalizer, or {"mean", "std"} from a
        # statistics file (what evaluation reapplies)
        self.normalization = record or None

    def set_normalization(self, sensor: str, mean: Sequence[float], std: Sequence[float]) -> None:
        """Standardise ``sensor`` with this mean/std instead (e.g. foundation weights' own).

        Call after :meth:`setup`; the record (:attr:`normalization`) follows, so checkpoints
        say how the encoder's input was scaled.
        """
        from geossl.pretrained import normalize

        if self.train_dataset is None:
            raise RuntimeError("set_normalization() needs setup() first")
        self._collate.normalizers[sensor] = normalize.Standardize(list(mean), list(std))
        record: dict[str, Any] = dict(self.normalization or {})
        record[sensor] = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
        self.normalization = record

    def _normalizers(
        self, sensors: Sequence[str]
    ) -> tuple[dict[str, Callable[[Tensor], Tensor]], dict[str, Any]]:
        """Normaliser per sensor and its record (a name, or the statistics' mean and std)."""
        from geossl.pretrained import normalize

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
    def has_labels(self) -> bool:
        """Whether the training batches carry ``label`` (``labels=True``, labelled samples)."""
        self.setup()
        assert self.train_dataset is not None
        return self.labels and "label" in self.train_dataset[0]

    @property
    def classes(self) -> list[str]:
        """Class names of the samples' ``label`` (empty when unknown)."""
        self.setup()
        assert self.train_dataset is not None
        return [str(c) for c in (class_names(self.train_dataset) or [])]

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
            # the same draw on every process (seed + epoch): under DDP Lightning wraps this
            # sampler in a DistributedSamplerWrapper, which gives each process its own slice
            # of the draw; draws that differed per process would overlap
            sampler = WeightedRandomSampler(
                self.sample_weights.double(),  # type: ignore[arg-type]
                num_samples=len(self.train_dataset), replacement=True,
                generator=torch.Generator().manual_seed(self._draw_seed()),
            )
        else:
            sampler = RandomSampler(self.train_dataset)
        return self._loader(self.train_dataset, sampler, True, self.drop_last)

    def _draw_seed(self) -> int:
        """Seed of this epoch's weighted draw: the run's seed plus the epoch (same on all ranks)."""
        trainer = getattr(self, "trainer", None)
        epoch = int(getattr(trainer, "current_epoch", 0) or 0) if trainer is not None else 0
        return int(os.environ.get("PL_GLOBAL_SEED", "0") or 0) + epoch

    def cluster_dataloader(self, positions: Sequence[int] | None = None
                           ) -> DataLoader[dict[str, Any]]:
        """Every training sample once, in order, centre-cropped, batches carrying ``index``.

        Used by DeepCluster to extract the features it clusters (no augmentation is applied
        here; the methods augment on the device only in their training step), and with
        ``positions`` (a subset of the training samples) by the t-SNE snapshots.
        """
        self.setup()
        assert self.train_dataset is not None
        dataset: Dataset[dict[str, Any]] = self.train_dataset.with_train(False)
        if positions is not None:
            from torch.utils.data import Subset

            dataset = Subset(dataset, list(positions))
        return self._loader(dataset, None, False, False)

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


def _dataset_restricted(dataset: Any, ids: Sequence[str]) -> bool:
    """Whether the dataset was built on exactly ``ids`` (it accepted the ``ids`` argument)."""
    found = sample_ids(dataset)
    return found is not None and set(found) <= set(ids)


def _positions(dataset: Any, ids: Sequence[str], path: Any) -> list[int]:
    """Positions in ``dataset`` of the samples whose id is in ``ids``."""
    found = sample_ids(dataset)
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
