"""Flags shared by several subcommands, spelt the same everywhere."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from jsonargparse import ActionYesNo, ArgumentParser

from geossl.core.options import BARE, FLAG_TYPE, NO_FLAG, POSITIONAL, field_default, field_help
from geossl.datasets.registry import data_help


def add_data(parser: ArgumentParser, default: str | None = None, required: bool = False) -> None:
    """Add ``--data NAME`` (which dataset) and ``--root DIR`` (its folder)."""
    parser.add_argument(
        "--data",
        type=str | None if not required else str,
        default=default,
        help=data_help(),
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


def add_scheduler(parser: ArgumentParser) -> None:
    """Add ``--scheduler tcp://HOST:PORT`` (run the job's tasks on an existing Dask cluster)."""
    from geossl.runtime.dask import SCHEDULER_HELP

    parser.add_argument("--scheduler", type=str | None, default=None, help=SCHEDULER_HELP)


def add_scheduler_file(parser: ArgumentParser) -> None:
    """Add ``--scheduler-file PATH`` (the JSON ``dask scheduler --scheduler-file`` writes)."""
    from geossl.runtime.dask import SCHEDULER_FILE_HELP

    parser.add_argument("--scheduler-file", type=str | None, default=None,
                        help=SCHEDULER_FILE_HELP)


def scheduler(cfg: Any) -> str | None:
    """The scheduler address of ``--scheduler`` or ``--scheduler-file`` (None: neither).

    Raises:
        ConfigError: both given, or a scheduler file that is missing or damaged.
    """
    from geossl.runtime.dask import scheduler_of

    return scheduler_of(cfg.get("scheduler"), cfg.get("scheduler_file", cfg.get("scheduler-file")))


#: keyword arguments for a boolean flag given bare or with a value: ``--report``,
#: ``--report true``, ``--report false`` (``report: true`` in YAML).
FLAG: dict[str, Any] = {"type": bool, "nargs": "?", "const": True}


def yes_no() -> ActionYesNo:
    """A boolean flag usable bare: ``--report`` / ``--no-report`` (``report: true`` in YAML)."""
    return ActionYesNo(yes_prefix="", no_prefix="no-")


def add_dataclass_flags(parser: ArgumentParser, config: type[Any]) -> None:
    """One flag per field of a configuration dataclass, in field order.

    ``batch_size`` becomes ``--batch-size`` (``batch_size`` in ``--config`` YAML); the type is
    the field's (or its ``flag_type``, see :func:`geossl.core.options.option`), the default the
    field's, the help its metadata's; a boolean field is a ``--name`` / ``--no-name`` flag
    (``bare``: ``--name`` or ``--name true|false``); a ``positional`` field is a positional
    argument; a field without a default is a required argument; a field declared with
    ``flag=False`` has no flag.
    """
    for field in dataclasses.fields(config):
        if field.metadata.get(NO_FLAG):
            continue
        name = "--" + field.name.replace("_", "-")
        default, text = field_default(field), field_help(field)
        kind = field.metadata.get(FLAG_TYPE) or _field_type(config, field)
        if field.metadata.get(POSITIONAL):
            extra = {} if default is dataclasses.MISSING else {"nargs": "?", "default": default}
            parser.add_argument(field.name, type=kind, help=text, **extra)
        elif default is dataclasses.MISSING:
            parser.add_argument(name, type=kind, required=True, help=text)
        elif kind is bool and field.metadata.get(BARE):
            parser.add_argument(name, default=default, help=text, **FLAG)
        elif kind is bool:
            parser.add_argument(name, action=yes_no(), default=default, help=text)
        else:
            parser.add_argument(name, type=kind, default=default, help=text)


def _field_type(config: type[Any], field: dataclasses.Field[Any]) -> Any:
    """The type of one field, its annotation evaluated alone.

    Field by field, not :func:`typing.get_type_hints` of the class: a field with a
    ``flag_type`` may be annotated with a type imported for type checking only (an
    ``EncoderSource``, which would bring torch into the parser).
    """
    import sys

    if not isinstance(field.type, str):
        return field.type
    hints = typing.get_type_hints(
        type("_Field", (), {"__annotations__": {field.name: field.type}}),
        vars(sys.modules[config.__module__]))
    return hints[field.name]


def band_list(value: Any) -> list[str] | None:
    """``"B04,B03,B02"`` (or a list) -> ``["B04", "B03", "B02"]``; ``None`` stays ``None``."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()] or None


def add_split_names(parser: ArgumentParser) -> None:
    """Add ``--train-split`` / ``--test-split`` (the sides of a saved or the dataset's split)."""
    parser.add_argument("--train-split", type=str, default="train",
                        help="name of the training side in --splits or the dataset's own split")
    parser.add_argument("--test-split", type=str, default="test",
                        help="name of the test side in --splits or the dataset's own split")


def add_extraction(parser: ArgumentParser) -> None:
    """Add ``--batch-size``, ``--accelerator`` and ``--bf16`` of feature extraction."""
    parser.add_argument("--batch-size", type=int, default=256, help="extraction batch size")
    parser.add_argument("--accelerator", type=str, default="auto", help="cpu, gpu or auto")
    parser.add_argument("--bf16", default=False, help="bf16 autocast", **FLAG)


def add_finetune(parser: ArgumentParser, steps_help: str) -> None:
    """Add ``--finetune-steps``, ``--finetune-lr`` and ``--finetune-batch-size``.

    Args:
        parser: the subcommand's parser.
        steps_help: help of ``--finetune-steps`` (which rows or encoders the steps are of).
    """
    parser.add_argument("--finetune-steps", type=int, default=200, help=steps_help)
    parser.add_argument("--finetune-lr", type=float, default=1e-3,
                        help="learning rate of the fine-tuned and from-scratch encoders")
    parser.add_argument("--finetune-batch-size", type=int, default=64,
                        help="batch size of the fine-tuned and from-scratch encoders")


def get(cfg: Any, name: str) -> Any:
    """``cfg[name]``, also when the parser keeps the flag's dashed spelling (``batch-size``)."""
    return cfg.get(name, cfg.get(name.replace("_", "-")))


def ints(value: Any) -> list[int] | None:
    """``"10,50"`` (or ``10``, or ``[10, 50]``) -> ``[10, 50]``; ``None`` or ``""`` -> ``None``.

    Raises:
        ConfigError: a value that is not comma-separated integers.
    """
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value]
    from geossl.core.errors import ConfigError

    try:
        return [int(t) for t in str(value).split(",") if t.strip()]
    except ValueError as err:
        raise ConfigError(f"expected comma-separated integers, got {value!r}") from err
