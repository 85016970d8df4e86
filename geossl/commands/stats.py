"""Compute per-band statistics of a dataset (mean, std, min, max, percentiles).

Examples:
    geossl stats --data chips --root CHIPS --out CHIPS/stats.json
    geossl stats --data sen12ms --root SEN12MS --max-samples 2000 --out sen12ms_stats.json
    geossl stats --data polsar --root polsar_sf_airsar --bands T11_db,T22_db,T33_db

NaN, infinities and the --nodata value are ignored. The JSON (written atomically) holds one
entry per image key; ``geossl.data.normalize.get_normalizer(..., stats=FILE)`` turns it into a
standardisation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

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
    _common.add_seed(parser)
    _common.add_workers(parser)


def _get(cfg: Namespace, name: str) -> Any:
    return cfg.get(name, cfg.get(name.replace("_", "-")))


def _dataset(data: str, root: str, index: str | None) -> Any:
    """The dataset to summarise; ``chips`` falls back to reading GeoTIFFs directly.

    ``--data chips`` uses the chip dataset on a chip index (``--index`` or ROOT/index.parquet);
    a folder of GeoTIFFs without an index, or a missing chip module, is read file by file.
    """
    from geossl.data.stats import RasterFiles
    from geossl.datasets.registry import get_dataset
    from geossl.errors import ConfigError

    if data != "chips":
        return get_dataset(data, root, **({"index": index} if index else {}))
    index_path = Path(index) if index else Path(root) / "index.parquet"
    if not index_path.exists():
        if index:
            from geossl.errors import DataError

            raise DataError("chip index not found", index_path)
        return RasterFiles(root)
    try:
        return get_dataset("chips", root, index=str(index_path))
    except ConfigError as err:
        if "not available" not in str(err):
            raise
        return RasterFiles(root, index_path)


def run(cfg: Namespace) -> int:
    """Run ``geossl stats``."""
    from geossl.data.stats import compute_stats, format_table
    from geossl.errors import ConfigError
    from geossl.io import atomic_write_text, check_writable

    if cfg.out:
        check_writable(cfg.out, folder=False)  # before computing anything
    if not cfg.root:
        raise ConfigError("--root is required")
    max_samples = _get(cfg, "max_samples")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"--max-samples must be positive, got {max_samples}")
    if not cfg.data:
        raise ConfigError("--data is required")
    dataset = _dataset(cfg.data, cfg.root, cfg.index)
    bands = [b.strip() for b in cfg.bands.split(",") if b.strip()] if cfg.bands else None
    stats = compute_stats(
        dataset, max_samples=max_samples, bands=bands, keys=[cfg.key] if cfg.key else None,
        nodata=cfg.nodata, seed=cfg.seed, workers=cfg.workers,
    )
    print(format_table(stats))
    if cfg.out:
        doc = {"data": cfg.data, "root": str(cfg.root), "max_samples": max_samples,
               "seed": cfg.seed, "nodata": cfg.nodata, "stats": stats}
        atomic_write_text(Path(cfg.out), json.dumps(doc, indent=2) + "\n")
        print(f"geossl stats: wrote {cfg.out}")
    return 0
