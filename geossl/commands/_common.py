"""Flags shared by several subcommands, spelt the same everywhere."""

from __future__ import annotations

from typing import Any

from jsonargparse import ActionYesNo, ArgumentParser

from geossl.datasets.registry import DATASETS


def add_data(parser: ArgumentParser, default: str | None = None, required: bool = False) -> None:
    """Add ``--data NAME`` (which dataset) and ``--root DIR`` (its folder)."""
    parser.add_argument(
        "--data",
        type=str | None if not required else str,
        default=default,
        help="dataset: " + ", ".join(DATASETS) + ", a name registered with "
             "geossl.datasets.register, or an import path module:Class",
    )
    parser.add_argument("--root", type=str | None, default=None, help="dataset folder")


def add_out(
    parser: ArgumentParser, default: str | None = None, help: str = "output folder"
) -> None:
    """Add ``--out DIR``."""
    parser.add_argument("--out", type=str | None if default is None else str, default=default,
                        help=help)


def add_seed(parser: ArgumentParser, default: int = 0) -> None:
    """Add ``--seed N``."""
    parser.add_argument("--seed", type=int, default=default, help="random seed")


def add_workers(parser: ArgumentParser, default: int = 0) -> None:
    """Add ``--workers N`` (processes, or data-loader workers)."""
    parser.add_argument("--workers", type=int, default=default,
                        help="worker processes (0: in the main process)")


def add_trainer(parser: ArgumentParser) -> None:
    """Add the training flags shared by every training command."""
    parser.add_argument("--accelerator", type=str, default="auto", help="cpu, gpu or auto")
    parser.add_argument("--devices", type=str, default="auto", help="number of devices or auto")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N optimiser steps")
    parser.add_argument("--max-epochs", type=int | None, default=None, help="stop after N epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size per device")
    parser.add_argument("--precision", type=str, default="auto",
                        help="auto (bf16-mixed on GPU, 32 on CPU), 32, bf16-mixed, 16-mixed")


#: keyword arguments for a boolean flag given bare or with a value: ``--report``,
#: ``--report true``, ``--report false`` (``report: true`` in YAML).
FLAG: dict[str, Any] = {"type": bool, "nargs": "?", "const": True}


def yes_no() -> ActionYesNo:
    """A boolean flag usable bare: ``--report`` / ``--no-report`` (``report: true`` in YAML)."""
    return ActionYesNo(yes_prefix="", no_prefix="no-")
