"""A TorchGeo GeoDataset read through a fixed set of geo queries, as a map-style dataset.

:func:`geo_grid` lays ``size`` x ``size`` pixel windows inside every index row's footprint;
:class:`GeoSamples` reads them by position (what ``geossl pretrain --data ssl4eo`` and
``geossl stats`` on a GeoDataset do). ``--sampler`` chooses where the queries come from
(:data:`SAMPLERS`): geossl's in-footprint grid (the default), or TorchGeo's own grid or random
sampler (:func:`geossl.core.compat.grid_sampler`, :func:`geossl.core.compat.random_sampler`), drawn
once
so that sample ``i`` stays the same window. ``geossl bench samplers`` compares them on the same
scenes in one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from geossl.core.errors import ConfigError
from geossl.datasets.protocol import OPAQUE, DatasetWrapper, declared_bands

#: ``--sampler`` values: where the windows of a geo dataset come from
SAMPLERS = ("grid", "torchgeo-grid", "torchgeo-random")
#: window size in pixels of geo queries when no --patch-size is given
DEFAULT_GEO_PATCH = 64


def _starts(lo: float, hi: float, size: float) -> list[float]:
    """Starts of windows of ``size`` inside ``[lo, hi]`` that cover it.

    A step of ``size``; the last window is moved back to end at ``hi`` (overlapping its
    neighbour) so that the edge is covered.
    """
    n = int((hi - lo) / size + 1e-9)
    starts = [lo + k * size for k in range(n)]
    if n and starts[-1] + size < hi - 1e-9 * max(1.0, abs(hi)):
        starts.append(hi - size)
    return starts


def geo_grid(dataset: Any, size: int) -> list[tuple[slice, slice, slice]]:
    """Queries of ``size`` x ``size`` pixel windows lying inside each index row's footprint.

    Unlike TorchGeo 0.8's :class:`~torchgeo.samplers.GridGeoSampler`, whose last row and column
    of windows reach past the footprint (read as zeros, i.e. no data), every window here lies
    inside the bounds of its row; the last one is moved back to end on the edge. The time slice
    is the row's interval, so a query selects its row's acquisitions.
    """
    rx, ry = dataset.res
    w, h = size * rx, size * ry
    queries: list[tuple[slice, slice, slice]] = []
    for geom, interval in zip(dataset.index.geometry, dataset.index.index, strict=True):
        xmin, ymin, xmax, ymax = geom.bounds
        t = slice(interval.left, interval.right)
        for y0 in _starts(ymin, ymax, h):
            for x0 in _starts(xmin, xmax, w):
                queries.append((slice(x0, x0 + w), slice(y0, y0 + h), t))
    return queries


def sampler_queries(dataset: Any, size: int, sampler: str = "grid", length: int | None = None,
                    seed: int = 0) -> list[Any]:
    """The geo queries of ``size`` px windows that ``sampler`` draws from ``dataset``.

    Args:
        dataset: a TorchGeo GeoDataset.
        size: window side in pixels (at the dataset's resolution).
        sampler: ``grid`` (:func:`geo_grid`: every window inside its footprint),
            ``torchgeo-grid`` (TorchGeo's grid sampler: its last row and column of windows may
            reach past a footprint and read no-data) or ``torchgeo-random`` (TorchGeo's random
            sampler, seeded).
        length: windows of ``torchgeo-random`` (default: as many as the geossl grid has).
        seed: seed of ``torchgeo-random``.

    Returns:
        the queries, in the form the installed TorchGeo's ``dataset[query]`` takes.

    Raises:
        ConfigError: an unknown sampler.
    """
    if sampler == "grid":
        return geo_grid(dataset, size)
    import geossl.core.compat

    if sampler == "torchgeo-grid":
        return list(geossl.core.compat.grid_sampler(dataset, size))
    if sampler == "torchgeo-random":
        n = length if length is not None else len(geo_grid(dataset, size))
        if n <= 0:
            return []
        import torch

        # TorchGeo 0.8.1's RandomGeoSampler draws the window inside a row from torch's global
        # generator, not from its own: seed both, without touching the caller's random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return list(geossl.core.compat.random_sampler(dataset, size, length=n, seed=seed))
    raise ConfigError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")


class GeoSamples(DatasetWrapper, Dataset[dict[str, Any]]):
    """A TorchGeo GeoDataset seen through a fixed grid of geo queries, as a map-style dataset.

    The queries (:func:`geo_grid`: ``size`` pixel windows inside every index row) are laid
    once, so sample ``i`` is always the same window (DeepCluster's pseudo-labels stay attached
    to it) and the data module shuffles positions as for any other dataset. Used for
    ``--data ssl4eo`` (a :class:`~geossl.datasets.multisensor.MultiSensorDataset`).
    """

    def __init__(self, dataset: Any, size: int, root: str | Path | None = None,
                 sampler: str = "grid", seed: int = 0) -> None:
        """Lay the grid of queries.

        Args:
            dataset: a TorchGeo GeoDataset (e.g. a ``MultiSensorDataset``).
            size: window size in pixels (at the dataset's resolution).
            root: the dataset folder (for messages).
            sampler: where the queries come from (:func:`sampler_queries`).
            seed: seed of a random sampler.

        Raises:
            ConfigError: no window of that size fits in any footprint.
        """
        self.dataset = dataset
        self.size = int(size)
        self.root = None if root is None else Path(root)
        self.sampler = sampler
        self.queries = sampler_queries(dataset, self.size, sampler, seed=seed)
        if not self.queries and sampler != "grid" and geo_grid(dataset, self.size):
            raise ConfigError(f"TorchGeo's sampler ({sampler}) drew no window of {self.size} px "
                              "(TorchGeo 0.10's random sampler keeps only windows whose half "
                              "diagonal fits inside a footprint); lower --patch-size or use "
                              "--sampler grid")
        if not self.queries:
            rx, ry = dataset.res
            widths = [(g.bounds[2] - g.bounds[0]) / rx for g in dataset.index.geometry]
            heights = [(g.bounds[3] - g.bounds[1]) / ry for g in dataset.index.geometry]
            big = f"{max(widths, default=0):.0f} x {max(heights, default=0):.0f}"
            raise ConfigError(f"patch size {self.size} is larger than every footprint of the "
                              f"dataset (at most {big} px); lower --patch-size")
        subsets = getattr(dataset, "datasets", None)
        #: band names per sensor
        self.bands: dict[str, list[str]] | None = None
        if isinstance(subsets, dict):
            self.bands = {str(k): [str(b) for b in declared_bands(v) or ()]
                          for k, v in subsets.items()}

    @property
    def wrapped(self) -> Any:
        """The TorchGeo GeoDataset the windows are read from."""
        return self.dataset

    def stated(self) -> Mapping[str, Any]:
        """``bands`` per sensor and no per-sample declarations (the samples are windows).

        ``sensors``, ``classes`` and ``normalized`` are the wrapped dataset's. A subclass that
        is a dataset of its own (``SEN12MSGeoChips``) declares every name itself.
        """
        return {**OPAQUE, "bands": self.bands}

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.queries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """The sample of window ``i``."""
        return self.dataset[self.queries[i]]  # type: ignore[no-any-return]
