"""Turn a collated batch into the two augmented views of a pairing mode.

Batches carry ``image_<sensor>`` (and ``image_<sensor>_t2`` for temporal pairs) as the data
module collates them (see ``docs/architecture.md``). The modes:

``geo``
    view 1 = sensor A (e.g. S1), view 2 = sensor B (e.g. S2) of the same place, each augmented by
    its sensor's augmentation; with ``same_crop`` both get the same crop/flip/rotation.
``aug``
    two independent augmentations of one sensor.
``fusion``
    all sensors stacked (in ``sensors`` order) as one image, two augmentations; within a view the
    geometry is shared by every stacked band, the photometric part is per sensor.
``partial-fusion``
    like fusion, but each view independently keeps S1 only, S2 only or both at random (equal odds
    by default); a dropped sensor is zero-filled and ``sensor_mask`` (``(B, n_sensors)``) says
    which sensors are present. A ``sensor_mask`` carried by the batch (a sensor missing in the
    data) is respected.
``temporal``
    one sensor at two dates, each augmented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from geossl.core.errors import ConfigError
from geossl.core.pairing import (
    DEFAULT_PARTIAL_ODDS,
    SENSOR_MASK,
    apply_sensor_mask,
    check_pairing,
    image_key,
    sample_sensor_mask,
)
from geossl.methods.augment import SSLAugment


@dataclasses.dataclass
class View:
    """One augmented view: what the encoder takes.

    Attributes:
        x: ``(B, C, H, W)`` (stacked sensors for fusion modes).
        sensor: the sensor of ``x`` (``None`` for stacked fusion views).
        sensor_mask: ``(B, n_sensors)`` presence mask for fusion views, else ``None``.
    """

    x: Tensor
    sensor: str | None = None
    sensor_mask: Tensor | None = None


def _image(batch: Mapping[str, Any], key: str) -> Tensor:
    if key not in batch:
        have = ", ".join(k for k in batch if str(k).startswith("image"))
        raise ConfigError(f"the batch has no {key!r} (has {have or 'no images'})")
    value = batch[key]
    assert isinstance(value, Tensor)
    return value


def _aug_for(aug: Mapping[str, SSLAugment] | SSLAugment, sensor: str) -> SSLAugment:
    if isinstance(aug, SSLAugment):
        return aug
    if sensor not in aug:
        raise ConfigError(f"no augmentation configured for sensor {sensor!r}")
    return aug[sensor]


def _fused_view(
    batch: Mapping[str, Any],
    sensors: Sequence[str],
    aug: Mapping[str, SSLAugment] | SSLAugment,
    mask: Tensor | None,
) -> View:
    images = {s: _image(batch, image_key(s)) for s in sensors}
    first = _aug_for(aug, sensors[0])
    ref = images[sensors[0]]
    theta = first.sample_geometry(ref.shape[0], ref.device)
    views = {s: _aug_for(aug, s)(images[s], geometry=theta) for s in sensors}
    if mask is not None:
        views = apply_sensor_mask(views, mask)
    parts = [views[s] for s in sensors]
    if mask is None:
        mask = torch.ones(ref.shape[0], len(sensors), device=ref.device)
    return View(torch.cat(parts, dim=1), None, mask)


def make_views(
    batch: Mapping[str, Any],
    pairing: str,
    sensors: Sequence[str],
    aug: Mapping[str, SSLAugment] | SSLAugment,
    same_crop: bool = False,
    partial_odds: Sequence[float] = DEFAULT_PARTIAL_ODDS,
) -> tuple[View, View]:
    """The two augmented views of a batch for a pairing mode (see the module docstring).

    Args:
        batch: collated batch with ``image_<sensor>`` keys (on the training device).
        pairing: ``geo``, ``aug``, ``fusion``, ``partial-fusion`` or ``temporal``.
        sensors: sensors in use, in order (``geo`` pairs ``sensors[0]`` with ``sensors[1]``).
        aug: one augmentation per sensor, or one for all.
        same_crop: ``geo``: apply the same geometric transform to both sensors.
        partial_odds: ``partial-fusion`` odds of (first only, second only, both).

    Returns:
        ``(view1, view2)``.

    Raises:
        ConfigError: unknown mode, or the batch lacks an image the mode needs.
    """
    sensors = list(sensors)
    check_pairing(pairing, sensors)
    if pairing == "geo":
        a, b = sensors[0], sensors[1]
        xa, xb = _image(batch, image_key(a)), _image(batch, image_key(b))
        theta = None
        if same_crop:
            theta = _aug_for(aug, a).sample_geometry(xa.shape[0], xa.device)
        va = _aug_for(aug, a)(xa, geometry=theta)
        vb = _aug_for(aug, b)(xb, geometry=theta)
        return View(va, a), View(vb, b)
    if pairing in ("aug", "temporal"):
        s = sensors[0]
        x1 = _image(batch, image_key(s))
        x2 = _image(batch, image_key(s, second_date=True)) if pairing == "temporal" else x1
        return View(_aug_for(aug, s)(x1), s), View(_aug_for(aug, s)(x2), s)
    present = batch.get(SENSOR_MASK)
    present_t = present.float() if isinstance(present, Tensor) else None
    if pairing == "fusion":
        return (_fused_view(batch, sensors, aug, present_t),
                _fused_view(batch, sensors, aug, present_t))
    # partial-fusion
    ref = _image(batch, image_key(sensors[0]))
    views = []
    for _ in range(2):
        mask = sample_sensor_mask(ref.shape[0], len(sensors), partial_odds, present_t,
                                  ref.device)
        views.append(_fused_view(batch, sensors, aug, mask))
    return views[0], views[1]
