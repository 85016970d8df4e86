"""The declarations of a dataset, the wrappers around one, and the readers of both.

The lowest module of :mod:`geossl.datasets` (it imports nothing of the package): the dataset
protocol (:mod:`geossl.datasets.base`, which adds the construction hooks), the band selection
(:mod:`geossl.datasets.bands`) and every other module read declarations through it, so that no
module of the package needs another one above it.

* :class:`DeclaredDataset`: what a geossl dataset declares of its samples (``sensors``,
  ``bands``, ``ids``, ``classes``, ``targets``, ``normalized``, ``footprints()``,
  ``labelled_mask()``; see :mod:`geossl.datasets.base` for their meaning).
  :class:`geossl.datasets.base.GeosslDataset` is one; the readers read a ``DeclaredDataset``'s
  declarations as the attributes it declares, never by probing for them.
* :class:`DatasetWrapper`: a dataset that shows the samples of another one (band selection,
  geo windows, the data module's crops, views reduced to a pairing's keys). It names the
  dataset it wraps (:attr:`DatasetWrapper.wrapped`) and the declarations it states itself
  (:meth:`DatasetWrapper.stated`); the readers take every other declaration from the wrapped
  dataset. A class that is both (``SEN12MSGeoChips`` is a ``GeoSamples``) declares its own:
  the readers never unwrap a ``DeclaredDataset``.
* the readers :func:`sample_ids`, :func:`declared_sensors`, :func:`single_sensor`,
  :func:`declared_bands`, :func:`bands_of_sensors`, :func:`class_names`, :func:`targets_of`,
  :func:`footprints_of`, :func:`labelled_mask`, :func:`is_normalized`: the one place that
  reads these declarations of an instance; the rest of geossl imports them from here.
* :func:`plain_declaration`: the one documented fallback, for a plain dataset object handed
  to the library (a user's torch dataset, a TorchGeo dataset, a ``ConcatDataset``), which may
  or may not carry an attribute of that name. It is the only ``getattr`` of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import geopandas as gpd
    import numpy as np

__all__ = [
    "DECLARATIONS", "OPAQUE", "DatasetWrapper", "DeclaredDataset", "bands_of_sensors",
    "class_names", "declared_bands", "declared_sensors", "footprints_of", "is_normalized",
    "labelled_mask", "plain_declaration", "sample_ids", "single_sensor", "targets_of",
]

#: the declarations the readers read (what a :class:`DatasetWrapper` may state)
DECLARATIONS = frozenset({"ids", "sensors", "bands", "classes", "targets", "footprints",
                          "labelled_mask", "normalized"})


class DeclaredDataset:
    """What a geossl dataset declares of its samples (the readers read these attributes).

    The base of :class:`geossl.datasets.base.GeosslDataset`, which adds the class declarations
    the registry reads (``arguments``, ``splits``, ...) and the construction hooks.
    """

    #: required: sensors the samples carry, in order (one: a plain ``image`` stands for it;
    #: ``()``: decided per instance)
    sensors: tuple[str, ...]
    #: the samples are already normalised (the data module applies no normalisation)
    normalized: ClassVar[bool] = False
    #: sample ids in order (``None``: the samples have no ids)
    ids: Sequence[str] | None = None
    #: band names per sensor, or one list for a single sensor (``None``: unknown)
    bands: Mapping[str, Sequence[str]] | Sequence[str] | None = None
    #: class names (empty: unlabelled)
    classes: Sequence[str] = ()
    #: one label per sample, in order (``None``: not known without reading the samples): a
    #: list, an array or a tensor of int labels or multi-hot rows, as each dataset keeps and
    #: types them (``Any`` here, so that a subclass's own annotation is not narrowed)
    targets: Any = None

    def footprints(self) -> gpd.GeoDataFrame | None:
        """Footprints of the samples (``chip_id`` = :attr:`ids`), or ``None`` (none known)."""
        return None

    def labelled_mask(self) -> np.ndarray | None:
        """Which samples have a label (``None``: all of them, or unknown without loading)."""
        return None


class DatasetWrapper:
    """A dataset that shows the samples of another one (band selection, windows, views).

    A mixin for geossl's wrappers (:class:`~geossl.datasets.bands.SelectBands`,
    :class:`~geossl.datasets.geogrid.GeoSamples`, the data module's ``SSLSamples``,
    :class:`~geossl.data.pairs.PairedView`, ...): a wrapper names the dataset it wraps
    (:attr:`wrapped`) and the declarations it states itself (:meth:`stated`); the readers take
    those from :meth:`stated` and every other declaration from :attr:`wrapped`. Nothing else
    of a wrapper is read.
    """

    @property
    def wrapped(self) -> Any:
        """The wrapped dataset (the readers read every declaration not stated from it)."""
        raise NotImplementedError(f"{type(self).__name__} does not name the dataset it wraps")

    def stated(self) -> Mapping[str, Any]:
        """The declarations (names of :data:`DECLARATIONS`) this wrapper states itself.

        A value stands for the attribute: ``footprints`` and ``labelled_mask`` are the
        callables (or ``None``), as a dataset declares them.
        """
        return {}


#: what a wrapper that windows, reorders, subsets or crops the samples states: no per-sample
#: declarations (the wrapped dataset's ids, labels or footprints would not be the wrapper's
#: samples); its ``sensors``, ``bands``, ``classes`` and ``normalized`` are the wrapped ones
OPAQUE: Mapping[str, Any] = MappingProxyType({
    "ids": None, "targets": None, "footprints": None, "labelled_mask": None})

#: no wrapper states the declaration: read it from the dataset itself
_UNSTATED = object()


def _owner(dataset: Any, name: str) -> tuple[Any, Any]:
    """``(owner, value)``: unwraps :class:`DatasetWrapper` until one states ``name``.

    ``value`` is that statement, or ``_UNSTATED`` when ``owner`` is no wrapper (or a
    :class:`DeclaredDataset`, whose declarations are its own).
    """
    while isinstance(dataset, DatasetWrapper) and not isinstance(dataset, DeclaredDataset):
        stated = dataset.stated()
        if name in stated:
            return dataset, stated[name]
        dataset = dataset.wrapped
    return dataset, _UNSTATED


def _declared(dataset: Any, name: str, read: Callable[[Any], Any], default: Any = None) -> Any:
    """The declaration ``name`` of ``dataset`` (object or class), unwrapping wrappers.

    ``read`` reads it of a :class:`DeclaredDataset` (an attribute it declares); a plain
    dataset is read by :func:`plain_declaration`.
    """
    owner, value = _owner(dataset, name)
    if value is not _UNSTATED:
        return value
    cls = owner if isinstance(owner, type) else type(owner)
    if issubclass(cls, DeclaredDataset):
        return read(owner)
    return plain_declaration(owner, name, default)


def plain_declaration(dataset: Any, name: str, default: Any = None) -> Any:
    """The declaration ``name`` of a plain dataset (not geossl's own), or ``default``.

    The one fallback of the readers, and the only place of this module that reads an
    attribute by name: a dataset object that is neither a :class:`DeclaredDataset` nor a
    :class:`DatasetWrapper` (a user's torch dataset handed to the library directly, a TorchGeo
    dataset, a ``ConcatDataset``) is read by attribute name, as it may or may not have it.
    geossl's own datasets never come here: they declare every name (:class:`DeclaredDataset`)
    or state / forward it (:class:`DatasetWrapper`).
    """
    return getattr(dataset, name, default)


# --------------------------------------------------------------------------------------------
# reading the declarations
# --------------------------------------------------------------------------------------------
def sample_ids(dataset: Any) -> list[str] | None:
    """The dataset's ``ids`` as strings, in order (``None`` when it has none)."""
    ids = _declared(dataset, "ids", lambda d: d.ids)
    if ids is None or callable(ids):
        return None
    return [str(i) for i in ids]


def declared_sensors(dataset: Any) -> tuple[str, ...]:
    """The sensors a dataset (class or object) declares (``()`` when it declares none)."""
    # ``sensors`` is the one declaration without a class default (the registry refuses a class
    # that lacks it); an unregistered subclass handed to the library directly may still lack
    # it, and reads as declaring none, as a plain dataset does
    sensors = _declared(dataset, "sensors", lambda d: plain_declaration(d, "sensors", ()), ())
    return tuple(str(s) for s in sensors) if isinstance(sensors, tuple | list) else ()


def single_sensor(dataset: Any) -> str | None:
    """The sensor a plain ``image`` stands for: the one sensor its class declares, else ``None``.

    A wrapper's class (:class:`DatasetWrapper` that is no :class:`DeclaredDataset`) declares
    none.
    """
    cls = dataset if isinstance(dataset, type) else type(dataset)
    if issubclass(cls, DatasetWrapper) and not issubclass(cls, DeclaredDataset):
        return None
    sensors = declared_sensors(cls)
    return sensors[0] if len(sensors) == 1 else None


def declared_bands(dataset: Any) -> Mapping[str, Sequence[str]] | Sequence[str] | None:
    """The dataset's ``bands`` as it declares them (a mapping per sensor, one list, or ``None``)."""
    bands = _declared(dataset, "bands", lambda d: d.bands)
    return bands if isinstance(bands, Mapping | list | tuple) else None


def bands_of_sensors(dataset: Any, sensors: Sequence[str]) -> dict[str, list[str]] | None:
    """Band names of ``sensors`` from the dataset's ``bands`` (``None`` when none is known).

    A list of names (a one-sensor dataset) stands for the sensor when one is asked for.
    """
    names = declared_bands(dataset)
    known: dict[str, Sequence[str]] = {}
    if isinstance(names, Mapping):
        known = {str(k): v for k, v in names.items()}
    elif isinstance(names, list | tuple) and len(sensors) == 1:
        known = {sensors[0]: names}
    out = {s: [str(b) for b in known[s]] for s in sensors if s in known and known[s] is not None}
    return out or None


def class_names(dataset: Any) -> list[Any] | None:
    """The dataset's ``classes`` as a list (``None`` when it declares none)."""
    classes = _declared(dataset, "classes", lambda d: d.classes)
    return None if classes is None else list(classes)


def targets_of(dataset: Any) -> Any:
    """The dataset's ``targets`` (one label per sample, in order), or ``None``."""
    return _declared(dataset, "targets", lambda d: d.targets)


def footprints_of(dataset: Any) -> gpd.GeoDataFrame | None:
    """The dataset's ``footprints()`` (``None`` when it declares none)."""
    method = _declared(dataset, "footprints", lambda d: d.footprints)
    return method() if callable(method) else None


def labelled_mask(dataset: Any) -> np.ndarray | None:
    """The dataset's ``labelled_mask()`` (``None``: every sample is labelled, as far as known)."""
    method = _declared(dataset, "labelled_mask", lambda d: d.labelled_mask)
    return method() if callable(method) else None


def is_normalized(dataset: Any) -> bool:
    """Whether the dataset declares its samples already normalised."""
    return bool(_declared(dataset, "normalized", lambda d: d.normalized, False))
