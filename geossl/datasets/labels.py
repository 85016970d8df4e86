"""Land-cover nomenclatures and scene-label functions (pure, no I/O).

Nomenclatures:

* **IGBP** (17 classes), the first band of the SEN12MS ``lc`` patches (MODIS MCD12Q1), stored as
  values 1..17; class index = value - 1.
* **DFC2020 / simplified IGBP** (10 classes), the scheme of the IEEE GRSS Data Fusion Contest
  2020 and of the SEN12MS toolbox (``IGBP_s``). Mapping table ``IGBP_TO_DFC`` from the DFC2020
  baseline (Schmitt et al., ``DFC2020_CLASSES`` in ``lukasliebel/dfc2020_baseline``
  ``code/datasets.py``): forests 1-5 -> 1, shrublands 6-7 -> 2, savannas 8-9 -> 3, grassland
  10 -> 4, wetlands 11 -> 5, croplands 12 and cropland/natural mosaic 14 -> 6, urban 13 -> 7,
  snow/ice 15 -> 8, barren 16 -> 9, water 17 -> 10. The SEN12MS classification toolbox
  (``schmitt-muc/SEN12MS`` ``classification/dataset.py``) aggregates class fractions the same
  way.
* **CORINE Land Cover** level-3, the 43 classes of BigEarthNet v1 (label names in the
  ``*_labels_metadata.json`` files; CLC codes in the v2 ``Reference_Maps``). The class names and
  the 43 -> 19 conversion are TorchGeo's (``BigEarthNet.class_sets``, ``label_converter``,
  ``BigEarthNetV2.clc_codes``).
* **BigEarthNet 19-class nomenclature** (Sumbul et al., "BigEarthNet-MM", IEEE GRSM 2021;
  ``label_indices.json`` of ``rsim/BigEarthNet-S2_19-classes_models``), used by the v2
  ``metadata.parquet`` labels. Eleven CLC classes (122-124, 131-133, 141, 142, 332, 334, 423)
  have no 19-class counterpart and are dropped.

Label functions turn a class-index map into a scene label: single-label = the most frequent
class (ties go to the lowest class index), multi-label = every class covering at least
``min_fraction`` of the valid pixels. Pixels equal to :data:`IGNORE_INDEX` are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torchgeo.datasets import BigEarthNet, BigEarthNetV2

from geossl.core.errors import ConfigError

#: value of unlabelled / invalid pixels in class-index masks (``torch.nn.CrossEntropyLoss``'s
#: default ``ignore_index``)
IGNORE_INDEX = -100

#: IGBP class names, index i is IGBP value i + 1
IGBP_CLASSES: tuple[str, ...] = (
    "Evergreen Needleleaf Forests",
    "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests",
    "Mixed Forests",
    "Closed (Dense) Shrublands",
    "Open (Sparse) Shrublands",
    "Woody Savannas",
    "Savannas",
    "Grasslands",
    "Permanent Wetlands",
    "Croplands",
    "Urban and Built-Up Lands",
    "Cropland/Natural Vegetation Mosaics",
    "Permanent Snow and Ice",
    "Barren",
    "Water Bodies",
)

#: DFC2020 simplified IGBP class names, index i is DFC value i + 1
DFC_CLASSES: tuple[str, ...] = (
    "Forest",
    "Shrubland",
    "Savanna",
    "Grassland",
    "Wetlands",
    "Croplands",
    "Urban/Built-up",
    "Snow/Ice",
    "Barren",
    "Water",
)

#: IGBP value (0..17, 0 = no data) -> DFC2020 value (1..10, 0 = no data); DFC2020 baseline table
IGBP_TO_DFC: tuple[int, ...] = (0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10)

#: CORINE Land Cover level-3 codes of the 43 BigEarthNet v1 classes, in class-index order.
#: Written here because TorchGeo has no such table: ``BigEarthNetV2.clc_codes`` maps only the 32
#: codes with a 19-class counterpart, to their 19-class index (used for 19 classes below).
CLC_CODES: tuple[int, ...] = (
    111, 112, 121, 122, 123, 124, 131, 132, 133, 141, 142,
    211, 212, 213, 221, 222, 223, 231, 241, 242, 243, 244,
    311, 312, 313, 321, 322, 323, 324, 331, 332, 333, 334,
    411, 412, 421, 422, 423, 511, 512, 521, 522, 523,
)  # fmt: skip

#: the 43 CORINE class names as written in BigEarthNet v1 label json files (TorchGeo's table;
#: the same in TorchGeo 0.8.1 and 0.10)
CORINE_CLASSES: tuple[str, ...] = tuple(BigEarthNet.class_sets[43])

#: the BigEarthNet 19-class nomenclature, names as in the v2 ``metadata.parquet`` (TorchGeo's)
BEN19_CLASSES: tuple[str, ...] = tuple(BigEarthNet.class_sets[19])

#: 43-class index -> 19-class index (absent: the class has no 19-class counterpart; TorchGeo's)
CORINE_TO_BEN19: dict[int, int] = dict(BigEarthNet.label_converter)

#: CLC code -> 19-class index (TorchGeo's; the 11 codes without a counterpart are absent)
CLC_TO_BEN19: dict[int, int] = dict(BigEarthNetV2.clc_codes)

_CORINE_INDEX = {name.lower(): i for i, name in enumerate(CORINE_CLASSES)}
_BEN19_INDEX = {name.lower(): i for i, name in enumerate(BEN19_CLASSES)}
_CLC_INDEX = {code: i for i, code in enumerate(CLC_CODES)}

#: lookup table IGBP value (0..255) -> IGBP class index (0..16, IGNORE_INDEX elsewhere)
_IGBP_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
_IGBP_LUT[1:18] = np.arange(17)
#: lookup table IGBP value (0..255) -> DFC class index (0..9, IGNORE_INDEX elsewhere)
_DFC_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
_DFC_LUT[1:18] = np.asarray(IGBP_TO_DFC[1:]) - 1

#: class names per SEN12MS label scheme
SCHEMES: dict[str, tuple[str, ...]] = {"igbp": IGBP_CLASSES, "dfc": DFC_CLASSES}


def igbp_to_index(igbp: npt.ArrayLike, scheme: str = "igbp") -> npt.NDArray[np.int64]:
    """Map raw IGBP values (1..17) to 0-based class indices of ``scheme``.

    Args:
        igbp: array of IGBP values (any integer dtype); values outside 1..17 are invalid.
        scheme: ``"igbp"`` (17 classes) or ``"dfc"`` (10 DFC2020 classes).

    Returns:
        int64 array of the same shape, :data:`IGNORE_INDEX` where invalid.

    Raises:
        ValueError: unknown scheme.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}, expected one of {sorted(SCHEMES)}")
    lut = _IGBP_LUT if scheme == "igbp" else _DFC_LUT
    values = np.asarray(igbp).astype(np.int64)
    out = np.full(values.shape, IGNORE_INDEX, dtype=np.int64)
    ok = (values >= 0) & (values < 256)
    out[ok] = lut[values[ok]]
    return out


def class_counts(mask: npt.ArrayLike, num_classes: int) -> npt.NDArray[np.int64]:
    """Pixel count per class of a class-index mask, ignoring invalid pixels.

    Args:
        mask: integer class indices, :data:`IGNORE_INDEX` (or any value outside
            ``[0, num_classes)``) for invalid pixels.
        num_classes: number of classes.

    Returns:
        int64 array ``(num_classes,)``.
    """
    values = np.asarray(mask).ravel().astype(np.int64)
    values = values[(values >= 0) & (values < num_classes)]
    return np.bincount(values, minlength=num_classes).astype(np.int64)


def single_label(counts: npt.ArrayLike) -> int:
    """Most frequent class of a per-class pixel count (ties: lowest class index).

    Args:
        counts: per-class counts or fractions ``(K,)``.

    Returns:
        the class index, or :data:`IGNORE_INDEX` when no pixel is valid.
    """
    arr = np.asarray(counts, dtype=np.float64)
    if arr.size == 0 or arr.sum() <= 0:
        return IGNORE_INDEX
    return int(np.argmax(arr))


def multi_label(counts: npt.ArrayLike, min_fraction: float = 0.1) -> npt.NDArray[np.float32]:
    """Multi-hot vector of every class covering at least ``min_fraction`` of the valid pixels.

    Args:
        counts: per-class counts ``(K,)``.
        min_fraction: minimum share of valid pixels for a class to be present (0.1 = 10 %, the
            SEN12MS toolbox threshold).

    Returns:
        float32 array ``(K,)`` of 0/1 (all zeros when no pixel is valid).
    """
    arr = np.asarray(counts, dtype=np.float64)
    total = arr.sum()
    if total <= 0:
        return np.zeros(arr.shape, dtype=np.float32)
    # a small tolerance so that exactly 10 % counts as >= 10 % despite float rounding
    return (arr / total >= min_fraction - 1e-9).astype(np.float32)


def scene_label(
    mask: npt.ArrayLike, num_classes: int, multilabel: bool = False, min_fraction: float = 0.1
) -> Tensor:
    """Scene label of a class-index mask.

    Args:
        mask: class indices, :data:`IGNORE_INDEX` for invalid pixels.
        num_classes: number of classes.
        multilabel: multi-hot of classes covering >= ``min_fraction`` instead of the majority.
        min_fraction: threshold for ``multilabel``.

    Returns:
        int64 scalar tensor (single-label) or float32 ``(num_classes,)`` (multi-label).
    """
    counts = class_counts(mask, num_classes)
    if multilabel:
        return torch.from_numpy(multi_label(counts, min_fraction))
    return torch.tensor(single_label(counts), dtype=torch.int64)


def multi_hot(indices: Iterable[int], num_classes: int) -> Tensor:
    """Float32 multi-hot vector ``(num_classes,)`` with ones at ``indices``."""
    out = torch.zeros(num_classes, dtype=torch.float32)
    idx = list(indices)
    if idx:
        out[torch.as_tensor(idx, dtype=torch.long)] = 1.0
    return out


def corine_names_to_indices(names: Sequence[str], num_classes: int = 19) -> list[int]:
    """Class indices of BigEarthNet v1 CORINE label names in the 43- or 19-class nomenclature.

    Args:
        names: CORINE level-3 class names (as in ``*_labels_metadata.json``); case-insensitive.
        num_classes: 43 (CORINE) or 19 (BigEarthNet nomenclature; classes without a 19-class
            counterpart are dropped).

    Returns:
        sorted unique class indices.

    Raises:
        KeyError: an unknown class name (the message names it).
        ValueError: ``num_classes`` not 19 or 43.
    """
    _check_num_classes(num_classes)
    out: set[int] = set()
    for name in names:
        key = name.strip().lower()
        if key not in _CORINE_INDEX:
            raise KeyError(f"unknown CORINE class name {name!r}")
        idx = _CORINE_INDEX[key]
        if num_classes == 43:
            out.add(idx)
        elif idx in CORINE_TO_BEN19:
            out.add(CORINE_TO_BEN19[idx])
    return sorted(out)


def ben19_names_to_indices(names: Sequence[str]) -> list[int]:
    """Class indices of 19-class names (BigEarthNet v2 ``metadata.parquet`` ``labels``).

    Raises:
        KeyError: an unknown class name (the message names it).
    """
    out: set[int] = set()
    for name in names:
        key = name.strip().lower()
        if key not in _BEN19_INDEX:
            raise KeyError(f"unknown BigEarthNet 19-class name {name!r}")
        out.add(_BEN19_INDEX[key])
    return sorted(out)


def clc_codes_to_indices(codes: Iterable[int], num_classes: int = 19) -> list[int]:
    """Class indices of the CLC codes present in a reference map (e.g. ``{211, 311}``).

    Codes that are not among the 43 BigEarthNet classes (nodata 0, 999, ...) are ignored.

    Args:
        codes: CORINE level-3 codes.
        num_classes: 43 or 19.

    Returns:
        sorted unique class indices.
    """
    _check_num_classes(num_classes)
    table = _CLC_INDEX if num_classes == 43 else CLC_TO_BEN19
    return sorted({table[int(c)] for c in codes if int(c) in table})


def _check_num_classes(num_classes: int) -> None:
    if num_classes not in (19, 43):
        raise ValueError(f"num_classes must be 19 or 43, got {num_classes}")


# ------------------------------------------------------------------------------ binary tasks
@dataclass(frozen=True)
class BinaryTask:
    """A binary task: positive when a sample carries any of ``classes`` (source class names).

    Defined here, with the nomenclatures its classes come from, so that pretraining monitors
    (the online probe) and evaluation use the same sets.
    """

    name: str
    classes: tuple[str, ...]

    @property
    def class_names(self) -> list[str]:
        """Names of the two classes, negative first (confusion-matrix labels)."""
        return [f"not {self.name}", self.name]

    def as_dict(self) -> dict[str, Any]:
        """Plain form stored in ``results.json``."""
        return {"name": self.name, "classes": list(self.classes)}


#: BigEarthNet's farmland task (the BigEarthNet study's): two classes of the 19-class
#: nomenclature and "Non-irrigated arable land", a CORINE level-3 class that the 19 classes
#: merge into "Arable land"
FARMLAND = BinaryTask("farmland", (
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Non-irrigated arable land",
))

#: named tasks (``--task farmland``, ``probe_task: farmland``)
TASK_PRESETS: dict[str, BinaryTask] = {"farmland": FARMLAND}


def parse_task(spec: str | dict[str, Any] | BinaryTask) -> BinaryTask:
    """A task from a preset name, ``NAME=Class A;Class B`` or ``{name:, classes:}``.

    Raises:
        ConfigError: unknown preset, or a malformed definition.
    """
    if isinstance(spec, BinaryTask):
        return spec
    if isinstance(spec, dict):
        name, classes = spec.get("name"), spec.get("classes")
        if not isinstance(name, str) or not name.strip() or not isinstance(classes, list | tuple) \
                or not classes:
            raise ConfigError(f"a task mapping needs 'name' and a list of 'classes', got {spec}")
        return BinaryTask(name.strip(), tuple(str(c).strip() for c in classes))
    text = str(spec).strip()
    if "=" not in text:
        if text.lower() in TASK_PRESETS:
            return TASK_PRESETS[text.lower()]
        raise ConfigError(f"unknown task {text!r}: use one of {', '.join(TASK_PRESETS)} or "
                          "NAME=Class A;Class B")
    name, _, rest = text.partition("=")
    classes = tuple(c.strip() for c in rest.split(";") if c.strip())
    if not name.strip() or not classes:
        raise ConfigError(f"task {text!r}: expected NAME=Class A;Class B")
    return BinaryTask(name.strip(), classes)


def parse_tasks(value: Any) -> list[BinaryTask]:
    """Tasks from ``--task`` (one spec, or a list of specs); ``None`` gives none.

    Raises:
        ConfigError: a malformed spec, or two tasks of one name.
    """
    if value is None or value == "" or value == []:
        return []
    specs = value if isinstance(value, list | tuple) else [value]
    tasks = [parse_task(s) for s in specs]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"two tasks named {sorted(n for n in names if names.count(n) > 1)[0]!r}")
    return tasks


def match_classes(names: Sequence[str], classes: Sequence[str]) -> list[int | None]:
    """Index of each name among ``classes`` (case-insensitive), ``None`` when absent."""
    lower = {c.lower(): i for i, c in enumerate(classes)}
    return [lower.get(n.lower()) for n in names]


def task_indices(task: BinaryTask, classes: Sequence[str]) -> tuple[list[int], list[str]]:
    """The class indices among ``classes`` that make ``task`` positive.

    A task class absent from ``classes`` that is a CORINE level-3 class is read as its
    19-class parent when ``classes`` is BigEarthNet's 19-class nomenclature (e.g.
    "Non-irrigated arable land" as "Arable land"); each such reading is returned as a note
    part, so the caller can say so.

    Args:
        task: the task.
        classes: class names of the labels (their order is the label index).

    Returns:
        ``(sorted indices, note parts)``; no note part when every class is exact.

    Raises:
        ConfigError: a class that is neither among ``classes`` nor so readable (the closest
            names are suggested).
    """
    import difflib

    found = match_classes(task.classes, classes)
    if all(i is not None for i in found):
        return sorted({int(i) for i in found if i is not None}), []
    corine = match_classes(task.classes, CORINE_CLASSES)
    missing = [n for n, i in zip(task.classes, found) if i is None]
    if tuple(classes) != BEN19_CLASSES or any(
            corine[task.classes.index(n)] not in CORINE_TO_BEN19 for n in missing):
        close = difflib.get_close_matches(missing[0], list(classes), n=2, cutoff=0.5)
        hint = f" (closest: {'; '.join(close)})" if close else ""
        raise ConfigError(f"task {task.name!r}: {missing[0]!r} is not a class of the dataset"
                          f"{hint}; its classes: {'; '.join(classes)}")
    wanted = {int(i) for i in corine if i is not None}
    indices = sorted({CORINE_TO_BEN19[i] for i in wanted if i in CORINE_TO_BEN19})
    parts = []
    for name in missing:
        parent = CORINE_TO_BEN19[int(corine[task.classes.index(name)] or 0)]
        others = [CORINE_CLASSES[j] for j, p in CORINE_TO_BEN19.items()
                  if p == parent and j not in wanted]
        also = f", so {task.name} also counts {' and '.join(others)}" if others else ""
        parts.append(f"{name!r} is read as its 19-class parent {BEN19_CLASSES[parent]!r}{also}")
    return indices, parts


def task_labels(labels: Tensor, indices: Sequence[int]) -> Tensor:
    """0/1 (int64) task targets from class labels: ``(N,)`` indices or ``(N, K)`` multi-hot."""
    if labels.ndim == 2:
        return (labels[:, list(indices)] > 0.5).any(1).long()
    return torch.isin(labels.long(), torch.as_tensor(list(indices), device=labels.device)).long()
