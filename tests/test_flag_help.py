"""Every flag of every command has a help text (issue 22, "Structure").

Walks the parser of ``geossl`` (every subcommand, recursively) and the ``build_parser(prog)`` of
every ``geossl bench WHAT`` tool (:data:`geossl.commands.bench.TOOLS`), and lists the options
whose help is missing or empty.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

from geossl.cli import build_parser
from geossl.commands.bench import TOOLS


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subs: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subs.update(action.choices)
    return subs


def _missing_help(parser: argparse.ArgumentParser, name: str) -> list[str]:
    """``"<command> --flag"`` for every option of ``parser`` and its subcommands without help."""
    missing = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        if not (action.help or "").strip():
            missing.append(f"{name} {max(action.option_strings, key=len)}")
    for sub_name, sub in _subparsers(parser).items():
        missing += _missing_help(sub, f"{name} {sub_name}")
    return missing


def test_every_command_flag_has_a_help_text() -> None:
    parser, mods = build_parser()
    assert len(mods) >= 10 and "bench" in mods  # the walk reached the subcommands
    assert _missing_help(parser, "geossl") == []


@pytest.mark.parametrize("what", sorted(TOOLS))
def test_every_bench_tool_flag_has_a_help_text(what: str) -> None:
    module = importlib.import_module(TOOLS[what])
    parser = module.build_parser(f"geossl bench {what}")
    assert parser.prog == f"geossl bench {what}"
    flags = [a for a in parser._actions if a.option_strings
             and not isinstance(a, argparse._HelpAction)]
    assert flags  # the tool has flags to check
    assert _missing_help(parser, f"geossl bench {what}") == []
