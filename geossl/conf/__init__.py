"""The shipped configurations (the repository's top-level ``conf/``), found by name.

Every subcommand's ``--config`` takes a file path or the name of a shipped configuration::

    geossl config list                                   # the shipped configurations
    geossl config show pretrain/moco_sen12ms_geo         # print one
    geossl pretrain --config pretrain/moco_sen12ms_geo --root SEN12MS --out runs/geo

A name is the path under ``conf/`` without ``.yaml`` (``pretrain/moco_sen12ms_geo``);
``pretrain/moco_sen12ms_geo.yaml``, ``conf/pretrain/moco_sen12ms_geo.yaml`` (the path in a source
checkout) and ``geossl/conf/pretrain/moco_sen12ms_geo.yaml`` (where older releases kept them)
mean the same. A file that exists at the given path (relative to the working folder) always wins
over a shipped configuration of the same name.

The YAML files live once, in the repository's top-level ``conf/``; the build backend maps that
folder into the wheel as ``geossl/_conf/`` (``setup.py``: ``package_dir``). :func:`conf_dir` is
the one place that decides which copy is used: the packaged ``geossl/_conf/`` of an installed
wheel, else the ``conf/`` beside the ``geossl/`` folder of a source checkout (an editable install,
or ``PYTHONPATH`` pointing at the checkout).
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path

from geossl.core.errors import ConfigError

#: the ``geossl/`` package folder
_PACKAGE = Path(__file__).resolve().parents[1]
#: header keys that label a config rather than describe it (see geossl.conf.studies)
_LABEL_KEYS = ("study", "reproduces", "published", "settings", "difference", "open", "recipe")
#: prefixes a shipped name may carry: its path in a source checkout, and where older releases
#: kept the configs (inside the package)
_PREFIXES = ("geossl/conf/", "conf/")


def locate_conf(package: Path) -> Path:
    """The folder of the shipped configurations for the ``geossl/`` package folder ``package``.

    In order: ``package/_conf`` (an installed wheel: the build backend maps the top-level
    ``conf/`` there), then ``conf/`` beside ``package`` when ``pyproject.toml`` is there too (a
    source checkout: an editable install, or ``PYTHONPATH`` pointing at the checkout; an unrelated
    ``conf/`` beside an installed ``geossl/`` in site-packages is never taken for it).

    Raises:
        ConfigError: neither exists (a wheel built without its configurations).
    """
    packaged, checkout = package / "_conf", package.parent / "conf"
    if packaged.is_dir():
        return packaged
    if checkout.is_dir() and (package.parent / "pyproject.toml").is_file():
        return checkout
    raise ConfigError(f"the shipped configurations are missing: neither {packaged} nor a "
                      f"checkout's {checkout} exists (reinstall geossl, or run from a checkout)")


@functools.cache
def conf_dir() -> Path:
    """The folder of the shipped configurations: the one locator every lookup goes through.

    Raises:
        ConfigError: it is missing (see :func:`locate_conf`).
    """
    return locate_conf(_PACKAGE)


def __getattr__(name: str) -> Path:
    # CONF_DIR, the older constant, kept for callers: located on first use by conf_dir()
    if name == "CONF_DIR":
        return conf_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class ShippedConfig:
    """One shipped configuration.

    Attributes:
        name: its name (``pretrain/moco_sen12ms_geo``).
        path: the YAML file.
        summary: the first line of its header comment.
    """

    name: str
    path: Path
    summary: str


def _summary(path: Path, width: int = 76) -> str:
    """First descriptive line of the file's header comment (usage lines skipped), shortened."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text or text.startswith("Run:") or (text.startswith("geossl ") and "--" in text):
            continue
        if text.partition(":")[0] in _LABEL_KEYS:  # the label lines (geossl.conf.studies)
            continue
        return text if len(text) <= width else text[: width - 3].rsplit(" ", 1)[0] + " ..."
    return ""


def list_configs() -> list[ShippedConfig]:
    """Every shipped configuration, sorted by name."""
    folder = conf_dir()
    return [ShippedConfig(p.relative_to(folder).with_suffix("").as_posix(), p, _summary(p))
            for p in sorted(folder.rglob("*.yaml"))]


def _name(value: str) -> str:
    name = value.replace("\\", "/")
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.removesuffix(".yaml").removesuffix(".yml")


def shipped_config(name: str) -> Path:
    """The YAML file of the shipped configuration ``name``.

    Raises:
        ConfigError: no shipped configuration has that name (the message suggests close ones).
    """
    key = _name(name)
    names = {c.name: c.path for c in list_configs()}
    if key in names:
        return names[key]
    close = difflib.get_close_matches(key, list(names), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"no config file {name!r} and no shipped config of that name; {hint}"
                      "`geossl config list` lists them")


def resolve_config(value: str) -> Path:
    """The file ``--config VALUE`` means: that path if it exists, else a shipped configuration.

    Raises:
        ConfigError: neither exists.
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ConfigError(f"{value}: not a file")
    return shipped_config(value)
