"""Band selection for any dataset: ``--bands B04,B03,B02`` keeps those bands, in that order.

:class:`SelectBands` wraps a dataset and slices the image tensors of every sample
(``image`` and ``image_<sensor>``) to the chosen bands. Bands are named as the dataset names
them (:func:`band_names`: Sentinel-2 ``B01`` .. ``B12``/``B8A``, Sentinel-1 ``VV``/``VH``, ``R``,
``G``, ``B`` for 8-bit RGB archives, ``gray`` for MNIST), case-insensitively, or given by
0-based position (``0,1,2``) for a dataset whose bands have no names.

A flat list applies to the one sensor whose bands include all of it (``B04,B03,B02`` on
BigEarthNet or SEN12MS with S1 and S2 selects from S2 and leaves S1 whole); a mapping
``{s2: [B04, B03, B02], s1: [VV]}`` (or the string ``s2=B04,B03,B02;s1=VV``) names
the sensor of each list. The wrapper's ``bands`` attribute holds the selected names, so the
band metadata written into checkpoints and the per-band statistics of ``--stats`` follow the
selection; every other attribute (``ids``, ``classes``, ``targets``, ``footprints``, ...) is the
wrapped dataset's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from geossl.core.errors import ConfigError
from geossl.datasets.protocol import DatasetWrapper, declared_bands, declared_sensors

#: key of a dataset's single unnamed-sensor image (``sample["image"]``)
PLAIN = ""


def parse_bands(value: Any) -> list[str] | dict[str, list[str]] | None:
    """``"B04,B03,B02"`` -> list; ``"s2=B04,B03;s1=VV"`` or a mapping -> per-sensor lists.

    Raises:
        ConfigError: an empty selection or a malformed item.
    """
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, Mapping):
        out = {str(k): _names(v) for k, v in value.items()}
        if not out or any(not v for v in out.values()):
            raise ConfigError(f"--bands: empty band list in {dict(value)}")
        return out
    if isinstance(value, str) and "=" in value:
        pairs: dict[str, list[str]] = {}
        for item in (x for x in value.split(";") if x.strip()):
            sensor, sep, listed = item.partition("=")
            if not sep or not sensor.strip() or not _names(listed):
                raise ConfigError(f"--bands expects B1,B2 or SENSOR=B1,B2;SENSOR=B3, got "
                                  f"{value!r}")
            pairs[sensor.strip()] = _names(listed)
        return pairs
    flat = _names(value)
    if not flat:
        raise ConfigError(f"--bands: no band in {value!r}")
    return flat


def _names(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def _leaf(dataset: Any) -> Any:
    """The first part of a ``ConcatDataset`` (its parts share their bands), else ``dataset``."""
    while isinstance(dataset, ConcatDataset):
        dataset = dataset.datasets[0]
    return dataset


def band_names(dataset: Any) -> dict[str, list[str]]:
    """Band names per sensor of a dataset (key :data:`PLAIN` for a plain ``image``).

    From the dataset's ``bands`` declaration (a list, or a mapping per sensor), read by
    :func:`geossl.datasets.protocol.declared_bands` (which unwraps geossl's wrappers); empty
    when the dataset does not name its bands.
    """
    leaf = _leaf(dataset)
    names = declared_bands(leaf)
    if isinstance(names, Mapping):
        return {str(k): [str(b) for b in v] for k, v in names.items() if v is not None}
    if isinstance(names, list | tuple) and names:
        sensors = declared_sensors(leaf)
        if len(sensors) == 1:
            return {sensors[0]: [str(b) for b in names]}
        return {PLAIN: [str(b) for b in names]}
    return {}


def _positions(wanted: Sequence[str], have: Sequence[str] | None, where: str) -> list[int]:
    lower = [h.lower() for h in have] if have else []
    out = []
    for name in wanted:
        if name.lower() in lower:
            out.append(lower.index(name.lower()))
        elif name.isdigit() and (not have or int(name) < len(have)):
            out.append(int(name))
        else:
            known = f"; its bands: {', '.join(have)}" if have else \
                " (it does not name its bands: give 0-based positions)"
            raise ConfigError(f"--bands: no band {name!r} in {where}{known}")
    if len(set(out)) != len(out):
        raise ConfigError(f"--bands: a band is selected twice ({', '.join(wanted)})")
    return out


def resolve_selection(
    selection: Sequence[str] | Mapping[str, Sequence[str]], names: Mapping[str, Sequence[str]],
    sensors: Sequence[str] | None = None,
) -> dict[str, list[int]]:
    """Positions to keep per sensor (key :data:`PLAIN` for a plain ``image``).

    Args:
        selection: a flat list of band names/positions, or lists per sensor.
        names: the dataset's band names per sensor (:func:`band_names`).
        sensors: the sensors in use when the dataset does not say (e.g. ``["rgb"]``).

    Raises:
        ConfigError: unknown sensor or band, or a flat list that fits no sensor (or several).
    """
    if isinstance(selection, Mapping):
        out = {}
        for sensor, wanted in selection.items():
            key = sensor if sensor in names else PLAIN if PLAIN in names and \
                (not sensors or sensor in sensors) else None
            if key is None and not names:
                key = sensor
            if key is None:
                raise ConfigError(f"--bands names sensor {sensor!r}; the data has "
                                  f"{', '.join(names) or 'unnamed bands'}")
            out[key] = _positions(list(wanted), names.get(key), f"sensor {sensor}")
        return out
    wanted = list(selection)
    if len(names) <= 1:
        key = next(iter(names), PLAIN)
        return {key: _positions(wanted, names.get(key), f"sensor {key or 'image'}")}
    fits = [s for s, have in names.items()
            if all(w.lower() in [h.lower() for h in have] for w in wanted)]
    if len(fits) != 1:
        why = "no sensor has all of them" if not fits else f"{' and '.join(fits)} both have them"
        raise ConfigError(f"--bands {','.join(wanted)}: {why}; name the sensor, e.g. "
                          f"{{s2: [B04, B03, B02]}} (sensors: {', '.join(names)})")
    return {fits[0]: _positions(wanted, names[fits[0]], f"sensor {fits[0]}")}


class SelectBands(DatasetWrapper, Dataset[dict[str, Any]]):
    """A dataset whose samples keep only the selected bands (see the module docstring).

    A :class:`~geossl.datasets.protocol.DatasetWrapper`: it states ``bands`` (the selected
    ones); every other declaration is the wrapped dataset's.
    """

    @property
    def wrapped(self) -> Any:
        """The dataset whose bands are selected."""
        return self.dataset

    def stated(self) -> Mapping[str, Any]:
        """``bands``: the selected band names."""
        return {"bands": self.bands}

    def __init__(
        self,
        dataset: Dataset[dict[str, Any]],
        selection: Sequence[str] | Mapping[str, Sequence[str]] | str,
        sensors: Sequence[str] | None = None,
    ) -> None:
        """Wrap ``dataset``.

        Args:
            dataset: any dataset of sample dicts.
            selection: band names/positions (see :func:`parse_bands`).
            sensors: the sensors in use, for a dataset that does not list them.

        Raises:
            ConfigError: unknown bands or sensors.
        """
        parsed = parse_bands(selection) if isinstance(selection, str) else selection
        if parsed is None:
            raise ConfigError("--bands: empty selection")
        self.dataset = dataset
        names = band_names(dataset)
        self.keep = resolve_selection(parsed, names, sensors)
        self.index = {k: torch.as_tensor(v, dtype=torch.long) for k, v in self.keep.items()}
        selected = {k: [names[k][i] if names.get(k) else str(i) for i in v]
                    for k, v in self.keep.items()}
        whole = {k: v for k, v in names.items() if k not in selected}
        merged = {**whole, **selected}
        #: band names after the selection (a list for a one-sensor dataset)
        self.bands: list[str] | dict[str, list[str]] = (
            next(iter(merged.values())) if len(merged) == 1 else merged)

    def __len__(self) -> int:
        """Length of the wrapped dataset."""
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: Any) -> dict[str, Any]:
        """The wrapped sample with its images sliced to the selected bands."""
        sample = dict(self.dataset[index])
        for sensor, pos in self.index.items():
            if sensor == PLAIN:
                plain = [k for k in sample if k == "image" or k.startswith("image_")]
                keys = ["image"] if "image" in sample else plain if len(plain) == 1 else []
            else:
                keys = [k for k in (f"image_{sensor}", f"image_{sensor}_t2") if k in sample]
                if not keys and len(self.index) == 1 and "image" in sample:
                    keys = ["image"]
            aliased = [k for k in keys if k != "image" and "image" in sample
                       and sample["image"] is sample[k]]
            for key in keys:
                sample[key] = torch.as_tensor(sample[key])[pos]
            if aliased:  # a one-sensor dataset's "image" is its image_<sensor>
                sample["image"] = sample[aliased[0]]
        return sample

    def for_evaluation(self, label_column: str | None = None) -> Any:
        """The wrapped dataset labelled for evaluation, with the same band selection."""
        inner = self.dataset.for_evaluation(label_column)  # type: ignore[attr-defined]
        if inner is self.dataset:
            return self
        out = SelectBands.__new__(SelectBands)
        out.__dict__.update(self.__dict__)
        out.dataset = inner
        return out

    def __getattr__(self, name: str) -> Any:
        """Every other attribute is the wrapped dataset's (ids, classes, footprints, ...).

        Attribute delegation for callers that hold a dataset (``construct`` returns this
        wrapper for any class when ``--bands`` is given), not a reader: the declaration
        readers unwrap through :attr:`wrapped` and :meth:`stated`, never through here.
        """
        if name in ("dataset", "keep", "index", "bands") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


#: common names of Sentinel-2 bands (STAC eo:common_name and usual spellings) -> ``B01``..
_COMMON_S2 = {
    "coastal": "B01", "aerosol": "B01", "blue": "B02", "green": "B03", "red": "B04",
    "rededge1": "B05", "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A",
    "rededge4": "B8A", "narrownir": "B8A", "nirnarrow": "B8A", "watervapour": "B09",
    "watervapor": "B09", "wv": "B09", "cirrus": "B10", "swir16": "B11", "swir1": "B11",
    "swir22": "B12", "swir2": "B12", "r": "B04", "g": "B03", "b": "B02",
}


def canonical_band(name: str) -> str:
    """One spelling per band, so that bands from different sources match by name.

    ``B1``/``b01`` -> ``B01``, ``B8a`` -> ``B8A``, ``vv`` -> ``VV``, common names (``red``,
    ``nir``, ``swir16``, ``R``/``G``/``B`` of RGB archives) -> the Sentinel-2 band; any other
    name is upper-cased.
    """
    text = str(name).strip()
    key = "".join(ch for ch in text.lower() if ch.isalnum())
    if key in _COMMON_S2:
        return _COMMON_S2[key]
    up = text.upper()
    if len(up) >= 2 and up[0] == "B" and up[1:].isdigit():
        return f"B{int(up[1:]):02d}"
    if up in ("B8A", "B08A"):
        return "B8A"
    return up
