"""Declare a configuration option once: a dataclass field with its default and its help.

The library's configuration dataclasses (e.g. :class:`geossl.training.trainer.PretrainConfig`)
declare
every option with :func:`option`; the command line is generated from them
(:func:`geossl.commands._common.add_dataclass_flags`), so a flag's name, type, default and help
exist in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

#: field metadata keys: the flag's help (a string, or a callable giving it when the parser is
#: built), and the type the flag parses when it is wider than the field's (e.g. ``"s1,s2"`` for
#: a list)
HELP, FLAG_TYPE = "help", "flag_type"
#: further field metadata keys: the flag is positional (``geossl evaluate CKPT``); a boolean
#: flag given bare or with a value (``--bf16``, ``--bf16 false``) instead of ``--x``/``--no-x``;
#: the option is the library's only (no flag)
POSITIONAL, BARE, NO_FLAG = "positional", "bare", "no_flag"

_C = TypeVar("_C")


def option(
    default: Any = dataclasses.MISSING,
    help: str | Callable[[], str] = "",
    *,
    factory: Callable[[], Any] | None = None,
    flag_type: Any = None,
    positional: bool = False,
    bare: bool = False,
    flag: bool = True,
) -> Any:
    """A dataclass field with the help of its command-line flag.

    Args:
        default: the default value (immutable; use ``factory`` for lists and dicts).
        help: what the option does, as ``--help`` shows it.
        factory: builds a mutable default.
        flag_type: the type the flag parses, when wider than the field's type (the library
            then normalises the value, e.g. ``"s1,s2"`` -> ``["s1", "s2"]``).
        positional: a positional argument (``geossl evaluate CKPT``), not a ``--flag``.
        bare: a boolean flag given bare or with a value (``--report``, ``--report false``)
            rather than the ``--name`` / ``--no-name`` pair.
        flag: False for an option of the library only (e.g. a cache folder that tests set):
            no command-line flag.

    Returns:
        a :func:`dataclasses.field`.
    """
    metadata: dict[str, Any] = {HELP: help}
    if flag_type is not None:
        metadata[FLAG_TYPE] = flag_type
    if positional:
        metadata[POSITIONAL] = True
    if bare:
        metadata[BARE] = True
    if not flag:
        metadata[NO_FLAG] = True
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_default(field: dataclasses.Field[Any]) -> Any:
    """The default of a dataclass field (a fresh one for a factory; ``MISSING`` if none)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def field_help(field: dataclasses.Field[Any]) -> str:
    """The help of a field declared with :func:`option` (empty if none)."""
    text = field.metadata.get(HELP, "")
    return str(text() if callable(text) else text)


def config_from(cls: type[_C], values: Any, **overrides: Any) -> _C:
    """Build the configuration dataclass ``cls`` from a parsed command line.

    Args:
        cls: a dataclass declared with :func:`option`.
        values: a jsonargparse/argparse namespace or a mapping; keys spelt with dashes
            (``batch-size``) or underscores; keys that are not fields (``config``,
            ``__path__``, ...) are ignored.
        overrides: values that replace those of ``values``.

    Returns:
        ``cls(**fields)``: its own ``__post_init__`` normalises and validates the values.
    """
    if hasattr(values, "as_dict"):
        values = values.as_dict()
    elif not isinstance(values, Mapping):
        values = vars(values)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {str(k).replace("-", "_"): v for k, v in dict(values).items()}
    kwargs = {k: v for k, v in kwargs.items() if k in names}
    kwargs.update(overrides)
    return cls(**kwargs)


def parse_mapping(flag: str, text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A flag holding a YAML/JSON mapping (``'{patch_size: 16}'``, or a mapping from YAML).

    Args:
        flag: the flag's name for the error, e.g. ``--data-args``.
        text: the flag's value; ``None`` or ``""``: empty.

    Raises:
        ConfigError: not YAML/JSON, or not a mapping.
    """
    from geossl.core.errors import ConfigError, first_line

    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return {str(k): v for k, v in text.items()}
    import yaml

    try:
        value = yaml.safe_load(str(text))
    except yaml.YAMLError as err:
        raise ConfigError(f"{flag} is not YAML/JSON ({first_line(err)})") from err
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a mapping such as '{{patch_size: 16}}', got {text!r}")
    return {str(k): v for k, v in value.items()}


def parse_ints(flag: str, value: Any) -> list[int] | None:
    """``"10,50"`` (or ``10``, or ``[10, 50]``) -> ``[10, 50]``; ``None`` or ``""`` -> ``None``.

    Raises:
        ConfigError: a value that is not comma-separated whole numbers, naming ``flag``.
    """
    from geossl.core.errors import ConfigError

    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{flag} expects comma-separated integers, got {value!r}")
    if isinstance(value, int):
        return [value]
    items = list(value) if isinstance(value, list | tuple) else str(value).split(",")
    try:
        return [int(str(t).strip()) for t in items if str(t).strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers, got {value!r}") from None


def parse_names(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``"B04,B03"`` (or a list) -> ``["B04", "B03"]``; ``None``, ``""`` or empty -> ``None``."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()] or None


def add_argparse_flags(parser: Any, config: type[Any]) -> None:
    """One flag per field of ``config`` on a plain :class:`argparse.ArgumentParser`.

    For the benchmarks' own parsers (``geossl bench WHAT``): ``n_files`` -> ``--n-files`` with
    the field's default and help; a boolean field defaulting to False is a bare ``--name``
    (True: ``--name`` / ``--no-name``); ``str | None`` and the like parse the non-None type;
    a field with a ``flag_type`` parses that type (e.g. ``"64,128"`` for a list the config's
    ``__post_init__`` splits).
    """
    import argparse
    import sys
    import types
    import typing

    for field in dataclasses.fields(config):
        if field.metadata.get(NO_FLAG):
            continue
        kind = field.metadata.get(FLAG_TYPE)
        if kind is None:
            kind = typing.get_type_hints(
                type("_Field", (), {"__annotations__": {field.name: field.type}}),
                vars(sys.modules[config.__module__]))[field.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if isinstance(kind, types.UnionType) and len(args) == 1:
            kind = args[0]
        name = "--" + field.name.replace("_", "-")
        default, text = field_default(field), field_help(field)
        if kind is bool and default is False:
            parser.add_argument(name, action="store_true", help=text)
        elif kind is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default,
                                help=text)
        else:
            parser.add_argument(name, type=kind, default=default, help=text)


def empty_to_default(config: Any, *names: str) -> None:
    """Give the fields ``names`` of ``config`` that are ``None`` or empty their declared default.

    For options a YAML file or a Python caller may leave empty (``preprocess: null``), so that
    the default stays stated once, in the field.
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    for name in names:
        if not getattr(config, name):  # as ``value or default``
            setattr(config, name, field_default(fields[name]))
