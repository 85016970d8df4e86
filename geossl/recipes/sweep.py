"""Grids of pretraining runs (``geossl sweep``): every cell trained, evaluated, tabulated.

A sweep is a pretraining configuration, a grid of values for some of its keys, and optionally
an evaluation of every run. It is written as a YAML file::

    pretrain: simclr_bigearthnet.yaml      # a `geossl pretrain` config (relative to this file),
                                            # or the pretrain keys inline as a mapping
    grid:                                   # one run per combination, in this order
      batch_size: [256, 1024, 2048]
      temperature: [0.25, 0.5]
    evaluate:                               # optional: `geossl evaluate` flags for every run
      data: bigearthnet
      protocol: linear
      task: farmland

or given on the command line (``geossl sweep PRETRAIN.yaml --grid batch_size=256,1024
--grid temperature=0.25,0.5``; ``--grid`` entries add to or replace the file's grid).

A grid value may be a mapping that sets several options together (values that must move
together, e.g. a fixed learning rate: no linear scaling with the batch)::

    grid:
      batch_size:
        - {batch_size: 256, method_args.base_batch_size: 256}
        - {batch_size: 1024, method_args.base_batch_size: 1024}

Such a cell is named by the mapping's entry of the grid key (``batch_size=256``), else its
``name`` entry.

Learning rate across batch sizes (``scale_lr:`` in the file, ``--scale-lr`` on the command line):
a pretraining ``lr`` is the rate for ``method_args.base_batch_size`` samples (256 unless set), so
sweeping ``batch_size`` alone would change the rate each cell trains at. By default
(``scale_lr: none``) every cell whose batch the grid changes trains at the base config's rate:
its ``lr`` becomes the rate the base config runs at and ``method_args.base_batch_size`` its own
batch (a cell that sets ``method_args.base_batch_size`` itself is left as it is).
``scale_lr: linear`` scales the rate linearly with the batch (``lr x batch / base_batch_size``,
the rule of Goyal et al. 2017), only when asked.

Each cell runs in ``OUT/<key>=<value>,<key>=<value>/``: its effective config is written as
``pretrain.yaml`` (and ``evaluate.yaml``), then ``geossl pretrain --config pretrain.yaml
--resume last`` and ``geossl evaluate --config evaluate.yaml`` run as child processes, one
cell after the other, their output going to the console and to ``run.log``. Child processes
rather than calls in this process: every run starts from a clean state (GPU memory, Lightning
globals), a crash in one cell is recorded as that cell's failure, and each run is exactly what
the command line does.

Resumable: a cell is finished once ``OUT/<cell>/cell.json`` exists (written atomically after
its pretraining and evaluation succeeded). Rerunning the same command skips finished cells and
continues the others from their last checkpoint (``--resume last``).

Results: ``OUT/results.csv`` and ``OUT/results.md``, one row per cell: its grid values, status,
optimiser steps, the last logged training loss, contrastive top-1 accuracy and online-probe
accuracy, and the mean of every evaluation metric (``linear oa``, ``farmland linear
sensitivity``, ...). Written after every cell, so a partial sweep has a partial table. When the
grid repeats cells over ``seed`` (``--grid seed=0,1,2``), ``OUT/results_repeats.md`` also has
one row per cell of the other keys, every value as mean ± std over its finished repeats. When
the grid sweeps the pretraining length (``--grid max_epochs=10,25,50``), ``OUT/results_epochs.md``
is the epochs table: one row per number of pretraining epochs (per cell of the other keys),
every result as mean ± std over repeats. When it sweeps a chip / image size (``img_size`` or
``patch_size``), ``OUT/accuracy_vs_<key>.png`` is the chip-size figure: every accuracy-like
result against the size, one line per cell of the other keys (e.g. per backbone).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from geossl.core.errors import ConfigError, DataError, first_line
from geossl.core.io import atomic_path, atomic_write_text, jsonable

#: file marking a finished cell
DONE = "cell.json"
#: the grid key whose values are the pretraining lengths of the epochs table
EPOCHS_KEY = "max_epochs"
#: grid keys that are a chip / image size (the first swept one is the size figure's x axis)
SIZE_KEYS = ("img_size", "patch_size")
#: metrics drawn against the chip size (accuracy-like columns of the table)
SIZE_METRICS = ("oa", "map_macro", "accuracy", "nmi", "acc")
#: logged columns reported per cell (CSV log column -> table column)
LOGGED = {"train/loss": "loss", "train/contrastive_acc": "contrastive_acc",
          "probe/acc_epoch": "probe_acc", "probe/map_epoch": "probe_map"}
#: evaluation metrics reported per cell, in this order
EVAL_METRICS = ("oa", "aa", "f1_macro", "map_macro", "map_micro", "sensitivity", "specificity",
                "nmi", "acc")


@dataclass
class SweepSpec:
    """A sweep: the base pretraining config, the grid and the evaluation flags."""

    pretrain: dict[str, Any]
    grid: dict[str, list[Any]]
    evaluate: dict[str, Any] | None = None
    #: ``none``: every cell at the base config's learning rate; ``linear``: scaled by the batch
    scale_lr: str = "none"
    #: where the spec was read from (for messages)
    source: str | None = None
    cells: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Lay out the cells (every combination of the grid, first key slowest)."""
        keys = list(self.grid)
        self.cells = [dict(zip(keys, values))
                      for values in itertools.product(*(self.grid[k] for k in keys))]


def _yaml_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError("config file not found", path)
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (offset {err.start}): save the file as UTF-8",
                          path) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML ({first_line(err)})", path) from err
    if not isinstance(value, dict):
        raise ConfigError("expected a mapping of options", path)
    return value


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: ``256`` -> int, ``0.5`` -> float, ``s1,s2`` -> str."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignments(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}`` (dashes in keys become underscores).

    Raises:
        ConfigError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value.strip())
    return out


def parse_grid(items: Sequence[str] | None) -> dict[str, list[Any]]:
    """``["batch_size=256,1024", "temperature=0.25,0.5"]`` -> ``{key: [values]}``.

    Raises:
        ConfigError: an item without ``=`` or without values.
    """
    grid: dict[str, list[Any]] = {}
    for item in items or ():
        key, sep, values = str(item).partition("=")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not parts:
            raise ConfigError(f"--grid expects KEY=V1,V2,..., got {item!r}")
        grid[key.strip().replace("-", "_")] = [parse_value(v) for v in parts]
    return grid


def load_spec(
    config: str | os.PathLike[str],
    grid: Sequence[str] | None = None,
    overrides: Sequence[str] | None = None,
    evaluate: str | os.PathLike[str] | None = None,
    eval_overrides: Sequence[str] | None = None,
    root: str | None = None,
    scale_lr: str | None = None,
) -> SweepSpec:
    """Read a sweep file (or a plain pretrain config) and apply the command-line changes.

    Args:
        config: a sweep YAML (``pretrain``/``grid``/``evaluate`` keys) or a pretrain YAML.
        grid: ``KEY=V1,V2`` entries, added to (or replacing keys of) the file's grid.
        overrides: ``KEY=VALUE`` pretrain options for every cell (after the file's).
        evaluate: a YAML of ``geossl evaluate`` flags (replaces the file's ``evaluate``).
        eval_overrides: ``KEY=VALUE`` evaluate flags for every cell.
        root: dataset folder for pretraining and (unless it names its own) evaluation.
        scale_lr: ``none`` or ``linear`` (replaces the file's ``scale_lr``; default none).

    Returns:
        the spec.

    Raises:
        ConfigError: an unknown pretrain key, an empty grid, a grid key also overridden, a
            bad ``scale_lr``, or ``scale_lr: none`` over batch sizes without a base ``lr``.
        DataError: missing files.
    """
    path = Path(config)
    doc = _yaml_file(path)
    is_sweep = bool({"pretrain", "grid"} & set(doc))
    if is_sweep:
        unknown = sorted(set(doc) - {"pretrain", "grid", "evaluate", "scale_lr"})
        if unknown:
            raise ConfigError(f"unknown sweep key(s) {', '.join(unknown)} (use pretrain, grid, "
                              "evaluate, scale_lr)", path)
        base = doc.get("pretrain") or {}
        if isinstance(base, str):
            base = _yaml_file((path.parent / base) if not Path(base).is_absolute()
                              else Path(base))
        if not isinstance(base, dict):
            raise ConfigError("'pretrain' must be a config file or a mapping", path)
        file_grid = doc.get("grid") or {}
        if not isinstance(file_grid, dict):
            raise ConfigError("'grid' must map keys to lists of values", path)
        eval_doc = doc.get("evaluate")
    else:
        base, file_grid, eval_doc = doc, {}, None
    pretrain = {str(k).replace("-", "_"): v for k, v in base.items()}
    pretrain.update(parse_assignments(overrides, "--set"))
    if root is not None:
        pretrain["root"] = root
    cells = {str(k).replace("-", "_"): (list(v) if isinstance(v, list | tuple) else [v])
             for k, v in file_grid.items()}
    cells.update(parse_grid(grid))
    if not cells or any(not v for v in cells.values()):
        raise ConfigError("the sweep has no grid: give --grid KEY=V1,V2 or a 'grid' mapping",
                          path)
    _check_keys(pretrain, cells)
    if evaluate is not None:
        eval_doc = _yaml_file(Path(evaluate))
    eval_flags: dict[str, Any] | None = None
    if eval_doc is not None or eval_overrides:
        if eval_doc is not None and not isinstance(eval_doc, dict):
            raise ConfigError("'evaluate' must be a mapping of `geossl evaluate` flags", path)
        eval_flags = {str(k).replace("-", "_"): v for k, v in (eval_doc or {}).items()}
        eval_flags.update(parse_assignments(eval_overrides, "--eval-set"))
        for key in ("ckpt", "out"):
            if key in eval_flags:
                raise ConfigError(f"evaluate: {key!r} is set per cell by the sweep", path)
        if root is not None:
            eval_flags.setdefault("root", root)
    rule = scale_lr if scale_lr is not None else (doc.get("scale_lr") if is_sweep else None)
    rule = "none" if rule is None else str(rule)
    if rule not in ("none", "linear"):
        raise ConfigError(f"scale_lr must be none or linear, got {rule!r}", path)
    plain_batches = [v for v in cells.get("batch_size", [])
                     if not (isinstance(v, Mapping) and "method_args.base_batch_size" in v)]
    if rule == "none" and plain_batches and pretrain.get("lr") is None:
        raise ConfigError("the grid sweeps batch_size and keeps the learning rate (scale_lr: "
                          "none), but the pretrain config sets no lr: set lr, or give "
                          "--scale-lr linear", path)
    return SweepSpec(pretrain, cells, eval_flags, rule, str(path))


def _check_keys(pretrain: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> None:
    import dataclasses

    from geossl.training.config import PretrainConfig

    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    swept: list[str] = []
    for key, values in grid.items():
        coupled = [v for v in values if isinstance(v, Mapping)]
        if coupled and len(coupled) != len(values):
            raise ConfigError(f"grid {key!r} mixes mappings and plain values")
        swept += [str(k) for v in coupled for k in v if k != "name"] if coupled else [key]
    for key in [*pretrain, *swept]:
        top = key.split(".")[0]
        if top not in known:
            raise ConfigError(f"unknown pretrain option {key!r}")
        if "." in key and top not in ("method_args", "normalization"):
            raise ConfigError(f"{key!r}: only method_args.* and normalization.* take a dotted "
                              "key")
    for key in ("out", "resume"):
        if key in swept:
            raise ConfigError(f"{key!r} cannot be swept: the sweep sets it per cell")


def _labels(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell's value per grid key (a coupled mapping is named by its entry of the key)."""
    out = {}
    for key, value in cell.items():
        if isinstance(value, Mapping):
            value = value.get(key, value.get("name", json.dumps(value, sort_keys=True)))
        out[key] = value
    return out


def cell_name(cell: Mapping[str, Any]) -> str:
    """Folder name of a cell: ``batch_size=256,temperature=0.25`` (file-name safe)."""
    parts = []
    for key, value in _labels(cell).items():
        text = json.dumps(value) if not isinstance(value, str) else value
        text = "".join(c if c.isalnum() or c in "._-+" else "-" for c in text)
        parts.append(f"{key}={text}")
    return ",".join(parts)


def cell_config(spec: SweepSpec, cell: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The pretrain config of one cell: the base, the cell's values, its own ``out``."""
    config = jsonable(spec.pretrain)
    items: list[tuple[str, Any]] = []
    for key, value in cell.items():
        if isinstance(value, Mapping):
            items += [(str(k), v) for k, v in value.items() if k != "name"]
        else:
            items.append((key, value))
    for key, value in items:
        if "." in key:
            top, sub = key.split(".", 1)
            config.setdefault(top, {})
            config[top] = {**(config[top] or {}), sub: value}
        else:
            config[key] = value
    if spec.scale_lr == "none":
        _keep_rate(spec.pretrain, config)
    config["out"] = str(folder)
    config["resume"] = "last"
    return config


def _keep_rate(base: Mapping[str, Any], config: dict[str, Any]) -> None:
    """Make ``config`` train at the learning rate ``base`` runs at, whatever its batch.

    The rate used is ``lr x batch_size / base_batch_size`` (:func:`geossl.methods.optim.
    scaled_lr`); a cell whose batch differs from the base's gets ``lr`` = the base's rate and
    ``base_batch_size`` = its batch, unless it sets ``base_batch_size`` itself.
    """
    from geossl.methods.specs import OptimSpec

    default = OptimSpec.__dataclass_fields__["base_batch_size"].default
    base_args = base.get("method_args") or {}
    args = config.get("method_args") or {}
    if config.get("batch_size") == base.get("batch_size") or base.get("lr") is None:
        return
    if args.get("base_batch_size", default) != base_args.get("base_batch_size", default):
        return  # the cell sets its own reference batch
    import dataclasses

    from geossl.training.config import PretrainConfig

    default_batch = next(f.default for f in dataclasses.fields(PretrainConfig)
                         if f.name == "batch_size")
    batch = int(base.get("batch_size") or cast(int, default_batch))
    rate = float(base["lr"]) * batch / int(base_args.get("base_batch_size", default))
    config["lr"] = rate
    config["method_args"] = {**args, "base_batch_size": int(config["batch_size"])}


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def _geossl(args: Sequence[str], log: Path) -> int:
    """Run ``geossl ARGS`` in a child process, echoing its output and appending it to ``log``."""
    cmd = [sys.executable, "-m", "geossl.cli", *args]
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ geossl {' '.join(args)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                fh.write(line)
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise


def _write_yaml(path: Path, value: Mapping[str, Any]) -> None:
    atomic_write_text(path, yaml.safe_dump(dict(value), sort_keys=False))


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    dry_run: bool = False,
    runner: Callable[[Sequence[str], Path], int] | None = None,
    check: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every unfinished cell of ``spec`` in order, then write the results table.

    Args:
        spec: the sweep (:func:`load_spec`).
        out: sweep folder (one sub-folder per cell, ``results.csv``, ``results.md``).
        dry_run: only write each cell's configs and the table of what is done.
        runner: runs ``geossl ARGS`` with a log file and returns the exit status (default: a
            child process, see the module docstring).
        check: checks one cell's pretrain config as ``geossl pretrain`` would parse it
            (raising :class:`ConfigError`); every cell is checked before any runs, also with
            ``dry_run``.

    Returns:
        ``{"rows": [...], "csv": path, "markdown": path, "failed": [cell names]}``.
    """
    from geossl.core.io import check_output, mark_output

    run = runner or _geossl
    # absent, empty or an earlier sweep (resumed); never a user's folder; before any work: one
    # line, not a traceback
    folder = check_output(out, "sweep", own=("sweep.yaml",))
    if check is not None:
        for cell in spec.cells:
            try:
                check(cell_config(spec, cell, folder / cell_name(cell)))
            except ConfigError as err:
                raise ConfigError(f"cell {cell_name(cell)}: {err}", spec.source) from None
    mark_output(folder, "sweep")
    _write_yaml(folder / "sweep.yaml", {"pretrain": spec.pretrain, "grid": spec.grid,
                                        **({"evaluate": spec.evaluate} if spec.evaluate
                                           else {})})
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for i, cell in enumerate(spec.cells, 1):
        name = cell_name(cell)
        cdir = folder / name
        done = cdir / DONE
        status = None
        if done.exists():
            print(f"geossl sweep: [{i}/{len(spec.cells)}] {name}: finished, skipped")
        elif not dry_run:
            print(f"geossl sweep: [{i}/{len(spec.cells)}] {name}")
            cdir.mkdir(parents=True, exist_ok=True)
            status = _run_cell(spec, cell, cdir, run)
            if status != "finished":
                failed.append(name)
        else:
            cdir.mkdir(parents=True, exist_ok=True)
            _write_yaml(cdir / "pretrain.yaml", cell_config(spec, cell, cdir))
        row = cell_row(cell, cdir)
        if status is not None and status != "finished":
            row["status"] = status
        rows.append(row)
        paths = write_table(rows, folder)
        if len(spec.grid.get("seed", [])) > 1:
            paths["repeats"] = write_repeats(rows, [k for k in spec.grid if k != "seed"],
                                             folder)
        if len(spec.grid.get(EPOCHS_KEY, [])) > 1:
            paths["epochs"] = write_epochs(
                rows, [k for k in spec.grid if k not in ("seed", EPOCHS_KEY)], folder)
        size = next((k for k in SIZE_KEYS if len(spec.grid.get(k, [])) > 1), None)
        figure = None if size is None else write_size_figure(
            rows, size, [k for k in spec.grid if k not in ("seed", size)], folder)
        if figure is not None:
            paths["size_figure"] = figure
    return {"rows": rows, "csv": paths["csv"], "markdown": paths["markdown"], "failed": failed,
            "repeats": paths.get("repeats"), "epochs": paths.get("epochs"),
            "size_figure": paths.get("size_figure")}


def _run_cell(spec: SweepSpec, cell: Mapping[str, Any], cdir: Path,
              run: Callable[[Sequence[str], Path], int]) -> str:
    t0 = time.time()
    from geossl.core.io import mark_output

    log = cdir / "run.log"
    # the cell's folder is its pretrain run's --out: the sweep makes it for pretrain (which
    # refuses a non-empty folder that is not a pretrain run), with the cell's config and log
    mark_output(cdir, "pretrain")
    _write_yaml(cdir / "pretrain.yaml", cell_config(spec, cell, cdir))
    rc = run(["pretrain", "--config", str(cdir / "pretrain.yaml")], log)
    if rc != 0:
        return f"pretrain failed (exit {rc})"
    if spec.evaluate is not None:
        flags = {"ckpt": str(cdir / "checkpoints" / "last.ckpt"), **spec.evaluate,
                 "out": str(cdir / "eval")}
        _write_yaml(cdir / "evaluate.yaml", flags)
        rc = run(["evaluate", "--config", str(cdir / "evaluate.yaml")], log)
        if rc != 0:
            return f"evaluate failed (exit {rc})"
    record = {"cell": _labels(cell), "seconds": round(time.time() - t0, 1)}
    atomic_write_text(cdir / DONE, json.dumps(jsonable(record), indent=2) + "\n")
    return "finished"


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
def _last_logged(metrics_csv: Path) -> dict[str, Any]:
    import pandas as pd

    if not metrics_csv.exists():
        return {}
    try:
        frame = pd.read_csv(metrics_csv)
    except (ValueError, OSError):
        return {}
    out: dict[str, Any] = {}
    if "step" in frame.columns and frame["step"].notna().any():
        out["steps"] = int(frame["step"].max()) + 1
    for col, name in LOGGED.items():
        if col in frame.columns and frame[col].notna().any():
            out[name] = float(frame[col].dropna().iloc[-1])
    return out


def _eval_columns(results_json: Path) -> dict[str, Any]:
    if not results_json.exists():
        return {}
    summary = json.loads(results_json.read_text()).get("summary", [])
    out: dict[str, Any] = {}
    for row in summary:
        head = row["protocol"] if row.get("budget") in (None, "all", "none") else \
            f"{row['protocol']}@{row['budget']}"
        if row.get("task") not in (None, "classes"):
            head = f"{row['task']} {head}"
        for metric in EVAL_METRICS:
            stat = row.get("metrics", {}).get(metric)
            if stat and stat.get("mean") is not None:
                out[f"{head} {metric}"] = round(float(stat["mean"]), 4)
    return out


def cell_row(cell: Mapping[str, Any], cdir: Path) -> dict[str, Any]:
    """The table row of a cell: grid values, status, logged values, evaluation means."""
    done = cdir / DONE
    status = "finished" if done.exists() else (
        "started" if (cdir / "checkpoints").exists() else "pending")
    row: dict[str, Any] = {"cell": cell_name(cell), **_labels(cell), "status": status}
    if done.exists():
        row["seconds"] = json.loads(done.read_text()).get("seconds")
    row.update(_last_logged(cdir / "logs" / "csv" / "metrics.csv"))
    row.update(_eval_columns(cdir / "eval" / "results.json"))
    return row


def write_table(rows: Sequence[Mapping[str, Any]], folder: Path) -> dict[str, Path]:
    """Write ``results.csv`` and ``results.md`` (one row per cell, every column seen)."""
    import pandas as pd

    columns = list(dict.fromkeys(k for row in rows for k in row))
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
    paths = {"csv": folder / "results.csv", "markdown": folder / "results.md"}
    with atomic_path(paths["csv"]) as tmp:
        frame.to_csv(tmp, index=False)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(paths["markdown"], "\n".join(lines) + "\n")
    return paths


def _grouped_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                   heads: Sequence[str], order: Callable[[tuple[str, ...]], Any] | None,
                   ) -> list[str]:
    """Markdown lines: the finished rows grouped by their ``keys`` values.

    Every numeric column as mean ± std over the group; ``heads``: the key columns' titles;
    ``order``: sorts the groups (default: first seen first).
    """
    from geossl.eval.budgets import mean_std
    from geossl.eval.report import format_cell

    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "finished":
            groups.setdefault(tuple(str(row.get(k)) for k in keys), []).append(row)
    skip = {"cell", "status", "seed", "seconds", "steps", *keys}
    metrics = list(dict.fromkeys(
        c for row in rows for c, v in row.items()
        if c not in skip and isinstance(v, int | float) and not isinstance(v, bool)))
    columns = [*heads, "repeats", *metrics]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for values in (sorted(groups, key=order) if order is not None else groups):
        group = groups[values]
        stats = [format_cell(mean_std([float(r[m]) for r in group if r.get(m) is not None]), 4)
                 for m in metrics]
        lines.append("| " + " | ".join([*values, str(len(group)), *stats]) + " |")
    return lines


def write_repeats(rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                  folder: Path) -> Path:
    """Write ``results_repeats.md``: repeats of a cell as one row, mean ± std.

    The finished cells that differ only in ``seed`` (repeats, e.g. ``--grid seed=0,1,2``) make
    one row, every numeric column as mean ± std over them.

    Args:
        rows: the table rows (:func:`cell_row`).
        keys: the grid keys other than ``seed`` (a row per combination of their values).
        folder: the sweep's folder.

    Returns:
        the file written.
    """
    path = folder / "results_repeats.md"
    atomic_write_text(path, "\n".join(_grouped_table(rows, keys, keys, None)) + "\n")
    return path


def write_epochs(rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                 folder: Path) -> Path:
    """Write ``results_epochs.md``: the epochs table, every result per pretraining length.

    One row per pretraining length (``max_epochs`` of the grid), in increasing order, for each
    combination of the other grid keys (``seed`` excepted: repeats are averaged); every numeric
    column (online-probe and contrastive accuracy, every evaluation mean, the last loss) as
    mean ± std over the finished repeats.

    Args:
        rows: the table rows (:func:`cell_row`).
        keys: the grid keys other than ``seed`` and ``max_epochs``.
        folder: the sweep's folder.

    Returns:
        the file written.
    """
    def order(values: tuple[str, ...]) -> tuple[tuple[str, ...], float]:
        try:
            return values[:-1], float(values[-1])
        except ValueError:
            return values[:-1], float("inf")

    lines = _grouped_table(rows, [*keys, EPOCHS_KEY], [*keys, "epochs"], order)
    path = folder / "results_epochs.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def write_size_figure(rows: Sequence[Mapping[str, Any]], size_key: str, keys: Sequence[str],
                      folder: Path) -> Path | None:
    """Draw ``accuracy_vs_<size_key>.png``: results against the chip / image size.

    One panel per accuracy-like column (online-probe accuracy and the evaluations' ``oa``,
    ``map_macro``, ``accuracy``, ``nmi``, ``acc``), one line per combination of the other grid
    keys (e.g. per backbone), mean ± std over the finished seed repeats at every size.

    Args:
        rows: the table rows (:func:`cell_row`).
        size_key: the swept size key (``img_size`` or ``patch_size``).
        keys: the other grid keys (``seed`` excepted: repeats are averaged).
        folder: the sweep's folder.

    Returns:
        the file written, or ``None`` while no cell has finished with such a result.
    """
    from geossl.eval.budgets import mean_std
    from geossl.viz import plots

    done = [r for r in rows if r.get("status") == "finished"]
    metrics = [c for c in dict.fromkeys(c for r in done for c in r)
               if c == "probe_acc" or (" " in c and c.rsplit(" ", 1)[1] in SIZE_METRICS)]
    panels: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for metric in metrics:
        values: dict[str, dict[float, list[float]]] = {}
        for r in done:
            if r.get(metric) is None:
                continue
            label = ",".join(f"{k}={r.get(k)}" for k in keys)
            values.setdefault(label, {}).setdefault(float(r[size_key]), []).append(
                float(r[metric]))
        panels[metric] = {
            label: [(x, float(st["mean"]), float(st["std"] or 0.0))
                    for x, v in sorted(by_x.items()) for st in [mean_std(v)]]
            for label, by_x in values.items()}
    if not any(any(lines.values()) for lines in panels.values()):
        return None
    return plots.plot_sweep_curves(panels, folder / f"accuracy_vs_{size_key}.png",
                                   xlabel=f"{size_key} (px)",
                                   title=f"results against {size_key}, mean ± std over repeats")
