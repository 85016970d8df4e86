"""Frozen-encoder feature extraction, cached on disk.

Every evaluation protocol that works on frozen features (linear probe, kNN, clustering, t-SNE,
nearest-neighbour grids) reads them from one :class:`FeatureSet` per split, extracted once with
the encoder in eval mode (on the GPU when there is one, optionally under bf16 autocast) and saved
under a cache key made of the checkpoint's content hash, the dataset and the split's ids, so a
second run (another protocol, another seed, another label budget) never runs the encoder again.

This module also turns a checkpoint path (or ``random``/``none``) into an encoder with its
metadata (:func:`load_source`) and builds the input normalisation the encoder was trained with
(:func:`make_normalizer`), shared by :mod:`geossl.eval`, :mod:`geossl.export` and
:mod:`geossl.embed`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from geossl.errors import ConfigError, DataError
from geossl.io import atomic_path

#: checkpoint names that stand for a randomly initialised encoder (baselines)
RANDOM = ("random", "none")

#: a sensor name, several (``"s1,s2"`` or a list: a stacked fusion input) or ``None``
SensorSelection = str | Sequence[str] | None


@dataclasses.dataclass
class EncoderSource:
    """An encoder together with what evaluation needs to know about it.

    Attributes:
        encoder: the module; ``encoder(x)`` gives ``(B, num_features)``.
        meta: checkpoint metadata (``backbone``, ``in_chans``, ``sensors``, ``bands``,
            ``method``, ``pairing``, ``adapter``, ``normalization``, ``img_size``).
        key: a string identifying the weights (content hash of the checkpoint, or
            ``random-<backbone>-<in_chans>-<seed>``), used in feature cache keys.
    """

    encoder: nn.Module
    meta: dict[str, Any]
    key: str


@dataclasses.dataclass
class FeatureSet:
    """Frozen features of one split.

    Attributes:
        features: ``(N, D)`` float32.
        labels: ``(N,)`` int64 (single-label) or ``(N, K)`` float32 (multi-label).
        ids: sample ids (or positions as strings when the dataset has no ids).
        positions: positions of the samples in the dataset.
    """

    features: Tensor
    labels: Tensor
    ids: list[str]
    positions: list[int]

    @property
    def multilabel(self) -> bool:
        """Whether the labels are multi-hot."""
        return self.labels.ndim == 2

    def subset(self, rows: Sequence[int]) -> FeatureSet:
        """The rows ``rows`` of this set."""
        r = torch.as_tensor(list(rows), dtype=torch.long)
        return FeatureSet(
            self.features[r], self.labels[r], [self.ids[i] for i in rows],
            [self.positions[i] for i in rows],
        )


def file_hash(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_device() -> torch.device:
    """``cuda`` when a GPU is present, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------------------------
def load_source(
    ckpt: str | os.PathLike[str] | EncoderSource,
    backbone: str | None = None,
    in_chans: int | None = None,
    seed: int = 0,
    img_size: int | None = None,
) -> EncoderSource:
    """Load the encoder of a pretraining checkpoint, or build a random one.

    Args:
        ckpt: a checkpoint written by ``geossl pretrain``; ``random``/``none`` for a randomly
            initialised encoder of ``backbone`` (a baseline); or an :class:`EncoderSource`,
            returned as it is.
        backbone: timm backbone for ``random``.
        in_chans: input channels for ``random``.
        seed: seed of the random initialisation.
        img_size: input size for ``random`` ViTs.

    Returns:
        the encoder and its metadata.

    Raises:
        ConfigError: ``random`` without a backbone or channel count.
        DataError: missing or unreadable checkpoint.
    """
    if isinstance(ckpt, EncoderSource):
        return ckpt
    name = os.fspath(ckpt)
    if name.lower() in RANDOM:
        if not backbone or not in_chans:
            raise ConfigError(f"CKPT {name!r} needs --backbone (and a dataset to know the bands)")
        from geossl.models import build_encoder

        torch.manual_seed(seed)
        kwargs: dict[str, Any] = {"img_size": img_size} if img_size else {}
        encoder = build_encoder(backbone, in_chans, **kwargs)
        meta = {"backbone": backbone, "in_chans": in_chans, "method": "random", "sensors": None,
                "bands": None, "adapter": None, "normalization": None, "img_size": img_size}
        return EncoderSource(encoder, meta, f"random-{backbone}-{in_chans}-{seed}")
    path = Path(name)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    from geossl.checkpoint import load_encoder

    encoder, meta = load_encoder(path)
    return EncoderSource(encoder, dict(meta), file_hash(path))


def random_like(source: EncoderSource, seed: int) -> EncoderSource:
    """The same architecture as ``source`` with fresh random weights (the scratch baseline).

    Rebuilt with :func:`geossl.models.build_encoder` from the metadata when possible (the
    architecture's own initialisation); otherwise a deep copy whose layers are re-initialised
    with their ``reset_parameters``.

    Args:
        source: the pretrained encoder.
        seed: seed of the initialisation.

    Returns:
        a new :class:`EncoderSource` (method ``random``).
    """
    meta = dict(source.meta)
    torch.manual_seed(seed)
    encoder: nn.Module | None = None
    try:
        from geossl.models import build_encoder

        config = getattr(source.encoder, "config", None)
        if isinstance(config, dict) and config.get("backbone"):
            encoder = build_encoder(**{**config, "pretrained": None})
        elif meta.get("backbone") and meta.get("in_chans"):
            kwargs: dict[str, Any] = {}
            for key in ("adapter", "img_size"):
                if meta.get(key) is not None:
                    kwargs[key] = meta[key]
            encoder = build_encoder(meta["backbone"], meta["in_chans"], **kwargs)
        if encoder is not None:
            same = {k: v.shape for k, v in encoder.state_dict().items()} == {
                k: v.shape for k, v in source.encoder.state_dict().items()
            }
            if not same:
                encoder = None
    except Exception:
        encoder = None
    if encoder is None:
        encoder = copy.deepcopy(source.encoder)
        for module in encoder.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    meta["method"] = "random"
    return EncoderSource(encoder, meta, f"random-{source.key[:16]}-{seed}")


def encode(encoder: nn.Module, x: Tensor, sensor: SensorSelection = None) -> Tensor:
    """Run ``encoder`` on a batch, passing ``sensor=`` to multi-sensor encoders.

    Args:
        encoder: the encoder.
        x: ``(B, C, H, W)`` batch (for a list of sensors: their bands stacked in that order).
        sensor: sensor name for encoders with per-sensor stems (or a fusion encoder fed one
            sensor); a list of several sensors means a stacked fusion input (no ``sensor=``).

    Returns:
        ``(B, D)`` features (pooled when the encoder returns a feature map).
    """
    name = encoder_sensor(sensor)
    if name is not None and _accepts_sensor(encoder):
        out = encoder(x, sensor=name)
    else:
        out = encoder(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, Tensor) and out.ndim == 4:  # feature map -> global average pool
        out = out.mean(dim=(2, 3))
    return out  # type: ignore[no-any-return]


def _accepts_sensor(encoder: nn.Module) -> bool:
    try:
        params = inspect.signature(encoder.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False
    return "sensor" in params


# --------------------------------------------------------------------------------------------
# which sensor(s) feed the encoder
# --------------------------------------------------------------------------------------------
def sensor_list(sensor: SensorSelection) -> list[str]:
    """``None`` -> ``[]``, ``"s2"`` -> ``["s2"]``, ``"s1,s2"`` or a list -> the list."""
    if sensor is None:
        return []
    items = sensor.split(",") if isinstance(sensor, str) else [str(s) for s in sensor]
    return [s.strip() for s in items if s.strip()]


def encoder_sensor(sensor: SensorSelection) -> str | None:
    """The ``sensor=`` argument for the encoder: the one sensor, or ``None`` for a stack."""
    names = sensor_list(sensor)
    return names[0] if len(names) == 1 else None


def checkpoint_sensors(meta: dict[str, Any]) -> list[str]:
    """The sensors the encoder was pretrained on (``[]`` when not recorded)."""
    return sensor_list(meta.get("sensors"))


def is_fusion(meta: dict[str, Any]) -> bool:
    """Whether the encoder stacks several sensors (``fusion`` / ``partial-fusion`` pairing)."""
    return bool(meta.get("fusion")) or meta.get("pairing") in ("fusion", "partial-fusion")


def select_sensors(
    meta: dict[str, Any], sensor: SensorSelection = None, data: str | None = None
) -> str | list[str] | None:
    """The sensor(s) whose images feed the encoder during evaluation, export or embedding.

    * single-sensor encoders (``aug``/``temporal``): the checkpoint's sensor;
    * per-sensor stems (``geo``): ``sensor`` when given, else the first (query) sensor;
    * fusion encoders: every sensor stacked in the checkpoint's order by default, or the
      subset in ``sensor`` (the others are zero-filled and flagged missing, as in
      ``partial-fusion``).

    Args:
        meta: checkpoint metadata (``sensors``, ``pairing``, ``fusion``).
        sensor: requested sensor(s): a name, ``"s1,s2"`` or a list; ``None`` for the default.
        data: dataset name, for encoders that record no sensor (random baselines).

    Returns:
        one sensor name, a list of several (a stacked fusion input), or ``None`` (unknown).

    Raises:
        ConfigError: a sensor the encoder was not pretrained on, or several sensors for an
            encoder that takes one at a time.
    """
    known = checkpoint_sensors(meta)
    wanted = sensor_list(sensor)
    if not known:  # nothing recorded: trust the request, else the dataset's sensor
        if wanted:
            return wanted[0] if len(wanted) == 1 else wanted
        return primary_sensor(meta, data)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ConfigError(f"unknown sensor {unknown[0]!r}: the encoder was pretrained on "
                          f"{', '.join(known)}")
    fusion = is_fusion(meta) and len(known) > 1
    if not wanted:
        return list(known) if fusion else known[0]
    if len(wanted) > 1 and not fusion:
        raise ConfigError(f"this encoder takes one sensor at a time (one of {', '.join(known)}); "
                          "give a single --sensor")
    ordered = [s for s in known if s in wanted]
    return ordered[0] if len(ordered) == 1 else ordered


def expected_channels(meta: dict[str, Any], sensor: SensorSelection) -> int | None:
    """Input bands the encoder expects for ``sensor`` (``None`` when not recorded)."""
    chans = meta.get("in_chans")
    if isinstance(chans, int):
        return chans
    if isinstance(chans, dict):
        names = sensor_list(sensor)
        if names and all(s in chans for s in names):
            return sum(int(chans[s]) for s in names)
    return None


def bands_for(meta: dict[str, Any], sensor: SensorSelection) -> list[str] | None:
    """Band names of the encoder's input for ``sensor`` (per-sensor lists are concatenated)."""
    bands = meta.get("bands")
    if bands is None:
        return None
    if isinstance(bands, dict):
        names = sensor_list(sensor) or checkpoint_sensors(meta)[:1]
        if not names or any(s not in bands or bands[s] is None for s in names):
            return None
        return [str(b) for s in names for b in bands[s]]
    return [str(b) for b in bands]


# --------------------------------------------------------------------------------------------
# normalisation and sample access
# --------------------------------------------------------------------------------------------
def primary_sensor(meta: dict[str, Any], data: str | None = None) -> str | None:
    """The sensor evaluation feeds the encoder: the checkpoint's first sensor, or the dataset's."""
    sensors = checkpoint_sensors(meta)
    if sensors:
        return str(sensors[0])
    if data:
        from geossl.data.datamodule import SINGLE_SENSOR

        return SINGLE_SENSOR.get(data)
    return None


def make_normalizer(
    meta: dict[str, Any], sensor: SensorSelection
) -> Callable[[Tensor], Tensor] | None:
    """The batch normalisation the encoder was pretrained with.

    ``meta["normalization"]`` may hold ``{"mean": [...], "std": [...]}``, a per-sensor mapping
    of those or of normaliser names (what ``geossl pretrain`` records, e.g. ``{"s2": "s2"}``:
    a sensor absent from the mapping was not normalised), or a normaliser name; when it is
    ``None`` the sensor's registered normaliser
    (:func:`geossl.data.datamodule.sensor_normalizer`) is used, as in pretraining. For a
    stacked fusion input every sensor's block of bands gets its own normaliser.

    Args:
        meta: checkpoint metadata.
        sensor: the sensor being evaluated, or a list of stacked sensors.

    Returns:
        a function of a ``(B, C, H, W)`` batch, or ``None`` for no normalisation.
    """
    names = sensor_list(sensor)
    if len(names) > 1:
        chans = meta.get("in_chans")
        if not isinstance(chans, dict) or any(s not in chans for s in names):
            raise ConfigError(f"cannot normalise stacked sensors {names}: the checkpoint "
                              "records no band count per sensor")
        parts = [(int(chans[s]), normalizer_for_sensor(meta, s)) for s in names]
        if all(n is None for _, n in parts):
            return None
        return _Stacked(parts)
    return normalizer_for_sensor(meta, names[0] if names else None)


def normalizer_for_sensor(
    meta: dict[str, Any], sensor: str | None
) -> Callable[[Tensor], Tensor] | None:
    """The normaliser of one sensor's bands (see :func:`make_normalizer`)."""
    from geossl.data.datamodule import sensor_normalizer

    norm = meta.get("normalization")
    if isinstance(norm, dict) and "mean" in norm and "std" in norm:
        return _MeanStd(norm["mean"], norm["std"])
    if isinstance(norm, dict):  # per sensor
        entry = norm.get(sensor) if sensor is not None else None
        if isinstance(entry, dict) and "mean" in entry and "std" in entry:
            return _MeanStd(entry["mean"], entry["std"])
        if isinstance(entry, str):
            return sensor_normalizer(entry)
        return None
    if isinstance(norm, str):
        return sensor_normalizer(norm)
    return sensor_normalizer(sensor) if sensor else None


class _Stacked:
    """Per-sensor normalisers applied to consecutive blocks of bands (picklable)."""

    def __init__(self, parts: Sequence[tuple[int, Callable[[Tensor], Tensor] | None]]) -> None:
        self.parts = list(parts)

    def __call__(self, x: Tensor) -> Tensor:
        sizes = [n for n, _ in self.parts]
        if x.shape[1] != sum(sizes):
            raise DataError(f"stacked input has {x.shape[1]} bands, expected {sum(sizes)}")
        blocks = torch.split(x, sizes, dim=1)
        return torch.cat([b if f is None else f(b) for b, (_, f) in zip(blocks, self.parts)],
                         dim=1)


class _MeanStd:
    """Per-band standardisation (a class so it pickles into loader workers)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device).clamp_min(1e-12)


def image_of(sample: dict[str, Any], sensor: SensorSelection = None) -> Tensor:
    """The image of a sample: ``image``, else ``image_<sensor>``; several sensors are stacked.

    Raises:
        DataError: the sample lacks the image key(s).
    """
    names = sensor_list(sensor)
    if len(names) > 1:
        missing = [s for s in names if f"image_{s}" not in sample]
        if missing:
            raise DataError(f"sample has no 'image_{missing[0]}' to stack sensors {names} "
                            f"(keys: {sorted(sample)})")
        return torch.cat([torch.as_tensor(sample[f"image_{s}"]).float() for s in names])
    one = names[0] if names else None
    if one and f"image_{one}" in sample:
        return torch.as_tensor(sample[f"image_{one}"]).float()
    if "image" in sample:
        return torch.as_tensor(sample["image"]).float()
    keys = [k for k in sample if k.startswith("image_")]
    if len(keys) == 1:
        return torch.as_tensor(sample[keys[0]]).float()
    raise DataError(f"sample has no 'image' key for sensor {one!r} (keys: {sorted(sample)})")


class EvalCollate:
    """Collate samples into ``(images, labels, ids)``, dropping everything else."""

    def __init__(self, sensor: SensorSelection = None) -> None:
        self.sensor = sensor if sensor is None or isinstance(sensor, str) else list(sensor)

    def __call__(self, samples: list[dict[str, Any]]) -> tuple[Tensor, Tensor, list[str]]:
        """Stack images and labels; keep ids."""
        images = torch.stack([image_of(s, self.sensor) for s in samples])
        labels = torch.stack([label_of(s) for s in samples])
        ids = [str(s.get("id", "")) for s in samples]
        return images, labels, ids


def label_of(sample: dict[str, Any]) -> Tensor:
    """The label of a sample (int64 scalar, or float32 multi-hot)."""
    if "label" not in sample:
        raise DataError(f"sample has no 'label' (keys: {sorted(sample)}): evaluation needs a "
                        "labelled dataset")
    lab = torch.as_tensor(sample["label"])
    return lab.float() if lab.ndim == 1 else lab.long()


# --------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: Dataset[dict[str, Any]],
    positions: Sequence[int] | None = None,
    *,
    normalizer: Callable[[Tensor], Tensor] | None = None,
    sensor: SensorSelection = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    bf16: bool = False,
    workers: int = 0,
    desc: str = "features",
) -> FeatureSet:
    """Run the frozen encoder over samples of a dataset.

    Args:
        encoder: the encoder (put in eval mode; its training mode is restored afterwards).
        dataset: map-style dataset of sample dicts with ``image`` (or ``image_<sensor>``) and
            ``label``.
        positions: which samples (default: all).
        normalizer: batch normalisation applied on the device before the encoder.
        sensor: sensor name (multi-sensor encoders and ``image_<sensor>`` keys), or a list of
            sensors stacked into one fusion input (see :func:`select_sensors`).
        batch_size: samples per batch.
        device: where to run (default: GPU when present).
        bf16: autocast to bfloat16 (features are returned as float32).
        workers: data-loader workers.
        desc: progress-bar label.

    Returns:
        the features, labels and ids.
    """
    dev = torch.device(device) if device is not None else default_device()
    pos = list(range(len(dataset))) if positions is None else [int(p) for p in positions]  # type: ignore[arg-type]
    loader = DataLoader(
        Subset(dataset, pos), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=EvalCollate(sensor), pin_memory=dev.type == "cuda",
    )
    was_training = encoder.training
    encoder.eval().to(dev)
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    ids: list[str] = []
    try:
        for images, labs, bid in tqdm(loader, desc=desc, leave=False, disable=None):
            x = images.to(dev, non_blocking=True)
            if normalizer is not None:
                x = normalizer(x)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                f = encode(encoder, x, sensor)
            feats.append(f.float().cpu())
            labels.append(labs)
            ids.extend(bid)
    finally:
        encoder.train(was_training)
    if not feats:
        raise DataError("no samples to extract features from")
    ids = [i if i else str(p) for i, p in zip(ids, pos)]
    return FeatureSet(torch.cat(feats), torch.cat(labels), ids, pos)


def cache_key(source_key: str, dataset_key: str, split: str, ids: Sequence[str]) -> str:
    """Cache key of a feature set: weights + dataset + split + the exact sample ids."""
    h = hashlib.sha256()
    h.update(json.dumps([source_key, dataset_key, split]).encode())
    for i in ids:
        h.update(i.encode() + b"\0")
    return h.hexdigest()[:24]


def cached_features(
    source: EncoderSource,
    dataset: Dataset[dict[str, Any]],
    positions: Sequence[int],
    *,
    dataset_key: str,
    split: str,
    cache_dir: str | os.PathLike[str] | None,
    ids: Sequence[str] | None = None,
    **kwargs: Any,
) -> FeatureSet:
    """:func:`extract_features`, read from / written to ``cache_dir`` when given.

    Args:
        source: encoder and its key (checkpoint hash).
        dataset: the dataset.
        positions: samples of the split.
        dataset_key: names the dataset (e.g. ``ucmerced:/abs/root``).
        split: split name.
        cache_dir: folder of cached feature files (``None``: no cache).
        ids: sample ids of ``positions`` when known without loading samples (else positions).
        **kwargs: passed to :func:`extract_features`.

    Returns:
        the feature set.
    """
    key_ids = list(ids) if ids is not None else [str(p) for p in positions]
    path = None
    if cache_dir is not None:
        key = cache_key(source.key, dataset_key, split, key_ids)
        path = Path(cache_dir) / f"features-{split}-{key}.pt"
        if path.is_file():
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                return FeatureSet(blob["features"], blob["labels"], list(blob["ids"]),
                                  [int(p) for p in blob["positions"]])
            except Exception:
                path.unlink(missing_ok=True)
    fs = extract_features(source.encoder, dataset, positions, desc=f"features {split}", **kwargs)
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"features": fs.features, "labels": fs.labels, "ids": fs.ids,
                        "positions": fs.positions}, tmp)
    return fs
