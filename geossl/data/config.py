"""Configuration of :func:`geossl.data.stats.dataset_stats`: the declaration of ``geossl stats``.

Each field of :class:`StatsConfig` is an option of the library function and a flag of the
command (``max_samples`` -> ``--max-samples``, a key of ``--config`` YAML files) with its
default and help declared once (:func:`geossl.core.options.option`); ``__post_init__`` normalises
and checks the values. Light (no torch): the command line imports it to build its parser.
"""

from __future__ import annotations

import dataclasses
import os

from geossl.core.errors import ConfigError
from geossl.core.options import option, parse_names


def _data_help() -> str:
    from geossl.datasets.registry import data_help

    return data_help()


def _cluster_help(name: str) -> str:
    """A help text owned by :mod:`geossl.runtime.dask` (``SCHEDULER_HELP``, ...)."""
    import geossl.runtime.dask

    return str(getattr(geossl.runtime.dask, name))


@dataclasses.dataclass
class StatsConfig:
    """Everything ``geossl stats`` needs: the one declaration of its flags.

    The last fields (``percentiles``, ``reservoir``, ``patch_size``, ``chunk``, ``progress``)
    are the library's only.
    """

    data: str | None = option(None, _data_help)
    root: str | os.PathLike[str] | None = option(None, "dataset folder", flag_type=str | None)
    index: str | None = option(None, "chip index file for --data chips (default "
                               "ROOT/index.parquet)")
    out: str | os.PathLike[str] | None = option(
        None, "statistics JSON file to write (default: only print)", flag_type=str | None)
    max_samples: int | None = option(2000, "at most this many samples, drawn at random (null: "
                                     "all)")
    bands: list[str] | None = option(None, "comma-separated band names or positions (default: "
                                     "all)", flag_type=str | None)
    key: str | None = option(None, "image key, e.g. image_s2 (default: every image key)")
    nodata: float | None = option(None, "value to ignore besides NaN")
    split: str | None = option(None, "split file from `geossl split`: statistics of its "
                               "--split-name side only, so normalisation leaves the test data "
                               "out")
    split_name: str = option("train", "which side of --split")
    seed: int = option(0, "random seed")
    workers: int = option(0, "worker processes (0: in the main process)")
    scheduler: str | None = option(None, lambda: _cluster_help("SCHEDULER_HELP"))
    scheduler_file: str | None = option(None, lambda: _cluster_help("SCHEDULER_FILE_HELP"))
    # the library's only
    percentiles: tuple[float, ...] = option((1, 99), "percentiles to report", flag=False)
    reservoir: int = option(200_000, "values kept per band for percentiles", flag=False)
    patch_size: int = option(256, "window size for GeoDatasets sampled on a grid", flag=False)
    chunk: int = option(64, "samples per task on a cluster", flag=False)
    progress: bool = option(True, "show a progress bar", flag=False)

    def __post_init__(self) -> None:
        """Check the required flags and ``--max-samples``; split ``--bands``.

        Raises:
            ConfigError: one line naming the flag.
        """
        from geossl.runtime.dask import check_scheduler_flags

        if not self.root:
            raise ConfigError("--root is required")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"--max-samples must be positive, got {self.max_samples}")
        if not self.data:
            raise ConfigError("--data is required")
        self.bands = parse_names(self.bands)
        check_scheduler_flags(self.scheduler, self.scheduler_file)

    def scheduler_address(self) -> str | None:
        """The address of ``--scheduler`` or ``--scheduler-file`` (None: neither).

        Raises:
            ConfigError: a scheduler file that is missing or damaged.
        """
        from geossl.runtime.dask import scheduler_of

        return scheduler_of(self.scheduler, self.scheduler_file)
