"""The configurations shipped inside the package (``geossl/conf/``), found by name.

Every subcommand's ``--config`` takes a file path or the name of a shipped configuration::

    geossl config list                                   # the shipped configurations
    geossl config show pretrain/moco_sen12ms_geo         # print one
    geossl pretrain --config pretrain/moco_sen12ms_geo --root SEN12MS --out runs/geo

A name is the path under ``geossl/conf/`` without ``.yaml`` (``pretrain/moco_sen12ms_geo``);
``pretrain/moco_sen12ms_geo.yaml`` and ``conf/pretrain/moco_sen12ms_geo.yaml`` (the form older
docs use, from a source checkout) mean the same. A file that exists at the given path (relative
to the working folder) always wins over a shipped configuration of the same name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from geossl.errors import ConfigError

#: folder of the shipped configurations (this package's folder)
CONF_DIR = Path(__file__).resolve().parent
#: header keys that label a config rather than describe it (see geossl.conf.studies)
_LABEL_KEYS = ("study", "reproduces", "published", "settings", "difference", "open", "recipe")
#: prefixes a shipped name may carry (how the configs were addressed in a source checkout)
_PREFIXES = ("geossl/conf/", "conf/")


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
    return [ShippedConfig(p.relative_to(CONF_DIR).with_suffix("").as_posix(), p, _summary(p))
            for p in sorted(CONF_DIR.rglob("*.yaml"))]


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


def describe(name: str | None = None) -> str:
    """Text of ``geossl config``: the list of shipped configurations, or one of them.

    Args:
        name: a shipped configuration (or a file) to print; None lists them all.
    """
    if name is not None:
        path = resolve_config(name)
        return f"# {path}\n{path.read_text(encoding='utf-8')}"
    from geossl.conf.studies import source_of

    configs = list_configs()
    width = max(len(c.name) for c in configs)
    groups: dict[str, list[str]] = {}
    for c in configs:
        source = source_of(c.path)
        kind = source.split(" ", 1)[0]
        text = source.removeprefix("experiment ") if kind == "experiment" else c.summary
        groups.setdefault(kind, []).append(f"  {c.name:<{width}}  {text}".rstrip())
    titles = {"experiment": "experiments: runs of the four studies (study: the table or figure "
                            "it reproduces; `geossl config show NAME` for its settings)",
              "method": "method configs (no study)",
              "recipe": "recipes: starting points for your own runs, not runs of a study",
              "defaults": "defaults of a command and dataset references"}
    lines = [f"{len(configs)} configurations shipped in {CONF_DIR} (use the name with --config):"]
    for kind, title in titles.items():
        if groups.get(kind):
            lines += [title, *groups[kind]]
    return "\n".join(lines)
