"""Folder-per-class scene classification: any image folder, and the base of AID, UC Merced, EuroSAT.

On-disk layout (the one every public scene-classification archive uses)::

    ROOT/<class>/<image>.<ext>          AID:       AID/Airport/airport_1.jpg (600 x 600 RGB)
    ROOT/Images/<class>/<image>.<ext>   UC Merced: UCMerced_LandUse/Images/airplane/airplane00.tif
                                        EuroSAT:   EuroSAT_MS/AnnualCrop/AnnualCrop_1.tif (13 bands)

A ``ROOT/Images`` folder is used as the class root when present (UC Merced), so both the archive's
top folder and its ``Images`` folder can be given.

Samples are ``{"image": float32 (C, H, W), "label": int64, "id": str}``:

* ``image`` holds the raw pixel values as float32, **not rescaled**: ``[0, 255]`` for 8-bit
  JPG/PNG/TIF (AID, UC Merced), raw digital numbers for multi-band GeoTIFFs (EuroSAT MS:
  Sentinel-2 L1C DN, reflectance x 10,000). Scaling is the job of :mod:`geossl.pretrained.normalize`
  (``rgb``: ``/255`` then ImageNet mean/std; ``s2``: ``/10,000``), applied batch-wise.
* ``id`` is the image path relative to the class root (``airplane/airplane00.tif``), stable
  across machines: splits and label budgets refer to it.

Splits are stratified and deterministic: the files of each class are sorted by name and
shuffled by a :class:`numpy.random.Generator` seeded from ``(seed, crc32(class name))``, so the
same seed gives the same split on any machine and adding a class does not move the others.

Image size policy: :class:`~geossl.datasets.aid.AID` (600 px) and
:class:`~geossl.datasets.ucmerced.UCMerced` (256 px) resize any image whose
size differs from the nominal one with bilinear, antialiased interpolation (a few UC Merced
images are 247-256 px): the whole scene is kept, with a small change of scale, rather than
cropped or padded. :class:`SceneFolder` keeps native sizes unless ``size`` is given.
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.datasets.base import GeosslDataset, PretrainingRequest, construct

#: file extensions read with Pillow (8-bit RGB/grey); every other extension goes to rasterio
_PIL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

SPLITS = ("train", "val", "test", "all")


def split_indices(
    labels: Sequence[int],
    classes: Sequence[str],
    fractions: tuple[float, float, float],
    seed: int,
) -> dict[str, list[int]]:
    """Deterministic stratified train/val/test split of items grouped by class.

    Items must already be sorted (by file name within each class). Each class is shuffled by its
    own generator, ``numpy.random.default_rng([seed, crc32(class name)])``, then cut into
    ``round(f_val * n)`` validation items, ``round(f_test * n)`` test items and the rest for
    training.

    Args:
        labels: class index of each item.
        classes: class names (index -> name).
        fractions: train, val and test fractions, summing to 1.
        seed: random seed.

    Returns:
        positions of the items of each split (``train``, ``val``, ``test``), sorted.

    Raises:
        ConfigError: if the fractions are negative or do not sum to 1.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"split fractions must be 3 non-negative numbers summing to 1, "
                          f"got {tuple(fractions)}")
    labels_arr = np.asarray(labels, dtype=np.int64)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for k, name in enumerate(classes):
        items = np.flatnonzero(labels_arr == k)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        items = items[rng.permutation(len(items))]
        n_val = round(fractions[1] * len(items))
        n_test = min(round(fractions[2] * len(items)), len(items) - n_val)
        out["val"].extend(items[:n_val].tolist())
        out["test"].extend(items[n_val : n_val + n_test].tolist())
        out["train"].extend(items[n_val + n_test :].tolist())
    return {k: sorted(v) for k, v in out.items()}


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as a ``(C, H, W)`` array of its native dtype.

    JPG/PNG/BMP are decoded with Pillow (faster than GDAL for JPEG); TIFFs and anything else go
    through rasterio, which also reads multi-band GeoTIFFs (EuroSAT MS, 13 bands).

    Args:
        path: image file.

    Returns:
        the pixels, channels first.

    Raises:
        DataError: if the file cannot be decoded.
    """
    path = Path(path)
    if path.suffix.lower() in _PIL_EXTENSIONS:
        try:
            with Image.open(path) as img:
                decoded: Image.Image = img
                if img.mode not in ("RGB", "L", "I;16", "I", "F"):
                    decoded = img.convert("RGB")
                arr = np.asarray(decoded)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"unreadable image ({err.__class__.__name__}: {err})", path) from err
        return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return np.asarray(src.read())
    except RasterioError as err:
        raise DataError(f"unreadable image ({first_line(err)})", path) from err


class SceneFolder(GeosslDataset, NonGeoDataset):
    """Scene classification over a folder-per-class image archive.

    Attributes:
        classes: class names, sorted (the label is the position in this list).
        files: image paths of the selected split, sorted by class then name.
        targets: class index of each file.
        ids: sample ids (paths relative to :attr:`class_root`, POSIX separators).
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("split", "fractions", "seed", "extensions", "transforms", "size", "ids")

    sensors = ("rgb",)
    splits = ("train", "val", "test")
    #: nominal image size; images of another size are resized to it (``None``: keep native)
    image_size: ClassVar[int | None] = None
    #: default extensions searched for
    extensions_default: ClassVar[tuple[str, ...]] = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        fractions: tuple[float, float, float] = (0.8, 0.0, 0.2),
        seed: int = 0,
        extensions: Sequence[str] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        size: int | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        """Index the archive (file names only; no image is decoded here).

        Args:
            root: archive folder holding one folder per class (or an ``Images`` folder that does).
            split: ``train``, ``val``, ``test`` or ``all``.
            fractions: train, val and test fractions of each class.
            seed: seed of the stratified split.
            extensions: image file extensions to use (case-insensitive).
            transforms: function applied to each sample dict.
            size: resize every image to ``size`` x ``size`` (default: the class's nominal size,
                or native sizes for :class:`SceneFolder`).
            ids: keep only these sample ids (e.g. one side of a saved split); applied after
                ``split``, use ``split="all"`` to select purely by ids.

        Raises:
            DataError: if the folder is missing or holds no images.
            ConfigError: bad split name, fractions or unknown ids.
        """
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError("dataset folder not found", self.root)
        images = self.root / "Images"
        self.class_root = images if images.is_dir() else self.root
        exts = tuple(e.lower() for e in (extensions or self.extensions_default))
        self.extensions = exts
        self.split = split
        self.seed = seed
        self.fractions = tuple(float(f) for f in fractions)
        self.transforms = transforms
        self.size = size if size is not None else self.image_size

        classes: list[str] = []
        all_files: list[Path] = []
        all_targets: list[int] = []
        for folder in sorted(p for p in self.class_root.iterdir() if p.is_dir()):
            files = sorted(
                f for f in folder.iterdir()
                if f.is_file() and f.suffix.lower() in exts and not f.name.startswith(".")
            )
            if not files:
                continue
            all_files.extend(files)
            all_targets.extend([len(classes)] * len(files))
            classes.append(folder.name)
        if not all_files:
            raise DataError(
                f"no class folders with images ({', '.join(exts)}) found", self.class_root
            )
        self.classes = classes
        self.class_to_idx = {c: i for i, c in enumerate(classes)}

        if split == "all":
            keep = list(range(len(all_files)))
        else:
            keep = split_indices(all_targets, classes, self.fractions, seed)[split]  # type: ignore[arg-type]
        all_ids = [f.relative_to(self.class_root).as_posix() for f in all_files]
        if ids is not None:
            wanted = set(map(str, ids))
            unknown = wanted - set(all_ids)
            if unknown:
                raise ConfigError(
                    f"{len(unknown)} ids are not images of {self.class_root} "
                    f"(e.g. {sorted(unknown)[0]!r})"
                )
            keep = [i for i in keep if all_ids[i] in wanted]
        self.files = [all_files[i] for i in keep]
        self.targets = [all_targets[i] for i in keep]
        self.ids: list[str] = [all_ids[i] for i in keep]

    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> SceneFolder:
        """The archive's own training side, unless a split file's ``ids`` say otherwise."""
        split = "all" if request.ids is not None else "train"
        return construct(cls, request.root, "", split=split, ids=request.ids,
                         **request.options)

    def __len__(self) -> int:
        """Number of images in the split."""
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load one image.

        Args:
            index: position in the split.

        Returns:
            ``{"image": float32 (C, H, W), "label": int64 scalar, "id": str}``.

        Raises:
            DataError: if the image cannot be decoded.
        """
        path = self.files[index]
        arr = read_image(path)
        image = torch.from_numpy(arr.astype(np.float32, copy=False))
        if self.size is not None and tuple(image.shape[-2:]) != (self.size, self.size):
            image = self._resize(image, self.size)
        sample: dict[str, Any] = {
            "image": image,
            "label": torch.tensor(self.targets[index], dtype=torch.int64),
            "id": self.ids[index],
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    @staticmethod
    def _resize(image: Tensor, size: int) -> Tensor:
        out = F.interpolate(image[None], size=(size, size), mode="bilinear",
                            align_corners=False, antialias=True)[0]
        return out

    def class_counts(self) -> dict[str, int]:
        """Number of images of each class in the split."""
        counts = np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def plot(self, sample: dict[str, Any], suptitle: str | None = None) -> Any:
        """Show a sample (first three bands, percentile-stretched) with its class.

        Args:
            sample: a sample of this dataset.
            suptitle: optional figure title.

        Returns:
            the matplotlib figure.
        """
        import matplotlib.pyplot as plt

        img = sample["image"][:3].float().numpy()
        lo, hi = np.percentile(img, (1, 99))
        rgb = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(rgb if rgb.shape[-1] == 3 else rgb[..., 0], cmap=None if rgb.shape[-1] == 3
                  else "gray")
        ax.set_title(self.classes[int(sample["label"])])
        ax.axis("off")
        if suptitle:
            fig.suptitle(suptitle)
        return fig
