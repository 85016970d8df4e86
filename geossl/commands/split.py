"""Split footprints into overlap-aware train/val/test sets and report leakage.

Examples:
    geossl split --index chips/index.parquet --strategy overlap --fractions 0.8,0.2 --out splits.json --report
    geossl split --data sen12ms --root SEN12MS --strategy scene --holdout sen12ms --out splits.json
    geossl split --index chips/index.parquet --strategy block --block-size 10240 --buffer 500 --out splits.parquet
    geossl split --data polsar --root SF_AIRSAR --strategy checkerboard --block-size 128 --out splits.json --report

The split file (JSON with chip ids, or GeoParquet with a ``split`` column) is what every later
command reads (``--splits FILE``); ``--report`` prints, for each pair of splits, how many chips of
one intersect (or lie within ``--buffer`` metres of) chips of the other. Footprints without a
georeferenced CRS (a PolSAR scene without map information: a pixel grid) are split in their own
units: ``--buffer`` and ``--block-size`` are then pixels, and so are the report's columns.
"""  # noqa: E501

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "split"
HELP = "overlap-aware train/val/test splits of chips, with a leakage report"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl split``: one per field of :class:`SplitConfig`."""
    from geossl.splits.config import SplitConfig  # light: no pandas while the parser is built

    _common.add_dataclass_flags(parser, SplitConfig)


def run(cfg: Namespace) -> int:
    """Make, save and optionally report the split."""
    from geossl.core.options import config_from
    from geossl.splits import SplitConfig, split_and_save

    _, _, text = split_and_save(config_from(SplitConfig, cfg))
    print(text)
    return 0
