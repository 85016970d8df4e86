"""Dataset names (the ``--data`` flag) -> dataset classes, imported lazily.

Lazy imports keep ``geossl --help`` fast and let a dataset whose module is absent (or whose
optional dependency is missing) fail with a one-line :class:`~geossl.errors.ConfigError` naming it,
without breaking the others.
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

from geossl.errors import ConfigError, DataError

#: ``--data`` name -> (module, class)
DATASETS: dict[str, tuple[str, str]] = {
    "sen12ms": ("geossl.datasets.sen12ms", "SEN12MSPatches"),
    "bigearthnet": ("geossl.datasets.bigearthnet", "BigEarthNet"),
    "chips": ("geossl.datasets.chips", "ChipDataset"),
    "aid": ("geossl.datasets.aid", "AID"),
    "ucmerced": ("geossl.datasets.aid", "UCMerced"),
    "eurosat": ("geossl.datasets.aid", "EuroSAT"),
    "scenes": ("geossl.datasets.aid", "SceneFolder"),
    "polsar": ("geossl.datasets.polsar", "PolSAR"),
    "ssl4eo": ("geossl.datasets.ssl4eo", "SSL4EOS12"),
}

#: keyword arguments commands pass to every dataset; dropped for a class that does not take them
#: (``split`` only when ``None`` or ``"all"``: a named split a class cannot select is an error)
OPTIONAL_KWARGS = frozenset({"ids", "sensors", "index", "split"})
#: values of ``split`` that select every sample (safe to drop for a class without splits)
ALL_SPLITS = (None, "all")


class NoNativeSplit(ConfigError):
    """The dataset has no built-in train/test split (a split file, or one made now, is needed)."""


def bigearthnet_version(root: str | os.PathLike[str]) -> int:
    """BigEarthNet version of the layout under ``root`` (1 or 2), read from its folders.

    v2 (reBEN): ``BigEarthNet-S2/`` or ``metadata.parquet``; v1: ``BigEarthNet-v1.0/``, or
    ``root`` is that folder itself (``<patch>/<patch>_labels_metadata.json``). Anything else is
    taken as v2, whose reader then says what is missing.
    """
    from geossl.datasets import bigearthnet as ben

    path = Path(root)
    if (path / ben.V2_S2_DIR).is_dir() or (path / ben.V2_METADATA).is_file():
        return 2
    if (path / ben.V1_S2_DIR).is_dir() or (path / ben.V1_S1_DIR).is_dir():
        return 1
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir() and (Path(entry.path) /
                                       f"{entry.name}_labels_metadata.json").is_file():
                    return 1
    except OSError:
        pass
    return 2


def native_split(name: str, root: str | os.PathLike[str], **kwargs: Any) -> bool:
    """Whether the dataset under ``root`` has its own train/test split (``split="train"``).

    Folder archives (AID, UC Merced, EuroSAT, ...) have a deterministic stratified split;
    BigEarthNet has the official one of the v2 ``metadata.parquet``; SEN12MS, PolSAR, chips,
    SSL4EO and BigEarthNet v1 have none.

    Raises:
        ConfigError: unknown dataset.
    """
    cls = dataset_class(name)
    if "split" not in inspect.signature(cls).parameters:
        return False
    if name == "bigearthnet":
        from geossl.datasets import bigearthnet as ben

        version = kwargs.get("version") or bigearthnet_version(root)
        meta = Path(root) / ben.V2_METADATA
        if version != 2 or not meta.is_file():
            return False
        try:
            import pyarrow.parquet as pq

            return "split" in pq.read_schema(meta).names
        except Exception:  # unreadable: the reader reports it when the dataset is built
            return True
    return True


def dataset_class(name: str) -> type[Any]:
    """The class registered under ``name``.

    Raises:
        ConfigError: unknown name, or its module cannot be imported.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; use one of {', '.join(sorted(DATASETS))}")
    module, cls = DATASETS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"dataset {name!r} is not available ({module}: {err})") from err
    if not hasattr(mod, cls):
        raise ConfigError(f"dataset {name!r} is not available ({module} has no {cls})")
    return getattr(mod, cls)  # type: ignore[no-any-return]


def get_dataset(name: str, root: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Build the dataset registered under ``name``.

    ``chips`` is built from its index file: ``index=`` when given, else ``ROOT/index.parquet``
    (``ROOT`` may also be the index file itself). A class that reads one sensor (a ``sensor``
    argument, e.g. ``ssl4eo``: ``s1``, ``s2a`` or ``s2c``) gets ``sensors=[name]`` as
    ``sensor=name``; several sensors are an error there. Keyword arguments of
    :data:`OPTIONAL_KWARGS` that the class does not accept, or that are ``None``, are dropped; any
    other unknown one is an error. With ``ids`` (one side of a saved split) a class with a
    ``split`` argument gets ``split="all"`` unless one is given, so the ids alone choose the
    samples; a class that cannot take ``ids`` is then an error (never silently all samples).
    A named ``split`` (other than ``"all"``) for a class without one is an error too
    (:class:`NoNativeSplit`): dropping it would give every split the same samples. BigEarthNet
    gets ``version=`` from its folder layout (:func:`bigearthnet_version`) unless one is given.

    Args:
        name: a key of :data:`DATASETS`.
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
    cls = dataset_class(name)
    path = Path(root)
    if not path.exists():
        raise DataError("dataset folder not found", path)
    params = inspect.signature(cls).parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    first: Any = path
    if name == "chips":
        index = kwargs.pop("index", None)
        first = Path(index) if index else (path if path.is_file() else path / "index.parquet")
        if not first.exists():
            raise DataError("chip index not found (write one with `geossl tile` or "
                            "`geossl index`)", first)
    sensors = kwargs.get("sensors")
    if sensors is not None and "sensors" not in params and "sensor" in params \
            and "sensor" not in kwargs:
        chosen = sensors.split(",") if isinstance(sensors, str) else list(sensors)
        if len(chosen) != 1:
            raise ConfigError(f"dataset {name!r} reads one sensor at a time, got "
                              f"{','.join(map(str, chosen))}")
        kwargs = {k: v for k, v in kwargs.items() if k != "sensors"}
        kwargs["sensor"] = str(chosen[0])
    if name == "bigearthnet" and "version" in params and kwargs.get("version") is None:
        kwargs["version"] = bigearthnet_version(path)
    if kwargs.get("split") not in ALL_SPLITS and "split" not in params and not var_kw:
        # silently dropping it would make every "split" the whole dataset: train == test
        raise NoNativeSplit(f"dataset {name!r} has no built-in split {kwargs['split']!r}: give "
                            "--splits FILE (written by `geossl split`)")
    if kwargs.get("ids") is not None and "split" in params and "split" not in kwargs:
        kwargs["split"] = "all"  # ids pick the samples; the class's own default split must not
    if kwargs.get("ids") is not None and "ids" not in params and not var_kw:
        # silently dropping the ids would train or evaluate on every sample, test side included
        raise ConfigError(f"dataset {name!r} cannot be restricted to the ids of a split file")
    args: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in params or var_kw:
            if value is not None or key not in OPTIONAL_KWARGS:
                args[key] = value
        elif key not in OPTIONAL_KWARGS:
            raise ConfigError(f"dataset {name!r} takes no argument {key!r}")
    return cls(first, **args)
