r"""Benchmarks: train (images/s vs TorchGeo and the ceiling), data, splits, polsar.

``geossl bench train`` measures pretraining images/s against TorchGeo and the ceiling,
``geossl bench data`` chip reading against TorchGeo, ``geossl bench splits`` the split
strategies and their leakage report on SEN12MS-like footprints, ``geossl bench polsar`` the
PolSAR San Francisco few-label benchmark, ``geossl bench scale`` tiling and embedding on 1
and 2 Dask workers (and tiling against the rasterio floor). ``geossl bench WHAT --help`` lists
the flags of each.

Examples:
    geossl bench train                                   # CPU: resnet18, 64 px, batch 32
    geossl bench train --device cuda --backbone resnet50 --bands 13 --size 128 \\
        --batch-size 256 --precision bf16-mixed --compile
    geossl bench data --cache /tmp/geossl-bench --n-files 5000
    geossl bench scale --cache /tmp/geossl-scale      # tile/embed on 1 and 2 Dask workers
    geossl bench splits --n 2000 --scenes 8              # a tiny run; default: 180,662 chips
    geossl bench polsar --root polsar_sf_airsar --out runs/polsar   # --doc FILE: its section
    geossl bench ddp --steps 10 --batch-size 8           # pretrain on 1 vs 2 gloo processes
    geossl bench weights --repeats 5      # named weights vs torchgeo.models.<model>(weights=)
    geossl bench search --n 20000                        # exact vs faiss HNSW; default 1M x 128
    geossl bench samplers --patch-size 128               # geossl's grid vs TorchGeo's samplers

Each benchmark is a library module with one configuration class declaring its flags, defaults
and help once: ``train`` is :func:`geossl.bench.train.bench_train` on a
:class:`geossl.bench.config.BenchConfig` (its flags are also accepted before WHAT, so that a
``--config`` file can set them); the others are the ``main(argv)`` of
:mod:`geossl.bench.data`, :mod:`geossl.bench.splits`, ... (``DataBenchConfig``,
``SplitsBenchConfig``, ..., ``PolsarBenchConfig``), which get every argument after ``WHAT`` and
are imported only when asked for.
All of them ship in the package: an installed wheel runs them from any folder; none uses a path
of the source checkout (data from flags or ``$GEOSSL_REAL_DATA``).
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING, Literal

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from geossl.commands import _common

if TYPE_CHECKING:
    from geossl.bench.config import BenchConfig

NAME = "bench"
HELP = ("benchmarks: train (images/s vs TorchGeo and the ceiling), data, splits, polsar, scale, "
        "ddp (pretrain steps/s on 1 vs 2 processes), weights (named weights vs TorchGeo), "
        "search (exact vs ANN), samplers (geossl's grid vs TorchGeo's)")

#: ``what`` -> library module providing ``main(argv, prog) -> int`` and ``build_parser(prog)``
TOOLS = {"data": "geossl.bench.data", "splits": "geossl.bench.splits",
         "polsar": "geossl.bench.polsar_report", "scale": "geossl.bench.scale",
         "ddp": "geossl.bench.ddp", "weights": "geossl.bench.weights",
         "search": "geossl.bench.search", "samplers": "geossl.bench.samplers"}


def add_train_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl bench train``: one per field of :class:`BenchConfig`."""
    from geossl.bench.config import BenchConfig  # light: no torch while the parser is built

    _common.add_dataclass_flags(parser, BenchConfig)


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl bench``: WHAT, then that benchmark's own flags."""
    parser.add_argument("what",
                        type=Literal["train", "data", "splits", "polsar", "scale", "ddp",
                                     "weights", "search", "samplers"],
                        help="which benchmark: train, data, splits, polsar, scale, ddp, "
                             "weights, search or samplers (then "
                             "`geossl bench WHAT --help` for its flags)")
    add_train_arguments(parser)  # settable from a --config file for train
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="the flags of the chosen benchmark (see `geossl bench WHAT --help`)")
    # the flags after WHAT belong to that benchmark: never read one as an abbreviation of a
    # train flag (``--n`` of splits would be "ambiguous: --no-compile, --num-chips, ...")
    parser._get_option_tuples = _no_abbreviations  # type: ignore[method-assign]


def _no_abbreviations(option_string: str) -> list[tuple[object, str, str | None]]:
    """Option abbreviations matched for ``option_string``: none."""
    return []


def run(cfg: Namespace) -> int:
    """Run ``geossl bench``."""
    rest = [str(a) for a in (cfg.get("args") or [])]
    if cfg.what == "train":
        from geossl.bench.train import bench_train

        bench_train(train_config(cfg, rest))
        return 0
    main = importlib.import_module(TOOLS[cfg.what]).main
    return int(main(rest, prog=f"geossl bench {cfg.what}") or 0)


def train_config(cfg: Namespace, argv: list[str]) -> BenchConfig:
    """The :class:`~geossl.bench.config.BenchConfig` of ``geossl bench train``.

    Its flags are in ``argv``; their defaults come from ``cfg`` (a --config file).
    """
    from geossl.bench.config import BenchConfig
    from geossl.core.options import config_from

    parser = ArgumentParser(prog="geossl bench train",
                            description="Pretraining images/s against TorchGeo and the ceiling.")
    parser.add_argument("--config", action=ActionConfigFile,
                        help="YAML of these flags (also accepted before WHAT)")
    add_train_arguments(parser)
    known = {a.dest for a in parser._actions}
    parser.set_defaults(**{k: v for k, v in cfg.as_dict().items()
                           if k in known and k != "config"})
    return config_from(BenchConfig, parser.parse_args(argv))
