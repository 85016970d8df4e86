"""Evaluation results as JSON and as a markdown table (mean ± std over seeds)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geossl.core.io import atomic_write_text, jsonable
from geossl.eval.budgets import mean_std

#: metric columns shown in the markdown table, in this order, when present
TABLE_METRICS: tuple[str, ...] = (
    "oa", "aa", "f1_macro", "top5", "map_micro", "map_macro", "f1_micro",
    "sensitivity", "specificity", "nmi", "ari", "acc",
)
_NAMES = {"oa": "OA", "aa": "AA", "f1_macro": "F1 macro", "top5": "top-5", "map_micro":
          "mAP micro", "map_macro": "mAP macro", "f1_micro": "F1 micro", "nmi": "NMI",
          "ari": "ARI", "acc": "acc (Hungarian)"}


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group runs by (task, protocol, budget) and aggregate every scalar metric over seeds.

    Args:
        runs: records ``{"protocol", "budget", "seed", "metrics": {name: value}}`` and, when
            binary tasks are scored too, ``"task"``.

    Returns:
        one row per (task, protocol, budget) in first-seen order:
        ``{"protocol", "budget", "seeds": [...], "metrics": {name: {"mean", "std", "n"}}}``
        (plus ``"task"`` for runs that name one).
    """
    groups: dict[tuple[str | None, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        task = None if run.get("task") is None else str(run["task"])
        groups.setdefault((task, str(run["protocol"]), str(run["budget"])), []).append(run)
    rows = []
    for (task, protocol, budget), group in groups.items():
        names = [k for k in dict.fromkeys(k for r in group for k in r["metrics"])
                 if any(_scalar(r["metrics"].get(k)) for r in group)]
        rows.append({
            **({"task": task} if task is not None else {}),
            "protocol": protocol,
            "budget": budget,
            "seeds": [r.get("seed") for r in group],
            "metrics": {k: mean_std([r["metrics"][k] for r in group
                                     if _scalar(r["metrics"].get(k))]) for k in names},
        })
    return rows


def format_cell(stat: dict[str, Any] | None, digits: int = 3, always_std: bool = False) -> str:
    """``0.912 ± 0.010`` (or ``0.912`` for one seed unless ``always_std``, ``-`` when missing)."""
    if not stat or stat.get("mean") is None:
        return "-"
    if always_std or stat.get("n", 1) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def to_markdown(summary: Sequence[dict[str, Any]], title: str | None = None) -> str:
    """A markdown table: one row per (task, protocol, budget), one column per metric present.

    The task column appears when some row names a task (binary tasks next to the classes).
    """
    present = {k for row in summary for k in row["metrics"]}
    cols = [m for m in TABLE_METRICS if m in present]
    tasks = any(row.get("task") is not None for row in summary)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + ("task | " if tasks else "") + "protocol | labels | seeds | "
                 + " | ".join(_NAMES.get(c, c) for c in cols) + " |")
    lines.append("|" + " --- |" * ((4 if tasks else 3) + len(cols)))
    for row in summary:
        cells = [format_cell(row["metrics"].get(c)) for c in cols]
        lead = f"| {row.get('task') or '-'} " if tasks else ""
        lines.append(f"{lead}| {row['protocol']} | {row['budget']} | {len(row['seeds'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``results.json`` and ``results.md`` into ``out``.

    Args:
        results: ``{"meta": {...}, "runs": [...]}``; a ``summary`` is added.
        out: output folder.

    Returns:
        ``{"json": path, "markdown": path}``.
    """
    from geossl.core.io import mark_output

    folder = Path(out)
    mark_output(folder, "evaluate")
    results = dict(results)
    results["summary"] = summarise(results.get("runs", []))
    meta = results.get("meta", {})
    title = f"{meta.get('checkpoint', '?')} on {meta.get('data', '?')}"
    md = to_markdown(results["summary"], title)
    notes = [f"- {k}: {v}" for k, v in meta.items() if isinstance(v, (str, int, float))]
    # notes on how a task was computed (e.g. the farmland fallback to 19-class parents)
    notes += [f"- note: {n}" for n in meta.get("task_notes") or () if isinstance(n, str)]
    md += "\n" + "\n".join(notes) + "\n" if notes else ""
    paths = {"json": folder / "results.json", "markdown": folder / "results.md"}
    atomic_write_text(paths["json"], json.dumps(jsonable(results), indent=2) + "\n")
    atomic_write_text(paths["markdown"], md)
    return paths
