"""Generate fake PolSARpro T3 and C3 folders in the exact on-disk layout of the real data.

Layout written under ``root`` (as PolSARpro and the AIRSAR San Francisco sample)::

    T3/T11.bin T22.bin T33.bin T12_real.bin T12_imag.bin T13_real.bin T13_imag.bin
       T23_real.bin T23_imag.bin, each with an ENVI header ``<name>.bin.hdr``
       (samples, lines, bands = 1, data type = 4, interleave = bsq, byte order = 0) and
       config.txt (Nrow / Ncol / PolarCase / PolarType, CRLF line ends)
    C3/C11.bin ... C23_imag.bin (+ .hdr, config.txt)
    labels/label.png   uint8 class raster (0 unlabelled, 1..n_classes), same size

The matrices are physically valid: per pixel, ``looks`` complex Gaussian scattering vectors
``k_L = [HH, sqrt(2) HV, VV]`` with a class-specific covariance are averaged, so C3 is Hermitian
positive semi-definite, T3 = A C3 A^H with the Pauli basis, and both describe the same scene.
Classes are vertical stripes; the left 4 columns are unlabelled.

Run ``python tests/data/polsar/data.py`` to write a small example next to this script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

T3_NAMES = ("T11", "T22", "T33", "T12_real", "T12_imag", "T13_real", "T13_imag",
            "T23_real", "T23_imag")

#: per-class (|HH|^2, |HV|^2, |VV|^2, HH-VV correlation): surface, volume, double bounce, dark
_CLASS_POWERS = [(0.3, 0.02, 0.25, 0.7), (0.2, 0.1, 0.2, 0.2), (1.0, 0.05, 0.6, -0.6),
                 (0.01, 0.001, 0.01, 0.5)]


def _header(name: str, rows: int, cols: int, map_info: str | None = None) -> str:
    lines = ["ENVI", "description = {", "PolSARpro File Imported to ENVI}", f"samples = {cols}",
             f"lines   = {rows}", "bands   = 1", "header offset = 0",
             "file type = ENVI Standard", "data type = 4", "interleave = bsq",
             "sensor type = Unknown", "byte order = 0", "band names = {", f"{name}.bin }}"]
    if map_info is not None:  # georeferenced products (e.g. geocoded by PolSARpro / SNAP)
        lines.insert(-2, f"map info = {{{map_info}}}")
    return "\r\n".join(lines) + "\r\n"


def _config(rows: int, cols: int) -> str:
    parts = [f"Nrow\r\n{rows}", f"Ncol\r\n{cols}", "PolarCase\r\nmonostatic",
             "PolarType\r\nfull"]
    return "\r\n---------\r\n".join(parts) + "\r\n"


def write_matrix_folder(folder: Path, prefix: str, mat: np.ndarray,
                        map_info: str | None = None) -> None:
    """Write a ``(3, 3, H, W)`` complex Hermitian matrix as a PolSARpro T3/C3 folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = mat.shape[-2:]
    elements = {
        f"{prefix}11": mat[0, 0].real, f"{prefix}22": mat[1, 1].real,
        f"{prefix}33": mat[2, 2].real,
    }
    for i, j in ((0, 1), (0, 2), (1, 2)):
        elements[f"{prefix}{i + 1}{j + 1}_real"] = mat[i, j].real
        elements[f"{prefix}{i + 1}{j + 1}_imag"] = mat[i, j].imag
    for name, data in elements.items():
        data.astype("<f4").tofile(folder / f"{name}.bin")
        (folder / f"{name}.bin.hdr").write_bytes(_header(name, rows, cols, map_info).encode())
    (folder / "config.txt").write_bytes(_config(rows, cols).encode())


def generate(
    root: Path, rows: int = 48, cols: int = 64, n_classes: int = 3, looks: int = 4,
    seed: int = 0, c3: bool = True, map_info: str | None = None,
) -> dict[str, Path]:
    """Write ``root/T3``, ``root/C3`` (when ``c3``) and ``root/labels/label.png``.

    ``map_info`` (ENVI ``map info`` value, e.g. ``"UTM, 1, 1, 500000, 4200000, 10, 10, 10,
    North, WGS-84"``) makes a georeferenced product; by default the scene has no projection, like
    the AIRSAR slant-range sample.

    Returns:
        paths of the written ``t3`` and ``c3`` folders and the ``labels`` image.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    labels = np.zeros((rows, cols), dtype=np.uint8)
    width = max((cols - 4) // n_classes, 1)
    for k in range(n_classes):
        labels[:, 4 + k * width : 4 + (k + 1) * width] = k + 1
    cls = np.clip(labels.astype(np.int64) - 1, 0, None) % len(_CLASS_POWERS)
    # lexicographic scattering vectors, class covariance via a Cholesky-like mix
    k_l = np.zeros((3, looks, rows, cols), dtype=np.complex64)
    for c, (hh, hv, vv, rho) in enumerate(_CLASS_POWERS):
        sel = cls == c
        n = int(sel.sum())
        if n == 0:
            continue
        z = (rng.normal(size=(3, looks, n)) + 1j * rng.normal(size=(3, looks, n))) / np.sqrt(2)
        a = np.sqrt(hh) * z[0]
        b = np.sqrt(vv) * (rho * z[0] + np.sqrt(1 - rho**2) * z[2])
        k_l[0][:, sel] = a
        k_l[1][:, sel] = np.sqrt(2) * np.sqrt(hv) * z[1]
        k_l[2][:, sel] = b
    c3_mat = np.einsum("ilhw,jlhw->ijhw", k_l, k_l.conj()) / looks
    pauli = np.array([[1, 0, 1], [1, 0, -1], [0, np.sqrt(2), 0]]) / np.sqrt(2)
    t3_mat = np.einsum("ai,ijhw,bj->abhw", pauli, c3_mat, pauli.conj())
    out = {"t3": root / "T3", "labels": root / "labels" / "label.png"}
    write_matrix_folder(out["t3"], "T", t3_mat, map_info)
    if c3:
        out["c3"] = root / "C3"
        write_matrix_folder(out["c3"], "C", c3_mat, map_info)
    out["labels"].parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels).save(out["labels"])
    return out


if __name__ == "__main__":
    generate(Path(__file__).resolve().parent)
