"""The pairing contract: modes, the sensors each needs, batch key names and sensor masks.

This module is the one owner of what a pairing mode means; the data layer (which aligned
tensors a sample carries) and the methods (which two views they make of a batch) both read it,
and neither imports the other. It depends on nothing else in ``geossl`` but the errors.

Pairing modes (``--pairing``):

``geo``             view 1 = sensor A, view 2 = sensor B of the same place (>= 2 sensors; the
                    first two pair).
``aug``             two augmentations of one sensor (the first sensor).
``fusion``          all sensors stacked in ``sensors`` order (>= 2 sensors).
``partial-fusion``  fusion where each view keeps a random subset of sensors
                    (:func:`sample_sensor_mask`); dropped sensors are zero-filled
                    (:func:`apply_sensor_mask`) and ``sensor_mask`` says which are present.
``temporal``        one sensor (the first) at two dates of the same place.

Key names: every image is keyed per sensor, ``image_<sensor>`` (:func:`image_key`), its second
date ``image_<sensor>_t2``; ``sensor_mask`` (:data:`SENSOR_MASK`) is a float presence mask in
``sensors`` order (1 = present), ``(n_sensors,)`` per sample, ``(B, n_sensors)`` per batch.

Methods declare the modes they support (``SSLMethod.pairings``); :func:`check_method_pairing`
refuses the others with a one-line reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from geossl.core.errors import ConfigError

#: pairing modes accepted by ``--pairing``
PAIRING_MODES: tuple[str, ...] = ("geo", "aug", "fusion", "partial-fusion", "temporal")
#: how many sensors each mode needs
MIN_SENSORS: dict[str, int] = {"geo": 2, "aug": 1, "fusion": 2, "partial-fusion": 2,
                               "temporal": 1}
#: modes whose views stack every sensor into one image
FUSION_MODES: tuple[str, ...] = ("fusion", "partial-fusion")
#: prefix of per-sensor image keys, and suffix of a second date
IMAGE_PREFIX = "image_"
SECOND_DATE = "_t2"
#: key of the per-sample / per-batch sensor presence mask
SENSOR_MASK = "sensor_mask"
#: per-sample odds of (first sensor only, second sensor only, both) in partial fusion
DEFAULT_PARTIAL_ODDS: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)

_SENSOR_RE = re.compile(r"^[a-z][a-z0-9]*$")


# --------------------------------------------------------------------------------------------
# key names
# --------------------------------------------------------------------------------------------
def image_key(sensor: str, second_date: bool = False) -> str:
    """The batch key of a sensor's image: ``image_s2``, or ``image_s2_t2`` for its second date."""
    return f"{IMAGE_PREFIX}{sensor}{SECOND_DATE if second_date else ''}"


def key_sensor(key: str) -> str:
    """The sensor of an image key: ``image_s2_t2`` -> ``s2``."""
    return key.removeprefix(IMAGE_PREFIX).removesuffix(SECOND_DATE)


# --------------------------------------------------------------------------------------------
# modes and sensors
# --------------------------------------------------------------------------------------------
def check_sensor_name(name: object) -> None:
    """Refuse a sensor name that is not lower-case letters and digits (it becomes a key).

    Raises:
        ConfigError: naming the sensor.
    """
    if not isinstance(name, str) or not _SENSOR_RE.match(name):
        raise ConfigError(f"invalid sensor name {name!r} (lower-case letters and digits)")


def check_mode(mode: str) -> None:
    """Refuse an unknown pairing mode.

    Raises:
        ConfigError: naming the known modes.
    """
    if mode not in PAIRING_MODES:
        raise ConfigError(f"unknown pairing {mode!r}; choose one of {', '.join(PAIRING_MODES)}")


def check_pairing(
    mode: str,
    sensors: Sequence[str],
    dates: int | None = None,
    available: Sequence[str] | None = None,
) -> None:
    """Refuse an invalid pairing with a one-line reason.

    Args:
        mode: pairing mode, one of :data:`PAIRING_MODES`.
        sensors: sensors in use, in order.
        dates: most dates available per location for the first sensor (``temporal`` needs 2).
        available: sensors the dataset provides; any other is unknown.

    Raises:
        ConfigError: unknown mode or sensor, or too few sensors / dates.
    """
    check_mode(mode)
    sensors = list(sensors)
    for s in sensors:
        check_sensor_name(s)
        if available is not None and s not in available:
            raise ConfigError(f"unknown sensor {s!r}; this dataset has {', '.join(available)}")
    if len(set(sensors)) != len(sensors):
        raise ConfigError(f"sensors listed twice: {','.join(sensors)}")
    need = MIN_SENSORS[mode]
    if len(sensors) < need:
        raise ConfigError(f"pairing {mode!r} needs {need} sensors, got "
                          f"{','.join(sensors) or 'none'}: give at least {need} in --sensors")
    if mode == "temporal" and dates is not None and dates < 2:
        raise ConfigError(f"pairing 'temporal' needs >= 2 dates of {sensors[0]} at a location, "
                          f"the data has {dates}")


def mode_sensors(mode: str, sensors: Sequence[str]) -> list[str]:
    """The sensors a mode uses, in order.

    ``geo`` the first two, ``aug`` / ``temporal`` the first, the fusion modes all of them.

    Raises:
        ConfigError: as :func:`check_pairing`.
    """
    check_pairing(mode, sensors)
    sensors = list(sensors)
    if mode in FUSION_MODES:
        return sensors
    return sensors[: MIN_SENSORS[mode]]


def pairing_keys(mode: str, sensors: Sequence[str]) -> list[str]:
    """The image keys a sample must carry for ``mode`` over ``sensors``.

    ``geo``: the first two sensors; ``aug``: the first; ``fusion`` / ``partial-fusion``: all
    (``partial-fusion`` batches also carry ``sensor_mask``); ``temporal``: the first sensor and
    its second date ``image_<sensor>_t2``.

    Raises:
        ConfigError: as :func:`check_pairing`.
    """
    keys = [image_key(s) for s in mode_sensors(mode, sensors)]
    if mode == "temporal":
        keys.append(image_key(sensors[0], second_date=True))
    return keys


def check_method_pairing(
    method: str,
    mode: str,
    supported: Sequence[str],
    reason: str | None = None,
) -> None:
    """Refuse a pairing mode a method does not support.

    Args:
        method: the method's name (for the message).
        mode: the pairing mode asked for.
        supported: the modes the method supports (its ``pairings``).
        reason: why the others are not supported, appended to the message.

    Raises:
        ConfigError: unknown mode, or one the method does not support.
    """
    check_mode(mode)
    if mode not in supported:
        why = f": {reason}" if reason else ""
        raise ConfigError(f"{method} does not support pairing {mode!r} "
                          f"(use {', '.join(supported)}){why}")


# --------------------------------------------------------------------------------------------
# sensor masks
# --------------------------------------------------------------------------------------------
def sensor_mask(present: Sequence[bool] | Tensor) -> Tensor:
    """``(n_sensors,)`` float32 presence mask (1 = present), in ``sensors`` order."""
    return torch.as_tensor(present, dtype=torch.float32).reshape(-1)


def apply_sensor_mask(x_by_sensor: Mapping[str, Tensor], keep_mask: Tensor) -> dict[str, Tensor]:
    """Zero-fill the sensors a mask drops (partial fusion); pure, no randomness.

    Args:
        x_by_sensor: one tensor per sensor, in sensor order: ``(C, H, W)`` for one sample or
            ``(B, C, H, W)`` for a batch.
        keep_mask: ``(n_sensors,)`` or ``(B, n_sensors)``; 1 keeps a sensor, 0 zero-fills it.

    Returns:
        a new dict with the same keys, dropped sensors multiplied by 0.

    Raises:
        ConfigError: the mask does not have one column per sensor.
    """
    names = list(x_by_sensor)
    if keep_mask.shape[-1] != len(names):
        raise ConfigError(f"sensor mask has {keep_mask.shape[-1]} entries for "
                          f"{len(names)} sensors ({', '.join(names)})")
    out = {}
    for k, name in enumerate(names):
        x = x_by_sensor[name]
        m = keep_mask[..., k].to(dtype=x.dtype, device=x.device)
        out[name] = x * m.reshape(*m.shape, *([1] * (x.dim() - m.dim())))
    return out


def sample_sensor_mask(
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

    Raises:
        ConfigError: ``odds`` are not 3 non-negative numbers (two sensors).
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


#: a sensor name, several (``"s1,s2"`` or a list: a stacked fusion input) or ``None``
SensorSelection = str | Sequence[str] | None


def sensor_list(sensor: SensorSelection) -> list[str]:
    """``None`` -> ``[]``, ``"s2"`` -> ``["s2"]``, ``"s1,s2"`` or a list -> the list."""
    if sensor is None:
        return []
    items = sensor.split(",") if isinstance(sensor, str) else [str(s) for s in sensor]
    return [s.strip() for s in items if s.strip()]
