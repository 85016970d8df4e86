"""Declare a configuration option once: a dataclass field with its default and its help.

The library's configuration dataclasses (e.g. :class:`geossl.train.PretrainConfig`) declare
every option with :func:`option`; the command line is generated from them
(:func:`geossl.commands._common.add_dataclass_flags`), so a flag's name, type, default and help
exist in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

#: field metadata keys: the flag's help (a string, or a callable giving it when the parser is
#: built), and the type the flag parses when it is wider than the field's (e.g. ``"s1,s2"`` for
#: a list)
HELP, FLAG_TYPE = "help", "flag_type"


def option(
    default: Any = dataclasses.MISSING,
    help: str | Callable[[], str] = "",
    *,
    factory: Callable[[], Any] | None = None,
    flag_type: Any = None,
) -> Any:
    """A dataclass field with the help of its command-line flag.

    Args:
        default: the default value (immutable; use ``factory`` for lists and dicts).
        help: what the option does, as ``--help`` shows it.
        factory: builds a mutable default.
        flag_type: the type the flag parses, when wider than the field's type (the library
            then normalises the value, e.g. ``"s1,s2"`` -> ``["s1", "s2"]``).

    Returns:
        a :func:`dataclasses.field`.
    """
    metadata: dict[str, Any] = {HELP: help}
    if flag_type is not None:
        metadata[FLAG_TYPE] = flag_type
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
