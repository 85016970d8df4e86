"""Batched GPU augmentation for standardised multispectral and SAR tensors ``(B, C, H, W)``.

Why not kornia's augmentation pipeline (which TorchGeo uses), checked against kornia 0.9:

* its colour jitter clamps to ``[0, 1]``: ``ColorJitter`` always, ``RandomBrightness`` and
  ``RandomContrast`` by default (``clip_output=True``), which destroys standardised bands (about
  half of every band is negative); with clipping off, kornia's contrast still scales values about
  zero, where standardised data needs a scale about each band's mean;
* its crops are drawn in pixels of one image, so one crop cannot be shared by two sensors on
  different pixel grids (``same_crop`` for S1 and S2 views);
* its Gaussian blur has one kernel size in pixels, which refuses views smaller than half the
  kernel (a 23 px kernel needs 12 px views), where the blur here scales sigma and kernel with
  the view size;
* it has no SAR speckle.

Grayscale alone would fit (kornia 0.9's ``RandomGrayscale`` averages all bands of a
multispectral image, as here); it stays in the one per-sample pass below so that the random
draws, and thus the views of a seeded run, do not change.

* **geometry** (random resized crop, horizontal/vertical flips, 90-degree rotations) is folded
  into one affine matrix per sample and applied with a single :func:`torch.nn.functional.
  grid_sample` call: any band count, one kernel launch for the whole batch, and the *same*
  matrix can be applied to two sensors (``same_crop``) even if their pixel grids differ, since it
  is expressed in normalised coordinates;
* **brightness/contrast** act on standardised values (shift in standard deviations, scale about
  the per-band mean) and never clip;
* **grayscale** is band-aware: the mean over all bands, broadcast back to every band;
* **Gaussian blur** is separable, per-sample sigma, any bands (:func:`gaussian_blur`);
* **SAR speckle**: multiplicative Gamma noise of mean 1 (``L`` looks) in linear power, which on
  dB data is the addition of ``10 log10(gamma)`` (divided by ``db_per_unit`` when the dB values
  were scaled, e.g. 25 for S1 dB clipped to [-25, 0] and mapped to [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geossl.core.errors import ConfigError

SENSOR_KINDS = ("optical", "sar")


def _uniform(n: int, low: float, high: float, device: torch.device) -> Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def random_crop_boxes(
    n: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random resized crop boxes in normalised coordinates, vectorised.

    Samples the area fraction in ``scale`` and the log aspect ratio uniformly in ``log(ratio)``
    (as torchvision/kornia), shrinking boxes that do not fit.

    Returns:
        ``(cx, cy, half_w, half_h)``, each ``(n,)``, in ``[-1, 1]`` image coordinates.
    """
    area = _uniform(n, scale[0], scale[1], device)
    logr = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), device)
    r = torch.exp(logr)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(n, device=device) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, device=device) * 2 - 1) * (1 - h)
    return cx, cy, w, h


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one sigma per sample, reflect-padded, no host sync.

    Args:
        x: ``(B, C, H, W)``.
        sigma: ``(B,)`` standard deviations in pixels (positive).
        kernel_size: odd kernel width (capped so that reflection padding fits the image).

    Returns:
        the blurred ``(B, C, H, W)``.
    """
    b, c, h, w = x.shape
    half = max(0, min(kernel_size // 2, h - 1, w - 1))
    if half == 0:
        return x
    offsets = torch.arange(-half, half + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma.float()[:, None] ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(x.dtype)  # (B, K)
    weight = kernel.repeat_interleave(c, dim=0)  # (B*C, K): every band of a sample alike
    flat = F.pad(x.reshape(1, b * c, h, w), (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, weight.view(b * c, 1, 1, -1), groups=b * c)
    flat = F.conv2d(flat, weight.view(b * c, 1, -1, 1), groups=b * c)
    return flat.view(b, c, h, w)


class SSLAugment(nn.Module):
    """SSL augmentation of one sensor's standardised batch, on whatever device it lives on."""

    def __init__(
        self,
        size: int,
        sensor_kind: str = "optical",
        crop_scale: tuple[float, float] = (0.2, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        vflip: float = 0.5,
        rot90: bool = True,
        jitter_p: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        grayscale_p: float | None = None,
        blur_p: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        speckle_p: float | None = None,
        speckle_looks: float = 4.0,
        db_per_unit: float | Sequence[float] = 1.0,
        orientation_p: float = 0.0,
        orientation_max_deg: float = 45.0,
        polsar_stats: Sequence[Sequence[float]] | None = None,
        elastic_p: float = 0.0,
        elastic_alpha: float = 1.0,
        elastic_sigma: float = 32.0,
    ) -> None:
        """Configure the augmentation.

        Args:
            size: output size in pixels (square).
            sensor_kind: ``optical`` or ``sar`` (sets the grayscale/speckle defaults).
            crop_scale: area fraction range of the random resized crop.
            crop_ratio: aspect ratio range of the crop.
            hflip: probability of a horizontal flip.
            vflip: probability of a vertical flip.
            rot90: random rotation by 0, 90, 180 or 270 degrees.
            jitter_p: probability of brightness/contrast jitter.
            brightness: brightness shift range ``[-b, b]`` in standard deviations.
            contrast: contrast factor range ``[1 - c, 1 + c]`` about each band's mean.
            grayscale_p: probability of band-aware grayscale (default 0.2 optical, 0 SAR).
            blur_p: probability of a Gaussian blur.
            blur_sigma: blur sigma range in output pixels, scaled to ``size / 224``.
            speckle_p: probability of SAR speckle (default 0.5 SAR, 0 optical).
            speckle_looks: equivalent number of looks ``L`` of the Gamma(L, 1/L) speckle.
            db_per_unit: dB per unit of the input, one value or one per band (1 for plain dB;
                the clipping range for S1 dB mapped to [0, 1], e.g. ``(25, 32.5)`` for
                geossl's ``S1DbClip``; the band std in dB if standardised).
            orientation_p: probability of turning a full-polarimetric (T3) view about the
                radar line of sight by a random orientation angle
                (:func:`geossl.datasets.polsar.rotate_t3_features`); needs ``polsar_stats``.
            orientation_max_deg: largest orientation angle, in degrees (uniform in
                ``[-max, max]``).
            polsar_stats: ``(mean, std)`` of the 9 standardised T3 channels.
            elastic_p: probability of an elastic deformation (Simard et al. 2003), applied
                after the crop; 0: off.
            elastic_alpha: its strength (kornia's ``alpha``, displacement in normalised
                coordinates before smoothing).
            elastic_sigma: smoothing of the displacement field in pixels of a 224 px view,
                scaled to ``size / 224`` (kornia's ``sigma``; larger: smoother, smaller).
        """
        super().__init__()
        if sensor_kind not in SENSOR_KINDS:
            raise ConfigError(f"unknown sensor kind {sensor_kind!r}; choose optical or sar")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")
        self.size = int(size)
        self.sensor_kind = sensor_kind
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90
        self.jitter_p, self.brightness, self.contrast = jitter_p, brightness, contrast
        sar = sensor_kind == "sar"
        self.grayscale_p = (0.0 if sar else 0.2) if grayscale_p is None else grayscale_p
        self.speckle_p = (0.5 if sar else 0.0) if speckle_p is None else speckle_p
        self.blur_p, self.blur_sigma = blur_p, blur_sigma
        self.speckle_looks = speckle_looks
        if orientation_p > 0 and (polsar_stats is None or len(polsar_stats) != 2):
            raise ConfigError("orientation_p needs polsar_stats = (mean, std) of the 9 T3 "
                              "channels")
        self.orientation_p, self.orientation_max_deg = float(orientation_p), orientation_max_deg
        if not 0 <= elastic_p <= 1 or elastic_alpha < 0 or elastic_sigma <= 0:
            raise ConfigError(f"elastic_p must be in [0, 1], elastic_alpha >= 0 and "
                              f"elastic_sigma > 0, got {elastic_p}, {elastic_alpha}, "
                              f"{elastic_sigma}")
        self.elastic_p, self.elastic_alpha = float(elastic_p), float(elastic_alpha)
        self.elastic_sigma = float(elastic_sigma)
        self.polsar_stats = ((tuple(float(v) for v in polsar_stats[0]),
                              tuple(float(v) for v in polsar_stats[1]))
                             if polsar_stats is not None else None)
        self.db_per_unit: tuple[float, ...] = (
            (float(db_per_unit),) if isinstance(db_per_unit, int | float)
            else tuple(float(v) for v in db_per_unit)
        )

    # -- geometry ------------------------------------------------------------------------------
    def sample_geometry(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        """Random crop + flips + 90-degree rotation as ``(n, 2, 3)`` affine matrices.

        The matrices map output coordinates to input coordinates (both normalised to
        ``[-1, 1]``), as :func:`torch.nn.functional.affine_grid` expects; they do not depend on
        the input's pixel size, so one sample serves several sensors (``same_crop``).
        """
        device = torch.device(device)
        cx, cy, w, h = random_crop_boxes(n, self.crop_scale, self.crop_ratio, device)
        fx = torch.where(torch.rand(n, device=device) < self.hflip, -1.0, 1.0)
        fy = torch.where(torch.rand(n, device=device) < self.vflip, -1.0, 1.0)
        m = torch.zeros(n, 2, 2, device=device)
        m[:, 0, 0], m[:, 1, 1] = fx, fy
        if self.rot90:
            k = torch.randint(0, 4, (n,), device=device).float() * (math.pi / 2)
            cos, sin = torch.cos(k).round(), torch.sin(k).round()
            rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
            m = rot @ m
        scale = torch.stack([w, h], dim=-1).unsqueeze(-1)  # (n, 2, 1)
        theta = torch.cat([m * scale, torch.stack([cx, cy], dim=-1).unsqueeze(-1)], dim=-1)
        return theta

    def apply_geometry(self, x: Tensor, theta: Tensor) -> Tensor:
        """Resample ``x`` on the grids of ``theta`` to ``size x size`` (bilinear, reflection)."""
        b, c = x.shape[:2]
        grid = F.affine_grid(theta.to(x.dtype), [b, c, self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)

    # -- photometry ----------------------------------------------------------------------------
    def _select(self, n: int, p: float, device: torch.device) -> Tensor:
        return torch.rand(n, device=device) < p

    def jitter(self, x: Tensor) -> Tensor:
        """Brightness shift and contrast scaling on standardised data, without clipping."""
        n = x.shape[0]
        on = self._select(n, self.jitter_p, x.device).to(x.dtype).view(n, 1, 1, 1)
        shift = _uniform(n, -self.brightness, self.brightness, x.device).view(n, 1, 1, 1)
        factor = _uniform(n, 1 - self.contrast, 1 + self.contrast, x.device).view(n, 1, 1, 1)
        mean = x.mean(dim=(2, 3), keepdim=True)
        jittered = (x - mean) * factor + mean + shift
        return x + on * (jittered - x)

    def grayscale(self, x: Tensor) -> Tensor:
        """Band-aware grayscale: the mean over bands, broadcast to every band."""
        n = x.shape[0]
        on = self._select(n, self.grayscale_p, x.device).view(n, 1, 1, 1)
        return torch.where(on, x.mean(dim=1, keepdim=True).expand_as(x), x)

    def blur(self, x: Tensor) -> Tensor:
        """Gaussian blur of a random subset of the batch (per-sample sigma, separable).

        The whole batch is blurred and the unselected samples are kept as they were, with
        :func:`torch.where`; gathering the selected samples would need their count on the host,
        and kornia's ``gaussian_blur2d`` checks its sigmas on the host: both are a device
        synchronisation every step.
        """
        n = x.shape[0]
        on = self._select(n, self.blur_p, x.device).view(n, 1, 1, 1)
        factor = self.size / 224
        sigma = _uniform(n, self.blur_sigma[0] * factor, self.blur_sigma[1] * factor,
                         x.device).clamp(min=1e-3)
        ks = max(3, int(2 * math.ceil(3 * self.blur_sigma[1] * factor) + 1))
        return torch.where(on, gaussian_blur(x, sigma, ks), x)

    def elastic(self, x: Tensor) -> Tensor:
        """Elastically deform a random subset of views (kornia's ``elastic_transform2d``).

        A random displacement field, smoothed by a Gaussian, warps each selected view; edge
        values fill what moves in from outside, so values stay within the view's range.
        """
        from kornia.geometry.transform import elastic_transform2d

        n, _, h, w = x.shape
        on = self._select(n, self.elastic_p, x.device).view(n, 1, 1, 1)
        sigma = max(self.elastic_sigma * self.size / 224, 0.5)
        half = min(math.ceil(3 * sigma), (min(h, w) - 1) // 2)  # reflect-padding limit
        kernel = 2 * max(half, 1) + 1
        noise = torch.rand(n, 2, h, w, device=x.device, dtype=x.dtype) * 2 - 1
        warped = elastic_transform2d(x, noise, (kernel, kernel), (sigma, sigma),
                                     (self.elastic_alpha, self.elastic_alpha),
                                     padding_mode="border")
        return torch.where(on, warped, x)

    def orientation(self, x: Tensor) -> Tensor:
        """Turn a random subset of T3 views by a random orientation angle (see ``__init__``)."""
        from geossl.datasets.polsar import rotate_t3_features  # only PolSAR views need it

        assert self.polsar_stats is not None  # checked in __init__
        n = x.shape[0]
        on = self._select(n, self.orientation_p, x.device)
        limit = math.radians(self.orientation_max_deg)
        angles = _uniform(n, -limit, limit, x.device) * on.to(x.dtype)
        return rotate_t3_features(x, angles, *self.polsar_stats)

    def speckle(self, x: Tensor) -> Tensor:
        """Multiplicative Gamma(L, 1/L) speckle in linear power, added as dB to dB data."""
        n = x.shape[0]
        on = self._select(n, self.speckle_p, x.device).to(x.dtype).view(n, 1, 1, 1)
        looks = torch.full_like(x, self.speckle_looks, dtype=torch.float32)
        gamma = torch._standard_gamma(looks) / self.speckle_looks
        if len(self.db_per_unit) not in (1, x.shape[1]):
            raise ConfigError(
                f"db_per_unit has {len(self.db_per_unit)} values for {x.shape[1]} bands")
        db = 10 * torch.log10(gamma.clamp(min=1e-6))
        if len(self.db_per_unit) == 1:
            db = db / self.db_per_unit[0]
        else:  # one scale per band: a constant built on the device once, not every step
            db = db / self._unit(x.device).view(1, -1, 1, 1)
        return x + on * db.to(x.dtype)

    def _unit(self, device: torch.device) -> Tensor:
        """``db_per_unit`` as a tensor on ``device``, cached (one host-to-device copy)."""
        cache: dict[str, Tensor] = self.__dict__.setdefault("_unit_cache", {})
        key = str(device)
        if key not in cache:
            cache[key] = torch.tensor(self.db_per_unit, dtype=torch.float32, device=device)
        return cache[key]

    def forward(self, x: Tensor, geometry: Tensor | None = None) -> Tensor:
        """Augment a batch.

        Args:
            x: ``(B, C, H, W)`` standardised batch.
            geometry: affine matrices from :meth:`sample_geometry` to reuse (``same_crop``);
                sampled here when ``None``.

        Returns:
            ``(B, C, size, size)`` float32.
        """
        x = x.float()
        if geometry is None:
            geometry = self.sample_geometry(x.shape[0], x.device)
        x = self.apply_geometry(x, geometry.to(x.device))
        if self.elastic_p > 0:
            x = self.elastic(x)
        if self.jitter_p > 0:
            x = self.jitter(x)
        if self.grayscale_p > 0 and x.shape[1] > 1:
            x = self.grayscale(x)
        if self.orientation_p > 0:
            x = self.orientation(x)
        if self.speckle_p > 0:
            x = self.speckle(x)
        if self.blur_p > 0:
            x = self.blur(x)
        return x


def build_augments(
    sensors: Sequence[str],
    size: int,
    sar_sensors: Sequence[str] = ("s1",),
    options: Mapping[str, Any] | None = None,
    per_sensor: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, SSLAugment]:
    """One :class:`SSLAugment` per sensor.

    Args:
        sensors: sensor names.
        size: output size.
        sar_sensors: sensors treated as SAR (speckle, no grayscale).
        options: :class:`SSLAugment` keyword arguments shared by every sensor.
        per_sensor: keyword arguments for one sensor, overriding ``options``.

    Returns:
        ``{sensor: SSLAugment}``.

    Raises:
        ConfigError: an unknown augmentation option.
    """
    out: dict[str, SSLAugment] = {}
    for sensor in sensors:
        kwargs: dict[str, Any] = {**(options or {}), **((per_sensor or {}).get(sensor, {}))}
        kwargs.setdefault("sensor_kind", "sar" if sensor in sar_sensors else "optical")
        for key in ("crop_scale", "crop_ratio", "blur_sigma"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        try:
            out[sensor] = SSLAugment(size, **kwargs)
        except TypeError as err:
            raise ConfigError(f"bad augmentation option for {sensor}: {err}") from err
    return out
