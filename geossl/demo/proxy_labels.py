"""Proxy land-cover classes of optical chips from spectral indices (not ground truth).

A scene without labels can still be evaluated roughly: every pixel is given a coarse land-cover
class from classic spectral indices, and a chip takes its majority class when that class covers
at least ``purity`` of its pixels (else it stays unlabelled). These are **spectral-index proxy
labels, not ground truth**: they are a deterministic function of the chip's reflectances, so a
classifier on plain band statistics is expected to do well on them, and they say nothing about
classes that differ in texture or context rather than in spectrum.

Pixel rules (first match wins; reflectance = ``(DN + offset) / scale``):

* ``water``: NDWI (McFeeters 1996) = (green - NIR) / (green + NIR) > ``ndwi_water`` (0);
* ``dense vegetation``: NDVI = (NIR - red) / (NIR + red) > ``ndvi_dense`` (0.5);
* ``sparse vegetation``: NDVI > ``ndvi_sparse`` (0.2);
* ``bare/built``: NDBI (Zha et al. 2003) = (SWIR1 - NIR) / (SWIR1 + NIR) > ``ndbi_built`` (0)
  or visible brightness (mean of blue, green, red reflectance) > ``bright_built`` (0.12);
* anything else (dark, not water, not vegetated: shadow, wet soil) and invalid pixels (all bands
  0, or not finite) are unclassified and count against the purity.

Sentinel-2 band names: green B03, red B04, NIR B08, SWIR1 B11, blue B02 (``B3``/``B4``/``B8``/
``B11``/``B2`` also accepted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geossl.core.errors import DataError

#: proxy classes, in label order
CLASSES: tuple[str, ...] = ("water", "dense vegetation", "sparse vegetation", "bare/built")
#: label of unclassified pixels and of chips under the purity threshold
UNLABELLED = -1
#: what every table, plot and file says about these labels
DISCLAIMER = "spectral-index proxy labels, not ground truth"

#: band name candidates per role (first found wins)
_ROLES: dict[str, tuple[str, ...]] = {
    "blue": ("B02", "B2"),
    "green": ("B03", "B3"),
    "red": ("B04", "B4"),
    "nir": ("B08", "B8"),
    "swir1": ("B11",),
}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Index thresholds of the pixel rules (see the module docstring) and DN scaling.

    Attributes:
        ndwi_water: NDWI above this is water.
        ndvi_dense: NDVI above this is dense vegetation.
        ndvi_sparse: NDVI above this (and not dense) is sparse vegetation.
        ndbi_built: NDBI above this (not water, not vegetated) is bare/built.
        bright_built: visible reflectance above this (not water, not vegetated) is bare/built.
        scale: digital numbers per unit reflectance (10000 for Sentinel-2).
        offset: added to the digital numbers before scaling (-1000 for Sentinel-2 products of
            processing baseline 04.00 or later).
    """

    ndwi_water: float = 0.0
    ndvi_dense: float = 0.5
    ndvi_sparse: float = 0.2
    ndbi_built: float = 0.0
    bright_built: float = 0.12
    scale: float = 10000.0
    offset: float = 0.0


def band_roles(bands: Sequence[str]) -> dict[str, int]:
    """Position of the blue, green, red, NIR and SWIR1 bands in ``bands``.

    Raises:
        DataError: a band the rules need is missing.
    """
    upper = [str(b).upper() for b in bands]
    roles: dict[str, int] = {}
    for role, names in _ROLES.items():
        found = next((upper.index(n) for n in names if n in upper), None)
        if found is None:
            raise DataError(f"proxy labels need the {role} band ({' or '.join(names)}); the "
                            f"chips have {', '.join(map(str, bands))}")
        roles[role] = found
    return roles


def _ratio(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    den = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.abs(den) > 1e-6, (a - b) / den, 0.0)
    return out.astype(np.float32)


def spectral_indices(
    images: NDArray[Any], bands: Sequence[str], thresholds: Thresholds = Thresholds()
) -> dict[str, NDArray[np.float32]]:
    """NDVI, NDWI, NDBI and visible brightness of every pixel.

    Args:
        images: ``(..., C, H, W)`` digital numbers (one chip or a batch).
        bands: the ``C`` band names.
        thresholds: scale and offset of the digital numbers.

    Returns:
        ``{"ndvi", "ndwi", "ndbi", "brightness"}``, each ``(..., H, W)``.
    """
    x = np.asarray(images, dtype=np.float32)
    r = band_roles(bands)

    def refl(role: str) -> NDArray[np.float32]:
        return (x[..., r[role], :, :] + thresholds.offset) / thresholds.scale

    blue, green, red, nir, swir1 = (refl(k) for k in ("blue", "green", "red", "nir", "swir1"))
    return {
        "ndvi": _ratio(nir, red),
        "ndwi": _ratio(green, nir),
        "ndbi": _ratio(swir1, nir),
        "brightness": ((blue + green + red) / 3).astype(np.float32),
    }


def pixel_classes(
    images: NDArray[Any], bands: Sequence[str], thresholds: Thresholds = Thresholds()
) -> NDArray[np.int8]:
    """Proxy class of every pixel (:data:`CLASSES` order, :data:`UNLABELLED` for none).

    Args:
        images: ``(..., C, H, W)`` digital numbers.
        bands: the ``C`` band names.
        thresholds: rule thresholds.

    Returns:
        ``(..., H, W)`` int8 classes.
    """
    x = np.asarray(images, dtype=np.float32)
    idx = spectral_indices(x, bands, thresholds)
    t = thresholds
    ndvi, ndwi = idx["ndvi"], idx["ndwi"]
    out = np.full(ndvi.shape, UNLABELLED, dtype=np.int8)
    bare = (idx["ndbi"] > t.ndbi_built) | (idx["brightness"] > t.bright_built)
    out[bare] = 3
    out[ndvi > t.ndvi_sparse] = 2
    out[ndvi > t.ndvi_dense] = 1
    out[ndwi > t.ndwi_water] = 0
    invalid = ~np.isfinite(x).all(axis=-3) | (np.nan_to_num(x) == 0).all(axis=-3)
    out[invalid] = UNLABELLED
    return out


def chip_labels(
    images: NDArray[Any],
    bands: Sequence[str],
    purity: float = 0.6,
    thresholds: Thresholds = Thresholds(),
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
    """Majority proxy class of each chip of a batch, kept when it is pure enough.

    Args:
        images: ``(N, C, H, W)`` digital numbers.
        bands: the ``C`` band names.
        purity: minimum fraction of the chip's pixels in its majority class (unclassified
            pixels count in the denominator); below it the chip is :data:`UNLABELLED`.
        thresholds: rule thresholds.

    Returns:
        ``labels (N,)`` int64, ``purity (N,)`` float32 (fraction of the majority class) and
        ``fractions (N, len(CLASSES))`` float32 (fraction of pixels per class).

    Raises:
        DataError: ``images`` is not ``(N, C, H, W)`` or lacks a band.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise DataError(f"expected a (N, C, H, W) batch of chips, got shape {x.shape}")
    if not 0.0 < purity <= 1.0:
        raise DataError(f"purity must be in (0, 1], got {purity}")
    cls = pixel_classes(x, bands, thresholds).reshape(len(x), -1)
    k = len(CLASSES)
    counts = np.stack([(cls == c).sum(1) for c in range(k)], 1).astype(np.float32)
    fractions = counts / max(cls.shape[1], 1)
    best = fractions.argmax(1)
    top = fractions[np.arange(len(x)), best]
    labels = np.where(top >= purity - 1e-9, best, UNLABELLED).astype(np.int64)
    return labels, top.astype(np.float32), fractions.astype(np.float32)
