"""The ``geossl`` command line.

Thin by design: each subcommand lives in its own module of :mod:`geossl.commands`, declares its
flags and calls one library function. Subcommands are discovered from that package, so a module
is listed exactly when it exists (and works). Every subcommand accepts ``--config FILE.yaml``
or ``--config NAME`` of a configuration shipped in the package (``geossl config list``; any flag
can be set there; flags given after it override it) and ``--print_config`` (prints the
effective configuration as YAML and exits), as in LightningCLI.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any, TextIO

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, Namespace

import geossl
from geossl import commands
from geossl.conf import resolve_config
from geossl.errors import ConfigError, GeosslError, GeosslWarning, Terminated


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keep the line breaks of each subcommand's docstring (its examples) in ``--help``."""


class ConfigFileOrName(ActionConfigFile):
    """``--config``: a YAML file, or the name of a shipped configuration (``geossl config list``).

    A value that names no file is looked up among the configurations shipped in the package
    (:func:`geossl.conf.resolve_config`), so ``--config pretrain/moco_sen12ms_geo`` works from
    any folder of an installed wheel. Inline YAML (``--config '{max_steps: 5}'``) is left to
    jsonargparse.
    """

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None
                 ) -> None:
        """Resolve a name to its shipped file, then load it as jsonargparse does."""
        if isinstance(values, str) and "\n" not in values and ": " not in values \
                and not values.lstrip().startswith(("{", "[")):
            try:
                values = str(resolve_config(values))
            except ConfigError as err:
                parser.error(str(err))
        super().__call__(parser, cfg, values, option_string)


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> tuple[ArgumentParser, dict[str, ModuleType]]:
    """Build the top-level parser with one subcommand per module in :mod:`geossl.commands`.

    Returns:
        the parser and a mapping from subcommand name to its module.
    """
    parser = ArgumentParser(
        prog="geossl",
        description="Self-supervised learning on remote-sensing imagery.",
        env_prefix="GEOSSL",
        default_env=False,
    )
    parser.add_argument("--version", action="version", version=f"geossl {geossl.__version__}")
    sub = parser.add_subcommands(dest="command", required=True)
    mods = {}
    for mod in _command_modules():
        p = ArgumentParser(prog=f"geossl {mod.NAME}", description=mod.__doc__)
        p.add_argument(
            "--config", action=ConfigFileOrName,
            help="YAML file with any of the flags below, or the name of a shipped one "
                 "(`geossl config list`)",
        )
        mod.add_arguments(p)
        sub.add_subcommand(mod.NAME, p, help=mod.HELP)
        p.formatter_class = _HelpFormatter  # after add_subcommand, which sets the parent's
        mods[mod.NAME] = mod
    return parser, mods


class _LineTrackingStream:
    """A proxy of ``sys.stderr`` that remembers the last character written through it.

    Progress bars (tqdm, Lightning's) end with a carriage return, not a newline; an error line
    printed next would be glued to the bar's remnant in a captured log. Knowing the last
    character lets :func:`_end_line` start the error on a line of its own.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.last = "\n"

    def write(self, text: str) -> int:
        if text:
            self.last = text[-1]
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _end_line(stream: TextIO | _LineTrackingStream) -> None:
    """Close open progress bars and make sure the next write starts a fresh line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    last = getattr(stream, "last", "\n")
    if last == "\n" or (last == "\r" and stream.isatty()):
        return  # at the start of a line (a terminal's cursor is there after "\r")
    stream.write("\n")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None, *,
                  command: str = "geossl", default: Any = None) -> None:
    """Print a :class:`GeosslWarning` as one line ``geossl CMD: warning: ...``."""
    if not issubclass(category, GeosslWarning):
        default(message, category, filename, lineno, file, line)
        return
    stream = file or sys.stderr
    _end_line(stream)
    stream.write(f"geossl {command}: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: arguments (defaults to ``sys.argv[1:]``).

    Returns:
        the process exit status: 0 on success, 2 on a user error, 130 when interrupted
        (Ctrl-C), 143 when terminated (SIGTERM).
    """
    parser, mods = build_parser()
    cfg = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    name: str = cfg.command
    sub_cfg: Namespace = cfg[name]
    stderr, show_warning = sys.stderr, warnings.showwarning
    sys.stderr = _LineTrackingStream(stderr)  # type: ignore[assignment]
    warnings.showwarning = functools.partial(_show_warning, command=name,
                                             default=show_warning)
    try:
        status = mods[name].run(sub_cfg)
    except GeosslError as err:
        _end_line(sys.stderr)
        print(f"geossl {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        _end_line(sys.stderr)
        detail = " ".join(str(err).split())  # e.g. where pretrain saved its state
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"geossl {name}: {what}" + (f": {detail}" if detail else ""), file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        sys.stderr, warnings.showwarning = stderr, show_warning
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
