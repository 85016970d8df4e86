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

from typing import Any

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common
from geossl.commands._common import get as _get

NAME = "split"
HELP = "overlap-aware train/val/test splits of chips, with a leakage report"
#: ``--block-size`` default in metres (see the shipped config `split` for why)
DEFAULT_BLOCK_SIZE = 10240.0


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl split``."""
    parser.add_argument("--index", type=str | None, default=None,
                        help="GeoParquet of footprints (chip index, SEN12MS footprints, ...)")
    _common.add_data(parser)
    parser.add_argument("--data-args", type=str | dict[str, Any] | None, default=None,
                        help="dataset arguments as a YAML/JSON mapping, e.g. '{holdout: train}' "
                             "(SEN12MS: the training scenes only)")
    parser.add_argument("--strategy", type=str, default="overlap",
                        help="overlap, block, scene, random, nonoverlapping or checkerboard")
    parser.add_argument("--fractions", type=str | None, default=None,
                        help="comma-separated fractions: train,test or train,val,test "
                             "(default 0.8,0.2; 0.5,0.5 for checkerboard)")
    parser.add_argument("--names", type=str | None, default=None,
                        help="comma-separated split names (default train,test / train,val,test)")
    parser.add_argument("--buffer", type=float, default=0.0,
                        help="metres (pixels for a pixel grid): chips closer than this never "
                             "fall in different splits")
    parser.add_argument("--block-size", type=float, default=DEFAULT_BLOCK_SIZE,
                        help="block side in metres, or pixels for a pixel grid (strategies "
                             "block and checkerboard); the default holds 4 x 4 SEN12MS patches")
    parser.add_argument("--assign", type=str, default="footprint",
                        help="checkerboard: 'footprint' drops chips straddling a block border, "
                             "'centroid' places them by their centre")
    parser.add_argument("--origin", type=str | None, default=None,
                        help="checkerboard: 'x,y' of a block corner in CRS units (default 0,0)")
    parser.add_argument("--label", type=str | None, default="label",
                        help="class column to stratify on when present (null: no stratification)")
    parser.add_argument("--scenes", type=str | None, default=None,
                        help="comma-separated test scene ids (strategy scene)")
    parser.add_argument("--holdout", type=str | None, default=None,
                        help="'sen12ms': the official SEN12MS hold-out scenes are the test side")
    _common.add_seed(parser)
    _common.add_out(parser, default="splits.json",
                    help="split file to write: .json (chip ids) or .parquet (GeoParquet)")
    parser.add_argument("--report", default=False, **_common.FLAG,
                        help="print the leakage report between the splits")


def _numbers(flag: str, value: Any) -> list[float]:
    from geossl.errors import ConfigError

    try:
        return [float(v) for v in str(value).split(",") if v.strip()]
    except ValueError as err:
        raise ConfigError(f"--{flag} must be numbers (comma-separated), got {value!r}") from err


def run(cfg: Namespace) -> int:
    """Make, save and optionally report the split."""
    from geossl.errors import ConfigError
    from geossl.eval.data import parse_data_args
    from geossl.splits import split_and_save

    def _list(value: str | None) -> list[str] | None:
        return None if not value else [v.strip() for v in str(value).split(",") if v.strip()]

    strategy = _get(cfg, "strategy")
    fractions = _get(cfg, "fractions")
    if fractions is None:
        fractions = "0.5,0.5" if strategy == "checkerboard" else "0.8,0.2"
    fracs = _numbers("fractions", fractions)
    origin = None
    if _get(cfg, "origin") is not None:
        xy = _numbers("origin", _get(cfg, "origin"))
        if len(xy) != 2:
            raise ConfigError(f"--origin must be 'x,y', got {_get(cfg, 'origin')!r}")
        origin = (xy[0], xy[1])
    _, _, text = split_and_save(
        out=_get(cfg, "out"),
        index=_get(cfg, "index"),
        data=_get(cfg, "data"),
        root=_get(cfg, "root"),
        strategy=strategy,
        fractions=fracs,
        names=_list(_get(cfg, "names")),
        seed=_get(cfg, "seed"),
        buffer=_get(cfg, "buffer"),
        block_size=_get(cfg, "block_size"),
        label=_get(cfg, "label"),
        test_scenes=_list(_get(cfg, "scenes")),
        holdout=_get(cfg, "holdout"),
        report=bool(_get(cfg, "report")),
        origin=origin,
        assign=_get(cfg, "assign"),
        data_args=parse_data_args(_get(cfg, "data_args")),
    )
    print(text)
    return 0
