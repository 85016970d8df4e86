r"""Run a grid of pretraining runs (and their evaluation) and tabulate them.

Examples:
    geossl sweep conf/experiments/bigearthnet_simclr/02_sweep_batch_temperature.yaml \
        --root BigEarthNet --out runs/ben_grid
    geossl sweep conf/pretrain/simclr_bs_temp_grid.yaml --root SEN12MS \
        --grid batch_size=256,1024,2048 --grid temperature=0.25,0.5 --out runs/grid
    geossl sweep GRID.yaml --root DIR --out runs/grid --set max_steps=100 --dry-run

CONFIG is a sweep file (keys pretrain, grid, evaluate) or a plain pretrain config. One run per
combination of the grid, one after the other, each in OUT/<key>=<value>,.../ (pretrain.yaml,
checkpoints, logs, eval/, run.log). Rerunning the command skips finished runs and resumes the
others from their last checkpoint. Writes OUT/results.csv and OUT/results.md (one row per run:
grid values, loss, contrastive and online-probe accuracy, evaluation metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "sweep"
HELP = "run a grid of pretraining runs (batch x temperature, ...), resumable, one results table"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl sweep``."""
    parser.add_argument("sweep", type=str, help="sweep YAML (pretrain/grid/evaluate) or a "
                        "pretrain config")
    parser.add_argument("--grid", action="append", type=str, default=None,
                        help="KEY=V1,V2,... (repeat for more keys), e.g. batch_size=256,1024")
    parser.add_argument("--set", action="append", type=str, default=None,
                        help="KEY=VALUE pretrain option for every run (repeatable)")
    parser.add_argument("--evaluate", type=str | None, default=None,
                        help="YAML of `geossl evaluate` flags run on every checkpoint")
    parser.add_argument("--eval-set", action="append", type=str, default=None,
                        help="KEY=VALUE evaluate flag for every run (repeatable)")
    parser.add_argument("--root", type=str | None, default=None,
                        help="dataset folder (pretraining, and evaluation unless it sets one)")
    parser.add_argument("--scale-lr", type=str | None, default=None,
                        help="learning rate of cells whose batch_size the grid changes: none "
                        "(default: the base config's rate at every batch) or linear (scaled "
                        "by batch / base_batch_size); replaces the file's scale_lr")
    _common.add_out(parser, default="runs/sweep")
    parser.add_argument("--dry-run", default=False, help="write the runs' configs and the "
                        "table of what is done; train nothing", **_common.FLAG)


def run(cfg: Namespace) -> int:
    """Run ``geossl sweep``."""
    from geossl.recipes.sweep import load_spec, run_sweep

    spec = load_spec(cfg.sweep, cfg.grid, cfg.set, cfg.evaluate, cfg.get("eval_set"), cfg.root,
                     cfg.get("scale_lr"))
    result = run_sweep(spec, cfg.out, dry_run=bool(cfg.dry_run), check=_check_pretrain)
    print((result["markdown"]).read_text(), end="")
    print(f"wrote {result['csv']}\nwrote {result['markdown']}")
    for extra in ("repeats", "epochs", "size_figure"):  # written for such grids
        if result.get(extra) is not None:
            print(f"wrote {result[extra]}")
    if result["failed"]:
        print(f"geossl sweep: {len(result['failed'])} run(s) failed: "
              f"{', '.join(result['failed'])} (see their run.log; rerun to retry)")
        return 1
    return 0


def _check_pretrain(values: Mapping[str, Any]) -> None:
    """Parse one cell's pretrain config with ``geossl pretrain``'s own flag types.

    Raises:
        ConfigError: a value ``geossl pretrain --config`` would refuse (in one line).
    """
    from jsonargparse import ArgumentError

    from geossl.core.errors import ConfigError, one_line
    from geossl.training.config import PretrainConfig

    parser = ArgumentParser(exit_on_error=False)
    _common.add_dataclass_flags(parser, PretrainConfig)
    try:
        parser.parse_object(dict(values))
    except ArgumentError as err:
        raise ConfigError(one_line(err)) from None
