"""Pictures, all PNG through matplotlib's Agg backend and written atomically.

* :func:`plot_tsne`: t-SNE (scikit-learn) of embeddings coloured by class;
* :func:`plot_neighbour_grid`: query chips and their nearest chips in feature space, in the
  renderings :func:`composite_modes` finds for the bands (true colour, false colour, SAR);
* :func:`plot_confusion`: a confusion matrix;
* :func:`plot_training_curves`: curves from Lightning ``CSVLogger`` files;
* :func:`plot_comparison`: representations side by side, with paired differences to a
  reference (``geossl compare``);
* :func:`plot_search_mosaic`: the chips a search found, with their scores (``geossl search``);
* :func:`plot_quicklook`: a scene composite with the footprints of its chips (``geossl demo``);
* :func:`plot_loss_curve`: the training loss against the step (``geossl pretrain``);
* :func:`plot_polsar_split`: Pauli RGB, labels and the checkerboard split (``bench polsar``);
* :func:`plot_cluster_panels`: a scene and its k-means cluster map side by side (demo);
* :func:`png_data_uri`: an RGBA picture as an inline PNG (the overlays of ``geossl map``).

:func:`composite` renders any chip as a picture: true colour (B04/B03/B02), false colour
(B08/B04/B03), a SAR composite (VV, VH, VV/VH ratio) or grey, with a 2-98 % percentile stretch.

Low in the package layers (it imports only ``geossl.core.errors``, ``io`` and ``threads``), so that
evaluation, the demo and training's snapshots (:mod:`geossl.training.monitor`) draw with one code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from geossl.core.errors import DataError
from geossl.core.io import atomic_path, set_default_mode

PathLike = str | os.PathLike[str]

#: band triplets tried in order for each composite mode
_COMPOSITES: dict[str, tuple[tuple[str, ...], ...]] = {
    "rgb": (("B04", "B03", "B02"), ("B4", "B3", "B2"), ("red", "green", "blue"),
            ("R", "G", "B")),
    "false": (("B08", "B04", "B03"), ("B8", "B4", "B3"), ("nir", "red", "green")),
}


def save_figure(fig: Figure, path: PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically and close it."""
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def _stretch(x: np.ndarray, lo: float = 2, hi: float = 98) -> np.ndarray:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros_like(x, dtype=np.float32)
    a, b = np.percentile(finite, [lo, hi])
    if b <= a:
        b = a + 1e-6
    return np.clip((np.nan_to_num(x, nan=a) - a) / (b - a), 0, 1).astype(np.float32)


def _find(bands: Sequence[str], names: Sequence[str]) -> list[int] | None:
    low = [b.lower() for b in bands]
    idx = []
    for n in names:
        if n.lower() not in low:
            return None
        idx.append(low.index(n.lower()))
    return idx


def composite(image: Any, bands: Sequence[str] | None = None, mode: str = "auto") -> np.ndarray:
    """Render a ``(C, H, W)`` chip as an ``(H, W, 3)`` picture in [0, 1].

    Args:
        image: the chip (tensor or array).
        bands: band names, used to find B04/B03/B02 (true colour), B08/B04/B03 (false colour)
            or VV/VH (SAR).
        mode: ``auto``, ``rgb``, ``false``, ``sar`` or ``grey``. ``auto`` picks SAR for VV/VH
            (or any 2-band chip), true colour when the bands are known, else the first three
            bands.

    Returns:
        an RGB float array, each channel stretched between its 2nd and 98th percentiles.
    """
    x = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    names = list(bands) if bands is not None and len(bands) == x.shape[0] else []
    c = x.shape[0]
    if mode == "auto":
        if _find(names, ("VV", "VH")) is not None or c == 2:
            mode = "sar"
        elif c >= 3:
            mode = "rgb"
        else:
            mode = "grey"
    if mode == "sar":
        idx = _find(names, ("VV", "VH")) or [0, min(1, c - 1)]
        vv, vh = x[idx[0]], x[idx[1]]
        rgb = np.stack([_stretch(vv), _stretch(vh), _stretch(vv - vh)], -1)
        return rgb
    if mode in _COMPOSITES:
        for triplet in _COMPOSITES[mode]:
            found = _find(names, triplet)
            if found is not None:
                return np.stack([_stretch(x[i]) for i in found], -1)
        if mode == "false" and c >= 4:
            idx = [3, 0, 1]
        else:
            idx = [0, 1, 2] if c >= 3 else [0, 0, 0]
        return np.stack([_stretch(x[i]) for i in idx], -1)
    g = _stretch(x[0])
    return np.stack([g, g, g], -1)


def composite_modes(bands: Sequence[str] | None, channels: int) -> list[str]:
    """The renderings that make sense for a chip, most natural first.

    True colour when B04/B03/B02 (or red/green/blue) are known, false colour when a NIR band
    is too, SAR for VV/VH; a fused S1+S2 chip gets all three. Unknown bands: the first three
    as RGB (SAR for two bands, grey for one).

    Args:
        bands: band names (``None`` when unknown).
        channels: number of bands of the chip.

    Returns:
        modes for :func:`composite` / :func:`plot_neighbour_grid`.
    """
    names = list(bands) if bands is not None and len(bands) == channels else []
    modes: list[str] = []
    if any(_find(names, t) is not None for t in _COMPOSITES["rgb"]):
        modes.append("rgb")
    if any(_find(names, t) is not None for t in _COMPOSITES["false"]):
        modes.append("false")
    if _find(names, ("VV", "VH")) is not None:
        modes.append("sar")
    if not modes:
        modes = ["sar"] if channels == 2 else ["rgb"] if channels >= 3 else ["grey"]
    return modes


def _colours(n: int) -> Any:
    return plt.get_cmap("tab20" if n > 10 else "tab10")


def plot_tsne(
    features: Any,
    labels: Any,
    path: PathLike,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    max_points: int = 3000,
    title: str = "t-SNE of embeddings",
) -> Path:
    """t-SNE of embeddings coloured by class.

    Args:
        features: ``(N, D)``.
        labels: ``(N,)`` classes (multi-hot labels are coloured by their first class; a
            negative class, the ignore index -100, is shown as "no label").
        path: PNG to write.
        class_names: legend names.
        seed: t-SNE and subsampling seed.
        max_points: random subsample above this many points.
        title: figure title.

    Returns:
        the path written.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    if y.ndim == 2:
        y = y.argmax(1)
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        keep = rng.choice(len(x), max_points, replace=False)
        x, y = x[keep], y[keep]
    if len(x) < 3:
        raise DataError(f"t-SNE needs at least 3 points, got {len(x)}")
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    from geossl.runtime.threads import few_threads

    with few_threads(float(len(x)) ** 2 * 10):  # up to ~2000 points: one thread
        emb = TSNE(n_components=2, perplexity=perplexity, random_state=seed,
                   init="pca").fit_transform(x)
    fig, ax = plt.subplots(figsize=(6, 6))
    classes = np.unique(y)
    cmap = _colours(len(classes))
    for i, c in enumerate(classes):
        sel = y == c
        known = class_names is not None and 0 <= int(c) < len(class_names)
        # a negative class is the ignore index (-100): a sample without a label
        name = ("no label" if int(c) < 0 else
                class_names[int(c)] if known else str(c))  # type: ignore[index]
        ax.scatter(emb[sel, 0], emb[sel, 1], s=6, color=cmap(i % cmap.N), label=name)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= 30:
        ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    return save_figure(fig, path)


def _tile(picture: np.ndarray, size: int) -> np.ndarray:
    """``(h, w, 3)`` -> ``(size, size, 3)`` by nearest-neighbour resampling."""
    h, w = picture.shape[:2]
    rows = np.minimum((np.arange(size) * h) // size, h - 1)
    cols = np.minimum((np.arange(size) * w) // size, w - 1)
    return picture[rows][:, cols]


def plot_neighbour_grid(
    queries: Sequence[Any],
    neighbours: Sequence[Sequence[Any]],
    path: PathLike,
    bands: Sequence[str] | None = None,
    mode: str = "auto",
    query_titles: Sequence[str] | None = None,
    neighbour_titles: Sequence[Sequence[str]] | None = None,
    tile: int = 64,
) -> Path:
    """One row per query: the query chip (framed in red), then its nearest chips.

    The chips are rendered with :func:`composite` and laid out in one mosaic image (one
    ``imshow``, so a grid of hundreds of chips stays fast), captions above each tile.

    Args:
        queries: query chips ``(C, H, W)``.
        neighbours: per query, its neighbour chips (nearest first).
        path: PNG to write.
        bands: band names for :func:`composite`.
        mode: composite mode (``auto``, ``rgb``, ``false``, ``sar``, ``grey``).
        query_titles: captions of the queries (e.g. their class).
        neighbour_titles: captions of the neighbours.
        tile: side of each tile in pixels of the mosaic.

    Returns:
        the path written.
    """
    rows = len(queries)
    cols = 1 + max((len(n) for n in neighbours), default=0)
    gap, top, frame = 4, 14, 3  # pixels between tiles, above each row (captions), red frame
    cell, row_h = tile + gap, tile + top
    mosaic = np.ones((rows * row_h + gap, cols * cell + gap, 3), dtype=np.float32)
    for r in range(rows):
        chips = [queries[r], *neighbours[r]]
        for c, chip in enumerate(chips):
            y, x = top + r * row_h, gap + c * cell
            mosaic[y:y + tile, x:x + tile] = _tile(composite(chip, bands, mode), tile)
            if c == 0:  # red frame around the query
                for sl in ((slice(y, y + frame), slice(x, x + tile)),
                           (slice(y + tile - frame, y + tile), slice(x, x + tile)),
                           (slice(y, y + tile), slice(x, x + frame)),
                           (slice(y, y + tile), slice(x + tile - frame, x + tile))):
                    mosaic[sl] = (1.0, 0.0, 0.0)
    fig, ax = plt.subplots(figsize=(1.1 * cols, 1.1 * rows * row_h / cell + 0.3))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for r in range(rows):
        titles = [query_titles[r] if query_titles is not None else None]
        titles += list(neighbour_titles[r]) if neighbour_titles is not None else []
        for c, text in enumerate(titles[:1 + len(neighbours[r])]):
            if text is not None:
                ax.text(gap + c * cell + tile / 2, top + r * row_h - 2, str(text), fontsize=5,
                        ha="center", va="bottom")
    ax.set_title(f"query (red) and its nearest neighbours ({mode})", fontsize=8)
    return save_figure(fig, path)


def plot_confusion(
    confusion: Any, path: PathLike, class_names: Sequence[str] | None = None,
    title: str = "confusion matrix", normalize: bool = True,
) -> Path:
    """A confusion matrix (rows: true class, columns: predicted), row-normalised by default.

    Classes that neither occur in the test side nor are ever predicted (an all-zero row and
    column) are left out of the picture, and the title says how many: a test side holding 4 of
    SEN12MS's 17 classes gives a readable 4 x 4 matrix. ``results.json`` keeps the full matrix.

    Args:
        confusion: ``K x K`` counts.
        path: PNG to write.
        class_names: the K class names (default: their indices).
        title: figure title.
        normalize: colour by row fraction (the counts are written in the cells).

    Returns:
        the path written.
    """
    full = np.asarray(confusion, dtype=np.float64)
    n_all = len(full)
    all_names = (list(class_names) if class_names is not None and len(class_names) == n_all
                 else [str(i) for i in range(n_all)])
    keep = np.flatnonzero(full.sum(0) + full.sum(1) > 0)
    if keep.size == 0:
        keep = np.arange(n_all)
    cm = full[np.ix_(keep, keep)]
    names = [str(all_names[i]) for i in keep]
    if len(keep) < n_all:
        title = f"{title} ({n_all - len(keep)} classes without samples hidden)"
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    k = len(cm)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * k + 2), max(4, 0.35 * k + 2)))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 15:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                        color="white" if shown[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_per_class(
    values: Mapping[str, Sequence[float | None] | None], path: PathLike,
    class_names: Sequence[str] | None = None, title: str = "per-class scores",
) -> Path:
    """Per-class scores as horizontal bars, one group per class, one bar per score.

    Args:
        values: score name (``AP``, ``F1``, ...) -> one value per class (``None``: undefined,
            e.g. AP of a class without a positive test sample; drawn as no bar and marked
            ``n/a``). Entries that are ``None`` as a whole are left out.
        path: PNG to write.
        class_names: the class names (default: their indices).
        title: figure title.

    Returns:
        the path written.

    Raises:
        ValueError: no values, or lists of different lengths.
    """
    series = {k: list(v) for k, v in values.items() if v is not None}
    lengths = {len(v) for v in series.values()}
    if not series or len(lengths) != 1:
        raise ValueError(f"per-class values need one list per score, all of one length: "
                         f"{ {k: len(v) for k, v in series.items()} }")
    k = lengths.pop()
    names = (list(class_names) if class_names is not None and len(class_names) == k
             else [str(i) for i in range(k)])
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * k * max(1, len(series)) ** 0.5 + 1.2)))
    height = 0.8 / len(series)
    cmap = _colours(len(series))
    y = np.arange(k)
    for i, (label, vals) in enumerate(series.items()):
        pos = y - 0.4 + height * (i + 0.5)
        widths = [np.nan if v is None else float(v) for v in vals]
        ax.barh(pos, np.nan_to_num(widths, nan=0.0), height=height, color=cmap(i % cmap.N),
                label=label)
        for p_, w in zip(pos, widths):
            ax.text(0.005 if np.isnan(w) else w + 0.005, p_,
                    "n/a" if np.isnan(w) else f"{w:.2f}", va="center", fontsize=6)
    ax.set_yticks(y, [n if len(n) <= 48 else n[:45] + "..." for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("score")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_sweep_curves(
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float, float]]]], path: PathLike,
    xlabel: str, title: str | None = None,
) -> Path:
    """Results of a sweep against one grid key (e.g. accuracy against the chip size).

    Args:
        panels: metric -> line label (a cell of the other grid keys, e.g. a backbone) -> points
            ``(x, mean, std)``; one panel per metric, one line per label, error bars = std.
        path: PNG to write.
        xlabel: the swept key (x axis, logarithmic: sizes double).
        title: figure title.

    Returns:
        the path written.

    Raises:
        ValueError: no points to draw.
    """
    names = [m for m, lines in panels.items() if any(lines.values())]
    if not names:
        raise ValueError("no finished sweep results to draw")
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], names):
        lines = panels[metric]
        cmap = _colours(len(lines))
        xs_all: set[float] = set()
        for i, (label, points) in enumerate(lines.items()):
            pts = sorted(points)
            if not pts:
                continue
            x, mean, std = (np.array(v, dtype=np.float64) for v in zip(*pts))
            xs_all.update(x.tolist())
            ax.errorbar(x, mean, yerr=std, fmt="o-", color=cmap(i % cmap.N), label=label,
                        ms=4, capsize=2)
        ticks = sorted(xs_all)
        if ticks and min(ticks) > 0:
            ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
        if len(lines) > 1 or next(iter(lines), ""):
            ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curves(
    logs: PathLike | Mapping[str, PathLike], path: PathLike,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Training curves from Lightning ``CSVLogger`` ``metrics.csv`` files.

    Args:
        logs: one CSV, or ``{label: csv}`` to overlay several runs (e.g. pretrained vs
            scratch).
        path: PNG to write.
        metrics: columns to plot (default: every numeric column but ``epoch``/``step``).

    Returns:
        the path written.

    Raises:
        DataError: a log is missing or has no ``step`` column.
    """
    runs = {"": logs} if isinstance(logs, (str, os.PathLike)) else dict(logs)
    frames = {}
    for label, csv_path in runs.items():
        if not Path(csv_path).is_file():
            raise DataError("training log not found", csv_path)
        df = pd.read_csv(csv_path)
        if "step" not in df.columns:
            raise DataError("not a Lightning CSV log (no 'step' column)", csv_path)
        frames[label] = df
    cols = list(metrics) if metrics else sorted({
        c for df in frames.values() for c in df.columns
        if c not in ("epoch", "step") and pd.api.types.is_numeric_dtype(df[c])})
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(4.5 * max(1, len(cols)), 3.2),
                             squeeze=False)
    for ax, col in zip(axes[0], cols):
        for label, df in frames.items():
            if col not in df.columns:
                continue
            d = df[["step", col]].dropna()
            ax.plot(d["step"], d[col], label=label or None, lw=1)
        ax.set_xlabel("step")
        ax.set_title(col)
        if any(label for label in frames):
            ax.legend(fontsize=7)
    return save_figure(fig, path)


#: axis names of the metrics in :func:`plot_comparison`
_METRIC_LABELS = {"oa": "OA", "aa": "AA", "map_macro": "mAP macro", "map_micro": "mAP micro",
                  "f1_macro": "F1 macro"}


def plot_comparison(
    summary: Sequence[Mapping[str, Any]],
    comparison: Sequence[Mapping[str, Any]],
    path: PathLike,
    reference: str,
    metrics: Mapping[str, Sequence[str]],
    title: str | None = None,
) -> Path:
    """Scores of several representations and their paired differences to a reference row.

    One row of panels per (task, headline metric): on the left the mean ± std over draws of
    every row at each label budget, on the right each row minus the reference with the 95 %
    paired interval (a dashed line at zero: intervals clear of it are clear differences).

    Args:
        summary: ``geossl compare`` summary records (``row``, ``task``, ``budget``,
            ``metrics: {name: {"mean", "std"}}``).
        comparison: paired records (``row``, ``task``, ``budget``, ``metric``, ``mean``,
            ``low``, ``high``).
        path: PNG to write.
        reference: the reference row.
        metrics: headline metrics per task.
        title: figure title.

    Returns:
        the path written.
    """
    panels = [(task, m) for task, ms in metrics.items() for m in ms]
    rows = list(dict.fromkeys(str(s["row"]) for s in summary))
    budgets = list(dict.fromkeys(str(s["budget"]) for s in summary))
    fig, axes = plt.subplots(max(1, len(panels)), 2, figsize=(11, 2.8 * max(1, len(panels))),
                             squeeze=False)
    cmap = _colours(len(rows))
    x = np.arange(len(budgets))
    width = 0.8 / max(1, len(rows))
    for (task, m), (left, right) in zip(panels, axes):
        for i, row in enumerate(rows):
            pts = {str(s["budget"]): s["metrics"].get(m) for s in summary
                   if s["row"] == row and s["task"] == task}
            mean = [np.nan if not pts.get(b) or pts[b].get("mean") is None else pts[b]["mean"]
                    for b in budgets]
            std = [0.0 if not pts.get(b) or pts[b].get("std") is None else pts[b]["std"]
                   for b in budgets]
            off = x + (i - (len(rows) - 1) / 2) * width
            left.errorbar(off, mean, yerr=std, fmt="o", color=cmap(i % cmap.N), label=row, ms=4,
                          capsize=2)
            cells = {str(c["budget"]): c for c in comparison
                     if c["row"] == row and c["task"] == task and c["metric"] == m}
            if row == reference or not cells:
                continue
            d = np.array([cells[b]["mean"] if b in cells else np.nan for b in budgets])
            lo = np.array([cells[b]["low"] if b in cells else np.nan for b in budgets])
            hi = np.array([cells[b]["high"] if b in cells else np.nan for b in budgets])
            finite = np.isfinite(lo) & np.isfinite(hi)
            err = np.where(finite, np.vstack([d - lo, hi - d]), 0.0)
            right.errorbar(off, d, yerr=err, fmt="s", color=cmap(i % cmap.N), ms=4, capsize=3)
        name = _METRIC_LABELS.get(m, m)
        label = name if task == "classes" else f"{task}: {name}"
        for ax in (left, right):
            ax.set_xlim(-0.5, len(budgets) - 0.5)
            ax.set_xticks(x, [f"{b} labels" if b[0].isdigit() and "/" not in b else b
                              for b in budgets], fontsize=8)
        left.set_ylabel(label)
        left.set_title(f"{label} (mean ± std over draws)", fontsize=9)
        right.axhline(0.0, color="grey", ls="--", lw=1)
        right.set_title(f"{label}: row − {reference} (95 % paired interval)", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_search_mosaic(
    pictures: Sequence[np.ndarray | None],
    titles: Sequence[str],
    path: PathLike,
    tile: int = 96,
    columns: int = 5,
) -> Path:
    """Search hits as a mosaic: each hit chip's picture with its caption (rank, score, id).

    Args:
        pictures: ``(h, w, 3)`` pictures in [0, 1] (see :func:`composite`), best hit first;
            ``None`` for a hit whose pixels are not at hand (drawn as a grey tile).
        titles: one caption per hit.
        path: PNG to write.
        tile: side of each tile in pixels of the mosaic.
        columns: tiles per row.

    Returns:
        the path written.
    """
    n = max(1, len(pictures))
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    gap, top = 4, 24  # pixels between tiles, above each tile (two caption lines)
    cell_w, cell_h = tile + gap, tile + top
    mosaic = np.ones((rows * cell_h + gap, cols * cell_w + gap, 3), dtype=np.float32)
    for i, pic in enumerate(pictures):
        r, c = divmod(i, cols)
        y, x = top + r * cell_h, gap + c * cell_w
        mosaic[y:y + tile, x:x + tile] = 0.6 if pic is None else _tile(pic, tile)
    fig, ax = plt.subplots(figsize=(1.3 * cols, 1.3 * rows * cell_h / cell_w + 0.3))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for i, text in enumerate(titles[:len(pictures)]):
        r, c = divmod(i, cols)
        ax.text(gap + c * cell_w + tile / 2, top + r * cell_h - 2, text, fontsize=5,
                ha="center", va="bottom")
    ax.set_title("search hits (rank, cosine score, chip id)", fontsize=8)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# pictures of the demo, of training and of the benchmarks
# ----------------------------------------------------------------------------------------------
def plot_quicklook(image: np.ndarray, boxes: Any, size: tuple[int, int], path: PathLike,
                   title: str) -> Path:
    """A scene composite with the footprints of its chips, as PNG (permissions of a new file).

    Args:
        image: ``(h, w, 3)`` composite in [0, 1] (possibly decimated).
        boxes: ``(row, col, height, width)`` of each chip in full-resolution scene pixels.
        size: ``(height, width)`` of the full-resolution scene.
        path: PNG to write (atomically).
        title: figure title.

    Returns:
        ``path``.
    """
    from matplotlib.patches import Rectangle

    out = Path(path)
    height, width = size
    fig, ax = plt.subplots(figsize=(8, 8 * height / width), dpi=100)
    ax.imshow(image, extent=(0, width, height, 0))
    for r, c, h, w in boxes:
        ax.add_patch(Rectangle((c, r), w, h, fill=False, lw=0.4, ec="yellow", alpha=0.8))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
            set_default_mode(tmp)
    finally:
        plt.close(fig)
    return out


def plot_loss_curve(frame: pd.DataFrame, path: PathLike) -> bool:
    """Every ``*loss*`` column of a Lightning ``CSVLogger`` frame against the step, as PNG.

    Returns:
        whether a plot was written (false when nothing was logged yet).
    """
    cols = [c for c in frame.columns if "loss" in c]
    if "step" not in frame.columns or not cols:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = False
    for col in cols:
        part = frame[["step", col]].dropna()
        if len(part):
            ax.plot(part["step"], part[col], label=col, marker="." if len(part) < 20 else None)
            plotted = True
    if not plotted:
        plt.close(fig)
        return False
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return True


def plot_polsar_split(
    pauli: np.ndarray, labels: np.ndarray, rows: np.ndarray, cols: np.ndarray,
    split: np.ndarray, block: int, patch: int, class_ids: np.ndarray,
    class_names: Sequence[str], path: PathLike,
) -> None:
    """Pauli RGB | labels with the checkerboard | the patches kept for train/test, as PNG.

    Args:
        pauli: ``(H, W, 3)`` Pauli RGB picture.
        labels: ``(H, W)`` class raster.
        rows: top row of each patch.
        cols: left column of each patch.
        split: ``train`` / ``test`` / ``drop`` per patch.
        block: checkerboard block size in pixels.
        patch: patch size in pixels.
        class_ids: the classes in the legend.
        class_names: their names.
        path: PNG to write (atomically).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    h, w = labels.shape
    fig, axes = plt.subplots(1, 3, figsize=(17, 6))
    axes[0].imshow(pauli)
    axes[0].set_title("Pauli RGB")
    cmap = ListedColormap(["#000000", "#e6c229", "#3d7f3a", "#1f5fbf", "#d7263d", "#7ddc5a",
                           "#999999", "#8e44ad"][: max(int(labels.max()) + 1, 2)])
    axes[1].imshow(labels, cmap=cmap, vmin=0, vmax=cmap.N - 1, interpolation="nearest")
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    board = ((ii // block + jj // block) % 2).astype(float)
    axes[1].imshow(np.ma.masked_equal(board, 0), cmap="gray", alpha=0.35, vmin=0, vmax=1)
    axes[1].set_title(f"labels + {block}px checkerboard (shaded = test)")
    axes[1].legend(handles=[Patch(color=cmap(int(c)), label=n)
                            for c, n in zip(class_ids, class_names)],
                   loc="lower left", fontsize=7)
    kept = np.zeros((h, w, 3), dtype=np.float32)
    colour = {"train": (0.2, 0.5, 1.0), "test": (1.0, 0.5, 0.1), "drop": (0.6, 0.6, 0.6)}
    for name in ("drop", "train", "test"):
        for r, c in zip(rows[split == name], cols[split == name]):
            kept[r : r + patch, c : c + patch] = colour[name]
    axes[2].imshow(kept)
    n = {s: int((split == s).sum()) for s in ("train", "test", "drop")}
    axes[2].set_title(f"{patch}px patches: train {n['train']} (blue), test {n['test']} "
                      f"(orange),\n{n['drop']} dropped on block borders")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    try:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)


def png_data_uri(rgba: np.ndarray) -> str:
    """``(h, w, 3|4)`` float [0, 1] or uint8 -> ``data:image/png;base64,...`` (map overlays)."""
    import base64
    import io

    from PIL import Image

    arr = rgba if rgba.dtype == np.uint8 else (np.clip(rgba, 0, 1) * 255).round().astype(
        np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plot_cluster_panels(
    rgb: np.ndarray, rgb_bounds: Sequence[float], ids: np.ndarray,
    ids_bounds: Sequence[float], path: PathLike, title: str,
) -> Path:
    """A scene composite and its k-means cluster map side by side, in map coordinates (PNG).

    Args:
        rgb: ``(H, W, 3)`` picture of the scene in [0, 1].
        rgb_bounds: its ``(left, bottom, right, top)`` in the scene's CRS.
        ids: cluster id per pixel (a masked array: masked pixels are left blank).
        ids_bounds: ``(left, bottom, right, top)`` of ``ids`` in the same CRS.
        path: PNG to write (atomically).
        title: title of the cluster-map panel.

    Returns:
        ``path``.
    """
    k = int(ids.max()) + 1 if np.ma.count(ids) else 1
    left, bottom, right, top = rgb_bounds
    b_left, b_bottom, b_right, b_top = ids_bounds
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.2))
    axes[0].imshow(rgb, extent=(left, right, bottom, top))
    axes[0].set_title("RGB quick-look (B04/B03/B02)", fontsize=10)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20", k)
    im = axes[1].imshow(ids, extent=(b_left, b_right, b_bottom, b_top), cmap=cmap,
                        vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
    axes[1].set_title(title, fontsize=10)
    for ax in axes:
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(im, ax=axes[1], fraction=0.046, ticks=range(k))
    bar.set_label("cluster id (no labels used)")
    return save_figure(fig, path, dpi=100)
