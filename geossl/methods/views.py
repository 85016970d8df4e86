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

from geossl.errors import ConfigError
from geossl.methods.augment import SSLAugment

try:  # the pairing module of the data layer is the reference when it exists
    from geossl.data.pairing import PAIRING_MODES  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the data layer's progress
    #: pairing modes (mirrors ``geossl.data.pairing.PAIRING_MODES`` / the data module's list)
    PAIRING_MODES = ("geo", "aug", "fusion", "partial-fusion", "temporal")

#: per-sample odds of (first sensor only, second sensor only, both) in partial fusion
DEFAULT_PARTIAL_ODDS = (1 / 3, 1 / 3, 1 / 3)


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


def drop_sensors(
    n: int,
    n_sensors: int,
    odds: Sequence[float] = DEFAULT_PARTIAL_ODDS,
    present: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Random sensor subsets for partial fusion as a ``(n, n_sensors)`` float mask.

    For two sensors each row is ``[1, 0]``, ``[0, 1]`` or ``[1, 1]`` with probabilities
    ``odds``; for more sensors each sensor is kept with probability 1/2 and at least one stays.
    Sensors absent in the data (``present`` = 0) are never kept; a row with no present sensor
    left falls back to ``present``.
    """
    device = torch.device(device)
    if n_sensors == 2:
        # inverse-CDF sampling against Python-float thresholds: no host sync (torch.multinomial
        # checks its input on the host) and no constant tensor copied to the device per step
        if len(odds) != 3 or min(odds) < 0 or sum(odds) <= 0:
            raise ConfigError(f"partial-fusion odds must be 3 non-negative numbers, got {odds}")
        total = float(sum(odds))
        c0, c1 = odds[0] / total, (odds[0] + odds[1]) / total
        u = torch.rand(n, device=device)
        first_only, second_only = u < c0, (u >= c0) & (u < c1)
        mask = torch.stack([~second_only, ~first_only], dim=1).float()
    else:
        mask = (torch.rand(n, n_sensors, device=device) < 0.5).float()
        pick = torch.randint(0, n_sensors, (n, 1), device=device)
        pick = (torch.arange(n_sensors, device=device)[None, :] == pick).float()
        mask = torch.where(mask.sum(1, keepdim=True) == 0, pick, mask)
    if present is not None:
        present = present.to(device=device, dtype=mask.dtype)
        mask = mask * present
        mask = torch.where(mask.sum(1, keepdim=True) == 0, present, mask)
    return mask


def _fused_view(
    batch: Mapping[str, Any],
    sensors: Sequence[str],
    aug: Mapping[str, SSLAugment] | SSLAugment,
    mask: Tensor | None,
) -> View:
    images = {s: _image(batch, f"image_{s}") for s in sensors}
    first = _aug_for(aug, sensors[0])
    ref = images[sensors[0]]
    theta = first.sample_geometry(ref.shape[0], ref.device)
    parts = []
    for i, s in enumerate(sensors):
        x = _aug_for(aug, s)(images[s], geometry=theta)
        if mask is not None:
            x = x * mask[:, i].view(-1, 1, 1, 1).to(x.dtype)
        parts.append(x)
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
    if pairing not in PAIRING_MODES:
        raise ConfigError(f"unknown pairing {pairing!r}; choose one of {', '.join(PAIRING_MODES)}")
    if pairing == "geo":
        if len(sensors) < 2:
            raise ConfigError("pairing 'geo' needs two sensors")
        a, b = sensors[0], sensors[1]
        xa, xb = _image(batch, f"image_{a}"), _image(batch, f"image_{b}")
        theta = None
        if same_crop:
            theta = _aug_for(aug, a).sample_geometry(xa.shape[0], xa.device)
        va = _aug_for(aug, a)(xa, geometry=theta)
        vb = _aug_for(aug, b)(xb, geometry=theta)
        return View(va, a), View(vb, b)
    if pairing in ("aug", "temporal"):
        s = sensors[0]
        x1 = _image(batch, f"image_{s}")
        x2 = _image(batch, f"image_{s}_t2") if pairing == "temporal" else x1
        return View(_aug_for(aug, s)(x1), s), View(_aug_for(aug, s)(x2), s)
    if len(sensors) < 2:
        raise ConfigError(f"pairing {pairing!r} needs two sensors")
    if pairing == "fusion":
        present = batch.get("sensor_mask")
        mask = present.float() if isinstance(present, Tensor) else None
        return (_fused_view(batch, sensors, aug, mask), _fused_view(batch, sensors, aug, mask))
    # partial-fusion
    ref = _image(batch, f"image_{sensors[0]}")
    present = batch.get("sensor_mask")
    present_t = present.float() if isinstance(present, Tensor) else None
    views = []
    for _ in range(2):
        mask = drop_sensors(ref.shape[0], len(sensors), partial_odds, present_t, ref.device)
        views.append(_fused_view(batch, sensors, aug, mask))
    return views[0], views[1]
