"""Benchmarks (not tests): ``geossl bench train`` and friends.

Each benchmark measures geossl next to the named baseline it must beat, in one run on the same
input, and prints a table with the ratios.

The command-line plumbing the benchmark tools share (``geossl bench data``, ``scale``,
``samplers``, ``splits``): :func:`tool_parser` (one flag per field of the tool's configuration
dataclass) and :func:`run_tool` (parse, run, print the report, write ``--json``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import argparse


class _WritesJson(Protocol):
    #: also write the figures to this file
    json: str | None


_C = TypeVar("_C", bound=_WritesJson)


def tool_parser(config: type[Any], doc: str | None, prog: str | None) -> argparse.ArgumentParser:
    """The flags of a benchmark tool: one per field of its configuration dataclass ``config``.

    Args:
        config: the dataclass declared with :func:`geossl.core.options.option`.
        doc: the tool module's docstring (its first line is the ``--help`` description).
        prog: the command's name in ``--help``.
    """
    import argparse

    from geossl.core.options import add_argparse_flags

    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0])
    add_argparse_flags(parser, config)
    return parser


def run_tool(parser: argparse.ArgumentParser, config: type[_C], bench: Callable[[_C], Any],
             report: Callable[[Any], str] | None, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` into ``config``, run ``bench``, print its ``report``.

    ``report`` ``None``: the benchmark prints its table as it goes. The figures also go to the
    ``--json`` file when one is given (checked writable before the benchmark runs, written
    atomically).

    Returns:
        the exit code, 0.
    """
    import json

    from geossl.core.options import config_from

    cfg = config_from(config, parser.parse_args(None if argv is None else list(argv)))
    if cfg.json:
        from geossl.core.io import check_writable

        check_writable(cfg.json, folder=False, flag="--json")  # before minutes of benchmark
    result = bench(cfg)
    if report is not None:
        print(report(result))
    if cfg.json:
        from geossl.core.io import atomic_write_text

        atomic_write_text(cfg.json, json.dumps(result, indent=1) + "\n")
    return 0
