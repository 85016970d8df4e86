"""Every difference between the TorchGeo releases geossl supports, in one place.

geossl is tested on TorchGeo 0.8.1 (what pip picks on Python 3.11) and 0.10.x (Python 3.12+);
``pyproject.toml`` declares that range. The differences that matter to geossl, and where each
is handled here:

=============================  ================================  ==================================
what                           0.8.1                             0.10
=============================  ================================  ==================================
``stack_samples``              stacks tensors, keeps the rest    stacks every value: a ``crs`` or
                               (``crs``, ``id``) as lists        ``id`` raises ``TypeError``
                                                                 -> :func:`stack_samples`
lightning tasks                ``torchgeo.trainers.*Task``       ``torchgeo.tasks.*`` (the old
                                                                 names are deprecated aliases)
                                                                 -> :func:`task_class`
GeoDataset samplers            ``RandomGeoSampler``,             ``RandomPatchSampler``,
                               ``GridGeoSampler`` (x, y, t       ``GriddedPatchSampler`` (x, y
                               queries)                          queries; the old ones deprecated)
                                                                 -> :func:`random_sampler`,
                                                                 :func:`grid_sampler`
``extract_backbone``           ``torchgeo.trainers.utils``       ``torchgeo.tasks.utils``
                                                                 -> :func:`extract_backbone`
=============================  ================================  ==================================

Each difference is detected by the feature (does ``torchgeo.tasks`` exist, does
``torchgeo.samplers`` have ``RandomPatchSampler``), not by comparing version numbers, so a
release in between (0.9 has the old names and a tolerant ``stack_samples``) takes the right
branch. geossl's own GeoDatasets keep one sample layout on every release (``crs`` and the
resolved ``bounds`` query beside the tensors); collate them with :func:`stack_samples`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch
from torch.utils.data import Sampler

__all__ = [
    "HAS_TASKS_MODULE",
    "TORCHGEO_VERSION",
    "TaskKind",
    "extract_backbone",
    "grid_sampler",
    "random_sampler",
    "stack_samples",
    "task_class",
    "task_names",
]

#: a lightning task geossl's exports and benchmarks use
TaskKind = Literal["classification", "segmentation", "simclr", "moco", "byol"]

#: task kind -> (name in ``torchgeo.tasks`` (0.10+), name in ``torchgeo.trainers`` (<= 0.9))
_TASKS: dict[str, tuple[str, str]] = {
    "classification": ("Classification", "ClassificationTask"),
    "segmentation": ("SemanticSegmentation", "SemanticSegmentationTask"),
    "simclr": ("SimCLR", "SimCLRTask"),
    "moco": ("MoCo", "MoCoTask"),
    "byol": ("BYOL", "BYOLTask"),
}


def _version() -> tuple[int, ...]:
    import torchgeo

    parts: list[int] = []
    for piece in str(torchgeo.__version__).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


#: the installed TorchGeo release, e.g. ``(0, 10, 1)`` (for messages; the code tests features)
TORCHGEO_VERSION: tuple[int, ...] = _version()


def _has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


#: ``torchgeo.tasks`` exists (0.10+): the trainers' new home and names
HAS_TASKS_MODULE: bool = _has_module("torchgeo.tasks")


def task_names(kind: TaskKind) -> list[str]:
    """Dotted names of the TorchGeo classes for ``kind`` that import here, preferred first.

    On 0.10 that is ``["torchgeo.tasks.Classification", "torchgeo.trainers.ClassificationTask"]``
    (the second a deprecated alias that still works); on 0.8.1 only the ``trainers`` name.

    Raises:
        KeyError: an unknown kind.
    """
    new, old = _TASKS[kind]
    names = [f"torchgeo.tasks.{new}"] if HAS_TASKS_MODULE else []
    names.append(f"torchgeo.trainers.{old}")
    return names


def resolve(dotted: str) -> Any:
    """The object a dotted name (``torchgeo.tasks.Classification``) refers to."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def task_class(kind: TaskKind) -> type[Any]:
    """The TorchGeo lightning task for ``kind`` under the name this release prefers.

    ``task_class("classification")`` is ``torchgeo.tasks.Classification`` on 0.10 and
    ``torchgeo.trainers.ClassificationTask`` on 0.8.1; both take the same arguments
    (``model``, ``weights``, ``in_channels``, ``num_classes``, ...).
    """
    cls: type[Any] = resolve(task_names(kind)[0])
    return cls


def extract_backbone(path: str) -> tuple[str, dict[str, torch.Tensor]]:
    """TorchGeo's ``extract_backbone`` (model name and state dict of a task checkpoint)."""
    module = "torchgeo.tasks.utils" if HAS_TASKS_MODULE else "torchgeo.trainers.utils"
    fn = resolve(f"{module}.extract_backbone")
    name, state = fn(path)
    return str(name), dict(state)


def stack_samples(samples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples: stack the tensors along a new axis, keep any other value as a list.

    TorchGeo 0.8/0.9's ``stack_samples`` did exactly this; 0.10's stacks every value and
    raises on the ``crs`` (a ``pyproj``/``rasterio`` CRS), ``id`` (a string) and GeoSlice
    ``bounds`` that geossl's samples carry, so geossl owns these few lines. Use it as
    ``DataLoader(..., collate_fn=stack_samples)`` with any geossl or TorchGeo dataset.

    Args:
        samples: dicts with the same keys.

    Returns:
        one dict: ``(B, ...)`` tensors where every sample holds a tensor of one shape,
        otherwise the list of the B values.
    """
    samples = list(samples)
    out: dict[str, Any] = {}
    for key in samples[0] if samples else ():
        values = [s[key] for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values) and len(
                {tuple(v.shape) for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def _samplers_module() -> Any:
    return importlib.import_module("torchgeo.samplers")


def random_sampler(dataset: Any, size: float | tuple[float, float], length: int | None = None,
                   seed: int | None = None) -> Sampler[Any]:
    """Random windows of ``size`` pixels over a GeoDataset, with this release's sampler.

    ``RandomPatchSampler`` (0.10+, ``(x, y)`` queries) or ``RandomGeoSampler`` (``(x, y, t)``);
    geossl's GeoDatasets answer both kinds of query.

    Args:
        dataset: a TorchGeo ``GeoDataset``.
        size: window side in pixels, or ``(height, width)``.
        length: windows per epoch (default: the sampler's own).
        seed: seed of the sampler's generator (default: unseeded).
    """
    samplers = _samplers_module()
    if hasattr(samplers, "RandomPatchSampler"):
        sampler: Sampler[Any] = samplers.RandomPatchSampler(dataset, size=size, length=length,
                                                            generator=seed)
    else:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        sampler = samplers.RandomGeoSampler(dataset, size=size, length=length, generator=gen)
    return sampler


def grid_sampler(dataset: Any, size: float | tuple[float, float],
                 stride: float | tuple[float, float] | None = None,
                 roi: Any = None) -> Sampler[Any]:
    """Windows of ``size`` pixels every ``stride`` pixels, with this release's grid sampler.

    ``GriddedPatchSampler`` (0.10+) or ``GridGeoSampler``; ``roi`` (a shapely polygon in the
    dataset's CRS) limits the windows to that region, as both take it.
    """
    samplers = _samplers_module()
    cls = getattr(samplers, "GriddedPatchSampler", None) or samplers.GridGeoSampler
    sampler: Sampler[Any] = cls(dataset, size=size, stride=stride if stride is not None else size,
                                roi=roi)
    return sampler
