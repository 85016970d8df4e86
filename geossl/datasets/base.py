"""The dataset protocol: what a dataset declares so that every command can use it.

A dataset is a map-style dataset of sample dicts (``image`` or ``image_<sensor>``, ``label``,
``id``, ... see ``docs/architecture.md``) whose class subclasses :class:`GeosslDataset` (and,
as a rule, TorchGeo's ``NonGeoDataset`` or ``GeoDataset``) and declares:

==========================  =================================================================
``sensors`` (class)         required: the sensors its samples carry, in order. One sensor:
                            samples may carry a plain ``image`` standing for it (AID:
                            ``("rgb",)``); several: ``image_<sensor>`` keys (SEN12MS:
                            ``("s1", "s2")``); ``()``: decided per instance (chips:
                            ``--sensors``).
``arguments`` (class)       required: the keyword arguments its constructor takes after the
                            first (the folder, or the chip index): ``ids``, ``sensors`` or
                            ``sensor``, ``split``, ``bands``, ``index`` and its own options.
                            The registry passes only these, and refuses the others by name.
``splits`` (class)          built-in splits its ``split=`` argument selects (``train``,
                            ``test``, ...); empty when it has none.
``normalized`` (class)      its samples are already normalised (no per-sensor normalisation).
``ids``                     sample ids, in sample order (splits refer to them), or ``None``.
``bands``                   band names: per sensor (a mapping), or one list when the samples
                            carry one sensor; ``None`` when unknown.
``classes``                 class names (``label`` indexes them); empty when unlabelled.
``targets``                 one label per sample, in order, or ``None``.
``footprints()``            a GeoDataFrame of sample footprints (``chip_id`` = ``ids``, with
                            ``label`` when known), or ``None`` (an image archive): overlap-aware
                            splits need it.
``labelled_mask()``         which samples have a label (``None``: all, or unknown).
==========================  =================================================================

and, to be built by the registry (:mod:`geossl.datasets.registry`, the only constructor), the
class hooks :meth:`GeosslDataset.layout_args`, :meth:`~GeosslDataset.locate`,
:meth:`~GeosslDataset.has_split`, :meth:`~GeosslDataset.for_pretraining`,
:meth:`~GeosslDataset.evaluation_args` and the method :meth:`~GeosslDataset.for_evaluation`,
whose defaults fit a dataset that takes ``root`` (plus, optionally, ``ids``, ``sensors`` /
``sensor``, ``split``) and carries its labels.

The registry checks a class when it is registered or first used (:func:`check_protocol`): a
class missing a required declaration is refused with one line naming the class and the
attribute. Nothing is read from the constructor's signature.

Every default here is what the commands assume of a dataset that does not override it. The
declarations of the samples (:class:`~geossl.datasets.protocol.DeclaredDataset`, the base of
:class:`GeosslDataset`), the wrappers around a dataset
(:class:`~geossl.datasets.protocol.DatasetWrapper`) and the readers :func:`sample_ids`,
:func:`declared_sensors`, :func:`declared_bands`, :func:`bands_of_sensors`, :func:`single_sensor`,
:func:`class_names`, :func:`targets_of`, :func:`footprints_of`, :func:`labelled_mask`,
:func:`is_normalized` live in :mod:`geossl.datasets.protocol`, the lowest module of the package
(below :mod:`geossl.datasets.bands`, which this module uses); import them from there. The
readers are the one place that reads these declarations of an instance: a wrapper a hook
returns names the dataset it wraps and what it states itself, and a plain dataset object
handed to the library directly is read through the one documented fallback,
:func:`~geossl.datasets.protocol.plain_declaration`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from geossl.core.errors import ConfigError, DataError
from geossl.core.pairing import check_sensor_name
from geossl.datasets.bands import SelectBands
from geossl.datasets.protocol import DeclaredDataset

if TYPE_CHECKING:
    from torch.utils.data import Dataset

PathLike = str | os.PathLike[str]


#: keyword arguments commands pass to every dataset; dropped for a class that does not take them
#: (``split`` only when ``None`` or ``"all"``: a named split a class cannot select is an error)
OPTIONAL_KWARGS = frozenset({"ids", "sensors", "index", "split"})
#: class attributes every dataset class declares itself (no default in :class:`GeosslDataset`)
REQUIRED = ("sensors", "arguments")
#: values of ``split`` that select every sample (safe to drop for a class without splits)
ALL_SPLITS = (None, "all")


class NoNativeSplit(ConfigError):
    """The dataset has no built-in train/test split (a split file, or one made now, is needed)."""


@dataclass(frozen=True)
class PretrainingRequest:
    """What ``geossl pretrain`` asks of a dataset (:meth:`GeosslDataset.for_pretraining`).

    One argument instead of a long signature that every override repeats: a dataset reads
    the fields it needs, and a field added later reaches it without changing overrides.

    Attributes:
        root: dataset folder.
        sensors: sensors to load (``--sensors``, checked against the declared ones).
        pairing: pairing mode (``temporal`` asks for a second date).
        ids: one side of a split file: restrict to these sample ids (``None``: all).
        patch_size: ``--patch-size`` (datasets cut on a grid choose their default).
        index: ``--index`` (chips).
        options: further constructor arguments (``--data-args``, ``bands`` from ``--bands``).
        labels: the online probe and t-SNE snapshots want labelled samples: ``True``, or a
            scheme named by ``--label-scheme`` (one of the class's ``label_schemes``); only
            datasets whose labels cost extra reads look at it.
        sampler: where the windows of a geo dataset come from (``--sampler``; see
            :data:`geossl.datasets.geogrid.SAMPLERS`); only classes with ``geo_sampled`` take
            another value than ``grid``.
        seed: seed of a random sampler.
    """

    root: Path
    sensors: Sequence[str]
    pairing: str
    ids: Sequence[str] | None = None
    patch_size: int | None = None
    index: PathLike | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    labels: str | bool | None = None
    sampler: str = "grid"
    seed: int = 0


class GeosslDataset(DeclaredDataset):
    """The declarations and construction hooks of a geossl dataset (see the module docstring).

    A mixin: subclass it together with a TorchGeo / torch dataset class, e.g.
    ``class MyScenes(GeosslDataset, NonGeoDataset)``, and set what differs from the defaults.
    The declarations of the samples (``sensors``, ``ids``, ``bands``, ``classes``,
    ``targets``, ``normalized``, ``footprints()``, ``labelled_mask()``) and their defaults are
    :class:`~geossl.datasets.protocol.DeclaredDataset`'s.
    """

    #: required: keyword arguments of the constructor after the first (the folder or the index)
    arguments: ClassVar[tuple[str, ...]]
    #: built-in splits the ``split`` argument selects
    splits: ClassVar[tuple[str, ...]] = ()
    #: label schemes ``--label-scheme`` may choose for pretraining (``PretrainingRequest.labels``)
    label_schemes: ClassVar[tuple[str, ...]] = ()
    #: pretraining reads geo queries of a TorchGeo GeoDataset, so ``--sampler`` (``grid``,
    #: ``torchgeo-grid``, ``torchgeo-random``; ``PretrainingRequest.sampler``) chooses them
    geo_sampled: ClassVar[bool] = False

    # -- construction hooks (called by geossl.datasets.registry) ---------------------------
    @classmethod
    def layout_args(cls, root: Path) -> dict[str, Any]:
        """Constructor arguments read from the folder layout (e.g. a format version)."""
        return {}

    @classmethod
    def locate(cls, root: Path, index: PathLike | None = None) -> Path:
        """The path the constructor takes first (the dataset folder; chips: their index).

        Raises:
            DataError: it does not exist.
        """
        return root

    @classmethod
    def has_split(cls, root: Path, **kwargs: Any) -> bool:
        """Whether the data under ``root`` has a built-in train/test split (``split=``)."""
        return bool(cls.splits)

    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> Dataset[dict[str, Any]]:
        """The dataset ``geossl pretrain`` reads.

        Default: the constructor with ``sensors`` and ``ids`` (one side of a split), and
        the ``options``.

        Args:
            request: what ``geossl pretrain`` asks for (:class:`PretrainingRequest`).
        """
        return construct(cls, request.root, "", sensors=list(request.sensors), ids=request.ids,
                         index=request.index, **request.options)

    @classmethod
    def evaluation_args(
        cls,
        root: Path,
        args: Mapping[str, Any],
        label_path: PathLike | None = None,
        label_column: str | None = None,
    ) -> dict[str, Any]:
        """Constructor arguments for ``geossl evaluate``, checked before anything is read.

        ``args`` are ``--data-args``; ``label_path`` / ``label_column`` the label source.

        Raises:
            ConfigError: a label raster or a label column for a dataset that carries its labels.
        """
        if label_path is not None:
            raise ConfigError("--label-path is the class raster of --data polsar; other "
                              "datasets carry their labels")
        if label_column is not None:
            raise ConfigError("--label-column names a column of the chip index (--data chips); "
                              f"{cls.__name__} carries its labels")
        return dict(args)

    def for_evaluation(self, label_column: str | None = None) -> Dataset[dict[str, Any]]:
        """This dataset, labelled for evaluation (chips take their labels from a column)."""
        return self  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# checking a class against the protocol
# --------------------------------------------------------------------------------------------
def check_protocol(cls: Any, name: str | None = None) -> type[GeosslDataset]:
    """Refuse a class that does not declare the dataset protocol.

    Raises:
        ConfigError: not a :class:`GeosslDataset` subclass, a required declaration
            (:data:`REQUIRED`) missing, or a declaration of the wrong kind; one line naming the
            class and the attribute.
    """
    if not (isinstance(cls, type) and issubclass(cls, GeosslDataset)):
        raise ConfigError(f"{f'dataset {name!r} ({cls!r})' if name else repr(cls)} is not a "
                          "dataset class: subclass geossl.datasets.GeosslDataset and declare "
                          f"{' and '.join(REQUIRED)} (docs/datasets.md)")
    what = f"dataset {name!r} ({cls.__module__}.{cls.__qualname__})" if name else \
        f"dataset class {cls.__module__}.{cls.__qualname__}"
    declared = {k for c in cls.__mro__ if c is not GeosslDataset and issubclass(c, GeosslDataset)
                for k in vars(c)}
    for attr in REQUIRED:
        if attr not in declared:
            raise ConfigError(f"{what} does not declare {attr!r} (a class attribute: "
                              f"{_HOW[attr]}; docs/datasets.md)")
    for attr in ("sensors", "splits", "arguments"):
        value = vars_of(cls, attr)
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{what}: {attr} must be a tuple of names, got {value!r}")
    for sensor in cls.sensors:
        check_sensor_name(sensor)
    if not isinstance(cls.normalized, bool):
        raise ConfigError(f"{what}: normalized must be True or False")
    return cls


#: what each required declaration holds, for the error message
_HOW = {
    "sensors": "the sensors its samples carry, e.g. ('s2',), or () when decided per instance",
    "arguments": "the keyword arguments its constructor takes after the folder, e.g. "
                 "('ids', 'split')",
}


def vars_of(cls: type[Any], attr: str) -> Any:
    """The class attribute ``attr`` of ``cls`` as its nearest class in the MRO declares it."""
    for c in cls.__mro__:
        if attr in vars(c):
            return vars(c)[attr]
    raise AttributeError(attr)


# --------------------------------------------------------------------------------------------
# the generic constructor
# --------------------------------------------------------------------------------------------
def construct(cls: type[GeosslDataset], root: PathLike, name: str = "", **kwargs: Any) -> Any:
    """Build ``cls`` from ``root`` and keyword arguments, the way every command does.

    What the class accepts is its declared :attr:`GeosslDataset.arguments`, never its signature.
    The first argument is :meth:`GeosslDataset.locate` (the folder, or the chip index).
    A class that reads one sensor (it declares ``sensor``, e.g. ``ssl4eo``: ``s1``, ``s2a`` or
    ``s2c``) gets ``sensors=[name]`` as ``sensor=name``; several sensors are an error there.
    Keyword arguments of :data:`OPTIONAL_KWARGS` that the class does not declare, or that are
    ``None``, are dropped; any other undeclared one is an error. With ``ids`` (one side of a saved
    split) a class with a ``split`` argument gets ``split="all"`` unless one is given, so the
    ids alone choose the samples; a class that cannot take ``ids`` is then an error (never
    silently all samples). A named ``split`` (other than ``"all"``) for a class without one is
    an error too (:class:`NoNativeSplit`): dropping it would give every split the same samples.
    :meth:`GeosslDataset.layout_args` fill the arguments not given. ``bands`` (``--bands``)
    goes to a class that selects bands itself (chips read only those); any other class is
    wrapped in :class:`~geossl.datasets.bands.SelectBands`, which keeps the named bands of
    every sample (BigEarthNet ``B04,B03,B02``).

    Raises:
        ConfigError: unknown argument or band, ``ids`` for a class that cannot select samples by id,
            several sensors for a one-sensor class.
        NoNativeSplit: a named ``split`` for a class without splits.
        DataError: missing folder (and whatever the dataset raises).
    """
    label = repr(name or cls.__name__)
    path = Path(root)
    if not path.exists():
        raise DataError("dataset folder not found", path)
    takes = frozenset(cls.arguments)
    index = kwargs.pop("index", None)
    first = cls.locate(path, index)
    for key, value in cls.layout_args(path).items():
        if key in takes and kwargs.get(key) is None:
            kwargs[key] = value
    sensors = kwargs.get("sensors")
    if sensors is not None and "sensors" not in takes and "sensor" in takes \
            and "sensor" not in kwargs:
        chosen = sensors.split(",") if isinstance(sensors, str) else list(sensors)
        if len(chosen) != 1:
            raise ConfigError(f"dataset {label} reads one sensor at a time, got "
                              f"{','.join(map(str, chosen))}")
        kwargs = {k: v for k, v in kwargs.items() if k != "sensors"}
        kwargs["sensor"] = str(chosen[0])
    if kwargs.get("split") not in ALL_SPLITS and "split" not in takes:
        # silently dropping it would make every "split" the whole dataset: train == test
        raise NoNativeSplit(f"dataset {label} has no built-in split {kwargs['split']!r}: give "
                            "--splits FILE (written by `geossl split`)")
    if kwargs.get("ids") is not None and "split" in takes and "split" not in kwargs:
        kwargs["split"] = "all"  # ids pick the samples; the class's own default split must not
    if kwargs.get("ids") is not None and "ids" not in takes:
        # silently dropping the ids would train or evaluate on every sample, test side included
        raise ConfigError(f"dataset {label} cannot be restricted to the ids of a split file")
    args: dict[str, Any] = {}
    select: Any = None
    for key, value in kwargs.items():
        if key in takes:
            if value is not None or key not in OPTIONAL_KWARGS:
                args[key] = value
        elif key == "bands":
            # the class reads every band: keep the asked ones from each sample, by name
            select = value
        elif key not in OPTIONAL_KWARGS:
            raise ConfigError(f"dataset {label} takes no argument {key!r} (it declares "
                              f"{', '.join(cls.arguments) or 'none'})")
    dataset = cls(first, **args)  # type: ignore[call-arg]
    if select:
        return SelectBands(dataset, select)  # type: ignore[arg-type]
    return dataset
