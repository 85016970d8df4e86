"""SEN12MS read as geo-sampled chips: S1/S2 windows on a grid, each with its own scene label.

``--data sen12ms-geo`` reads the SEN12MS scenes through TorchGeo geo queries (a
:class:`~geossl.datasets.multisensor.MultiSensorDataset` of the per-sensor
:class:`~geossl.datasets.sen12ms.SEN12MS` raster datasets, on the S2 grid) in windows of
``--patch-size`` pixels laid on a fixed grid inside every patch footprint
(:class:`~geossl.datasets.geogrid.GeoSamples`), instead of the mediaTUM patches themselves.
With labels asked for (the online probe, t-SNE snapshots: ``label=`` here), the land-cover map
is read too and every window carries the scene label of its own pixels, computed as the patch
view labels whole patches (:class:`~geossl.datasets.sen12ms.SceneLabel`).

Layout: that of :mod:`geossl.datasets.sen12ms` (the mediaTUM release).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geossl.core.errors import ConfigError
from geossl.datasets.bands import SelectBands
from geossl.datasets.base import GeosslDataset, PretrainingRequest
from geossl.datasets.geogrid import DEFAULT_GEO_PATCH, GeoSamples
from geossl.datasets.protocol import class_names
from geossl.datasets.sen12ms import SCENE_LABEL_SCHEMES, pairing_dataset, scene_label_scheme

PathLike = str | os.PathLike[str]


# GeoSamples' ``bands`` (band names per sensor, set per instance) is the protocol's mapping
class SEN12MSGeoChips(GeosslDataset, GeoSamples):  # type: ignore[misc]
    """Windows of ``size`` px over the SEN12MS scenes, keyed per sensor (module docstring).

    Samples: ``image_s1`` / ``image_s2`` (float32, one grid), ``sensor_mask``, ``crs``,
    ``bounds`` and, with ``label``, ``label`` (int64 majority class, or float32 multi-hot).
    """

    #: keyword arguments of the constructor (the registry passes only these)
    arguments = ("sensors", "size", "label", "multilabel", "holdout", "sampler", "seed")

    sensors: tuple[str, ...] = ("s1", "s2")
    label_schemes = SCENE_LABEL_SCHEMES
    geo_sampled = True

    def __init__(
        self,
        root: PathLike,
        sensors: Sequence[str] = ("s1", "s2"),
        size: int = DEFAULT_GEO_PATCH,
        label: str | None = None,
        multilabel: bool = False,
        holdout: str | None = None,
        sampler: str = "grid",
        seed: int = 0,
    ) -> None:
        """Index the scenes and lay the grid of windows.

        Args:
            root: SEN12MS folder.
            sensors: ``s1`` and/or ``s2``.
            size: window side in pixels (10 m).
            label: scene labels of the windows: ``igbp`` or ``dfc``; ``None`` for none (the
                land-cover files are then not read).
            multilabel: multi-hot labels instead of the majority class.
            holdout: ``train`` / ``holdout`` side of the official hold-out scenes; ``None``: all.
            sampler: where the windows come from (:data:`geossl.datasets.geogrid.SAMPLERS`).
            seed: seed of a random sampler.

        Raises:
            ConfigError: unknown sensor or scheme, or windows larger than every patch.
            DataError: missing data.
        """
        super().__init__(pairing_dataset(root, sensors, label=label, holdout=holdout,
                                         multilabel=multilabel), size, root=Path(root),
                         sampler=sampler, seed=seed)
        self.sensors = tuple(sensors)
        self.classes = class_names(self.dataset) or []

    @classmethod
    def for_pretraining(cls, request: PretrainingRequest) -> Any:
        """Windows of ``--patch-size`` px (default 64), labelled when ``labels`` asks.

        ``options`` (``--data-args``): ``holdout``, ``multilabel``; ``bands`` (``--bands``)
        keeps those bands of every window.

        Raises:
            ConfigError: ``ids`` (split the patches, ``--data sen12ms``, instead), or an
                unknown option.
        """
        if request.ids is not None:
            raise ConfigError("--splits is not supported with --data sen12ms-geo; split the "
                              "patches (--data sen12ms) instead")
        opts = dict(request.options)
        bands = opts.pop("bands", None)
        unknown = sorted(set(opts) - {"holdout", "multilabel"})
        if unknown:
            raise ConfigError(f"dataset 'sen12ms-geo' takes no argument {unknown[0]!r}")
        chips = cls(request.root, request.sensors, size=request.patch_size or DEFAULT_GEO_PATCH,
                    label=scene_label_scheme(request.labels), sampler=request.sampler,
                    seed=request.seed, **opts)
        if bands:
            return SelectBands(chips, bands)
        return chips
