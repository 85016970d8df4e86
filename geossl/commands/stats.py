r"""Compute per-band statistics of a dataset (mean, std, min, max, percentiles).

Examples:
    geossl stats --data chips --root CHIPS --out CHIPS/stats.json
    geossl stats --data sen12ms --root SEN12MS --max-samples 2000 --out sen12ms_stats.json
    geossl stats --data polsar --root polsar_sf_airsar --bands T11_db,T22_db,T33_db
    geossl stats --data chips --root /shared/chips --max-samples null \
        --scheduler tcp://10.0.0.5:8786      # chunks of samples as tasks on a Dask cluster
    geossl stats --data chips --root CHIPS --split splits.json --split-name train \
        --bands B04,B03,B02 --out CHIPS/stats.json     # training side only, 3 bands

NaN, infinities and the --nodata value are ignored. The JSON (written atomically) holds one
entry per image key; ``geossl.pretrained.normalize.get_normalizer(..., stats=FILE)`` turns it into a
standardisation.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "stats"
HELP = "per-band statistics of a dataset (for normalisation)"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl stats``: one per field of :class:`StatsConfig`."""
    from geossl.data.config import StatsConfig  # light: no torch while the parser is built

    _common.add_dataclass_flags(parser, StatsConfig)


def run(cfg: Namespace) -> int:
    """Run ``geossl stats``."""
    from geossl.core.options import config_from
    from geossl.data.config import StatsConfig
    from geossl.data.stats import dataset_stats, format_table, write_stats

    config = config_from(StatsConfig, cfg)
    stats = dataset_stats(config)
    print(format_table(stats))
    if config.out:
        print(f"geossl stats: wrote {write_stats(config, stats)}")
    return 0
