"""MNIST and Fashion-MNIST read from their IDX files, never downloaded.

On-disk layout (the four files of http://yann.lecun.com/exdb/mnist/, as torchvision's
``MNIST(root)`` keeps them; each may also be gzip-compressed with a ``.gz`` suffix)::

    ROOT/MNIST/raw/train-images-idx3-ubyte    60,000 x 28 x 28 uint8
    ROOT/MNIST/raw/train-labels-idx1-ubyte    60,000 uint8 in 0..9
    ROOT/MNIST/raw/t10k-images-idx3-ubyte     10,000 x 28 x 28
    ROOT/MNIST/raw/t10k-labels-idx1-ubyte     10,000

``ROOT`` may be the folder above ``MNIST``, ``MNIST`` itself or its ``raw`` folder.
Fashion-MNIST has the same files under ``FashionMNIST/raw``.

IDX format: a big-endian header, two zero bytes, a type code (``0x08`` = unsigned byte) and the
number of dimensions, then one big-endian int32 per dimension, then the values row-major.
Read with numpy (no pickle, nothing executed).

Samples: ``{"image": float32 (1, 28, 28) in [0, 255], "label": int64, "id": "train/<n>"}``,
sensor ``gray`` (see :mod:`geossl.datasets.arrays`).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import ClassVar

import numpy as np

from geossl.core.errors import DataError
from geossl.datasets.arrays import ArrayImages

#: file stems of each split: (images, labels)
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
#: IDX type code of unsigned bytes (the only one MNIST uses)
UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (``.gz`` or not) into an array of its shape.

    Raises:
        DataError: missing file, bad magic number, a type other than ubyte, or a size that does
            not match the header.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError as err:
        raise DataError("file not found", path) from err
    except (OSError, EOFError) as err:
        raise DataError(f"unreadable gzip file ({err})", path) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError("not an IDX file (bad magic number)", path)
    if raw[2] != UBYTE:
        raise DataError(f"IDX type 0x{raw[2]:02x} is not unsigned bytes (0x08)", path)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError("truncated IDX header", path)
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise DataError(f"IDX header says {shape} ({count} values) but the file holds "
                        f"{len(raw) - header}", path)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class MNIST(ArrayImages):
    """MNIST: 70,000 28 x 28 greyscale digits; the archive's 60,000 / 10,000 train/test split."""

    classes = tuple(str(d) for d in range(10))
    sensors = ("gray",)
    bands = ("gray",)
    #: folder of the archive under ROOT (torchvision's class name)
    folder: ClassVar[str] = "MNIST"
    url: ClassVar[str] = "http://yann.lecun.com/exdb/mnist/"

    def _file(self, stem: str) -> Path:
        base = self.root
        for folder in (base, base / "raw", base / self.folder / "raw", base / self.folder):
            for name in (stem, f"{stem}.gz"):
                if (folder / name).is_file():
                    return folder / name
        raise DataError(f"no {stem} here: put the {self.folder} IDX files ({self.url}) in "
                        f"{self.folder}/raw/ inside this folder (they are never downloaded)",
                        base)

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Read the image and label files of ``split``."""
        images_path, labels_path = (self._file(s) for s in FILES[split])
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{images_path.name} {images.shape} and {labels_path.name} "
                            f"{labels.shape} do not pair up (N x H x W images, N labels)",
                            images_path.parent)
        return images[:, None].copy(), labels.astype(np.int64)


class FashionMNIST(MNIST):
    """Fashion-MNIST (Xiao et al. 2017): MNIST's files and sizes, 10 clothing classes."""

    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
    folder = "FashionMNIST"
    url = "https://github.com/zalandoresearch/fashion-mnist"
