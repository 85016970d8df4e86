"""Write a fake Tiny ImageNet in the exact on-disk layout of ``tiny-imagenet-200.zip``.

::

    ROOT/tiny-imagenet-200/wnids.txt, words.txt
    ROOT/tiny-imagenet-200/train/<wnid>/images/<wnid>_<n>.JPEG, train/<wnid>/<wnid>_boxes.txt
    ROOT/tiny-imagenet-200/val/images/val_<n>.JPEG, val/val_annotations.txt
    ROOT/tiny-imagenet-200/test/images/test_<n>.JPEG

64 x 64 JPEGs; as in the real archive, wnids.txt is not sorted, words.txt lists more ids than the
archive uses, and one training image is greyscale. Class ``k`` has its own mean colour.

Run ``python tests/data/tinyimagenet/data.py`` to write a small example next to this script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n02124075", "n01443537", "n04067472")  # Egyptian cat, goldfish, reel (unsorted)
WORDS = {"n01443537": "goldfish, Carassius auratus", "n02124075": "Egyptian cat",
         "n04067472": "reel", "n00001740": "entity"}


def _rgb(rng: np.random.Generator, k: int) -> np.ndarray:
    base = np.array([40 + 80 * k, 200 - 60 * k, 90 + 30 * k], dtype=np.float64)
    return np.clip(base + rng.normal(0, 15, size=(64, 64, 3)), 0, 255).astype(np.uint8)


def generate(root: Path, train: int = 6, val: int = 3, test: int = 2, seed: int = 0) -> Path:
    """Write ``root/tiny-imagenet-200``; returns ``root``.

    Args:
        root: folder to write into.
        train: training images per class.
        val: validation images per class.
        test: unlabelled test images.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    top = Path(root) / "tiny-imagenet-200"
    top.mkdir(parents=True, exist_ok=True)
    (top / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    (top / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in sorted(WORDS.items())))
    order = sorted(WNIDS)
    for wnid in WNIDS:
        k = order.index(wnid)
        images = top / "train" / wnid / "images"
        images.mkdir(parents=True, exist_ok=True)
        boxes = []
        for n in range(train):
            img = Image.fromarray(_rgb(rng, k))
            if k == 0 and n == 0:
                img = img.convert("L")  # the real archive has a few greyscale JPEGs
            img.save(images / f"{wnid}_{n}.JPEG", quality=90)
            boxes.append(f"{wnid}_{n}.JPEG\t0\t0\t63\t63\n")
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    (top / "val" / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for n in range(val * len(WNIDS)):
        wnid = WNIDS[n % len(WNIDS)]
        Image.fromarray(_rgb(rng, order.index(wnid))).save(top / "val" / "images" /
                                                           f"val_{n}.JPEG", quality=90)
        lines.append(f"val_{n}.JPEG\t{wnid}\t0\t0\t63\t63\n")
    (top / "val" / "val_annotations.txt").write_text("".join(lines))
    (top / "test" / "images").mkdir(parents=True, exist_ok=True)
    for n in range(test):
        Image.fromarray(_rgb(rng, n % 3)).save(top / "test" / "images" / f"test_{n}.JPEG")
    return Path(root)


if __name__ == "__main__":
    generate(Path(__file__).parent / "example")
