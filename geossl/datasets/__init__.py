"""Datasets: one file per data source, the protocol they declare, and the registry.

:class:`GeosslDataset` is the protocol (sensors, bands, ids, classes, footprints and the
construction hooks, :mod:`geossl.datasets.base`); :mod:`geossl.datasets.registry` is the only
constructor the commands use. :func:`register` makes a dataset of your own code available to
every command as ``--data NAME`` (``--data module:Class`` works without registering).
"""

from geossl.datasets.base import GeosslDataset
from geossl.datasets.registry import register, unregister

__all__ = ["GeosslDataset", "register", "unregister"]
