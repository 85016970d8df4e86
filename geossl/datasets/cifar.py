"""CIFAR-10 (Krizhevsky 2009) read from its "python version" archive, never downloaded.

On-disk layout (``cifar-10-python.tar.gz`` from https://www.cs.toronto.edu/~kriz/cifar.html
unpacked, as torchvision's ``CIFAR10(root)`` expects it)::

    ROOT/cifar-10-batches-py/data_batch_1 ... data_batch_5   training images, 10,000 each
    ROOT/cifar-10-batches-py/test_batch                      test images, 10,000
    ROOT/cifar-10-batches-py/batches.meta                    class names

Each batch file is a Python pickle of a plain dict: ``data`` (``uint8`` array of shape
``(10000, 3072)``: the 1024 red, then green, then blue values of a 32 x 32 image, row-major),
``labels`` (list of ints in 0..9), ``filenames`` and ``batch_label``; ``batches.meta`` holds
``label_names``. The files were written by Python 2, so their strings are read as Latin-1.

Safety: a pickle can run any code when loaded, so these files are read with
:class:`ArrayUnpickler`, which only rebuilds numpy arrays (and the byte strings inside them) and
refuses every other global: a tampered file fails with a :class:`~geossl.core.errors.DataError`
instead of executing anything. (The format *is* a pickle, so there is no pickle-free reader to
use instead.)

Samples: ``{"image": float32 (3, 32, 32) in [0, 255], "label": int64, "id": "train/<n>"}``
(``test/<n>`` for the test batch); see :mod:`geossl.datasets.arrays`.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from geossl.core.errors import DataError
from geossl.datasets.arrays import ArrayImages, find_folder

#: the archive's folder
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
#: the 10 classes, in label order (as batches.meta lists them)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _reconstruct() -> Any:
    try:  # numpy >= 2 moved the implementation to numpy._core; pickles name either module
        from numpy._core.multiarray import _reconstruct as fn  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn  # type: ignore[attr-defined,no-redef]
    return fn


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, plain containers and strings, and nothing else.

    Allowed globals: numpy's array reconstructor, :class:`numpy.ndarray`, :class:`numpy.dtype`
    and :func:`codecs.encode` (how Python 3 pickles byte strings at protocol 2). Anything else
    (``os.system``, ``builtins.eval``, any class) raises :class:`pickle.UnpicklingError`, as do
    persistent ids. Object arrays are refused after loading (:func:`load_pickle`).
    """

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the allowed globals."""
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        if name == "_reconstruct":
            return _reconstruct()
        if module == "numpy":
            return getattr(np, name)
        import codecs

        return codecs.encode


def _check_arrays(value: Any, depth: int = 0) -> None:
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    if depth < 4 and isinstance(value, dict):
        for item in value.values():
            _check_arrays(item, depth + 1)
    elif depth < 4 and isinstance(value, list | tuple):
        for item in value:
            _check_arrays(item, depth + 1)


def load_pickle(path: str | Path) -> dict[str, Any]:
    """Read a CIFAR-style pickle of a dict with :class:`ArrayUnpickler`; keys become ``str``.

    Raises:
        DataError: missing file, a pickle that is not a dict of arrays/strings/numbers, or one
            that names any other global (a tampered or foreign file).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise DataError("file not found", path) from err
    try:
        value = ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
        _check_arrays(value)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as err:
        raise DataError(f"not a CIFAR pickle of plain arrays ({type(err).__name__}: {err})",
                        path) from err
    if not isinstance(value, dict):
        raise DataError(f"not a CIFAR pickle (a {type(value).__name__}, not a dict)", path)
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in value.items()}


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


class CIFAR10(ArrayImages):
    """CIFAR-10: 60,000 32 x 32 RGB images in 10 classes; the archive's train/test split."""

    classes = CLASSES
    sensors = ("rgb",)
    bands = ("R", "G", "B")
    folder: ClassVar[str] = FOLDER
    files: ClassVar[dict[str, tuple[str, ...]]] = {"train": TRAIN_FILES, "test": TEST_FILES}

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Read the batch files of ``split`` (see the module docstring)."""
        folder = find_folder(self.root, (self.folder,), self.files["test"][0])
        if folder is None:
            folder = find_folder(self.root, (self.folder,), self.files["train"][0])
        if folder is None:
            raise DataError(
                f"no CIFAR files here: put the unpacked python version of the archive ({URL}) "
                f"so that {self.folder}/{self.files[split][0]} is inside this folder (it is "
                "never downloaded)", self.root)
        meta = folder / META_FILE
        if meta.exists():
            names = [_text(n) for n in load_pickle(meta).get("label_names", [])]
            if names and tuple(names) != self.classes:
                raise DataError(f"class names {names[:3]}... are not CIFAR-10's", meta)
        xs, ys = [], []
        for name in self.files[split]:
            path = folder / name
            if not path.exists():
                raise DataError(f"missing CIFAR batch file (the archive has "
                                f"{', '.join(self.files[split])})", path)
            batch = load_pickle(path)
            data, labels = batch.get("data"), batch.get("labels")
            if not isinstance(data, np.ndarray) or labels is None:
                raise DataError("CIFAR batch without 'data' array and 'labels'", path)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
                raise DataError(f"CIFAR batch 'data' of shape {data.shape} with {len(labels)} "
                                "labels; expected (N, 3072) and N labels", path)
            xs.append(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(labels, dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)
