r"""Tiny ImageNet (CS231n, Le and Yang 2015) read from its unpacked archive, never downloaded.

On-disk layout (``tiny-imagenet-200.zip`` from http://cs231n.stanford.edu/ unpacked)::

    ROOT/tiny-imagenet-200/wnids.txt                                200 WordNet ids, one a line
    ROOT/tiny-imagenet-200/words.txt                                <wnid>\t<names> (all WordNet)
    ROOT/tiny-imagenet-200/train/<wnid>/images/<wnid>_<n>.JPEG      500 per class
    ROOT/tiny-imagenet-200/train/<wnid>/<wnid>_boxes.txt
    ROOT/tiny-imagenet-200/val/images/val_<n>.JPEG                  10,000
    ROOT/tiny-imagenet-200/val/val_annotations.txt                  <file>\t<wnid>\t<box>
    ROOT/tiny-imagenet-200/test/images/test_<n>.JPEG                10,000, without labels

``ROOT`` may also be the ``tiny-imagenet-200`` folder itself. Images are 64 x 64 JPEGs; a few
are greyscale and are expanded to three identical bands, so every sample is RGB.

Splits: ``train`` (100,000 images), ``val`` (the 10,000 labelled validation images) and
``all`` (both). The official test images carry no labels, so ``test`` is the labelled
validation set (what every paper reports on); it is the side ``geossl evaluate`` scores.

Classes are the 200 WordNet ids sorted (torchvision's ``ImageFolder`` order);
:attr:`TinyImageNet.class_names` gives their first English name from ``words.txt``.

Samples: ``{"image": float32 (3, 64, 64) in [0, 255], "label": int64, "id": str}`` where ``id``
is the image path relative to the archive folder (``train/n01443537/images/n01443537_0.JPEG``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchgeo.datasets import NonGeoDataset

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.arrays import find_folder
from geossl.datasets.base import GeosslDataset

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
SPLITS = ("train", "val", "test", "all")
#: image side in pixels
SIZE = 64


class TinyImageNet(GeosslDataset, NonGeoDataset):
    """Tiny ImageNet: 200 classes of 64 x 64 RGB images (see the module docstring).

    Attributes:
        classes: the 200 WordNet ids, sorted (label = position).
        class_names: their first English name (``words.txt``), or the id when absent.
        files: image paths of the selected split.
        targets: class of each image.
        ids: image paths relative to the archive folder.
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("split", "ids", "transforms")

    sensors = ("rgb",)
    splits = ("train", "val", "test")
    bands = ("R", "G", "B")

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        ids: Sequence[str] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """List the images of ``split`` (nothing is decoded here).

        Args:
            root: the ``tiny-imagenet-200`` folder or the folder above it.
            split: ``train``, ``val`` (= ``test``) or ``all``.
            ids: keep only these sample ids (one side of a saved split); applied after
                ``split``, use ``split="all"`` to select purely by ids.
            transforms: function applied to each sample dict.

        Raises:
            ConfigError: unknown split or ids.
            DataError: the archive is not there or malformed (the message says where it goes).
        """
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        folder = find_folder(root, (FOLDER,), "wnids.txt")
        if folder is None:
            raise DataError(f"no Tiny ImageNet here: unpack {URL} so that {FOLDER}/wnids.txt "
                            "is inside this folder (it is never downloaded)", root)
        self.root = folder
        self.split = split
        self.transforms = transforms
        wnids = [w.strip() for w in (folder / "wnids.txt").read_text().splitlines() if w.strip()]
        if not wnids or len(set(wnids)) != len(wnids):
            raise DataError("wnids.txt lists no (or repeated) WordNet ids", folder / "wnids.txt")
        self.classes = sorted(wnids)
        self.class_to_idx = {w: i for i, w in enumerate(self.classes)}
        self.class_names = self._names(folder / "words.txt")
        files: list[Path] = []
        targets: list[int] = []
        if split in ("train", "all"):
            for wnid in self.classes:
                images = folder / "train" / wnid / "images"
                if not images.is_dir():
                    raise DataError(f"missing training folder of class {wnid}", images)
                found = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpeg",
                                                                                  ".jpg"))
                files += found
                targets += [self.class_to_idx[wnid]] * len(found)
        if split in ("val", "test", "all"):
            f, t = self._val(folder / "val")
            files += f
            targets += t
        all_ids = [p.relative_to(folder).as_posix() for p in files]
        if ids is not None:
            wanted = set(map(str, ids))
            unknown = wanted - set(all_ids)
            if unknown:
                raise ConfigError(f"{len(unknown)} ids are not images of {folder} (e.g. "
                                  f"{sorted(unknown)[0]!r})")
            keep = [i for i, sid in enumerate(all_ids) if sid in wanted]
            files = [files[i] for i in keep]
            targets = [targets[i] for i in keep]
            all_ids = [all_ids[i] for i in keep]
        if not files:
            raise DataError(f"no images in split {split!r}", folder)
        self.files = files
        self.targets = targets
        self._ids = all_ids
        self.ids = all_ids

    def _names(self, words: Path) -> list[str]:
        names = {w: w for w in self.classes}
        if words.exists():
            wanted = set(self.classes)
            with words.open(encoding="utf-8") as fh:
                for line in fh:
                    wnid, _, text = line.rstrip("\n").partition("\t")
                    if wnid in wanted and text:
                        names[wnid] = text.split(",")[0].strip()
        return [names[w] for w in self.classes]

    def _val(self, val: Path) -> tuple[list[Path], list[int]]:
        table = val / "val_annotations.txt"
        if not table.exists():
            raise DataError("missing val_annotations.txt (labels of the validation images)",
                            table)
        files, targets = [], []
        for n, line in enumerate(table.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in self.class_to_idx:
                raise DataError(f"line {n}: expected <file>\\t<wnid of wnids.txt>\\t..., got "
                                f"{line[:60]!r}", table)
            files.append(val / "images" / parts[0])
            targets.append(self.class_to_idx[parts[1]])
        order = np.argsort([p.name for p in files], kind="stable")
        return [files[i] for i in order], [targets[i] for i in order]

    def __len__(self) -> int:
        """Number of images."""
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One image (greyscale ones expanded to RGB).

        Raises:
            DataError: missing or undecodable image.
        """
        path = self.files[index]
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
        except FileNotFoundError as err:
            raise DataError("image listed but not found", path) from err
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"unreadable image ({type(err).__name__}: {err})", path) from err
        sample: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float(),
            "label": torch.tensor(self.targets[index], dtype=torch.int64),
            "id": self._ids[index],
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample
