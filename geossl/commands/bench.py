r"""Benchmarks: train (images/s vs TorchGeo and the ceiling), data, splits.

``geossl bench train`` measures pretraining images/s against TorchGeo and the ceiling,
``geossl bench data`` chip reading against TorchGeo and ``geossl bench splits`` splitting time.

Examples:
    geossl bench train                                   # CPU: resnet18, 64 px, batch 32
    geossl bench train --device cuda --backbone resnet50 --bands 13 --size 128 \\
        --batch-size 256 --precision bf16-mixed --compile
    geossl bench data --tool-args "--help"

``train`` is implemented in :mod:`geossl.bench.train`; ``data`` and ``splits`` run
``tools/bench_data.py`` / ``tools/bench_splits.py`` of the source checkout (their ``main(argv)``),
imported only when asked for.
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from typing import Literal

from jsonargparse import ActionYesNo, ArgumentParser, Namespace

from geossl.errors import ConfigError

NAME = "bench"
HELP = "benchmarks: train (images/s vs TorchGeo and the ceiling), data, splits"

#: ``what`` -> script under tools/ providing ``main(argv) -> int``
TOOLS = {"data": "bench_data.py", "splits": "bench_splits.py"}


def _yes_no() -> ActionYesNo:
    """A boolean flag: ``--compile`` / ``--no-compile`` (``compile: true`` in YAML)."""
    return ActionYesNo(yes_prefix="", no_prefix="no-")


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl bench``."""
    parser.add_argument("what", type=Literal["train", "data", "splits"],
                        help="which benchmark: train, data or splits")
    parser.add_argument("--backbone", type=str, default="resnet18", help="timm model name")
    parser.add_argument("--bands", type=int, default=13, help="input bands")
    parser.add_argument("--size", type=int, default=64, help="image size in pixels")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--precision", type=str, default="auto",
                        help="auto (bf16-mixed on GPU, 32 on CPU), 32-true, bf16-mixed, 16-mixed")
    parser.add_argument("--compile", action=_yes_no(), default=False,
                        help="torch.compile the encoders (geossl and ceiling)")
    parser.add_argument("--channels-last", action=_yes_no(), default=None,
                        help="channels_last memory format (default: on a GPU)")
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument("--workers", type=int, default=2,
                        help="loader workers for the end-to-end measurement")
    parser.add_argument("--chips", type=str | None, default=None,
                        help="folder with a chip index (index.parquet) for the end-to-end "
                             "measurement (default: chips written to a temporary folder)")
    parser.add_argument("--num-chips", type=int | None, default=None,
                        help="chips to write when --chips is not given")
    parser.add_argument("--only", type=list[str] | None, default=None,
                        help="subset of geossl-simclr, geossl-moco, torchgeo-simclr, "
                             "torchgeo-moco, ceiling, loader, e2e-simclr")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure the in-memory rows this many times, round-robin; keep the "
                             "best (use 2-3 on a shared machine)")
    parser.add_argument("--out", type=str | None, default=None,
                        help="folder for bench_train.json and bench_train.md")
    parser.add_argument("--tool-args", type=str, default="",
                        help="arguments passed to tools/bench_<what>.py for data and splits")


def run(cfg: Namespace) -> int:
    """Run ``geossl bench``."""
    if cfg.what == "train":
        from geossl.bench.train import BenchConfig, bench_train

        names = {f for f in BenchConfig.__dataclass_fields__}
        values = {k.replace("-", "_"): v for k, v in cfg.as_dict().items()}
        bench_train(BenchConfig(**{k: v for k, v in values.items() if k in names}))
        return 0
    return run_tool(cfg.what, shlex.split(cfg.tool_args))


def run_tool(what: str, argv: list[str]) -> int:
    """Import ``tools/bench_<what>.py`` of the source checkout lazily and call its ``main``.

    Raises:
        ConfigError: when the script is not there (an installed wheel has no ``tools/``).
    """
    script = Path(__file__).resolve().parents[2] / "tools" / TOOLS[what]
    if not script.exists():
        raise ConfigError(f"geossl bench {what} needs {script} (run it from a source checkout)")
    spec = importlib.util.spec_from_file_location(f"geossl_tools_{script.stem}", script)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ConfigError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main = getattr(module, "main", None)
    if main is None:
        raise ConfigError(f"{script} has no main(argv)")
    import inspect
    import sys

    if inspect.signature(main).parameters:
        return int(main(argv) or 0)
    saved = sys.argv  # a main() without arguments parses sys.argv itself
    sys.argv = [str(script), *argv]
    try:
        return int(main() or 0)
    finally:
        sys.argv = saved
