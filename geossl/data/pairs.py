"""A dataset of per-sensor samples reduced to what one pairing mode needs.

:class:`PairedView` wraps any source of aligned per-sensor samples (SEN12MS / BigEarthNet
patches, :class:`~geossl.datasets.multisensor.PairedChips`, a
:class:`~geossl.datasets.multisensor.MultiSensorDataset` read through a GeoSampler) and keeps the
keys of a pairing mode (:func:`geossl.core.pairing.pairing_keys`) plus ``sensor_mask``; the pairing
contract itself (modes, key names, masks) is :mod:`geossl.core.pairing`.

:func:`select_keys` is the one implementation of a sample reduced to a pairing mode: it
zero-fills a sensor missing from a sample (``partial-fusion``, when its band count is known) and
reorders a ``sensor_mask`` the dataset gives in its own sensor order. ``geossl pretrain`` calls
it through :class:`geossl.data.datamodule.SSLSamples` (which also crops, keeps only the images
and the mask for collation, and adds ``index``). :class:`PairedView` is the same reduction as a
dataset for a loop of one's own: it keeps ``mask``, ``label`` and ``id`` too and takes any index
the source takes (a GeoSampler's queries over a ``MultiSensorDataset``); no command uses it
(tests/test_pairing.py, tests/test_pairing_sources.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from geossl.core.errors import DataError
from geossl.core.pairing import SENSOR_MASK, check_pairing, image_key, pairing_keys, sensor_mask
from geossl.datasets.protocol import DatasetWrapper, declared_sensors


def select_keys(
    sample: Mapping[str, Any],
    mode: str,
    sensors: Sequence[str],
    channels: Mapping[str, int] | None = None,
    source_sensors: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Keep what ``mode`` needs of a sample, plus ``sensor_mask``, ``mask``, ``label``, ``id``.

    A sensor missing from the sample is zero-filled (``channels`` gives its band count) and
    flagged 0 in ``sensor_mask`` for ``partial-fusion``; for other modes it is an error. A
    ``sensor_mask`` the sample already carries is in ``source_sensors`` order (the dataset's
    sensors, which may be more than ``sensors``, e.g. a land-cover source); it is reordered
    to ``sensors`` before being combined.

    Raises:
        DataError: a key the mode needs is missing, or the sample's ``sensor_mask`` cannot be
            matched to ``sensors``.
    """
    keys = pairing_keys(mode, sensors)
    out: dict[str, Any] = {}
    ref = next((sample[k] for k in keys if k in sample), None)
    present = []
    for s in sensors:
        key = image_key(s)
        if key in sample:
            present.append(True)
            if key in keys:
                out[key] = sample[key]
            continue
        present.append(False)
        if key not in keys:
            continue
        if mode != "partial-fusion" or ref is None or not channels or s not in channels:
            have = ", ".join(k for k in sample if str(k).startswith("image"))
            raise DataError(f"sample has no {key!r} needed by pairing {mode!r} (has {have})")
        like = torch.as_tensor(ref)  # a dataset may return numpy images
        out[key] = torch.zeros(channels[s], *like.shape[-2:], dtype=like.dtype)
    for key in keys:
        if key not in out:
            if key not in sample:
                raise DataError(f"sample has no {key!r} needed by pairing {mode!r}")
            out[key] = sample[key]
    mask = sensor_mask(present)
    if SENSOR_MASK in sample:
        given = torch.as_tensor(sample[SENSOR_MASK], dtype=torch.float32).reshape(-1)
        if source_sensors is not None and len(given) == len(source_sensors):
            lookup = dict(zip(source_sensors, given.tolist()))
            given = sensor_mask([lookup.get(s, 1.0) for s in sensors])
        if given.shape != mask.shape:
            raise DataError(f"sample's sensor_mask has {len(given)} entries for the sensors "
                            f"{','.join(sensors)}; give the dataset's sensor order")
        mask = mask * given
    out[SENSOR_MASK] = mask
    for key in ("mask", "mask_lc", "label", "id"):
        if key in sample:
            out[key] = sample[key]
    return out


class PairedView(DatasetWrapper, Dataset[dict[str, Any]]):
    """A dataset reduced to a pairing mode's keys (:func:`select_keys`; module docstring).

    Works over any dataset of per-sensor samples: SEN12MS / BigEarthNet patches,
    :class:`~geossl.datasets.multisensor.PairedChips`, or a
    :class:`~geossl.datasets.multisensor.MultiSensorDataset` indexed by a GeoSampler. A
    :class:`~geossl.datasets.protocol.DatasetWrapper`: it states its ``sensors`` (those of the
    mode, in order); every other declaration is the wrapped dataset's (the same samples at the
    same index).
    """

    @property
    def wrapped(self) -> Any:
        """The dataset of per-sensor samples."""
        return self.dataset

    def stated(self) -> Mapping[str, Any]:
        """``sensors``: the sensors of the view, in order."""
        return {"sensors": tuple(self.sensors)}

    def __init__(self, dataset: Any, mode: str, sensors: Sequence[str],
                 channels: Mapping[str, int] | None = None) -> None:
        """Wrap ``dataset`` (see :func:`select_keys` for the arguments).

        The dataset's declared ``sensors`` (:func:`~geossl.datasets.protocol.declared_sensors`:
        ``MultiSensorDataset``'s and ``PairedChips``' names) give the order of the
        ``sensor_mask`` its samples carry.
        """
        check_pairing(mode, sensors)
        self.dataset = dataset
        self.mode = mode
        self.sensors = list(sensors)
        self.channels = dict(channels or {})
        self.source_sensors = list(declared_sensors(dataset)) or None

    def __len__(self) -> int:
        """Length of the wrapped dataset."""
        return len(self.dataset)

    def __getitem__(self, index: Any) -> dict[str, Any]:
        """The wrapped sample reduced to the mode's keys."""
        return select_keys(self.dataset[index], self.mode, self.sensors, self.channels,
                           self.source_sensors)
