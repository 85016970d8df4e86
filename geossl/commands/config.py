"""List the configurations shipped with geossl, or print one.

Examples:
    geossl config list                              # name and summary of every shipped config
    geossl config show pretrain/moco_sen12ms_geo    # its YAML (copy it, edit, pass the copy)
    geossl pretrain --config pretrain/moco_sen12ms_geo --root SEN12MS --out runs/geo

Every subcommand's ``--config`` takes such a name as well as a file path; a file at that path
wins over a shipped configuration of the same name.
"""

from __future__ import annotations

from typing import Literal

from jsonargparse import ArgumentParser, Namespace

NAME = "config"
HELP = "list the shipped configurations (geossl config list) or print one (show NAME)"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl config``."""
    parser.add_argument("action", type=Literal["list", "show"],
                        help="list: every shipped configuration; show NAME: print one")
    parser.add_argument("name", nargs="?", type=str | None, default=None,
                        help="configuration to show (e.g. pretrain/moco_sen12ms_geo)")


def run(cfg: Namespace) -> int:
    """Run ``geossl config``."""
    from geossl.conf.studies import describe
    from geossl.core.errors import ConfigError

    if cfg.action == "show" and not cfg.name:
        raise ConfigError("geossl config show needs a NAME (see `geossl config list`)")
    print(describe(cfg.name if cfg.action == "show" else None))
    return 0
