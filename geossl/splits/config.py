"""Configuration of :func:`geossl.splits.split_and_save`: the one declaration of ``geossl split``.

Each field of :class:`SplitConfig` is an option of the library function and a flag of the
command (``block_size`` -> ``--block-size``, a key of ``--config`` YAML files) with its default
and help declared once (:func:`geossl.core.options.option`); ``__post_init__`` normalises and checks
the values. Light (no pandas): the command line imports it to build its parser.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from geossl.core.errors import ConfigError
from geossl.core.options import option, parse_mapping, parse_names

#: default block side (``block``, ``checkerboard``) in metres: 4 SEN12MS patches (256 px at
#: 10 m = 2560 m) per side, so that few patches straddle a block border (see
#: conf/split.yaml for why)
DEFAULT_BLOCK_SIZE = 10240.0


def _data_help() -> str:
    from geossl.datasets.registry import data_help

    return data_help()


def _numbers(flag: str, value: Any) -> list[float]:
    """``"0.8,0.2"`` (or a list) -> ``[0.8, 0.2]``.

    Raises:
        ConfigError: not numbers, naming the flag.
    """
    items = list(value) if isinstance(value, list | tuple) else str(value).split(",")
    try:
        return [float(v) for v in items if str(v).strip()]
    except ValueError as err:
        raise ConfigError(f"--{flag} must be numbers (comma-separated), got {value!r}") from err


@dataclasses.dataclass
class SplitConfig:
    """Everything one split needs: the one declaration of ``geossl split``'s flags."""

    index: str | os.PathLike[str] | None = option(
        None, "GeoParquet of footprints (chip index, SEN12MS footprints, ...)",
        flag_type=str | None)
    data: str | None = option(None, _data_help)
    root: str | os.PathLike[str] | None = option(None, "dataset folder", flag_type=str | None)
    data_args: dict[str, Any] = option(
        factory=dict, flag_type=str | dict[str, Any] | None,
        help="dataset arguments as a YAML/JSON mapping, e.g. '{holdout: train}' (SEN12MS: the "
        "training scenes only)")
    strategy: str = option("overlap", "overlap, block, scene, random, nonoverlapping or "
                           "checkerboard")
    fractions: list[float] | None = option(
        None, "comma-separated fractions: train,test or train,val,test (default 0.8,0.2; "
        "0.5,0.5 for checkerboard)", flag_type=str | None)
    names: list[str] | None = option(
        None, "comma-separated split names (default train,test / train,val,test)",
        flag_type=str | None)
    buffer: float = option(0.0, "metres (pixels for a pixel grid): chips closer than this never "
                           "fall in different splits")
    block_size: float = option(
        DEFAULT_BLOCK_SIZE, "block side in metres, or pixels for a pixel grid (strategies block "
        "and checkerboard); the default holds 4 x 4 SEN12MS patches")
    assign: str = option("footprint", "checkerboard: 'footprint' drops chips straddling a block "
                         "border, 'centroid' places them by their centre")
    origin: tuple[float, float] | None = option(
        None, "checkerboard: 'x,y' of a block corner in CRS units (default 0,0)",
        flag_type=str | None)
    label: str | None = option("label", "class column to stratify on when present (null: no "
                               "stratification)")
    scenes: list[str] | None = option(None, "comma-separated test scene ids (strategy scene)",
                                      flag_type=str | None)
    holdout: str | None = option(None, "'sen12ms': the official SEN12MS hold-out scenes are "
                                 "the test side")
    seed: int = option(0, "random seed")
    out: str | os.PathLike[str] = option(
        "splits.json", "split file to write: .json (chip ids) or .parquet (GeoParquet)",
        flag_type=str)
    report: bool = option(False, "print the leakage report between the splits", bare=True)

    def __post_init__(self) -> None:
        """Normalise the values given as text (``"0.8,0.2"``, ``"x,y"``) and check them.

        Raises:
            ConfigError: one line naming the flag.
        """
        if self.fractions is None:
            self.fractions = [0.5, 0.5] if self.strategy == "checkerboard" else [0.8, 0.2]
        self.fractions = _numbers("fractions", self.fractions)
        if self.origin is not None:
            xy = _numbers("origin", self.origin)
            if len(xy) != 2:
                raise ConfigError(f"--origin must be 'x,y', got {self.origin!r}")
            self.origin = (xy[0], xy[1])
        self.names = parse_names(self.names)
        self.scenes = parse_names(self.scenes)
        self.data_args = parse_mapping("--data-args", self.data_args)
