"""Small image-classification benchmarks held in memory as one ``uint8`` array (CIFAR, MNIST).

:class:`ArrayImages` is what :mod:`geossl.datasets.cifar` and :mod:`geossl.datasets.mnist`
share: the pixels of every image of the selected split as one ``(N, C, H, W)`` ``uint8`` array
(CIFAR-10's 60,000 images are 184 MB, MNIST's 70,000 are 55 MB), integer targets, stable ids,
a split (the archive's own ``train`` / ``test`` files, or ``all``) and an optional restriction
to the ids of a saved split.

Samples are ``{"image": float32 (C, H, W), "label": int64, "id": str}`` with raw pixel values in
``[0, 255]`` (the ``rgb`` / ``gray`` normalisers of :mod:`geossl.pretrained.normalize` scale them),
as for the scene archives of :mod:`geossl.datasets.aid`.

These archives are never downloaded: a missing file is a :class:`~geossl.core.errors.DataError`
naming where the files go and where to get them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torchgeo.datasets import NonGeoDataset

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.base import GeosslDataset

#: split names every in-memory archive accepts
SPLITS = ("train", "test", "all")


def find_folder(root: str | os.PathLike[str], names: Sequence[str], marker: str) -> Path | None:
    """The folder holding ``marker``: ``root`` itself or one of ``root/<name>`` for ``names``.

    Lets a user give either the archive's folder or the folder above it (torchvision's
    ``root``), as the other datasets of geossl do.
    """
    base = Path(root)
    for folder in (base, *(base / n for n in names)):
        if (folder / marker).exists():
            return folder
    return None


class ArrayImages(GeosslDataset, NonGeoDataset):
    """Images of one split held as a ``uint8`` array, with targets, ids and class names.

    Subclasses implement :meth:`load` (the arrays of one of the archive's own splits) and set
    :attr:`classes`, :attr:`sensor` and :attr:`bands`.

    Attributes:
        images: ``(N, C, H, W)`` ``uint8`` pixels of the selected samples.
        targets: ``(N,)`` ``int64`` classes.
        ids: sample ids (``<split>/<position in the archive's split>``), stable across machines.
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("split", "ids", "transforms")

    #: class names (index -> name)
    classes: tuple[str, ...] = ()
    #: the sensor the images stand for (picks the default normaliser)
    sensors: tuple[str, ...] = ("rgb",)
    #: the archive's own splits
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    #: band names, in channel order
    bands: tuple[str, ...] = ("R", "G", "B")

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        ids: Sequence[str] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """Read the split's files into memory.

        Args:
            root: the archive's folder, or the folder above it.
            split: ``train``, ``test`` (the archive's own split) or ``all`` (both).
            ids: keep only these sample ids (one side of a saved split); applied after
                ``split``, use ``split="all"`` to select purely by ids.
            transforms: function applied to each sample dict.

        Raises:
            ConfigError: unknown split, or ids that are not samples of the archive.
            DataError: missing or malformed files (the message says where they go).
        """
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.root = Path(root)
        if not self.root.exists():
            raise DataError("dataset folder not found", self.root)
        self.split = split
        self.transforms = transforms
        parts = ("train", "test") if split == "all" else (split,)
        images, targets, all_ids = [], [], []
        for part in parts:
            x, y = self.load(part)
            if x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(y):
                raise DataError(f"{part} images are not N x C x H x W uint8 with one label each "
                                f"(got {x.dtype} {x.shape}, {len(y)} labels)", self.root)
            images.append(x)
            targets.append(np.asarray(y, dtype=np.int64))
            all_ids += [f"{part}/{i}" for i in range(len(x))]
        image_arr = np.concatenate(images) if len(images) > 1 else images[0]
        target_arr = np.concatenate(targets) if len(targets) > 1 else targets[0]
        bad = (target_arr < 0) | (target_arr >= len(self.classes))
        if bad.any():
            raise DataError(f"label {int(target_arr[bad][0])} outside the {len(self.classes)} "
                            "classes", self.root)
        if ids is not None:
            where = {sid: i for i, sid in enumerate(all_ids)}
            unknown = [sid for sid in map(str, ids) if sid not in where]
            if unknown:
                raise ConfigError(f"{len(unknown)} ids are not samples of {self.root} "
                                  f"(e.g. {unknown[0]!r})")
            keep = np.asarray(sorted(where[str(sid)] for sid in set(map(str, ids))),
                              dtype=np.int64)
            image_arr, target_arr = image_arr[keep], target_arr[keep]
            all_ids = [all_ids[i] for i in keep]
        self.images = image_arr
        self.targets = target_arr
        self._ids = all_ids
        self.ids = all_ids

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``(N, C, H, W)`` ``uint8`` images and ``(N,)`` labels of ``train`` or ``test``."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Number of images."""
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One image as a sample dict (see the module docstring)."""
        sample: dict[str, Any] = {
            "image": torch.from_numpy(self.images[index].astype(np.float32)),
            "label": torch.tensor(int(self.targets[index]), dtype=torch.int64),
            "id": self._ids[index],
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def class_counts(self) -> dict[str, int]:
        """Number of images of each class."""
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}
