"""``geossl compare``: several representations on one split and the same label draws, paired.

The flow:

1. the dataset and its train and test sides come from :func:`geossl.eval.data.resolve` (a
   saved split, the dataset's own, or an overlap-aware split made now and saved as
   ``OUT/splits.json``), once for every row;
2. every row is prepared (:mod:`geossl.compare.rows`): frozen features of both sides (cached in
   ``OUT/cache``), or a function that trains on a draw's labels;
3. for every seed, label budget and task, ONE draw of labelled train samples is made
   (:func:`geossl.eval.budgets.draw_budget`) and every row learns from exactly those samples
   and is scored on the whole test side with the dataset's own metrics
   (:func:`geossl.eval.run.score`: OA/AA single-label, mAP multi-label, sensitivity and
   specificity for two classes); the draws are recorded (sample ids) in ``compare.json``;
4. every row is compared with the reference row named in advance: per-draw differences of the
   headline metrics with 95 % t intervals (:mod:`geossl.eval.paired`) and a verdict line;
5. ``compare.json``, ``compare.md``, ``compare.csv`` and ``compare.png`` are written atomically
   to ``out``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from geossl.compare.rows import (
    ROW_KINDS,
    PreparedRow,
    RowContext,
    RowSpec,
    TaskView,
    parse_rows,
)
from geossl.core.errors import ConfigError, DataError
from geossl.core.io import atomic_write_text, check_writable, jsonable
from geossl.datasets.protocol import class_names, single_sensor
from geossl.datasets.registry import dataset_class
from geossl.eval.budgets import Budget, draw_budget, mean_std
from geossl.eval.data import auto_split, resolve
from geossl.eval.features import label_of
from geossl.eval.paired import paired_difference
from geossl.eval.report import format_cell
from geossl.eval.run import MAIN_TASK, score
from geossl.eval.tasks import BinaryTask, parse_tasks, task_sides
from geossl.runtime.devices import resolve_device

#: files of a comparison, in ``out``
FILES = {"json": "compare.json", "markdown": "compare.md", "csv": "compare.csv",
         "png": "compare.png"}
#: written first: marks a folder as a comparison's own output (a rerun may write into it)
MARKER = ".geossl-compare"
_METRIC_NAMES = {"oa": "OA", "aa": "AA", "map_macro": "mAP macro", "map_micro": "mAP micro",
                 "sensitivity": "sensitivity", "specificity": "specificity",
                 "f1_macro": "F1 macro"}


def headline_metrics(num_classes: int, multilabel: bool) -> tuple[str, ...]:
    """The metrics compared between rows.

    mAP (multi-label), OA/sensitivity/specificity (two classes) or OA/AA (single-label).
    """
    if multilabel:
        return ("map_macro", "map_micro")
    if num_classes == 2:
        return ("oa", "sensitivity", "specificity")
    return ("oa", "aa")


def check_out(out: str | os.PathLike[str]) -> Path:
    """Refuse an output folder that is neither absent, empty, nor an earlier comparison's.

    Raises:
        DataError: one line naming the folder.
    """
    path = check_writable(out, folder=True)
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).is_file():
        raise DataError("--out is a folder that is not empty and holds no earlier `geossl "
                        "compare` output; give a new or empty folder", path)
    return path


def _claim(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        atomic_write_text(out / MARKER, json.dumps({"command": "compare"}) + "\n")


def _budgets(per_class: Sequence[int] | int | None, total: Sequence[int] | int | None
             ) -> list[Budget]:
    def as_list(v: Sequence[int] | int | None) -> list[int]:
        if v is None:
            return []
        return [int(v)] if isinstance(v, int) else [int(x) for x in v]

    budgets = [Budget(per_class=k) for k in as_list(per_class)]
    budgets += [Budget(total=n) for n in as_list(total)]
    return budgets or [Budget()]


def compare(
    rows: Sequence[str | Mapping[str, Any] | RowSpec],
    data: str | torch.utils.data.Dataset[dict[str, Any]],
    root: str | os.PathLike[str] | None = None,
    *,
    reference: str | None = None,
    splits: str | os.PathLike[str] | dict[str, Any] | None = None,
    train_split: str = "train",
    test_split: str = "test",
    labels_per_class: int | Sequence[int] | None = None,
    labels_total: int | Sequence[int] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    out: str | os.PathLike[str] = "compare",
    backbone: str | None = None,
    sensor: str | Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    bf16: bool = False,
    workers: int = 0,
    data_args: dict[str, Any] | None = None,
    label_path: str | os.PathLike[str] | None = None,
    label_column: str | None = None,
    tasks: str | BinaryTask | Sequence[str | dict[str, Any] | BinaryTask] | None = None,
    finetune_steps: int = 200,
    finetune_lr: float = 1e-3,
    finetune_batch_size: int = 64,
    plots: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compare representations on one split and the same label draws, paired.

    Args:
        rows: the rows (see :mod:`geossl.compare.rows`): mappings ``{name, kind, ...}``,
            ``NAME=KIND:VALUE`` strings or :class:`RowSpec`.
        data: dataset name (with ``root``; any registered dataset) or a dataset of sample
            dicts (then ``splits`` is required).
        root: dataset folder.
        reference: name of the row every other row is compared with, fixed before the run
            (default: the first row).
        splits: saved split (file or dict); default: the dataset's own split, else an
            overlap-aware split made now and saved as ``OUT/splits.json``.
        train_split: side the labels are drawn from.
        test_split: side every row is scored on.
        labels_per_class: budget(s) of k labels per class.
        labels_total: budget(s) of N labels in total (stratified).
        seeds: one label draw per seed and budget (paired differences need >= 2).
        out: output folder (absent, empty, or an earlier comparison's).
        backbone: architecture of ``random``/``scratch`` rows without their own.
        sensor: sensor(s) fed to multi-sensor encoders (rows may override).
        batch_size: feature-extraction batch size.
        device: ``auto``/``cpu``/``gpu``/``cuda:N``.
        bf16: bf16 autocast.
        workers: data-loader workers.
        data_args: more dataset constructor arguments.
        label_path: PolSAR class raster.
        label_column: chip-index column of each chip's class.
        tasks: binary tasks scored next to the dataset's classes (:mod:`geossl.eval.tasks`).
        finetune_steps: steps of ``scratch`` and ``protocol: finetune`` rows.
        finetune_lr: their learning rate.
        finetune_batch_size: their batch size.
        plots: write ``compare.png``.
        log: where progress lines go.

    Returns:
        ``{"meta", "rows", "draws", "runs", "summary", "comparison", "verdict", "paths",
        "notes"}``.

    Raises:
        ConfigError: bad rows, unknown reference, bad budget.
        DataError: unreadable data or checkpoint, a non-empty foreign ``out``.
    """
    t0 = time.time()
    specs_all = parse_rows(list(rows))
    names = [s.name for s in specs_all]
    ref = reference or names[0]
    if ref not in names:
        raise ConfigError(f"reference {ref!r} is not a row; rows: {', '.join(names)}")
    seeds = [int(s) for s in seeds] or [0]
    budgets = _budgets(labels_per_class, labels_total)
    binary_tasks = parse_tasks(tasks)
    out_dir = check_out(out)
    resolved = resolve(data, root, splits, train_split, test_split, data_args=data_args,
                       label_path=label_path, label_column=label_column, out=None)
    dataset, train_pos, test_pos, ids = (resolved.dataset, resolved.train, resolved.test,
                                         resolved.ids)
    if resolved.split_source == "auto":
        train_split, test_split = "train", "test"
    dev = resolve_device(device)
    ctx = RowContext(
        dataset=dataset, train_positions=list(train_pos), test_positions=list(test_pos),
        ids=list(ids), data_key=resolved.key, train_split=train_split, test_split=test_split,
        default_sensor=single_sensor(dataset_class(data) if isinstance(data, str) else data),
        sensor=sensor, cache_dir=out_dir / "cache", device=dev, batch_size=batch_size,
        bf16=bf16, workers=workers, backbone=backbone, seed=seeds[0],
        finetune_steps=finetune_steps, finetune_lr=finetune_lr,
        finetune_batch_size=finetune_batch_size, log_dir=out_dir / "logs")
    log(f"compare: {len(specs_all)} rows on {resolved.key.split('|')[0]}: train "
        f"{len(train_pos)}, test {len(test_pos)}; {len(seeds)} seed(s) x {len(budgets)} "
        f"budget(s); reference {ref}")

    # load and check every row before anything is written (a missing file: one line, no OUT)
    for i, spec in enumerate(specs_all, 1):
        kind = ROW_KINDS[spec.kind]
        if kind.load is not None:
            log(f"[{i}/{len(specs_all)}] {spec.name} ({spec.kind}): loading")
            ctx.loaded[spec.name] = kind.load(spec, ctx)
    _claim(out_dir)
    if resolved.split_source == "auto":  # save the split made now, so the run can be repeated
        made, resolved.split_path, line = auto_split(resolved.dataset, resolved.ids, out_dir)
        if {ids[p] for p in resolved.train} != set(made["train"]):  # deterministic: never
            raise DataError("the split made now differs from the one checked; rerun", out_dir)
        resolved.notes = [line if n.startswith("no --splits") else n for n in resolved.notes]
    for note in resolved.notes:
        log(note)

    prepared: list[PreparedRow] = []
    for i, spec in enumerate(specs_all, 1):
        log(f"[{i}/{len(specs_all)}] {spec.name} ({spec.kind}): preparing")
        t = time.time()
        row = ROW_KINDS[spec.kind].fn(spec, ctx)
        row.meta = {"kind": spec.kind, **row.meta, "prepare_seconds": round(time.time() - t, 2)}
        prepared.append(row)

    labelled = next((r.labels for r in prepared if r.labels is not None), None)
    if labelled is None:
        labelled = (_read_labels(dataset, train_pos), _read_labels(dataset, test_pos))
    train_labels, test_labels = labelled
    classes = _classes(dataset)
    if train_labels.ndim == 2:
        num_classes = int(train_labels.shape[1])
    elif classes:
        num_classes = len(classes)
    else:
        num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    task_views = [TaskView(MAIN_TASK, train_labels, test_labels, num_classes, classes, dataset)]
    notes = list(resolved.notes)
    for task in binary_tasks:
        tr, te, task_notes, relabelled = task_sides(task, dataset, train_pos, train_labels,
                                                    test_pos, test_labels)
        notes += list(dict.fromkeys(task_notes))
        task_views.append(TaskView(task.name, tr, te, 2, task.class_names, relabelled))

    runs: list[dict[str, Any]] = []
    draws: list[dict[str, Any]] = []
    n_draws = len(seeds) * len(budgets)
    k = 0
    for seed in seeds:
        for budget in budgets:
            k += 1
            for tv in task_views:
                picked = draw_budget(tv.train.numpy(), budget, seed)
                draws.append({"task": tv.name, "budget": budget.name, "seed": seed,
                              "n_labels": len(picked),
                              "ids": [ids[train_pos[int(r)]] for r in picked]})
                for row in prepared:
                    log(f"draw {k}/{n_draws} (seed {seed}, {budget.name}"
                        + (f", {tv.name}" if tv.name != MAIN_TASK else "")
                        + f"): {row.name}")
                    scores, probabilities, info = row.fit(tv, picked, seed)
                    m = score(tv.test, scores, tv.num_classes, probabilities=probabilities)
                    runs.append({"row": row.name, "task": tv.name, "budget": budget.name,
                                 "seed": seed, "n_labels": len(picked), "metrics": m,
                                 "info": info})

    multilabel = train_labels.ndim == 2
    heads = {tv.name: headline_metrics(tv.num_classes, multilabel and tv.name == MAIN_TASK)
             for tv in task_views}
    summary = summarise(runs)
    comparison = paired_comparison(runs, ref, heads)
    verdict = verdict_lines(comparison, summary, ref, heads, len(seeds))
    meta = {
        "command": "compare",
        "data": data if isinstance(data, str) else resolved.key,
        "root": os.fspath(root) if root is not None else None,
        "split_source": resolved.split_source,
        "splits": (os.fspath(splits) if isinstance(splits, (str, os.PathLike))
                   else str(resolved.split_path) if resolved.split_path is not None else None),
        "data_args": resolved.args or None,
        "n_train": len(train_pos), "n_test": len(test_pos),
        "num_classes": num_classes, "multilabel": multilabel,
        "classes": classes,
        "reference": ref,
        "seeds": seeds, "budgets": [b.name for b in budgets],
        "tasks": [t.as_dict() for t in binary_tasks] or None,
        "headline_metrics": {k_: list(v) for k_, v in heads.items()},
        "device": str(dev),
        "seconds": round(time.time() - t0, 2),
    }
    results: dict[str, Any] = {
        "meta": meta,
        "rows": [{"name": s.name, "kind": s.kind, "options": s.options, **r.meta}
                 for s, r in zip(specs_all, prepared)],
        "draws": draws, "runs": runs, "summary": summary, "comparison": comparison,
        "verdict": verdict, "notes": notes,
    }
    results["paths"] = write_outputs(results, out_dir, plots)
    for line in verdict:
        log(line)
    return results


def _read_labels(dataset: Any, positions: Sequence[int]) -> torch.Tensor:
    return torch.stack([label_of(dataset[p]) for p in positions])


def _classes(dataset: Any) -> list[str] | None:
    leaf = dataset
    while isinstance(leaf, torch.utils.data.ConcatDataset):
        leaf = leaf.datasets[0]
    classes = class_names(dataset) or class_names(leaf)
    return [str(c) for c in classes] if classes else None


# --------------------------------------------------------------------------------------------
# summary, paired comparison, verdict
# --------------------------------------------------------------------------------------------
def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every scalar metric, per (row, task, budget), in run order."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["row"], r["task"], r["budget"]), []).append(r)
    out = []
    for (row, task, budget), group in groups.items():
        names = [k for k in dict.fromkeys(k for r in group for k in r["metrics"])
                 if any(_scalar(r["metrics"].get(k)) for r in group)]
        out.append({"row": row, "task": task, "budget": budget,
                    "n_labels": group[0]["n_labels"], "seeds": [r["seed"] for r in group],
                    "metrics": {k: mean_std([r["metrics"][k] for r in group
                                             if _scalar(r["metrics"].get(k))]) for k in names}})
    return out


def paired_comparison(runs: Sequence[dict[str, Any]], reference: str,
                      metrics: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """Every row minus the reference, per task, budget and headline metric, over shared seeds.

    Returns:
        records ``{"row", "task", "budget", "metric", "mean", "std", "wins", "n", "low",
        "high", "clear", "below"}`` (:func:`geossl.eval.paired.paired_difference`).
    """
    def by_seed(row: str, task: str, budget: str, m: str) -> dict[int, float]:
        return {int(r["seed"]): float(r["metrics"][m]) for r in runs
                if r["row"] == row and r["task"] == task and r["budget"] == budget
                and _scalar(r["metrics"].get(m))}

    out = []
    keys = list(dict.fromkeys((r["row"], r["task"], r["budget"]) for r in runs))
    for row, task, budget in keys:
        if row == reference:
            continue
        for m in metrics.get(task, ()):
            gap = paired_difference(by_seed(row, task, budget, m),
                                    by_seed(reference, task, budget, m))
            if gap is not None:
                out.append({"row": row, "task": task, "budget": budget, "metric": m, **gap})
    return out


def budget_text(budget: str) -> str:
    """A budget's name in prose: ``10 labels/class``, ``1024 labels``, ``all labels``."""
    return budget.replace("/class", " labels/class") if "/class" in budget else f"{budget} labels"


def verdict_lines(comparison: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]],
                  reference: str, metrics: Mapping[str, Sequence[str]], n_seeds: int
                  ) -> list[str]:
    """One line per task and budget: which rows are clearly ahead of / behind the reference.

    Clearly ahead: the 95 % paired interval lies above zero on every headline metric; clearly
    behind: below zero on every one; otherwise not distinguishable with these draws.
    """
    lines = []
    keys = list(dict.fromkeys((s["task"], s["budget"]) for s in summary))
    for task, budget in keys:
        ms = list(metrics.get(task, ()))
        where = budget_text(budget) + (f", task {task}" if task != MAIN_TASK else "")
        cells = [c for c in comparison if c["task"] == task and c["budget"] == budget]
        rows = list(dict.fromkeys(c["row"] for c in cells))
        if n_seeds < 2 or not rows:
            lines.append(f"{where}: no paired interval (needs >= 2 seeds and a row besides the "
                         f"reference {reference})")
            continue
        ahead = [r for r in rows if all(c["clear"] for c in cells if c["row"] == r)
                 and len([c for c in cells if c["row"] == r]) == len(ms)]
        behind = [r for r in rows if all(c["below"] for c in cells if c["row"] == r)
                  and len([c for c in cells if c["row"] == r]) == len(ms)]
        unclear = [r for r in rows if r not in ahead and r not in behind]
        first = ms[0] if ms else "oa"
        means = {s["row"]: (s["metrics"].get(first) or {}).get("mean") for s in summary
                 if s["task"] == task and s["budget"] == budget}
        top = max((v for v in means.values() if v is not None), default=None)
        best = ", ".join(r for r, v in means.items() if v is not None and v == top)
        mnames = "/".join(_METRIC_NAMES.get(m, m) for m in ms)
        lines.append(
            f"{where}: vs reference {reference} ({mnames}, 95 % paired intervals over "
            f"{n_seeds} draws): clearly ahead: {', '.join(ahead) or 'none'}; clearly behind: "
            f"{', '.join(behind) or 'none'}; not distinguishable: {', '.join(unclear) or 'none'}"
            f". Highest mean {_METRIC_NAMES.get(first, first)}: {best or '-'}"
            + (f" ({top:.3f})." if top is not None else "."))
    return lines


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------
def to_markdown(results: Mapping[str, Any]) -> str:
    """The comparison as markdown: scores per row, paired differences, verdict."""
    meta = results["meta"]
    summary, comparison = results["summary"], results["comparison"]
    heads: dict[str, list[str]] = meta["headline_metrics"]
    kinds = {r["name"]: r["kind"] for r in results["rows"]}
    lines = [f"# Which representation: {meta['data']} ({meta['n_train']} train, "
             f"{meta['n_test']} test; split: {meta['split_source']})", ""]
    for task, ms in heads.items():
        if task != MAIN_TASK:
            lines += [f"## task {task}", ""]
        shown = list(ms) + [m for m in ("f1_macro",) if m not in ms and any(
            m in s["metrics"] for s in summary if s["task"] == task)]
        lines.append("| row | kind | labels | seeds | " + " | ".join(
            _METRIC_NAMES.get(m, m) for m in shown) + " | " + " | ".join(
            f"Δ{_METRIC_NAMES.get(m, m)} vs {meta['reference']} [95 %]" for m in ms) + " |")
        lines.append("|" + " --- |" * (4 + len(shown) + len(ms)))
        for s in summary:
            if s["task"] != task:
                continue
            deltas = []
            for m in ms:
                c = next((c for c in comparison if c["row"] == s["row"] and c["task"] == task
                          and c["budget"] == s["budget"] and c["metric"] == m), None)
                deltas.append("reference" if s["row"] == meta["reference"] else _delta(c))
            lines.append(f"| {s['row']} | {kinds.get(s['row'], '?')} | {s['budget']} | "
                         f"{len(s['seeds'])} | "
                         + " | ".join(format_cell(s["metrics"].get(m)) for m in shown) + " | "
                         + " | ".join(deltas) + " |")
        lines.append("")
    lines += ["## Verdict", ""] + [f"- {v}" for v in results["verdict"]] + [""]
    lines += ["✓ ahead: the 95 % interval of the paired difference lies above 0; ✗ behind: "
              "below 0. Every row learned from the same labelled samples in each draw "
              "(compare.json, `draws`).", ""]
    return "\n".join(lines)


def _delta(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return "-"
    if not math.isfinite(c["high"]):
        return f"{c['mean']:+.3f} (1 draw)"
    mark = " ✓" if c["clear"] else " ✗" if c["below"] else ""
    return f"{c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] {c['wins']}/{c['n']}{mark}"


def to_csv(results: Mapping[str, Any]) -> str:
    """One line per (row, task, budget, metric): mean, std, and the paired difference."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "kind", "task", "budget", "n_labels", "metric", "mean", "std", "seeds",
                "diff_mean", "diff_low", "diff_high", "wins", "clearly_ahead",
                "clearly_behind"])
    kinds = {r["name"]: r["kind"] for r in results["rows"]}
    comp = {(c["row"], c["task"], c["budget"], c["metric"]): c for c in results["comparison"]}
    for s in results["summary"]:
        for m, stat in s["metrics"].items():
            c = comp.get((s["row"], s["task"], s["budget"], m))
            w.writerow([s["row"], kinds.get(s["row"], ""), s["task"], s["budget"],
                        s["n_labels"], m, _num(stat.get("mean")), _num(stat.get("std")),
                        stat.get("n"),
                        *([_num(c["mean"]), _num(c["low"]), _num(c["high"]), c["wins"],
                           c["clear"], c["below"]] if c else [""] * 6)])
    return buf.getvalue()


def _num(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.6g}"


def write_outputs(results: dict[str, Any], out: Path, plots: bool = True) -> dict[str, str]:
    """Write compare.json/.md/.csv (and .png) into ``out``, each atomically."""
    paths = {k: out / v for k, v in FILES.items()}
    if plots:
        from geossl.viz.plots import plot_comparison

        meta = results["meta"]
        plot_comparison(results["summary"], results["comparison"], paths["png"],
                        reference=meta["reference"], metrics=meta["headline_metrics"],
                        title=f"{meta['data']}: paired against {meta['reference']}")
    else:
        paths.pop("png")
    results["paths"] = {k: str(v) for k, v in paths.items()}
    if results["meta"].get("splits"):
        results["paths"]["splits"] = str(results["meta"]["splits"])
    atomic_write_text(paths["markdown"], to_markdown(results))
    atomic_write_text(paths["csv"], to_csv(results))
    atomic_write_text(paths["json"], json.dumps(jsonable(results), indent=2) + "\n")
    return dict(results["paths"])

