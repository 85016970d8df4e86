"""Per-sensor normalisation: small picklable torch modules over pure functions.

Every normaliser maps a float tensor ``(C, H, W)`` or ``(B, C, H, W)`` to its normalised
version, on whatever device the tensor lives (per-band constants follow the input's device and
dtype), so the same object serves in a dataset, in a loader worker (batch-wise, as
:class:`geossl.data.datamodule.SSLDataModule` does) and on the GPU.

Sensors (:data:`NORMALIZERS`, :func:`get_normalizer`):

* ``s1``: Sentinel-1 backscatter in dB, clipped to ``[-25, 0]`` dB (VV) and ``[-32.5, 0]`` dB (VH)
  and scaled to ``[0, 1]``. These limits are the ones used for SEN12MS / SSL4EO-S12 S1 in
  practice (about the 1st and 99.9th percentiles of land scenes); NaN (no data) maps to 0.
* ``s2``: Sentinel-2 digital numbers to reflectance, ``DN / 10000`` clipped to ``[0, 1]``. Products
  of processing baseline 04.00 or later (from 25 January 2022, L1C and L2A) store
  ``DN = 10000 * reflectance + 1000`` (``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET = -1000`` in the
  metadata): use ``s2_offset`` (or :func:`s2_offset` with the baseline) for those. SEN12MS and
  BigEarthNet predate it (offset 0); Major-TOM and recent SSL4EO-S12 L2A downloads do not.
* ``s1_std``, ``s2_std``: standardisation with the SSL4EO-S12 statistics published with the
  dataset (Wang et al. 2022, ``SSL4EO-S12`` repository: ``S1_MEAN/S1_STD``, ``S2C_MEAN/S2C_STD``
  for 13-band L1C and ``S2A_MEAN/S2A_STD`` for 12-band L2A without B10); ``s2_std`` picks the
  13- or 12-band statistics from the channel count.
* ``rgb``: 8-bit RGB (AID, UC Merced), ``/255`` then ImageNet mean/std (what timm's pretrained
  RGB backbones expect).
* ``gray``: 8-bit greyscale (MNIST), ``/255`` then ``(x - 0.5) / 0.5``, i.e. ``[-1, 1]``.
* ``polsar``: PolSAR channels of :func:`geossl.datasets.polsar.polsar_features`: dB channels
  mapped by ``(x + 15) / 10`` (the SF AIRSAR diagonal terms have medians of -10 to -25 dB),
  correlation coefficients (already in ``[-1, 1]``) unchanged.
* ``none``: identity.

Your own dataset: ``geossl stats`` writes per-band mean/std that :meth:`Standardize.from_stats`
(or ``get_normalizer("stats", stats="stats.json")``) turns into a normaliser;
:func:`sensor_stats` picks a sensor's entry of such a file (``geossl pretrain --stats FILE``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from geossl.core.errors import ConfigError, DataError
from geossl.core.pairing import SensorSelection, sensor_list

#: SSL4EO-S12 Sentinel-1 GRD statistics (VV, VH; dB)
S1_MEAN = (-12.59, -20.26)
S1_STD = (5.26, 5.91)
#: SSL4EO-S12 Sentinel-2 L1C statistics (B01..B12 with B8A and B10; DN)
S2_L1C_MEAN = (1612.9, 1397.6, 1322.3, 1373.1, 1561.0, 2108.4, 2390.7, 2318.7, 2581.0, 837.7,
               22.0, 2195.2, 1537.4)
S2_L1C_STD = (791.0, 854.3, 878.7, 1144.9, 1127.5, 1164.2, 1276.0, 1249.5, 1345.9, 577.5, 47.5,
              1340.0, 1142.9)
#: SSL4EO-S12 Sentinel-2 L2A statistics (B01..B12 with B8A, no B10; DN)
S2_L2A_MEAN = (756.4, 889.6, 1151.7, 1307.6, 1637.6, 2212.6, 2442.0, 2538.9, 2602.9, 2666.8,
               2388.8, 1821.5)
S2_L2A_STD = (1111.4, 1159.1, 1188.1, 1375.2, 1376.6, 1358.6, 1418.4, 1476.4, 1439.9, 1582.1,
              1460.7, 1352.2)
#: ImageNet RGB statistics in [0, 1] units
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: default S1 clipping limits in dB (VV, VH)
S1_DB_LOW = (-25.0, -32.5)
S1_DB_HIGH = (0.0, 0.0)


# ----------------------------------------------------------------------------------------------
# pure functions
# ----------------------------------------------------------------------------------------------
def _per_band(values: Sequence[float] | Tensor, x: Tensor) -> Tensor:
    """Per-band constants shaped ``(C, 1, 1)`` on ``x``'s device and dtype, checked against C."""
    t = torch.as_tensor(values, dtype=x.dtype if x.is_floating_point() else torch.float32,
                        device=x.device).reshape(-1, 1, 1)
    c = x.shape[-3] if x.ndim >= 3 else 1
    if t.shape[0] not in (1, c):
        raise ConfigError(f"normalisation has {t.shape[0]} band values but the image has {c} "
                          "bands")
    return t


def s1_db_clip(
    x: Tensor,
    low: Sequence[float] = S1_DB_LOW,
    high: Sequence[float] = S1_DB_HIGH,
) -> Tensor:
    """Clip Sentinel-1 dB backscatter per band to ``[low, high]`` and scale to ``[0, 1]``.

    Args:
        x: ``(..., C, H, W)`` backscatter in dB (NaN = no data, mapped to 0).
        low: lower limit per band (or one for all).
        high: upper limit per band (or one for all).

    Returns:
        float tensor in ``[0, 1]``.
    """
    x = x.float() if not x.is_floating_point() else x
    lo, hi = _per_band(low, x), _per_band(high, x)
    x = torch.where(torch.isnan(x), lo, x)
    return ((torch.minimum(torch.maximum(x, lo), hi) - lo) / (hi - lo)).to(x.dtype)


def s2_offset(processing_baseline: str | float | None) -> int:
    """The DN offset to add to a Sentinel-2 product before scaling, from its processing baseline.

    Args:
        processing_baseline: e.g. ``"04.00"``, ``"N0400"``, ``5.09``; ``None`` when unknown.

    Returns:
        ``-1000`` for baseline 04.00 and later (January 2022 on), else ``0``.
    """
    if processing_baseline is None:
        return 0
    text = str(processing_baseline).strip().upper().lstrip("N")
    try:
        value = float(text) if "." in text else float(text) / 100.0
    except ValueError as err:
        raise ConfigError(f"unrecognised processing baseline {processing_baseline!r}") from err
    return -1000 if value >= 4.0 else 0


def s2_reflectance(
    x: Tensor,
    scale: float = 10000.0,
    offset: float = 0.0,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Sentinel-2 digital numbers to reflectance: ``(x + offset) / scale``, optionally clipped.

    Args:
        x: ``(..., C, H, W)`` digital numbers.
        scale: quantification value (10,000 for L1C and L2A).
        offset: radiometric offset (``-1000`` from processing baseline 04.00, see
            :func:`s2_offset`).
        clip: output range, or ``None`` to keep values outside ``[0, 1]``.

    Returns:
        float reflectance.
    """
    x = x.float() if not x.is_floating_point() else x
    out = (x + offset) / scale
    return out.clamp(*clip) if clip is not None else out


def standardize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """Per-band standardisation ``(x - mean) / std``.

    Args:
        x: ``(..., C, H, W)``.
        mean: per-band means.
        std: per-band standard deviations (zeros are treated as 1).

    Returns:
        the standardised tensor.
    """
    x = x.float() if not x.is_floating_point() else x
    m, s = _per_band(mean, x), _per_band(std, x)
    return (x - m) / torch.where(s > 0, s, torch.ones_like(s))


# ----------------------------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------------------------
class S1DbClip(nn.Module):
    """Sentinel-1 dB clipping to ``[0, 1]`` (see :func:`s1_db_clip`)."""

    def __init__(self, low: Sequence[float] = S1_DB_LOW, high: Sequence[float] = S1_DB_HIGH,
                 linear_input: bool = False) -> None:
        """Create the normaliser.

        Args:
            low: lower dB limit per band.
            high: upper dB limit per band.
            linear_input: the input is linear power (converted with ``10 log10``) rather than dB.
        """
        super().__init__()
        if any(h <= lo for lo, h in zip(low, high)):
            raise ConfigError(f"S1 clipping limits must have low < high, got {low} and {high}")
        self.low, self.high, self.linear_input = tuple(low), tuple(high), linear_input

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``."""
        if self.linear_input:
            x = 10 * torch.log10(x.float().clamp_min(1e-10))
        return s1_db_clip(x, self.low, self.high)


class S2Reflectance(nn.Module):
    """Sentinel-2 DN to reflectance (see :func:`s2_reflectance`)."""

    def __init__(self, scale: float = 10000.0, offset: float = 0.0,
                 clip: tuple[float, float] | None = (0.0, 1.0)) -> None:
        """Create the normaliser (arguments as :func:`s2_reflectance`)."""
        super().__init__()
        self.scale, self.offset, self.clip = scale, offset, clip

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``."""
        return s2_reflectance(x, self.scale, self.offset, self.clip)


class Standardize(nn.Module):
    """Per-band standardisation with fixed statistics (see :func:`standardize`)."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: float = 1.0) -> None:
        """Create the normaliser.

        Args:
            mean: per-band means (in the units of the input divided by ``scale``).
            std: per-band standard deviations (same units).
            scale: the input is divided by this first (255 for 8-bit images).
        """
        super().__init__()
        if len(mean) != len(std):
            raise ConfigError(f"{len(mean)} means but {len(std)} standard deviations")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32) * scale)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32) * scale)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``."""
        return standardize(x, self.mean, self.std)

    @classmethod
    def from_stats(
        cls,
        stats: str | os.PathLike[str] | Mapping[str, Any],
        key: str | None = None,
        bands: Sequence[str | int] | None = None,
    ) -> Standardize:
        """Build from a ``geossl stats`` JSON file (or its loaded dict).

        Args:
            stats: the JSON file or dict (a flat ``{"bands", "mean", "std", ...}`` or the
                ``{"stats": {key: {...}}}`` written by ``geossl stats``).
            key: the image key to use when the file holds several (default: the only one, or
                ``image``).
            bands: band names or positions to keep, in order (default: all).

        Returns:
            the normaliser.

        Raises:
            DataError: unreadable file or missing fields.
            ConfigError: unknown key or band.
        """
        flat = _flat_stats(stats, key)
        names = [str(b) for b in flat.get("bands", range(len(flat["mean"])))]
        idx = list(range(len(names)))
        if bands is not None:
            idx = []
            for b in bands:
                if isinstance(b, int):
                    idx.append(b)
                elif str(b) in names:
                    idx.append(names.index(str(b)))
                else:
                    raise ConfigError(f"band {b!r} not in the statistics ({', '.join(names)})")
        return cls([float(flat["mean"][i]) for i in idx], [float(flat["std"][i]) for i in idx])


def load_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a statistics JSON file (``geossl stats --out``).

    Raises:
        DataError: unreadable file, or not a JSON object.
    """
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"unreadable statistics file ({err})", path) from err
    if not isinstance(doc, dict):
        raise DataError("statistics file is not a JSON object", path)
    return doc


def sensor_stats(
    stats: str | os.PathLike[str] | Mapping[str, Any],
    sensor: str,
    sole: bool = False,
    bands: Sequence[str] | None = None,
) -> tuple[list[float], list[float]]:
    """Per-band mean and std of one sensor from a ``geossl stats`` file.

    The entry is ``image_<sensor>`` (``geossl stats`` on a multi-sensor dataset); a file with a
    single entry (e.g. ``image`` of a chip index) or a flat ``{"mean", "std"}`` serves a run with
    one sensor (``sole``).

    Args:
        stats: the JSON file or its loaded dict.
        sensor: sensor name.
        sole: the sensor is the only one normalised with this file.
        bands: band names of the samples, in order: the statistics are reordered and subset to
            them when the file names its bands and has every one of them.

    Returns:
        ``(mean, std)`` lists, one value per band.

    Raises:
        ConfigError: no entry for the sensor.
        DataError: unreadable file, or a band without statistics (no valid values).
    """
    doc: Mapping[str, Any] = stats if isinstance(stats, Mapping) else load_stats(stats)
    where = None if isinstance(stats, Mapping) else stats
    nested = doc.get("stats", doc if "mean" not in doc else None)
    if nested is None:
        entry: Mapping[str, Any] | None = doc if sole else None
        keys: list[str] = []
    else:
        keys = [str(k) for k in nested]
        entry = nested.get(f"image_{sensor}")
        if entry is None and sole and len(keys) == 1:
            entry = nested[keys[0]]
    if not isinstance(entry, Mapping) or "mean" not in entry or "std" not in entry:
        have = f"; has {', '.join(keys)}" if keys else ""
        raise ConfigError(f"no statistics for sensor {sensor!r} (key image_{sensor}{have}); "
                          f"run `geossl stats` on that sensor or give --normalization "
                          f"{sensor}=NAME", where)
    mean, std = list(entry["mean"]), list(entry["std"])
    names = [str(b) for b in entry.get("bands", [])]
    if bands is not None and len(names) == len(mean) and set(bands) <= set(names):
        idx = [names.index(str(b)) for b in bands]
        mean, std, names = [mean[i] for i in idx], [std[i] for i in idx], [names[i] for i in idx]
    for i, (m, s) in enumerate(zip(mean, std, strict=True)):
        if m is None or s is None:
            band = names[i] if i < len(names) else str(i)
            raise DataError(f"no statistics for band {band} of {sensor} (no valid values)", where)
    return [float(m) for m in mean], [float(s) for s in std]


def _flat_stats(stats: str | os.PathLike[str] | Mapping[str, Any], key: str | None
                ) -> Mapping[str, Any]:
    doc: Mapping[str, Any] = stats if isinstance(stats, Mapping) else load_stats(stats)
    if "stats" in doc:
        nested: Mapping[str, Any] = doc["stats"]
        if key is None:
            key = "image" if "image" in nested or len(nested) != 1 else next(iter(nested))
        if key not in nested:
            raise ConfigError(f"no statistics for {key!r} (have {', '.join(nested)})")
        doc = nested[key]
    if "mean" not in doc or "std" not in doc:
        raise DataError("statistics without 'mean' and 'std'")
    return doc


class ChannelCountStandardize(nn.Module):
    """Standardisation whose statistics are chosen by the input's channel count.

    ``s2_std`` uses it: 13 bands get the L1C statistics, 12 bands the L2A ones.
    """

    def __init__(self, options: Mapping[int, tuple[Sequence[float], Sequence[float]]]) -> None:
        """Create the normaliser.

        Args:
            options: ``{channels: (mean, std)}``.
        """
        super().__init__()
        self.options = {int(c): (tuple(m), tuple(s)) for c, (m, s) in options.items()}

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``."""
        c = x.shape[-3]
        if c not in self.options:
            raise ConfigError(f"no statistics for {c} bands (have {sorted(self.options)})")
        mean, std = self.options[c]
        return standardize(x, mean, std)


class RGBNormalize(Standardize):
    """8-bit RGB: ``/255`` then ImageNet mean/std."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        """Create the normaliser (statistics in ``[0, 1]`` units)."""
        super().__init__(mean, std, scale=255.0)


class PolSARNormalize(nn.Module):
    """PolSAR feature channels: dB channels ``(x - center) / scale``, the others unchanged.

    With ``db_channels=None`` the dB channels are inferred from the channel count, assuming the
    order of :func:`geossl.datasets.polsar.polsar_features` with ``diag_db`` and ``offdiag``:
    9 (3 dB + 6 coefficients), 10 (+ span), 12 (+ Pauli), 13 (+ Pauli + span); 3 or 4 channels
    are taken as all dB.
    """

    def __init__(self, db_channels: Sequence[int] | None = None, center: float = -15.0,
                 scale: float = 10.0) -> None:
        """Create the normaliser.

        Args:
            db_channels: positions of the dB channels (default: inferred).
            center: dB value mapped to 0.
            scale: dB range mapped to 1.
        """
        super().__init__()
        self.db_channels = None if db_channels is None else tuple(db_channels)
        self.center, self.scale = center, scale

    @staticmethod
    def infer_db_channels(channels: int) -> tuple[int, ...]:
        """Positions of the dB channels in the default feature layouts."""
        layouts = {3: (0, 1, 2), 4: (0, 1, 2, 3), 9: (0, 1, 2), 10: (0, 1, 2, 9),
                   12: (0, 1, 2, 9, 10, 11), 13: (0, 1, 2, 9, 10, 11, 12)}
        if channels not in layouts:
            raise ConfigError(f"cannot tell the dB channels of a {channels}-channel PolSAR image; "
                              "give db_channels")
        return layouts[channels]

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``."""
        x = x.float() if not x.is_floating_point() else x
        c = x.shape[-3]
        db = self.db_channels if self.db_channels is not None else self.infer_db_channels(c)
        weight = torch.ones(c, 1, 1, dtype=x.dtype, device=x.device)
        bias = torch.zeros(c, 1, 1, dtype=x.dtype, device=x.device)
        weight[list(db)] = 1.0 / self.scale
        bias[list(db)] = -self.center / self.scale
        return x * weight + bias


class Identity(nn.Module):
    """No normalisation."""

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` as float."""
        return x.float() if not x.is_floating_point() else x


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------
#: sensor name -> factory of its default normaliser
NORMALIZERS: dict[str, Callable[[], nn.Module]] = {
    "s1": S1DbClip,
    "s2": S2Reflectance,
    "s2_offset": lambda: S2Reflectance(offset=-1000.0),
    "s1_std": lambda: Standardize(S1_MEAN, S1_STD),
    "s2_std": lambda: ChannelCountStandardize({13: (S2_L1C_MEAN, S2_L1C_STD),
                                               12: (S2_L2A_MEAN, S2_L2A_STD)}),
    "rgb": RGBNormalize,
    "gray": lambda: Standardize((0.5,), (0.5,), scale=255.0),
    "polsar": PolSARNormalize,
    "none": Identity,
}


def get_normalizer(
    sensor: str,
    stats: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    key: str | None = None,
) -> nn.Module:
    """The normaliser of a sensor, or a standardisation from a ``geossl stats`` file.

    Args:
        sensor: a name of :data:`NORMALIZERS` (case-insensitive; ``s2l1c``/``s2l2a`` and
            ``sar``/``optical`` aliases map to ``s2``/``s1``), or ``stats``.
        stats: statistics file or dict; when given, the result is a :class:`Standardize` from it
            whatever ``sensor`` is.
        key: image key inside the statistics file.

    Returns:
        a picklable module mapping ``(C, H, W)`` / ``(B, C, H, W)`` tensors.

    Raises:
        ConfigError: unknown sensor name.
    """
    if stats is not None:
        return Standardize.from_stats(stats, key)
    name = sensor.lower().replace("-", "_")
    aliases = {"s2l1c": "s2", "s2l2a": "s2", "s2_l1c": "s2", "s2_l2a": "s2", "sar": "s1",
               "optical": "s2", "s2c": "s2", "s2a": "s2"}
    name = aliases.get(name, name)
    if name not in NORMALIZERS:
        raise ConfigError(f"no normalisation for sensor {sensor!r}; use one of "
                          f"{', '.join(sorted(NORMALIZERS))} or a stats file")
    return NORMALIZERS[name]()


# ----------------------------------------------------------------------------------------------
# the normalisation an encoder was pretrained with (from checkpoint metadata)
# ----------------------------------------------------------------------------------------------
def sensor_normalizer(sensor: str) -> Callable[[Tensor], Tensor] | None:
    """The batch-wise normaliser :mod:`geossl.pretrained.normalize` has under ``sensor``'s name.

    Args:
        sensor: sensor name (``s1``, ``s2``, ``rgb``, ...).

    Returns:
        a picklable callable mapping a ``(B, C, H, W)`` float tensor to its normalised version,
        or ``None`` when the sensor has no registered normalisation.
    """
    try:
        return get_normalizer(sensor)
    except (KeyError, ValueError, ConfigError):
        return None


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------


def make_normalizer(
    meta: dict[str, Any], sensor: SensorSelection
) -> Callable[[Tensor], Tensor] | None:
    """The batch normalisation the encoder was pretrained with.

    ``meta["normalization"]`` may hold ``{"mean": [...], "std": [...]}``, a per-sensor mapping
    of those or of normaliser names (what ``geossl pretrain`` records, e.g. ``{"s2": "s2"}``:
    a sensor absent from the mapping was not normalised), or a normaliser name; when it is
    ``None`` the sensor's registered normaliser
    (:func:`sensor_normalizer`) is used, as in pretraining. For a
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
