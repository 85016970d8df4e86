"""Frozen-encoder feature extraction, cached on disk.

Every evaluation protocol that works on frozen features (linear probe, kNN, clustering, t-SNE,
nearest-neighbour grids) reads them from one :class:`FeatureSet` per split, extracted once with
the encoder in eval mode (on the GPU when there is one, optionally under bf16 autocast) and saved
under a cache key made of the checkpoint's content hash, the dataset and the split's ids, so a
second run (another protocol, another seed, another label budget) never runs the encoder again.

Checkpoints, encoder sources and their metadata are :mod:`geossl.pretrained.checkpoint`'s; the input
normalisation an encoder was trained with is :func:`geossl.pretrained.normalize.make_normalizer`.
"""

from __future__ import annotations

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

from geossl.core.errors import DataError
from geossl.core.io import atomic_path
from geossl.core.progress import progress
from geossl.pretrained.checkpoint import EncoderSource, SensorSelection, encoder_sensor, sensor_list
from geossl.runtime.devices import resolve_device


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


def encode(encoder: nn.Module, x: Tensor, sensor: SensorSelection = None) -> Tensor:
    """Run ``encoder`` on a batch, passing ``sensor=`` to multi-sensor encoders.

    Args:
        encoder: the encoder.
        x: ``(B, C, H, W)`` batch (for a list of sensors: their bands stacked in that order).
        sensor: sensor name for encoders with per-sensor stems (or a fusion encoder fed one
            sensor); a list of several sensors means a stacked fusion input (no ``sensor=``),
            or, for an encoder with one stem per sensor (geo pairing), each sensor through its
            own stem with the features concatenated (S1 and S2 read together).

    Returns:
        ``(B, D)`` features (pooled when the encoder returns a feature map).
    """
    names = sensor_list(sensor)
    stems = getattr(encoder, "stems", None)
    chans = getattr(encoder, "in_chans", None)
    if len(names) > 1 and stems is not None and not getattr(encoder, "fusion", False) \
            and isinstance(chans, dict) and all(n in chans for n in names):
        # a geo encoder (one stem per sensor) on several sensors at once: each sensor's bands
        # through its own stem and the shared trunk, the features side by side
        parts, start = [], 0
        for n in names:
            parts.append(encode(encoder, x[:, start:start + chans[n]], n))
            start += chans[n]
        if start != x.shape[1]:
            raise ValueError(f"{x.shape[1]} bands for sensors {names} taking {start}")
        return torch.cat(parts, dim=1)
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
# --------------------------------------------------------------------------------------------
# normalisation and sample access
# --------------------------------------------------------------------------------------------
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
        device: where to run (:func:`geossl.runtime.devices.resolve_device`; default: GPU when
            present).
        bf16: autocast to bfloat16 (features are returned as float32).
        workers: data-loader workers.
        desc: progress-bar label.

    Returns:
        the features, labels and ids.
    """
    dev = resolve_device(device)
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
        for images, labs, bid in progress(loader, desc=desc, unit="batch"):
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
