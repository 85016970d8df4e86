"""One config class per command: flags generated from it, defaults stated once, validated once.

For ``evaluate``, ``embed``, ``split``, ``stats``, ``bench train`` (and ``pretrain``): the
command's flags are exactly the fields of its config class; parsing no optional flag gives
exactly the class's defaults (so a default cannot be stated twice and drift); the library
function the command calls takes that class, not loose parameters; a bad value is one line
naming the flag, exit code 2.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

import pytest

from geossl.bench.config import BenchConfig
from geossl.cli import build_parser, main
from geossl.core.options import NO_FLAG, config_from, field_default
from geossl.data.config import StatsConfig
from geossl.eval.config import EvaluateConfig
from geossl.inference.config import EmbedConfig, ExportConfig
from geossl.splits.config import SplitConfig
from geossl.training.config import PretrainConfig

#: command -> (config class, the arguments it requires, the keyword arguments they give)
COMMANDS: dict[str, tuple[type[Any], list[str], dict[str, Any]]] = {
    "evaluate": (EvaluateConfig, ["random", "--data", "aid"], {"ckpt": "random", "data": "aid"}),
    "embed": (EmbedConfig, ["ck.ckpt", "scene.tif", "--out", "e.zarr"],
              {"ckpt": "ck.ckpt", "scene": "scene.tif", "out": "e.zarr"}),
    "split": (SplitConfig, [], {}),
    "stats": (StatsConfig, ["--data", "chips", "--root", "chips"],
              {"data": "chips", "root": "chips"}),
    "pretrain": (PretrainConfig, [], {}),
    "export": (ExportConfig, ["ck.ckpt", "--out", "o.ckpt"], {"ckpt": "ck.ckpt", "out": "o.ckpt"}),
}


def _subparser(command: str) -> Any:
    parser, _ = build_parser()
    return parser._subcommands_action._name_parser_map[command]  # type: ignore[union-attr]


def _dests(parser: Any) -> set[str]:
    return {a.dest.replace("-", "_") for a in parser._actions} - {"help", "config", "print_config"}


def _flag_fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get(NO_FLAG)]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flags_are_the_config_fields_with_their_defaults(command: str) -> None:
    cls, _, _ = COMMANDS[command]
    sub = _subparser(command)
    assert _dests(sub) == {f.name for f in _flag_fields(cls)}
    defaults = sub.get_defaults()
    for field in _flag_fields(cls):
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            continue  # required: no default to compare
        assert defaults[field.name] == field_default(field), field.name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_optional_flag_gives_the_config_defaults(command: str) -> None:
    cls, argv, required = COMMANDS[command]
    parser, _ = build_parser()
    ns = parser.parse_args([command, *argv])[command]
    if cls is PretrainConfig:
        assert PretrainConfig.from_namespace(ns) == PretrainConfig(**required)
    else:
        assert config_from(cls, ns) == cls(**required)


def test_bench_train_flags_give_the_config_defaults() -> None:
    from geossl.commands.bench import train_config

    parser, _ = build_parser()
    ns = parser.parse_args(["bench", "train"])["bench"]
    assert train_config(ns, []) == BenchConfig()
    assert train_config(ns, ["--batch-size", "8", "--no-compile"]).batch_size == 8
    sub = _subparser("bench")
    assert _dests(sub) - {"what", "args"} == {f.name for f in _flag_fields(BenchConfig)}


def _library_functions() -> list[tuple[Callable[..., Any], type[Any]]]:
    from geossl.bench.train import bench_train
    from geossl.data.stats import dataset_stats
    from geossl.eval.run import evaluate
    from geossl.inference.embed import embed
    from geossl.splits import split_and_save
    from geossl.training.trainer import pretrain

    return [(evaluate, EvaluateConfig), (embed, EmbedConfig), (split_and_save, SplitConfig),
            (dataset_stats, StatsConfig), (bench_train, BenchConfig),
            (pretrain, PretrainConfig)]


def test_the_library_functions_take_the_config() -> None:
    for func, cls in _library_functions():
        params = list(inspect.signature(func).parameters)
        assert typing.get_type_hints(func)[params[0]] is cls, func.__qualname__
        # no option beside the config (pretrain also takes Lightning callbacks, not a flag)
        assert params[1:] == ([] if cls is not PretrainConfig else ["callbacks"]), params


@pytest.mark.parametrize("argv, flag", [
    (["evaluate", "random"], "--data is required"),
    (["evaluate", "random", "--data", "aid", "--seeds", "0,x"], "--seeds"),
    (["evaluate", "random", "--data", "aid", "--data-args", "[1]"], "--data-args"),
    (["embed", "c.ckpt", "s.tif", "--out", "o.zarr", "--size", "0"], "--size"),
    (["embed", "c.ckpt", "s.tif", "--out", "o.zarr", "--clusters", "-1"], "--clusters"),
    (["embed", "c.ckpt", "s.tif", "--out", "o.zarr", "--scheduler", "tcp://a:1",
      "--scheduler-file", "f.json"], "--scheduler-file"),
    (["split", "--fractions", "0.8,x"], "--fractions"),
    (["split", "--strategy", "checkerboard", "--origin", "1,2,3"], "--origin"),
    (["stats", "--data", "chips", "--root", "c", "--max-samples", "0"], "--max-samples"),
    (["stats", "--data", "chips"], "--root is required"),
    (["export", "c.ckpt", "--out", "o.ckpt", "--task", "detection"], "--task"),
    (["export", "c.ckpt", "--out", "o.ckpt", "--format", "onnx"], "--format"),
    (["export", "c.ckpt", "--out", "o.pth", "--format", "timm", "--task", "segmentation"],
     "--format timm"),
])
def test_bad_values_are_one_line_naming_the_flag(argv: list[str], flag: str, tmp_path: Any,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_python_callers_get_the_same_checks() -> None:
    """The text forms of the flags are accepted from Python too, normalised the same way."""
    from geossl.core.errors import ConfigError

    text: Any = "ten"

    with pytest.raises(ConfigError, match="--labels-per-class"):
        EvaluateConfig("random", data="aid", labels_per_class=text)
    text = "10,50"
    assert EvaluateConfig("random", data="aid", labels_per_class=text).labels_per_class == \
        [10, 50]
    assert SplitConfig(strategy="checkerboard").fractions == [0.5, 0.5]
    text = "10,20"
    assert SplitConfig(origin=text).origin == (10.0, 20.0)
    text = "B04, B03"
    assert EmbedConfig("c", "s", "o", bands=text).bands == ["B04", "B03"]


#: ``geossl bench WHAT`` -> (module, config class, its library function); polsar has its own
#: PolsarBenchConfig (flags generated from it by geossl.bench.polsar_report)
BENCH_TOOLS = {"data": ("geossl.bench.data", "DataBenchConfig", "bench_data"),
               "splits": ("geossl.bench.splits", "SplitsBenchConfig", "bench_splits"),
               "scale": ("geossl.bench.scale", "ScaleBenchConfig", "bench_scale"),
               "ddp": ("geossl.bench.ddp", "DdpBenchConfig", "bench_ddp"),
               "weights": ("geossl.bench.weights", "WeightsBenchConfig", "bench_weights"),
               "search": ("geossl.bench.search", "SearchBenchConfig", "bench_search"),
               "samplers": ("geossl.bench.samplers", "SamplersBenchConfig", "bench_samplers")}


@pytest.mark.parametrize("what", sorted(BENCH_TOOLS))
def test_bench_tools_flags_are_their_config(what: str, tmp_path: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from geossl.commands.bench import TOOLS

    monkeypatch.setenv("GEOSSL_REAL_DATA", str(tmp_path))  # bench samplers' default --root
    name, cls_name, func_name = BENCH_TOOLS[what]
    assert TOOLS[what] == name
    module = importlib.import_module(name)
    cls = getattr(module, cls_name)
    parser = module.build_parser(f"geossl bench {what}")
    assert _dests(parser) == {f.name for f in _flag_fields(cls)}
    assert config_from(cls, parser.parse_args([])) == cls()
    func = getattr(module, func_name)
    params = list(inspect.signature(func).parameters)
    assert typing.get_type_hints(func)[params[0]] is cls
    assert params[1:] in ([], ["log"]), params  # where the table goes, not an option


@pytest.mark.parametrize(("argv", "names"), [
    (["export"], "CKPT, --out"),
    (["embed", "a.ckpt", "b.tif"], "--out"),
])
def test_missing_required_arguments_are_named_as_typed(
        argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing required argument is named as the user types it (``--out``, ``CKPT``), not by
    the parser's internal key (``export.out``): one line, exit 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"required: {names} " in err[0], err
    assert f"{argv[0]}." not in err[0]
