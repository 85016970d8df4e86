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
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from jsonargparse import (
    ActionConfigFile,
    ArgumentError,
    ArgumentParser,
    DefaultHelpFormatter,
    Namespace,
)

import geossl
from geossl import commands
from geossl.conf import resolve_config
from geossl.core.errors import ConfigError, GeosslError, GeosslWarning, Terminated, one_line


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keep the line breaks of each subcommand's docstring (its examples) in ``--help``."""


#: most values a YAML document may expand to through its aliases (``*name``): far more than
#: any configuration, far fewer than an "alias bomb" (nested aliases, billions of values)
MAX_YAML_VALUES = 100_000


def _yaml_load(stream: str) -> Any:
    """Jsonargparse's YAML loader, refusing a document whose aliases expand too far.

    A few nested aliases expand to billions of values when jsonargparse walks the loaded
    value, at 100 % CPU for ever. The expanded size is counted from the parser's events
    (which do not expand aliases: each anchor's size is known when its node ends) before
    anything is built; own code because PyYAML has no such limit.

    Raises:
        ConfigError: more than :data:`MAX_YAML_VALUES` values once aliases are expanded.
    """
    import yaml
    from jsonargparse._loaders_dumpers import yaml_load

    if "*" in stream and "&" in stream:
        sizes: dict[str, int] = {}
        stack: list[list[Any]] = [[None, 0]]  # [anchor, size] of each open collection
        try:
            for event in yaml.parse(stream, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.CollectionStartEvent):
                    stack.append([event.anchor, 1])
                    continue
                if isinstance(event, yaml.CollectionEndEvent):
                    anchor, size = stack.pop()
                elif isinstance(event, yaml.ScalarEvent):
                    anchor, size = event.anchor, 1
                elif isinstance(event, yaml.AliasEvent):
                    anchor, size = None, sizes.get(str(event.anchor), 1)
                else:
                    continue
                if anchor:
                    sizes[str(anchor)] = size
                stack[-1][1] += size
                if stack[-1][1] > MAX_YAML_VALUES:
                    raise ConfigError(f"YAML whose aliases expand to more than "
                                      f"{MAX_YAML_VALUES} values: refused (an alias bomb?)")
        except yaml.YAMLError:
            pass  # jsonargparse reports it (or takes the text as a plain string)
    return yaml_load(stream)


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
            try:
                _yaml_load(Path(values).read_bytes().decode("utf-8"))
            except UnicodeDecodeError as err:
                raise ConfigError(f"not UTF-8 text (byte {err.object[err.start]:#04x} at "
                                  f"offset {err.start}): save the file as UTF-8",
                                  values) from None
            except ConfigError as err:
                raise ConfigError(str(err), values) from None
            except OSError:
                pass  # jsonargparse names the file
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
    import yaml
    from jsonargparse import set_loader

    set_loader("yaml", _yaml_load, exceptions=(yaml.YAMLError,))
    parser = ArgumentParser(
        prog="geossl",
        description="Self-supervised learning on remote-sensing imagery.",
        env_prefix="GEOSSL",
        default_env=False,
        exit_on_error=False,  # errors are one line (main), not a usage block
    )
    parser.add_argument("--version", action="version", version=f"geossl {geossl.__version__}")
    sub = parser.add_subcommands(dest="command", required=True)
    mods = {}
    for mod in _command_modules():
        p = ArgumentParser(prog=f"geossl {mod.NAME}", description=mod.__doc__,
                           exit_on_error=False)
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


def _usage_error(err: BaseException, args: Sequence[str]) -> str:
    """One line for a parse error, naming the ``--config`` file that set the offending key."""
    import re

    import yaml

    text = one_line(err)
    if isinstance(err, GeosslError):
        return text
    keys = re.findall(r'(?:[Kk]ey "|keys?: |arguments?: |option \')([\w.-]+)', text)
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    for config in reversed(configs):
        try:
            doc = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and any(k.split(".")[0] in doc for k in keys):
            return f"{config}: {text}"
    return text


def _flag_names(text: str, parser: Any, command: str | None) -> str:
    """A parse error with the names the user types.

    jsonargparse names an argument ``<command>.<dest>``; this gives the flag (``--out``) of an
    option and the upper-case name (``CKPT``) of a positional.
    """
    import re

    if command is None:
        return text
    try:  # jsonargparse keeps each subcommand's parser in its subcommands action
        sub = parser._subcommands_action._name_parser_map[command]
    except (AttributeError, KeyError):
        return text
    names = {a.dest: (max(a.option_strings, key=len) if a.option_strings else a.dest.upper())
             for a in sub._actions}
    return re.sub(rf"\b{re.escape(command)}\.([\w-]+)",
                  lambda m: names.get(m.group(1), m.group(0)), text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: arguments (defaults to ``sys.argv[1:]``).

    Returns:
        the process exit status: 0 on success, 2 on a user error, 130 when interrupted
        (Ctrl-C), 143 when terminated (SIGTERM).
    """
    parser, mods = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parser.parse_args(args)
    except (ArgumentError, GeosslError) as err:
        command = next((a for a in args if a in mods), None)
        where = f"geossl {command}" if command else "geossl"
        text = _flag_names(_usage_error(err, args), parser, command)
        print(f"{where}: error: {text} (see {where} --help)",
              file=sys.stderr)
        return 2
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
        detail = one_line(err)  # e.g. where pretrain saved its state
        what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"geossl {name}: {what}" + (f": {detail}" if detail else ""), file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        sys.stderr, warnings.showwarning = stderr, show_warning
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
