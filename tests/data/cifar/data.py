"""Write a fake CIFAR-10 "python version" archive in the exact on-disk layout of the real one.

::

    ROOT/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta

The real files are protocol-2 pickles written by Python 2's cPickle: dict keys, file names and
the raw bytes of the ``uint8`` ``data`` array are Python 2 ``str`` (``SHORT_BINSTRING`` /
``BINSTRING`` opcodes), and the array is rebuilt through ``numpy.core.multiarray._reconstruct``.
:class:`Py2Pickler` writes exactly that, so the reader is tested on the bytes it meets in the
real archive (Python 3's own protocol 2 would write ``_codecs.encode`` calls instead).

Image ``n`` of class ``k`` is a flat colour ``COLOURS[k]`` plus noise, so classes are separable.

Run ``python tests/data/cifar/data.py`` to write a small example next to this script.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Protocol-2 pickler writing ``bytes``/``str`` as Python 2 ``str``, numpy 1.x globals."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_str(self, obj: str) -> None:  # Python 2 had no unicode in these files
        self.save_bytes(obj.encode("latin1"))

    dispatch[str] = save_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "")
        qual = name or obj.__qualname__
        if module.startswith("numpy._core"):  # as numpy 1.x, which wrote the real files
            module = module.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{qual}\n".encode())
        self.memoize(obj)

    dispatch[type] = save_global


def dumps_py2(value: Any) -> bytes:
    """Pickle ``value`` as Python 2's cPickle did at protocol 2."""
    buf = io.BytesIO()
    pickler = Py2Pickler(buf, protocol=2)
    pickler.dump(value)
    return buf.getvalue()


def _images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    base = np.stack([(40 + 23 * labels) % 256, (200 - 17 * labels) % 256,
                     (90 + 41 * labels) % 256], axis=1).astype(np.float64)  # (N, 3)
    noise = rng.normal(0, 12, size=(len(labels), 3, 32 * 32))
    img = np.clip(base[:, :, None] + noise, 0, 255).astype(np.uint8)
    return img.reshape(len(labels), 3 * 32 * 32)  # R plane, G plane, B plane: as the real data


def generate(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py``; returns ``root``.

    Args:
        root: folder to write into (torchvision's ``root``).
        per_batch: images in each of the 5 training batches.
        test: images in the test batch.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    files = [(f"data_batch_{i}", per_batch, f"training batch {i} of 5") for i in range(1, 6)]
    files.append(("test_batch", test, "testing batch 1 of 1"))
    for name, n, title in files:
        labels = np.arange(n) % len(CLASSES)
        batch = {
            b"batch_label": title.encode(),
            b"labels": [int(v) for v in labels],
            b"data": _images(rng, labels),
            b"filenames": [f"{CLASSES[k]}_s_{i:06d}.png".encode() for i, k in enumerate(labels)],
        }
        (folder / name).write_bytes(dumps_py2(batch))
    meta = {b"num_cases_per_batch": per_batch,
            b"label_names": [c.encode() for c in CLASSES],
            b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(dumps_py2(meta))
    (folder / "readme.html").write_text("<meta HTTP-EQUIV=\"REFRESH\" content=\"0; "
                                        "url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n")
    return Path(root)


if __name__ == "__main__":
    generate(Path(__file__).parent / "example")
