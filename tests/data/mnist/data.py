"""Write fake MNIST / Fashion-MNIST IDX files in the exact on-disk layout of the real ones.

::

    ROOT/MNIST/raw/train-images-idx3-ubyte   (+ .gz, as torchvision keeps both)
    ROOT/MNIST/raw/train-labels-idx1-ubyte
    ROOT/MNIST/raw/t10k-images-idx3-ubyte
    ROOT/MNIST/raw/t10k-labels-idx1-ubyte

IDX: magic ``00 00 08 <ndim>``, big-endian int32 dimensions, then uint8 values row-major.
Digit ``k`` is a bright square whose position depends on ``k``, plus noise.

Run ``python tests/data/mnist/data.py`` to write a small example next to this script.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a ``uint8`` array."""
    assert array.dtype == np.uint8
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def _digits(rng: np.random.Generator, labels: np.ndarray, size: int = 28) -> np.ndarray:
    img = rng.integers(0, 30, size=(len(labels), size, size)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 2 * (k // 5) * 5, 2 + 4 * (k % 5)
        img[i, r:r + 8, c:c + 6] = 230
    return img


def generate(root: Path, train: int = 40, test: int = 20, folder: str = "MNIST",
             gz: bool = False, seed: int = 0) -> Path:
    """Write ``root/<folder>/raw/*-idx?-ubyte`` (and ``.gz`` copies when ``gz``); returns root."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        for stem, array in ((f"{prefix}-images-idx3-ubyte", _digits(rng, labels)),
                            (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            (raw / stem).write_bytes(data)
            if gz:
                (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
    return Path(root)


if __name__ == "__main__":
    generate(Path(__file__).parent / "example")
