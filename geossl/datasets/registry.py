"""The dataset registry: ``--data`` names -> dataset classes, and the only dataset constructor.

Every command builds its dataset here: :func:`get_dataset` (the dataset as it is: ``split``,
``stats``, ``geossl.splits``), :func:`pretraining_dataset` (``pretrain``) and
:func:`evaluation_dataset` (``evaluate``). What differs between datasets is declared by each
dataset class (:class:`geossl.datasets.base.GeosslDataset`: sensors, bands, ids, footprints and
the construction hooks), never by a chain of names here.

A dataset can come from outside the package, in three ways:

* ``geossl.datasets.register("name", MyDataset)`` from Python, then ``--data name``;
* ``--data mypackage.module:MyDataset`` (an import path) on the command line;
* an entry point in the ``geossl.datasets`` group of an installed package
  (``name = "mypackage.module:MyDataset"``).

The class must subclass :class:`~geossl.datasets.base.GeosslDataset` (checked by
:func:`~geossl.datasets.base.check_protocol`). Built-in classes are imported lazily: this keeps
``geossl --help`` fast and lets a dataset whose module (or optional dependency) is missing fail
with a one-line :class:`~geossl.core.errors.ConfigError` naming it, without breaking the others.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from geossl.core.errors import ConfigError, DataError
from geossl.datasets.base import (
    ALL_SPLITS,
    OPTIONAL_KWARGS,
    GeosslDataset,
    NoNativeSplit,
    PretrainingRequest,
    check_protocol,
    construct,
)

__all__ = [
    "ALL_SPLITS",
    "DATASETS",
    "OPTIONAL_KWARGS",
    "NoNativeSplit",
    "dataset_class",
    "evaluation_args",
    "evaluation_dataset",
    "get_dataset",
    "native_split",
    "pretraining_dataset",
    "register",
]

#: ``--data`` name -> (module, class), imported on first use
DATASETS: dict[str, tuple[str, str]] = {
    "sen12ms": ("geossl.datasets.sen12ms", "SEN12MSPatches"),
    "bigearthnet": ("geossl.datasets.bigearthnet", "BigEarthNet"),
    "chips": ("geossl.datasets.chips", "ChipDataset"),
    "aid": ("geossl.datasets.aid", "AID"),
    "ucmerced": ("geossl.datasets.ucmerced", "UCMerced"),
    "eurosat": ("geossl.datasets.eurosat", "EuroSAT"),
    "scenes": ("geossl.datasets.scenefolder", "SceneFolder"),
    "polsar": ("geossl.datasets.polsar", "PolSAR"),
    "ssl4eo": ("geossl.datasets.ssl4eo", "SSL4EOS12"),
    "cifar10": ("geossl.datasets.cifar", "CIFAR10"),
    "mnist": ("geossl.datasets.mnist", "MNIST"),
    "fashionmnist": ("geossl.datasets.mnist", "FashionMNIST"),
    "tinyimagenet": ("geossl.datasets.tinyimagenet", "TinyImageNet"),
    "sen12ms-geo": ("geossl.datasets.sen12ms_geo", "SEN12MSGeoChips"),
    "rasters": ("geossl.datasets.rasters", "SceneRasters"),
}
#: entry-point group of datasets provided by other installed packages
ENTRY_POINTS = "geossl.datasets"
#: classes registered from Python (they need not be importable by name, e.g. defined in a test)
_CLASSES: dict[str, type[GeosslDataset]] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def register(name: str, cls: type[Any], replace: bool = False) -> None:
    """Make ``cls`` available as ``--data name`` to every command (``tile`` aside).

    Args:
        name: lower-case name (letters, digits, ``-``, ``_``).
        cls: a :class:`~geossl.datasets.base.GeosslDataset` subclass.
        replace: allow replacing a dataset of that name.

    Raises:
        ConfigError: bad name, a name already taken (without ``replace``), or a class that does
            not follow the dataset protocol.
    """
    if not _NAME_RE.match(name):
        raise ConfigError(f"invalid dataset name {name!r} (lower-case letters, digits, -, _)")
    if name in DATASETS and not replace:
        raise ConfigError(f"dataset {name!r} is already registered "
                          f"({':'.join(DATASETS[name])}); pass replace=True")
    check_protocol(cls, name)
    DATASETS[name] = (cls.__module__, cls.__qualname__)
    _CLASSES[name] = cls


def unregister(name: str) -> None:
    """Forget a dataset registered with :func:`register` (built-in names stay)."""
    if name in _CLASSES:
        del _CLASSES[name]
        DATASETS.pop(name, None)


def _import(module: str, attr: str, what: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"dataset {what!r} is not available ({module}: {err})") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"dataset {what!r} is not available ({module} has no {attr})")
        obj = getattr(obj, part)
    return obj


def _entry_point(name: str) -> str | None:
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name == name:
            return str(ep.value)
    return None


def dataset_class(name: str) -> type[GeosslDataset]:
    """The dataset class of a ``--data`` value: a registered name or ``module:Class``.

    Raises:
        ConfigError: unknown name, its module cannot be imported, or the class does not
            follow the dataset protocol.
    """
    if name in _CLASSES:
        return _CLASSES[name]
    if name in DATASETS:
        module, attr = DATASETS[name]
        return check_protocol(_import(module, attr, name), name)
    path = name if _PATH_RE.match(name) else _entry_point(name)
    if path is None:
        raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(sorted(DATASETS))} "
                          "or an import path module:Class")
    module, _, attr = path.partition(":")
    return check_protocol(_import(module, attr, name), name)


def native_split(name: str, root: str | os.PathLike[str], **kwargs: Any) -> bool:
    """Whether the dataset under ``root`` has its own train/test split (``split="train"``).

    Folder archives (AID, UC Merced, EuroSAT, ...) have a deterministic stratified split;
    BigEarthNet has the official one of the v2 ``metadata.parquet``; SEN12MS, PolSAR, chips,
    SSL4EO and BigEarthNet v1 have none (:meth:`GeosslDataset.has_split`).

    Raises:
        ConfigError: unknown dataset.
    """
    return dataset_class(name).has_split(Path(root), **kwargs)


def get_dataset(name: str, root: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Build the dataset registered under ``name`` (see :func:`geossl.datasets.base.construct`).

    ``chips`` is built from its index file: ``index=`` when given, else ``ROOT/index.parquet``
    (``ROOT`` may also be the index file itself). BigEarthNet gets ``version=`` from its folder
    layout unless one is given.

    Args:
        name: a ``--data`` value (:func:`dataset_class`).
        root: dataset folder.
        **kwargs: passed to the constructor.

    Returns:
        the dataset.

    Raises:
        ConfigError: unknown dataset or argument, dataset module not available, ``ids`` for a
            class that cannot select samples by id, several sensors for a one-sensor class.
        NoNativeSplit: a named ``split`` for a class without splits.
        DataError: missing folder (and whatever the dataset raises).
    """
    return construct(dataset_class(name), root, name, **kwargs)


def check_sensors(name: str, sensors: Sequence[str]) -> None:
    """Refuse sensors the dataset ``name`` does not declare, before anything is read.

    A dataset declaring no sensors (chips, SSL4EO: decided per instance) accepts any.

    Raises:
        ConfigError: one line naming the dataset, the sensors it has and those asked for.
    """
    declared = dataset_class(name).sensors
    if not declared:
        return
    unknown = [s for s in sensors if s not in declared]
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has sensor(s) {','.join(declared)}; --sensors "
            f"{','.join(sensors)} asks for {','.join(unknown)} (use --sensors "
            f"{','.join(s for s in sensors if s in declared) or declared[0]})")


def pretraining_dataset(
    name: str,
    root: str | os.PathLike[str],
    sensors: Sequence[str],
    pairing: str,
    ids: Sequence[str] | None = None,
    patch_size: int | None = None,
    index: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    labels: str | bool | None = None,
    sampler: str = "grid",
    seed: int = 0,
) -> Any:
    """The dataset ``geossl pretrain`` reads (:meth:`GeosslDataset.for_pretraining`).

    Args:
        name: a ``--data`` value.
        root: dataset folder.
        sensors: ``--sensors`` (checked against the sensors the class declares).
        pairing: pairing mode.
        ids: one side of a split file.
        patch_size: ``--patch-size``.
        index: ``--index`` (chips).
        options: further constructor arguments (``--data-args``, ``--bands``), e.g.
            ``{"holdout": "train"}`` for SEN12MS.
        labels: the online probe and t-SNE snapshots want labelled samples: passed to a
            class whose ``for_pretraining`` takes a ``labels`` argument (one whose labels cost
            extra reads, e.g. SEN12MS: ``True`` or a label scheme such as ``"dfc"``); every
            other dataset carries its labels anyway, or has none.
        sampler: ``--sampler``: where the windows of a geo dataset (``geo_sampled``) come from.
        seed: seed of a random sampler.

    Raises:
        ConfigError: unknown dataset or option, or ``--sampler`` for a dataset that is not
            read through geo queries.
        DataError: missing or unreadable data.
    """
    cls = dataset_class(name)
    check_sensors(name, sensors)
    path = Path(root)
    if not path.exists():
        raise DataError("dataset folder not found", path)
    if isinstance(labels, str) and labels not in cls.label_schemes:
        if not cls.label_schemes:
            raise ConfigError(f"--label-scheme chooses SEN12MS scene labels; {name!r} has its "
                              "own labels")
        raise ConfigError(f"--label-scheme {labels!r}: {name!r} has the schemes "
                          f"{', '.join(cls.label_schemes)}")
    from geossl.datasets.geogrid import SAMPLERS

    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if sampler != "grid" and not cls.geo_sampled:
        raise ConfigError(f"--sampler {sampler} draws windows of a geo dataset (e.g. ssl4eo, "
                          f"sen12ms-geo); {name!r} reads whole samples")
    return cls.for_pretraining(PretrainingRequest(
        root=path, sensors=tuple(sensors), pairing=pairing, ids=ids, patch_size=patch_size,
        index=index, options=dict(options or {}), labels=labels, sampler=sampler, seed=seed))


def evaluation_args(
    name: str,
    root: str | os.PathLike[str],
    data_args: Mapping[str, Any] | None = None,
    label_path: str | os.PathLike[str] | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Constructor arguments of ``name`` for evaluation, the label source included.

    Raises:
        ConfigError: a label raster or column for a dataset that carries its labels, or a
            dataset that needs a label raster and has none.
    """
    return dataset_class(name).evaluation_args(Path(root), dict(data_args or {}), label_path,
                                               label_column)


def evaluation_dataset(
    name: str,
    root: str | os.PathLike[str],
    kwargs: Mapping[str, Any],
    label_column: str | None = None,
    split: str | None = None,
) -> Any:
    """The dataset ``name`` labelled for evaluation (:meth:`GeosslDataset.for_evaluation`).

    Args:
        name: a ``--data`` value.
        root: dataset folder.
        kwargs: constructor arguments (:func:`evaluation_args`).
        label_column: chip-index column with each chip's class (chips).
        split: built-in split to select (``None``/``"all"``: every sample).

    Raises:
        ConfigError: chips without labels.
        NoNativeSplit: ``split`` for a dataset without one.
    """
    args = dict(kwargs)
    if split is not None:
        args["split"] = split
    return get_dataset(name, root, **args).for_evaluation(label_column)


def data_help() -> str:
    """The help of a ``--data`` flag: the names it takes."""
    return ("dataset: " + ", ".join(DATASETS) + ", a name registered with "
            "geossl.datasets.register, or an import path module:Class")
