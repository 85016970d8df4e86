"""Full-polarimetric SAR scenes in the PolSARpro T3 / C3 formats.

On-disk layout (PolSARpro)::

    <scene>/T3/T11.bin T22.bin T33.bin                (real diagonal terms)
               T12_real.bin T12_imag.bin T13_real.bin T13_imag.bin T23_real.bin T23_imag.bin
               *.bin.hdr                              (ENVI headers: data type 4 = float32, bsq)
               config.txt                             (Nrow, Ncol, PolarCase, PolarType)
    <scene>/C3/C11.bin C22.bin C33.bin C12_real.bin ... (covariance matrix, same layout)

T3 is the coherency matrix of the Pauli vector ``k_P = [HH+VV, HH-VV, 2 HV] / sqrt(2)``; C3 the
covariance matrix of the lexicographic vector ``k_L = [HH, sqrt(2) HV, VV]``. Hence
``T11 = |HH+VV|^2 / 2``, ``T22 = |HH-VV|^2 / 2``, ``T33 = 2 |HV|^2``, and from C3:
``T11 = (C11 + C33 + 2 Re C13) / 2``, ``T22 = (C11 + C33 - 2 Re C13) / 2``, ``T33 = C22``.

Channels (:func:`polsar_features`), in this order:

* ``diag_db`` (3): ``10 log10(max(Xii, floor))`` for the diagonal terms, floor 1e-10 (-100 dB).
* ``offdiag`` (6): real and imaginary parts of X12, X13, X23 divided by ``sqrt(Xii Xjj)``: the
  complex correlation coefficients, in [-1, 1] (clipped; the floor keeps them finite).
* ``pauli`` (3, on request): Pauli RGB in dB, R = ``|HH-VV|^2`` (double bounce, 2 T22),
  G = ``2|HV|^2`` (volume, T33), B = ``|HH+VV|^2`` (surface, 2 T11).
* ``span`` (1, on request): total power ``X11 + X22 + X33`` in dB.

Georeferencing: when the ENVI headers carry a map projection (``map info`` / ``coordinate system
string``) the scene keeps it. Slant-range products such as AIRSAR San Francisco carry none; they
get :data:`PIXEL_CRS`, a local engineering CRS in which one unit is one pixel, with the transform
``x = col, y = -row`` (north-up convention, so TorchGeo samplers and the overlap-aware splitter
work in pixel units). Such a scene must not be intersected with georeferenced data.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import shapely
import torch
import torch.nn.functional as F
from affine import Affine
from geopandas import GeoDataFrame
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.core.io import open_raster
from geossl.datasets.base import GeosslDataset, PretrainingRequest, construct

#: the nine real-valued files of a T3 folder, in channel order
T3_NAMES = ("T11", "T22", "T33", "T12_real", "T12_imag", "T13_real", "T13_imag",
            "T23_real", "T23_imag")
#: the nine real-valued files of a C3 folder, in channel order
C3_NAMES = tuple(n.replace("T", "C") for n in T3_NAMES)
NAMES = {"t3": T3_NAMES, "c3": C3_NAMES}

#: feature groups accepted by :func:`polsar_features`
FEATURES = ("diag_db", "offdiag", "pauli", "span")

#: pseudo CRS of scenes without georeferencing: a local engineering CRS, 1 unit = 1 pixel
PIXEL_CRS = CRS.from_wkt(
    'LOCAL_CS["geossl pixel grid",LOCAL_DATUM["image",0],UNIT["metre",1],'
    'AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
)
#: transform of :data:`PIXEL_CRS` scenes: x = col + 0, y = -row
PIXEL_TRANSFORM = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)

#: classes of the PolSF San Francisco AIRSAR label image (pixel value -> name). Checked against
#: the image itself, not taken from ``SOURCES.md`` (which lists 1 mountain, 2 water, 3 urban,
#: 4 vegetation, 5 bare soil): overlaid on the Pauli RGB, value 3 covers the ocean and the Golden
#: Gate, 2 the Marin headlands, 4 the street grid, 5 Golden Gate Park and the Presidio, and 1 the
#: sand of Ocean Beach; per-class medians agree (3 has the lowest T22/T33, 4 the highest T22).
SF_AIRSAR_CLASSES = ("unlabelled", "bare soil", "mountain", "water", "urban", "vegetation")

_DB_FLOOR = 1e-10


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def find_polsar_folder(root: str | os.PathLike[str]) -> tuple[Path, str]:
    """Locate the T3 or C3 folder of a scene.

    Args:
        root: a T3/C3 folder, or a scene folder holding ``T3/`` or ``C3/`` (T3 preferred).

    Returns:
        the folder and its kind, ``"t3"`` or ``"c3"``.

    Raises:
        DataError: if no PolSARpro matrix folder is found.
    """
    root = Path(root)
    if not root.exists():
        raise DataError("PolSAR folder not found", root)
    for folder in (root, root / "T3", root / "C3"):
        for kind, names in NAMES.items():
            if (folder / f"{names[0]}.bin").is_file():
                return folder, kind
    raise DataError("no PolSARpro T3 or C3 folder (T11.bin or C11.bin) found", root)


def read_config(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Read a PolSARpro ``config.txt`` (``key`` line, ``value`` line, ``---------`` separator).

    Args:
        folder: the T3/C3 folder.

    Returns:
        the keys and values (e.g. ``{"Nrow": "900", "Ncol": "1024", ...}``); empty if absent.
    """
    path = Path(folder) / "config.txt"
    if not path.is_file():
        return {}
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not set(ln) <= {"-"}]
    return {lines[i]: lines[i + 1] for i in range(0, len(lines) - 1, 2)}


def _open(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return open_raster(path)


def _scene_meta(folder: Path, kind: str) -> dict[str, Any]:
    """Shape and georeferencing of a matrix folder, checked across its nine files."""
    names = NAMES[kind]
    shape: tuple[int, int] | None = None
    crs: CRS | None = None
    transform = PIXEL_TRANSFORM
    for name in names:
        path = folder / f"{name}.bin"
        if not path.is_file():
            raise DataError(f"missing {kind.upper()} element {name}.bin", folder)
        src = _open(path)
        with src:
            if src.count != 1 or src.dtypes[0] != "float32":
                raise DataError(f"expected one float32 band (ENVI data type 4), got "
                                f"{src.count} x {src.dtypes[0]}", path)
            if shape is None:
                shape = (src.height, src.width)
                if src.crs is not None:
                    crs, transform = src.crs, src.transform
            elif (src.height, src.width) != shape:
                raise DataError(f"size {src.height} x {src.width} differs from "
                                f"{names[0]}.bin ({shape[0]} x {shape[1]})", path)
    assert shape is not None
    config = read_config(folder)
    try:
        nrow, ncol = int(config.get("Nrow", shape[0])), int(config.get("Ncol", shape[1]))
    except ValueError as err:
        raise DataError("bad Nrow/Ncol in config.txt", folder / "config.txt") from err
    if (nrow, ncol) != shape:
        raise DataError(f"config.txt says {nrow} x {ncol} but the .bin files are "
                        f"{shape[0]} x {shape[1]}", folder / "config.txt")
    return {"kind": kind, "folder": folder, "names": names, "height": shape[0],
            "width": shape[1], "crs": crs, "transform": transform, "config": config}


def read_polsar(
    folder: str | os.PathLike[str], window: Window | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a PolSARpro T3 or C3 matrix.

    Args:
        folder: a T3/C3 folder or a scene folder holding one.
        window: pixel window to read (default: the whole scene).

    Returns:
        ``(array, meta)``: float32 ``(9, H, W)`` in the order of :data:`T3_NAMES` /
        :data:`C3_NAMES`, and a dict with ``kind`` (``t3``/``c3``), ``folder``, ``names``,
        ``height`` and ``width`` (of the whole scene), ``crs`` (``None`` when the headers carry
        no projection), ``transform`` and ``config`` (``config.txt``).

    Raises:
        DataError: missing element, wrong data type, inconsistent sizes, unreadable file.
    """
    path, kind = find_polsar_folder(folder)
    meta = _scene_meta(path, kind)
    h = meta["height"] if window is None else int(window.height)
    w = meta["width"] if window is None else int(window.width)
    out = np.empty((9, h, w), dtype=np.float32)
    for i, name in enumerate(meta["names"]):
        src = _open(path / f"{name}.bin")
        try:
            with src:
                out[i] = src.read(1, window=window, boundless=False)
        except RasterioError as err:
            raise DataError(f"unreadable ({first_line(err)})",
                            path / f"{name}.bin") from err
    meta["window"] = window
    return out, meta


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------
def _db(x: np.ndarray, floor: float) -> np.ndarray:
    return np.asarray(10.0 * np.log10(np.maximum(x, floor)), dtype=np.float32)


def rotate_t3_features(x: torch.Tensor, angles: torch.Tensor, mean: Sequence[float],
                       std: Sequence[float], floor: float = _DB_FLOOR) -> torch.Tensor:
    """Rotate standardised T3 channels about the radar line of sight (orientation angle).

    A scatterer turned by ``theta`` about the line of sight has the coherency matrix
    ``T' = R T R^T`` with ``R = [[1, 0, 0], [0, c, s], [0, -s, c]]``, ``c = cos 2 theta``,
    ``s = sin 2 theta`` (Lee and Pottier, *Polarimetric Radar Imaging*, section 3.4): ``T11`` is
    unchanged, power moves between ``T22`` and ``T33`` (an oriented building looks like
    vegetation), ``T12``/``T13`` mix, and ``Im T23`` is kept. Used as an SSL view so that the
    encoder learns features that do not depend on the orientation of the scatterers.

    Args:
        x: ``(B, 9, H, W)`` standardised :func:`polsar_features` of a T3 matrix (``diag_db`` then
            ``offdiag``, the default channels).
        angles: ``(B,)`` orientation angles in radians, one per sample.
        mean: the 9 channel means used to standardise ``x``.
        std: the 9 channel standard deviations.
        floor: the power floor of :func:`polsar_features`.

    Returns:
        the rotated matrices as the same standardised channels (``(B, 9, H, W)``).

    Raises:
        ConfigError: ``x`` does not have the 9 default channels.
    """
    if x.shape[1] != 9 or len(mean) != 9 or len(std) != 9:
        raise ConfigError(f"orientation rotation needs the 9 default T3 channels, got "
                          f"{x.shape[1]} channels and {len(mean)}/{len(std)} statistics")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 9, 1, 1)
    sd = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 9, 1, 1)
    f = x * sd + m
    t11, t22, t33 = (torch.pow(10.0, f[:, i] / 10.0) for i in range(3))
    r12, r13 = torch.sqrt(t11 * t22), torch.sqrt(t11 * t33)
    t12 = (f[:, 3] * r12, f[:, 4] * r12)
    t13 = (f[:, 5] * r13, f[:, 6] * r13)
    t23re, t23im = f[:, 7] * torch.sqrt(t22 * t33), f[:, 8] * torch.sqrt(t22 * t33)
    two = 2 * angles.to(x.dtype).view(-1, 1, 1)
    c, s = torch.cos(two), torch.sin(two)
    n22 = c * c * t22 + 2 * c * s * t23re + s * s * t33
    n33 = s * s * t22 - 2 * c * s * t23re + c * c * t33
    n12 = (c * t12[0] + s * t13[0], c * t12[1] + s * t13[1])
    n13 = (c * t13[0] - s * t12[0], c * t13[1] - s * t12[1])
    n23re = c * s * (t33 - t22) + (c * c - s * s) * t23re
    # the channels of polsar_features again, in torch: this runs per batch on the training
    # device, where a round trip through the numpy function would cost a host copy each step
    d11, d22, d33 = t11.clamp(min=floor), n22.clamp(min=floor), n33.clamp(min=floor)
    out = [10.0 * torch.log10(d) for d in (d11, d22, d33)]
    for (re, im), (a, b) in ((n12, (d11, d22)), ((n13[0], n13[1]), (d11, d33)),
                             ((n23re, t23im), (d22, d33))):
        den = torch.sqrt(a * b)
        out += [(re / den).clamp(-1.0, 1.0), (im / den).clamp(-1.0, 1.0)]
    return (torch.stack(out, 1) - m) / sd


def pauli_powers(arr: np.ndarray, kind: str = "t3") -> np.ndarray:
    """Pauli powers ``(|HH-VV|^2, 2|HV|^2, |HH+VV|^2)`` (R, G, B) of a T3 or C3 matrix.

    Args:
        arr: ``(9, H, W)`` matrix elements in :data:`T3_NAMES` / :data:`C3_NAMES` order.
        kind: ``t3`` or ``c3``.

    Returns:
        float32 ``(3, H, W)`` linear powers.
    """
    if kind == "t3":
        t11, t22, t33 = arr[0], arr[1], arr[2]
    elif kind == "c3":
        t11 = 0.5 * (arr[0] + arr[2] + 2 * arr[5])
        t22 = 0.5 * (arr[0] + arr[2] - 2 * arr[5])
        t33 = arr[1]
    else:
        raise ConfigError(f"unknown PolSAR matrix kind {kind!r}; use t3 or c3")
    return np.stack([2 * t22, t33, 2 * t11]).astype(np.float32)


def feature_names(
    kind: str = "t3",
    features: Sequence[str] = ("diag_db", "offdiag"),
    pauli: bool = False,
    span: bool = False,
) -> list[str]:
    """Channel names of :func:`polsar_features` with the same arguments."""
    names = NAMES[kind]
    groups = _groups(features, pauli, span)
    out: list[str] = []
    if "diag_db" in groups:
        out += [f"{n}_db" for n in names[:3]]
    if "offdiag" in groups:
        out += [f"{n}_norm" for n in names[3:]]
    if "pauli" in groups:
        out += ["pauli_r_db", "pauli_g_db", "pauli_b_db"]
    if "span" in groups:
        out += ["span_db"]
    return out


def _groups(features: Sequence[str], pauli: bool, span: bool) -> list[str]:
    if isinstance(features, str):
        features = (features,)
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown PolSAR feature {unknown[0]!r}; use {', '.join(FEATURES)}")
    groups = [f for f in FEATURES if f in features or (f == "pauli" and pauli)
              or (f == "span" and span)]
    if not groups:
        raise ConfigError("no PolSAR feature selected")
    return groups


def polsar_features(
    arr: np.ndarray,
    kind: str = "t3",
    features: Sequence[str] = ("diag_db", "offdiag"),
    pauli: bool = False,
    span: bool = False,
    floor: float = _DB_FLOOR,
) -> np.ndarray:
    """Network-ready channels from a T3 or C3 matrix (see the module docstring).

    Non-finite input values are treated as 0 (so their diagonal terms go to the floor and their
    correlation coefficients to 0); the output is always finite.

    Args:
        arr: float ``(9, ..., H, W)`` matrix elements in :data:`T3_NAMES` / :data:`C3_NAMES` order.
        kind: ``t3`` or ``c3``.
        features: groups among ``diag_db``, ``offdiag``, ``pauli``, ``span``.
        pauli: add the Pauli RGB channels (dB).
        span: add the span channel (dB).
        floor: smallest power before taking logarithms.

    Returns:
        float32 ``(C, ..., H, W)``, channels named by :func:`feature_names`.

    Raises:
        ConfigError: unknown kind or feature.
        DataError: ``arr`` does not hold nine matrix elements.
    """
    if kind not in NAMES:
        raise ConfigError(f"unknown PolSAR matrix kind {kind!r}; use t3 or c3")
    if arr.shape[0] != 9:
        raise DataError(f"expected 9 matrix elements in the first axis, got {arr.shape[0]}")
    groups = _groups(features, pauli, span)
    x = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    diag = np.maximum(x[:3], floor)
    chans: list[np.ndarray] = []
    if "diag_db" in groups:
        chans.append(_db(diag, floor))
    if "offdiag" in groups:
        for (i, j), re in zip(((0, 1), (0, 2), (1, 2)), (3, 5, 7)):
            denom = np.sqrt(diag[i] * diag[j])
            chans.append(np.clip(x[re : re + 2] / denom, -1.0, 1.0))
    if "pauli" in groups:
        chans.append(_db(pauli_powers(x, kind), floor))
    if "span" in groups:
        chans.append(_db(x[:3].sum(axis=0, keepdims=True), floor))
    return np.concatenate(chans).astype(np.float32, copy=False)


def pauli_rgb(arr: np.ndarray, kind: str = "t3", percentiles: tuple[float, float] = (2, 98)
              ) -> np.ndarray:
    """A displayable Pauli RGB composite (per-channel percentile stretch of the dB powers).

    Args:
        arr: ``(9, H, W)`` matrix elements.
        kind: ``t3`` or ``c3``.
        percentiles: stretch limits.

    Returns:
        uint8 ``(H, W, 3)``.
    """
    db = _db(pauli_powers(arr, kind), _DB_FLOOR)
    out = np.empty((*db.shape[1:], 3), dtype=np.uint8)
    for c in range(3):
        lo, hi = np.percentile(db[c], percentiles)
        out[..., c] = np.clip((db[c] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------
# labels and patches
# ----------------------------------------------------------------------------------------------
def read_labels(path: str | os.PathLike[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label raster (PNG, TIFF, ...) as int64 ``(H, W)``; 0 means unlabelled.

    Args:
        path: label image, one class value per pixel (single band, or an RGB image whose three
            bands are equal).
        shape: expected ``(H, W)`` of the scene.

    Returns:
        the labels.

    Raises:
        DataError: unreadable file, colour image, or a size that differs from ``shape``.
    """
    src = _open(Path(path))
    with src:
        data = src.read()
    if data.shape[0] > 1:
        if not all(np.array_equal(data[0], data[i]) for i in range(1, min(3, data.shape[0]))):
            raise DataError("label image has several different bands; expected one class "
                            "value per pixel", path)
    labels = data[0].astype(np.int64)
    if shape is not None and labels.shape != tuple(shape):
        raise DataError(f"label raster is {labels.shape[0]} x {labels.shape[1]} but the scene is "
                        f"{shape[0]} x {shape[1]}", path)
    return labels


def find_label_raster(root: str | os.PathLike[str]) -> Path:
    """The single label image in ``<root>/labels`` (or ``<root>/..`` for a T3 folder).

    Raises:
        DataError: none or several candidates.
    """
    root = Path(root)
    for folder in (root / "labels", root.parent / "labels"):
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir()
                           if p.suffix.lower() in (".png", ".tif", ".tiff"))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise DataError(f"several label images ({', '.join(p.name for p in found)}); "
                                "pass --labels", folder)
    raise DataError("no label raster found in <root>/labels; pass --labels", root)


def _grid(h: int, w: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    if size < 1 or stride < 1:
        raise ConfigError(f"patch size and stride must be positive, got {size} and {stride}")
    if size > h or size > w:
        raise ConfigError(f"patch size {size} is larger than the scene ({h} x {w})")
    rows, cols = np.meshgrid(np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride),
                             indexing="ij")
    return rows.ravel(), cols.ravel()


def patch_labels(
    labels: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    size: int,
    purity: float = 0.8,
    ignore: int = 0,
) -> np.ndarray:
    """Majority class of each patch, or ``ignore`` where it covers less than ``purity``.

    Purity is the majority class's share of **all** pixels of the patch (unlabelled pixels count
    against it); the ``ignore`` value (unlabelled) never wins. Counts use one integral image per
    class, so the cost does not grow with the number of patches.

    Args:
        labels: int ``(H, W)`` class raster.
        rows: top row of each patch.
        cols: left column of each patch.
        size: patch size.
        purity: minimum share of the majority class.
        ignore: unlabelled value.

    Returns:
        int64 ``(N,)`` patch labels (``ignore`` for impure patches).
    """
    labels = np.asarray(labels)
    k_max = int(labels.max()) if labels.size else 0
    counts = np.zeros((k_max + 1, len(rows)), dtype=np.int64)
    for k in range(k_max + 1):
        if k == ignore:
            continue
        integral = np.zeros((labels.shape[0] + 1, labels.shape[1] + 1), dtype=np.int64)
        integral[1:, 1:] = np.cumsum(np.cumsum(labels == k, axis=0), axis=1)
        counts[k] = (integral[rows + size, cols + size] - integral[rows, cols + size]
                     - integral[rows + size, cols] + integral[rows, cols])
    best = counts.argmax(axis=0)
    share = counts[best, np.arange(len(rows))] / float(size * size)
    return np.where((share >= purity) & (best != ignore), best, ignore).astype(np.int64)


def polsar_patches(
    arr: np.ndarray,
    labels: np.ndarray | None,
    size: int,
    stride: int | None = None,
    purity: float = 0.8,
    ignore: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut a scene into patches for patch classification.

    Args:
        arr: ``(C, H, W)`` channels (e.g. :func:`polsar_features`).
        labels: ``(H, W)`` class raster, or ``None`` to keep every patch (labels ``-1``).
        size: patch size in pixels.
        stride: step between patches (default ``size``: no overlap).
        purity: minimum share of the majority class (of all pixels of the patch).
        ignore: unlabelled value; patches without a pure majority class are dropped.

    Returns:
        ``(patches, labels, rows, cols)``: float32 ``(N, C, size, size)``, int64 ``(N,)``, and the
        top-left pixel of each patch.
    """
    _, h, w = arr.shape
    stride = stride or size
    rows, cols = _grid(h, w, size, stride)
    if labels is None:
        lab = np.full(len(rows), -1, dtype=np.int64)
    else:
        if labels.shape != (h, w):
            raise DataError(f"labels are {labels.shape} but the scene is {(h, w)}")
        lab = patch_labels(labels, rows, cols, size, purity, ignore)
        keep = lab != ignore
        rows, cols, lab = rows[keep], cols[keep], lab[keep]
    # strided view, then one copy of the selected patches
    view = np.lib.stride_tricks.sliding_window_view(arr, (size, size), axis=(1, 2))
    patches = np.ascontiguousarray(view[:, rows, cols].transpose(1, 0, 2, 3), dtype=np.float32)
    return patches, lab, rows.astype(np.int64), cols.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# dataset
# ----------------------------------------------------------------------------------------------
class PolSAR(GeosslDataset, GeoDataset):
    """A PolSARpro T3/C3 scene as a TorchGeo dataset, with an optional aligned label raster.

    Two ways to index it:

    * by a TorchGeo ``GeoSlice`` (``ds[xmin:xmax, ymin:ymax]``, or the queries of
      ``RandomGeoSampler`` / ``GridGeoSampler``), in the scene's CRS (:data:`PIXEL_CRS` units
      are pixels, ``y = -row``); parts of the query outside the scene are zero-filled (label 0);
    * by an integer, over a regular grid of ``patch_size`` patches at ``stride`` (what map-style
      loaders and the SSL data module use); ``len(ds)`` is the number of grid patches and
      :attr:`ids` their ids (``r<row>_c<col>``, the top-left pixel).

    Samples: ``image`` float32 ``(C, h, w)`` (:func:`polsar_features`), ``mask`` int64 ``(h, w)``
    when labels are given, ``crs``, ``bounds``; integer access adds ``id`` and, with labels,
    ``label`` (majority class at ``purity``, 0 when impure).
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("features", "pauli", "span", "label_path", "patch_size", "stride", "purity",
                 "ids", "in_memory", "transforms")

    filename_glob = "*11.bin"
    sensors: tuple[str, ...] = ("polsar",)
    #: channels are dB and correlation coefficients, not yet scaled for a network
    normalized: ClassVar[bool] = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        features: Sequence[str] = ("diag_db", "offdiag"),
        pauli: bool = False,
        span: bool = False,
        label_path: str | os.PathLike[str] | None = None,
        patch_size: int = 64,
        stride: int | None = None,
        purity: float = 0.8,
        ids: Sequence[str] | None = None,
        in_memory: bool = True,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Open a scene (headers only unless ``in_memory``).

        Args:
            root: the T3/C3 folder or a scene folder holding one.
            features: channel groups (see :func:`polsar_features`).
            pauli: add Pauli RGB channels.
            span: add the span channel.
            label_path: class raster aligned with the scene (0 = unlabelled).
            patch_size: size of the integer-indexed grid patches.
            stride: step of that grid (default ``patch_size``).
            purity: majority share for a grid patch's ``label``.
            ids: keep only these grid patches (e.g. one side of a saved split).
            in_memory: compute the channels of the whole scene once (fast sampling; 4 bytes x
                channels x pixels of RAM); otherwise read windows from disk for every sample.
            transforms: function applied to each sample dict.

        Raises:
            DataError: missing/corrupt scene or labels of another size.
            ConfigError: bad features, patch size or unknown ids.
        """
        self.folder, self.kind = find_polsar_folder(root)
        self.root = Path(root)
        self.paths = self.folder
        meta = _scene_meta(self.folder, self.kind)
        self.height: int = meta["height"]
        self.width: int = meta["width"]
        self.georeferenced = meta["crs"] is not None
        crs = meta["crs"] if self.georeferenced else PIXEL_CRS
        self.transform: Affine = meta["transform"] if self.georeferenced else PIXEL_TRANSFORM
        self.features = tuple([features] if isinstance(features, str) else features)
        self.pauli, self.span = pauli, span
        self.bands: list[str] = feature_names(self.kind, self.features, pauli, span)
        self.transforms = transforms
        self.purity = purity

        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        geom = shapely.box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        index = pd.IntervalIndex.from_tuples([(pd.Timestamp.min, pd.Timestamp.max)],
                                             closed="both", name="datetime")
        self.index = GeoDataFrame({"filepath": [str(self.folder)]}, index=index,
                                  geometry=[geom], crs=crs)
        self._res = (abs(self.transform.a), abs(self.transform.e))

        self.labels: np.ndarray | None = None
        self.classes: list[str] = []
        if label_path is not None:
            self.labels = read_labels(label_path, (self.height, self.width))
            n = int(self.labels.max()) + 1
            known = list(SF_AIRSAR_CLASSES)
            self.classes = known[:n] if n <= len(known) else [str(k) for k in range(n)]

        self._data: np.ndarray | None = None
        if in_memory:
            arr, _ = read_polsar(self.folder)
            self._data = polsar_features(arr, self.kind, self.features, pauli, span)

        self.patch_size = patch_size
        self.stride = stride or patch_size
        rows, cols = _grid(self.height, self.width, patch_size, self.stride)
        all_ids = [f"r{r}_c{c}" for r, c in zip(rows, cols)]
        if ids is not None:
            pos = {sid: i for i, sid in enumerate(all_ids)}
            missing = [sid for sid in ids if sid not in pos]
            if missing:
                raise ConfigError(f"{len(missing)} ids are not {patch_size} px patches at stride "
                                  f"{self.stride} of {self.folder} (e.g. {missing[0]!r})")
            keep = sorted(pos[str(sid)] for sid in ids)
            rows, cols = rows[keep], cols[keep]
            all_ids = [all_ids[i] for i in keep]
        self.ids: list[str] = all_ids
        self.rows, self.cols = rows, cols

    # -- the dataset protocol -------------------------------------------------------------
    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> PolSAR:
        """The scene's grid of ``patch_size`` patches (default 64), without labels."""
        return construct(cls, request.root, "", patch_size=request.patch_size or 64,  # type: ignore[no-any-return]
                         ids=request.ids, **request.options)

    @classmethod
    def evaluation_args(
        cls,
        root: Path,
        args: Mapping[str, Any],
        label_path: str | os.PathLike[str] | None = None,
        label_column: str | None = None,
    ) -> dict[str, Any]:
        """The arguments with the class raster.

        ``label_path``, else the one image in ``ROOT/labels`` (:func:`find_label_raster`).

        Raises:
            ConfigError: no label raster given and none (or several) found.
        """
        kwargs = super().evaluation_args(root, args, None, label_column)
        if label_path is not None:
            kwargs["label_path"] = os.fspath(label_path)
        if kwargs.get("label_path") is None:
            try:
                kwargs["label_path"] = os.fspath(find_label_raster(root))
            except DataError as err:
                where = Path(root) / "labels"
                raise ConfigError(f"evaluating PolSAR needs its class raster (0 = unlabelled), "
                                  f"and {where} does not hold exactly one image: give "
                                  "--label-path FILE") from err
        return kwargs

    def patch_labels(self) -> np.ndarray | None:
        """The class each grid patch is scored on, or ``None`` without labels.

        :func:`patch_labels` at :attr:`purity`; 0 for impure or unlabelled patches.
        """
        if self.labels is None:
            return None
        return patch_labels(self.labels, np.asarray(self.rows), np.asarray(self.cols),
                            int(self.patch_size), float(self.purity))

    def labelled_mask(self) -> np.ndarray | None:
        """Grid patches whose majority class covers :attr:`purity` of them and is not 0."""
        labels = self.patch_labels()
        return None if labels is None else np.asarray(labels != 0)

    def footprints(self) -> GeoDataFrame:
        """The grid patches' footprints, in the scene's CRS.

        ``chip_id``, ``row``, ``col``, ``height``, ``width`` and the geometry (a local pixel-grid
        CRS when not georeferenced), with ``label`` (:meth:`patch_labels`) when the scene has
        labels.
        """
        rows = np.asarray(self.rows, dtype=np.float64)
        cols = np.asarray(self.cols, dtype=np.float64)
        size = float(self.patch_size)
        t = self.transform
        xs = [t.a * c + t.b * r + t.c for c, r in ((cols, rows), (cols + size, rows + size))]
        ys = [t.d * c + t.e * r + t.f for c, r in ((cols, rows), (cols + size, rows + size))]
        geoms = shapely.box(np.minimum(*xs), np.minimum(*ys), np.maximum(*xs), np.maximum(*ys))
        grid = GeoDataFrame(
            {"chip_id": [str(i) for i in self.ids], "row": rows.astype(np.int64),
             "col": cols.astype(np.int64), "height": int(size), "width": int(size)},
            geometry=geoms, crs=self.index.crs)
        labels = self.patch_labels()
        if labels is not None:
            grid["label"] = labels
        return grid

    # -- map-style access -----------------------------------------------------------------
    def __len__(self) -> int:
        """Number of grid patches (integer access)."""
        return len(self.ids)

    def __getitem__(self, query: GeoSlice | int) -> dict[str, Any]:
        """A grid patch (integer) or the window of a TorchGeo ``GeoSlice``.

        Args:
            query: patch position, or ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]``.

        Returns:
            the sample dict (see the class docstring).

        Raises:
            IndexError: integer out of range, or a query that misses the scene.
        """
        if isinstance(query, int | np.integer):
            i = int(query)
            if not -len(self) <= i < len(self):
                raise IndexError(f"patch {i} out of range ({len(self)} patches)")
            r, c, s = int(self.rows[i]), int(self.cols[i]), self.patch_size
            sample = self._window(r, c, s, s)
            x0, y0 = self.transform @ (c, r)
            x1, y1 = self.transform @ (c + s, r + s)
            sample["bounds"] = (slice(min(x0, x1), max(x0, x1), self.res[0]),
                                slice(min(y0, y1), max(y0, y1), self.res[1]),
                                slice(pd.Timestamp.min, pd.Timestamp.max, 1))
            sample["id"] = self.ids[i]
            if self.labels is not None:
                sample["label"] = torch.tensor(
                    patch_labels(self.labels, self.rows[i : i + 1], self.cols[i : i + 1], s,
                                 self.purity)[0], dtype=torch.int64)
        else:
            sample = self._geoslice(query)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _geoslice(self, query: GeoSlice) -> dict[str, Any]:
        x, y, _t = self._disambiguate_slice(query)
        inv = ~self.transform
        c0, r0 = inv @ (x.start, y.stop)
        c1, r1 = inv @ (x.stop, y.start)
        col0, col1 = sorted((c0, c1))
        row0, row1 = sorted((r0, r1))
        r, c = round(row0), round(col0)
        h, w = max(round(row1) - r, 1), max(round(col1) - c, 1)
        if r >= self.height or c >= self.width or r + h <= 0 or c + w <= 0:
            raise IndexError(f"query {query} not found in index with bounds {self.bounds}")
        sample = self._window(r, c, h, w)
        # resample when the query asks for another resolution than the native one
        xres = x.step if x.step else self.res[0]
        yres = y.step if y.step else self.res[1]
        out_h = max(round((y.stop - y.start) / yres), 1)
        out_w = max(round((x.stop - x.start) / xres), 1)
        if (out_h, out_w) != (h, w):
            sample["image"] = F.interpolate(sample["image"][None], size=(out_h, out_w),
                                            mode="bilinear", align_corners=False)[0]
            if "mask" in sample:
                sample["mask"] = F.interpolate(sample["mask"][None, None].float(),
                                               size=(out_h, out_w), mode="nearest")[0, 0].long()
        sample["crs"] = self.crs
        sample["bounds"] = query
        return sample

    def _window(self, row: int, col: int, h: int, w: int) -> dict[str, Any]:
        """Channels (and labels) of a pixel window, zero-filled outside the scene."""
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, self.height), min(col + w, self.width)
        image = np.zeros((len(self.bands), h, w), dtype=np.float32)
        if self._data is not None:
            part = self._data[:, r0:r1, c0:c1]
        else:
            arr, _ = read_polsar(self.folder, Window(c0, r0, c1 - c0, r1 - r0))  # type: ignore[arg-type]
            part = polsar_features(arr, self.kind, self.features, self.pauli, self.span)
        image[:, r0 - row : r1 - row, c0 - col : c1 - col] = part
        sample: dict[str, Any] = {"image": torch.from_numpy(image), "crs": self.crs}
        if self.labels is not None:
            mask = np.zeros((h, w), dtype=np.int64)
            mask[r0 - row : r1 - row, c0 - col : c1 - col] = self.labels[r0:r1, c0:c1]
            sample["mask"] = torch.from_numpy(mask)
        return sample

    def scene(self) -> np.ndarray:
        """The channels of the whole scene, float32 ``(C, H, W)``."""
        if self._data is not None:
            return self._data
        arr, _ = read_polsar(self.folder)
        return polsar_features(arr, self.kind, self.features, self.pauli, self.span)

    def plot(self, sample: dict[str, Any] | None = None, suptitle: str | None = None) -> Any:
        """Pauli RGB of the scene next to its labels (when given).

        Args:
            sample: unused (the whole scene is shown); kept for TorchGeo's signature.
            suptitle: optional figure title.

        Returns:
            the matplotlib figure.
        """
        import matplotlib.pyplot as plt

        arr, _ = read_polsar(self.folder)
        n = 2 if self.labels is not None else 1
        fig, axes = plt.subplots(1, n, figsize=(6 * n, 6), squeeze=False)
        axes[0, 0].imshow(pauli_rgb(arr, self.kind))
        axes[0, 0].set_title("Pauli RGB (R |HH-VV|², G 2|HV|², B |HH+VV|²)")
        if self.labels is not None:
            axes[0, 1].imshow(self.labels, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            axes[0, 1].set_title("labels: " + ", ".join(
                f"{k} {c}" for k, c in enumerate(self.classes or [])))
        for ax in axes.ravel():
            ax.axis("off")
        if suptitle:
            fig.suptitle(suptitle)
        fig.tight_layout()
        return fig
