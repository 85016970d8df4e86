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
entry per image key; ``geossl.normalize.get_normalizer(..., stats=FILE)`` turns it into a
standardisation.
"""

from __future__ import annotations

import json
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common
from geossl.commands._common import get as _get

NAME = "stats"
HELP = "per-band statistics of a dataset (for normalisation)"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl stats``."""
    _common.add_data(parser, required=True)
    parser.add_argument("--index", type=str | None, default=None,
                        help="chip index file for --data chips (default ROOT/index.parquet)")
    _common.add_out(parser, help="statistics JSON file to write (default: only print)")
    parser.add_argument("--max-samples", type=int | None, default=2000,
                        help="at most this many samples, drawn at random (null: all)")
    parser.add_argument("--bands", type=str | None, default=None,
                        help="comma-separated band names or positions (default: all)")
    parser.add_argument("--key", type=str | None, default=None,
                        help="image key, e.g. image_s2 (default: every image key)")
    parser.add_argument("--nodata", type=float | None, default=None,
                        help="value to ignore besides NaN")
    parser.add_argument("--split", type=str | None, default=None,
                        help="split file from `geossl split`: statistics of its --split-name "
                             "side only, so normalisation leaves the test data out")
    parser.add_argument("--split-name", type=str, default="train",
                        help="which side of --split")
    _common.add_seed(parser)
    _common.add_workers(parser)
    _common.add_scheduler(parser)
    _common.add_scheduler_file(parser)


def run(cfg: Namespace) -> int:
    """Run ``geossl stats``."""
    from geossl.data.stats import dataset_stats, format_table
    from geossl.errors import ConfigError
    from geossl.io import atomic_write_text, check_output

    if cfg.out:
        check_output(cfg.out, "stats", folder=False)  # before computing anything
    if not cfg.root:
        raise ConfigError("--root is required")
    max_samples = _get(cfg, "max_samples")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"--max-samples must be positive, got {max_samples}")
    if not cfg.data:
        raise ConfigError("--data is required")
    bands = [b.strip() for b in cfg.bands.split(",") if b.strip()] if cfg.bands else None
    stats = dataset_stats(
        cfg.data, cfg.root, cfg.index, max_samples=max_samples, bands=bands,
        keys=[cfg.key] if cfg.key else None, nodata=cfg.nodata, seed=cfg.seed,
        workers=cfg.workers, scheduler=_common.scheduler(cfg), split_file=cfg.split,
        split_name=_get(cfg, "split_name"),
    )
    print(format_table(stats))
    if cfg.out:
        split = {"file": str(cfg.split), "name": _get(cfg, "split_name")} if cfg.split else None
        doc = {"data": cfg.data, "root": str(cfg.root), "max_samples": max_samples,
               "seed": cfg.seed, "nodata": cfg.nodata, "split": split, "stats": stats}
        atomic_write_text(Path(cfg.out), json.dumps(doc, indent=2) + "\n")
        print(f"geossl stats: wrote {cfg.out}")
    return 0
