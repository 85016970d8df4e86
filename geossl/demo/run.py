"""``geossl demo`` as a library: the end-to-end pipeline on one scene, stage by stage.

:func:`demo` runs :data:`STAGES` in order on a :class:`DemoContext` and prints the closing
report; every stage is a plain function of the context, built from the library calls a user would
make (:func:`geossl.tiling.tile.tile`, :func:`geossl.splits.make_splits`,
:func:`geossl.training.trainer.pretrain` (the very code path of ``geossl pretrain``), the
frozen-feature
extraction of :mod:`geossl.eval.features`, the probes of :mod:`geossl.demo.evaluate` and
:func:`geossl.inference.embed.embed`), so a stage can be rerun, replaced or appended
(``run_demo(ctx,
stages)``). The stages and their outputs are listed in ``geossl demo --help``
(:mod:`geossl.commands.demo`).
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geossl.core.errors import ConfigError, DataError
from geossl.demo import builtin_scene

#: train / test fractions of the spatial-block split
SPLIT_FRACTIONS = (0.6, 0.4)
#: side of a split block, in chips
BLOCK_CHIPS = 4
#: a proxy class is evaluated only with at least this many training and test chips
MIN_TRAIN, MIN_TEST = 3, 2
#: query chips per class in the nearest-neighbour grid, and neighbours per query
QUERIES_PER_CLASS, NEIGHBOURS = 1, 10


@dataclass
class DemoContext:
    """State shared by the demo stages.

    Attributes:
        out: output folder.
        size: chip size in pixels.
        workers: worker processes.
        seed: random seed for stages that draw at random.
        steps: pretraining optimiser steps.
        batch_size: pretraining batch size (capped at the number of training chips).
        crop_size: side of the augmented pretraining views in pixels (``None``: the chip size);
            smaller views make pretraining cheaper, the features are still of whole chips.
        method: SSL method (``simclr``, ``moco``, ``byol``).
        backbone: timm backbone.
        purity: fraction of a chip its proxy class must cover to label it.
        clusters: k of the label-free cluster map.
        map_stride: stride of the embedding map in pixels (default: ``size``).
        scene: the sample scene (set by ``locate``).
        chips: chip folder (set by ``tile``).
        index: chip index file (set by ``tile``).
        checkpoint: pretraining checkpoint (set by ``pretrain``).
        outputs: files written, by name.
        summary: lines printed at the end.
        extra: anything later stages want to pass on.
        method_args: further options of the method (``--method-args`` of ``geossl pretrain``).
    """

    out: Path
    size: int = 64
    workers: int = 0
    seed: int = 0
    steps: int = 60
    batch_size: int = 64
    crop_size: int | None = 32
    method: str = "simclr"
    backbone: str = "resnet18"
    purity: float = 0.6
    clusters: int = 6
    map_stride: int | None = None
    scene: Path | None = None
    chips: Path | None = None
    index: Path | None = None
    checkpoint: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    method_args: dict[str, Any] = field(default_factory=dict)


def _say(text: str) -> None:
    """A progress line (stderr, so it interleaves with the progress bars)."""
    print(f"geossl demo: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# data stages
# --------------------------------------------------------------------------------------------
def stage_locate(ctx: DemoContext) -> None:
    """Find the sample scene (unless one was given)."""
    if ctx.scene is None:
        ctx.scene = builtin_scene()
    ctx.summary.append(f"scene      {ctx.scene}")


def stage_tile(ctx: DemoContext) -> None:
    """Tile the scene into ``out/chips`` with ``out/chips/index.parquet``, then pack the chips."""
    from geossl.tiling.packed import pack
    from geossl.tiling.tile import TileOptions, tile

    assert ctx.scene is not None
    ctx.chips = ctx.out / "chips"
    report = tile([ctx.scene], ctx.chips, TileOptions(size=ctx.size, min_valid=0.9),
                  workers=ctx.workers)
    ctx.index = report.index
    ctx.outputs["chip index"] = report.index
    ctx.summary.append(
        f"chips      {report.chips} chips of {ctx.size} px ({report.written} written, "
        f"{report.existing} reused, {report.rejected} under min-valid) in {ctx.chips}")
    if report.chips == 0:
        raise DataError(f"no {ctx.size} px chip fits the scene; try a smaller --size", ctx.scene)
    store = pack(report.index, progress=False)
    ctx.outputs["packed chips"] = store / "chips.npy"


def stage_quicklook(ctx: DemoContext) -> None:
    """Write ``out/quicklook.png``: RGB composite with every chip footprint."""
    from geossl.tiling.chip_index import read_index

    assert ctx.scene is not None and ctx.index is not None
    path = ctx.out / "quicklook.png"
    write_quicklook(ctx.scene, read_index(ctx.index), path)
    ctx.outputs["quick-look"] = path


def scene_rgb(scene_path: Path, max_px: int = 800) -> tuple[
        Any, tuple[float, float, float, float], list[str], str, tuple[int, int]]:
    """RGB composite of a scene (2-98 % stretch per band), decimated to ``max_px``.

    Returns:
        ``(H, W, 3)`` float picture in [0, 1], its ``(left, bottom, right, top)`` bounds in the
        scene's CRS, the bands shown, the scene name and the full ``(height, width)``.
    """
    import numpy as np

    from geossl.tiling.scenes import SceneReader, open_scene

    names = open_scene(scene_path).band_names
    rgb = [b for b in ("B04", "B03", "B02") if b in names] or names[:3]
    scene = open_scene(scene_path, bands=rgb)
    g = scene.grid
    with SceneReader(scene) as reader:
        data, _ = reader.read(0, 0, g.height, g.width)
    step = max(1, int(np.ceil(max(g.height, g.width) / max_px)))
    img = data[:, ::step, ::step].astype(np.float32)
    lo, hi = np.nanpercentile(img, [2, 98], axis=(1, 2), keepdims=True)
    img = np.clip((img - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    t = g.transform
    bounds = (float(t.c), float(t.f + t.e * g.height), float(t.c + t.a * g.width), float(t.f))
    return np.moveaxis(img[:3], 0, -1), bounds, list(rgb), str(scene.name), (g.height, g.width)


def write_quicklook(scene_path: Path, index: Any, path: Path, max_px: int = 800) -> Path:
    """RGB composite of a scene (2-98 % stretch) with the footprints of its chips, as PNG.

    Args:
        scene_path: the scene (read at most ``max_px`` wide, decimated).
        index: chip index rows of this scene (``row``, ``col``, ``height``, ``width``).
        path: PNG to write (atomically).
        max_px: longest side of the composite.

    Returns:
        ``path``.
    """
    from geossl.viz.plots import plot_quicklook

    img, _, rgb, name, size = scene_rgb(scene_path, max_px)
    boxes = list(index[["row", "col", "height", "width"]].itertuples(index=False))
    return plot_quicklook(img, boxes, size, path, f"{name}: {len(index)} chips ({'/'.join(rgb)})")


def stage_labels(ctx: DemoContext) -> None:
    """Proxy class and band means of every chip (``out/proxy_labels.csv``)."""
    import numpy as np
    import pandas as pd

    from geossl.core.io import atomic_path
    from geossl.datasets.registry import get_dataset
    from geossl.demo import proxy_labels as pl

    assert ctx.index is not None
    ds = get_dataset("chips", ctx.index)
    bands = list(ds.bands)
    pl.band_roles(bands)  # a clear error before reading anything when a band is missing
    labels, purity, fractions, means = [], [], [], []
    batch = 64
    for start in range(0, len(ds), batch):
        imgs = np.stack([ds[i]["image"].numpy() for i in range(start, min(len(ds), start + batch))])
        lab, pur, frac = pl.chip_labels(imgs, bands, ctx.purity)
        labels.append(lab)
        purity.append(pur)
        fractions.append(frac)
        valid = (imgs != 0).any(axis=1, keepdims=True)
        means.append((imgs * valid).sum(axis=(2, 3)) / np.maximum(valid.sum(axis=(2, 3)), 1)
                     / pl.Thresholds().scale)
    table = pd.DataFrame({"chip_id": ds.ids, "row": ds.index["row"].to_numpy(),
                          "col": ds.index["col"].to_numpy()})
    table["label"] = np.concatenate(labels)
    table["proxy_class"] = [pl.CLASSES[k] if k >= 0 else "unlabelled" for k in table["label"]]
    table["purity"] = np.concatenate(purity).round(4)
    frac_all = np.concatenate(fractions)
    for k, name in enumerate(pl.CLASSES):
        table[f"fraction_{name.replace(' ', '_').replace('/', '_')}"] = frac_all[:, k].round(4)
    mean_all = np.concatenate(means)
    for b, name in enumerate(bands):
        table[f"mean_{name}"] = mean_all[:, b].astype(np.float32)
    path = ctx.out / "proxy_labels.csv"
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    ctx.outputs["proxy labels"] = path
    ctx.extra["proxy"] = table
    ctx.extra["bands"] = bands
    counts = table["proxy_class"].value_counts()
    text = ", ".join(f"{c} {int(counts.get(c, 0))}" for c in (*pl.CLASSES, "unlabelled"))
    ctx.summary.append(f"labels     {text} (purity >= {ctx.purity}; {pl.DISCLAIMER})")


def stage_split(ctx: DemoContext) -> None:
    """Spatial-block train/test split stratified by proxy class (``out/splits.json``)."""
    import numpy as np

    from geossl.demo import proxy_labels as pl
    from geossl.splits import leakage_report, make_splits, save_splits
    from geossl.tiling.chip_index import read_index

    assert ctx.index is not None
    gdf = read_index(ctx.index)
    table = ctx.extra["proxy"]
    if list(gdf["chip_id"].astype(str)) != list(table["chip_id"]):
        raise DataError("chip index and proxy labels disagree (rerun the demo)", ctx.index)
    gdf["proxy_class"] = table["proxy_class"].to_numpy()
    chip_m = float((gdf["maxx"] - gdf["minx"]).max())
    block = BLOCK_CHIPS * chip_m
    splits = make_splits(gdf, "block", fractions=SPLIT_FRACTIONS, names=["train", "test"],
                         seed=ctx.seed, block_size=block, label="proxy_class")
    path = save_splits(ctx.out / "splits.json", splits, gdf)
    leak = leakage_report(gdf, splits)
    leaking = int(leak[["leaking_a", "leaking_b"]].to_numpy().sum()) if len(leak) else 0
    names = splits.to_numpy()
    label = table["label"].to_numpy()
    train, test = names == "train", names == "test"
    kept = [k for k in range(len(pl.CLASSES))
            if ((label == k) & train).sum() >= MIN_TRAIN
            and ((label == k) & test).sum() >= MIN_TEST]
    if len(kept) < 2:
        raise DataError(f"only {len(kept)} proxy class(es) with >= {MIN_TRAIN} training and "
                        f">= {MIN_TEST} test chips; try a smaller --size or a lower --purity",
                        ctx.scene)
    remap = np.full(len(pl.CLASSES), -1, np.int64)
    remap[kept] = np.arange(len(kept))
    eval_label = np.where(label >= 0, remap[np.maximum(label, 0)], -1)
    ctx.extra.update(split=names, train=train, test=test, eval_label=eval_label,
                     classes=[pl.CLASSES[k] for k in kept], leaking=leaking, block_m=block)
    ctx.outputs["splits"] = path
    left_out = [f"{pl.CLASSES[k]} ({int((label == k).sum())} chips)"
                for k in range(len(pl.CLASSES)) if k not in kept and (label == k).any()]
    ctx.summary.append(
        f"split      block {block:.0f} m: {int(train.sum())} train / {int(test.sum())} test "
        f"chips, {int((names == 'drop').sum())} dropped, {leaking} leaking chips"
        + (f"; too rare to evaluate: {', '.join(left_out)}" if left_out else ""))


# --------------------------------------------------------------------------------------------
# pretraining and evaluation stages
# --------------------------------------------------------------------------------------------
def stage_pretrain(ctx: DemoContext) -> None:
    """Pretrain briefly on the training chips with :func:`geossl.training.trainer.pretrain`."""
    import pandas as pd

    from geossl.tiling.chip_index import read_index
    from geossl.training.trainer import PretrainConfig, pretrain

    assert ctx.index is not None and ctx.chips is not None
    if ctx.steps < 1:
        raise ConfigError("--steps must be >= 1")
    gdf = read_index(ctx.index)
    sensor = str(gdf["sensor"].iloc[0]) if "sensor" in gdf.columns and gdf["sensor"].iloc[0] \
        else "s2"
    n_train = int(ctx.extra["train"].sum())
    batch = min(ctx.batch_size, n_train)
    run = ctx.out / "pretrain"
    fresh_run_dir(run)
    views = ctx.crop_size or ctx.size
    _say(f"pretraining {ctx.method} {ctx.backbone} for {ctx.steps} steps of {batch} chips "
         f"({n_train} training chips, {sensor}, all {len(ctx.extra['bands'])} bands, "
         f"{views} px views)")
    config = PretrainConfig(
        data="chips", root=str(ctx.chips), index=str(ctx.index), out=str(run),
        method=ctx.method, backbone=ctx.backbone, sensors=[sensor], pairing="aug",
        seed=ctx.seed, workers=ctx.workers, max_steps=ctx.steps, batch_size=batch,
        splits=str(ctx.outputs["splits"]), split="train", ckpt_every=ctx.steps,
        method_args={**({"crop_size": ctx.crop_size} if ctx.crop_size else {}),
                     **ctx.method_args},
    )
    # Lightning's progress bar writes to stdout: keep stdout for the closing report
    with contextlib.redirect_stdout(sys.stderr):
        ctx.checkpoint = pretrain(config)
    ctx.outputs["checkpoint"] = ctx.checkpoint
    log = run / "logs" / "csv" / "metrics.csv"
    losses = pd.read_csv(log)["train/loss"].dropna() if log.is_file() else pd.Series([])
    if (run / "loss_curve.png").is_file():
        ctx.outputs["loss curve"] = run / "loss_curve.png"
    ctx.outputs["training log"] = log
    ctx.extra["pretrain"] = {
        "method": ctx.method, "backbone": ctx.backbone, "pairing": "aug", "sensor": sensor,
        "steps": ctx.steps, "batch_size": batch, "view_size": views, "training_chips": n_train,
        "loss_first": float(losses.iloc[0]) if len(losses) else None,
        "loss_last": float(losses.iloc[-1]) if len(losses) else None,
        "checkpoint": str(ctx.checkpoint),
    }
    first, last = ctx.extra["pretrain"]["loss_first"], ctx.extra["pretrain"]["loss_last"]
    trend = f", loss {first:.3f} -> {last:.3f}" if first is not None and last is not None else ""
    ctx.summary.append(f"pretrain   {ctx.method} {ctx.backbone}, {ctx.steps} steps x {batch} "
                       f"chips ({views} px views){trend}: {ctx.checkpoint}")


def fresh_run_dir(run: Path) -> None:
    """Remove the pretraining run a previous demo left in ``run`` (a rerun starts afresh).

    Raises:
        ConfigError: ``run`` exists but is not a ``geossl pretrain`` run folder.
    """
    import shutil

    if not run.exists():
        return
    if not (run / "config.yaml").is_file() and not (run / "checkpoints").is_dir():
        raise ConfigError(f"{run} exists and is not a demo pretraining run; move it or choose "
                          "another --out")
    shutil.rmtree(run)


def stage_features(ctx: DemoContext) -> None:
    """Frozen features of every chip: SSL encoder, same encoder random, band means."""
    import torch

    from geossl.datasets.registry import get_dataset
    from geossl.demo.evaluate import LabelledChips
    from geossl.eval.features import extract_features
    from geossl.pretrained.checkpoint import load_source, primary_sensor, random_like
    from geossl.pretrained.normalize import make_normalizer

    assert ctx.index is not None and ctx.checkpoint is not None
    ssl = load_source(ctx.checkpoint)
    rnd = random_like(ssl, ctx.seed)
    sensor = primary_sensor(ssl.meta)
    normalizer = make_normalizer(ssl.meta, sensor)
    dataset = LabelledChips(get_dataset("chips", ctx.index), ctx.extra["eval_label"])
    feats: dict[str, torch.Tensor] = {}
    names = {"ssl": f"SSL ({ctx.method}, {ctx.steps} steps)",
             "random": f"random init ({ctx.backbone})"}
    for key, source in (("ssl", ssl), ("random", rnd)):
        _say(f"features of {len(dataset)} chips: {names[key]}")
        fs = extract_features(source.encoder, dataset, normalizer=normalizer, sensor=sensor,
                              batch_size=128, workers=ctx.workers, desc=key)
        feats[names[key]] = fs.features
    means = ctx.extra["proxy"][[f"mean_{b}" for b in ctx.extra["bands"]]].to_numpy()
    feats[f"band means ({len(ctx.extra['bands'])}, hand-crafted)"] = torch.as_tensor(means).float()
    ctx.extra.update(features=feats, ssl_source=ssl, ssl_name=names["ssl"])


def stage_evaluate(ctx: DemoContext) -> None:
    """Linear probe, kNN and k-means for every feature set: ``table.md``, ``results.json``."""
    from geossl.core.io import atomic_write_text, jsonable
    from geossl.demo import evaluate as demo_eval
    from geossl.demo.proxy_labels import DISCLAIMER

    label = ctx.extra["eval_label"]
    classes = ctx.extra["classes"]
    train, test = ctx.extra["train"], ctx.extra["test"]
    _say("evaluating (linear probe, kNN, k-means) against the proxy labels")
    rows = demo_eval.evaluate_features(ctx.extra["features"], label, train, test, len(classes),
                                       seed=ctx.seed)
    known = label >= 0
    count = {side: {c: int(((label == k) & mask).sum()) for k, c in enumerate(classes)}
             for side, mask in (("train", train), ("test", test))}
    pre = ctx.extra["pretrain"]
    notes = [
        "Train/test: spatial blocks of "
        f"{ctx.extra['block_m']:.0f} m (overlap-aware splitter, {ctx.extra['leaking']} leaking "
        f"chips); labelled chips train {sum(count['train'].values())}, test "
        f"{sum(count['test'].values())}; per class: "
        + "; ".join(f"{c} {count['train'][c]}/{count['test'][c]}" for c in classes) + ".",
        f"SSL: {pre['method']} {pre['backbone']} ({pre['pairing']} pairing, all "
        f"{len(ctx.extra['bands'])} bands), {pre['steps']} steps x {pre['batch_size']} chips "
        f"({pre['view_size']} px views) on the training chips only; random init: the same "
        "architecture, untrained; band means: per-chip mean reflectance of every band. Same "
        "probes for all three.",
        "Linear: logistic regression (C = 1) on standardised features. "
        "kNN: cosine, k = 20, temperature-weighted votes. "
        f"k-means: k = {len(classes)} on all {int((known & (train | test)).sum())} labelled chips "
        "(L2-normalised features; NMI/ARI against the proxy classes).",
        "One split, one seed, a very short pretraining: differences of a few points are noise.",
    ]
    title = f"geossl demo: {len(classes)} proxy classes ({', '.join(classes)})"
    md = demo_eval.markdown_table(rows, title, notes)
    table_path, json_path = ctx.out / "table.md", ctx.out / "results.json"
    atomic_write_text(table_path, md)
    results = {
        "labels": DISCLAIMER, "scene": str(ctx.scene), "chip_size": ctx.size,
        "purity": ctx.purity, "classes": classes, "counts": count,
        "split": {"strategy": "block", "block_m": ctx.extra["block_m"],
                  "fractions": list(SPLIT_FRACTIONS), "leaking_chips": ctx.extra["leaking"],
                  "file": str(ctx.outputs["splits"])},
        "pretrain": pre, "rows": rows, "seed": ctx.seed,
    }
    atomic_write_text(json_path, json.dumps(jsonable(results), indent=2) + "\n")
    ctx.outputs["table"] = table_path
    ctx.outputs["results"] = json_path
    ctx.extra["table_md"] = md
    ctx.extra["rows"] = rows


def stage_pictures(ctx: DemoContext) -> None:
    """t-SNE of the SSL embeddings by proxy class, and a nearest-neighbour grid."""
    import numpy as np

    from geossl.datasets.registry import get_dataset
    from geossl.demo.proxy_labels import DISCLAIMER
    from geossl.eval.knn import nearest_neighbours
    from geossl.viz.plots import plot_neighbour_grid, plot_tsne

    assert ctx.index is not None
    label = ctx.extra["eval_label"]
    classes = ctx.extra["classes"]
    x = ctx.extra["features"][ctx.extra["ssl_name"]]
    rows = np.flatnonzero(label >= 0)
    tsne = plot_tsne(x[rows], label[rows], ctx.out / "tsne.png", class_names=classes,
                     seed=ctx.seed, title=f"t-SNE of {ctx.extra['ssl_name']} embeddings\n"
                     f"colour: {DISCLAIMER}")
    ctx.outputs["t-SNE"] = tsne
    rng = np.random.default_rng(ctx.seed)
    test = ctx.extra["test"]
    queries: list[int] = []
    for k in range(len(classes)):
        pool = np.flatnonzero((label == k) & test)
        queries.extend(int(q) for q in rng.choice(pool, min(QUERIES_PER_CLASS, len(pool)),
                                                   replace=False))
    neigh = nearest_neighbours(x, x[queries], k=NEIGHBOURS, exclude_self=True).numpy()
    ds = get_dataset("chips", ctx.index)
    proxy = ctx.extra["proxy"]["proxy_class"].to_numpy()
    short = {"dense vegetation": "dense veg", "sparse vegetation": "sparse veg",
             "unlabelled": "-"}
    grid = plot_neighbour_grid(
        [ds[int(q)]["image"] for q in queries],
        [[ds[int(j)]["image"] for j in row] for row in neigh],
        ctx.out / "neighbours.png", bands=ctx.extra["bands"], mode="rgb",
        query_titles=[f"query: {proxy[q]} (proxy)" for q in queries],
        neighbour_titles=[[short.get(proxy[j], proxy[j]) for j in row] for row in neigh],
    )
    ctx.outputs["nearest neighbours"] = grid


def stage_map(ctx: DemoContext) -> None:
    """Embedding map of the whole scene, its k-means cluster map and a side-by-side PNG."""
    from geossl.demo import evaluate as demo_eval
    from geossl.inference.embed import EmbedConfig, embed

    assert ctx.scene is not None and ctx.index is not None
    source = ctx.extra["ssl_source"]
    stride = ctx.map_stride or ctx.size
    # windows on the chip grid: read the chips (fast) instead of decoding the scene again
    where = ctx.index if stride == ctx.size else ctx.scene
    bands = ctx.extra["bands"]
    _say(f"embedding map of the scene ({ctx.size} px windows every {stride} px)")
    result = embed(EmbedConfig(source, where, ctx.out / "embedding.zarr", size=ctx.size,
                               stride=stride, batch_size=128, bands=bands, clusters=ctx.clusters,
                               cluster_map=ctx.out / "cluster_map.tif", seed=ctx.seed,
                               resume=False))
    assert result.cluster_map is not None
    rgb, bounds, _, _, _ = scene_rgb(ctx.scene)
    png = demo_eval.plot_cluster_map(
        rgb, bounds, result.cluster_map, ctx.out / "cluster_map.png",
        f"k-means (k = {ctx.clusters}) of the SSL embedding map: label-free\n"
        f"{result.shape[2]} x {result.shape[1]} windows of {ctx.size} px every {stride} px")
    ctx.outputs["embedding map"] = result.cube
    ctx.outputs["cluster map"] = result.cluster_map
    ctx.outputs["cluster map picture"] = png
    ctx.summary.append(f"map        {result.shape[0]} features x {result.shape[1]} x "
                       f"{result.shape[2]} windows, {ctx.clusters} clusters ({result.crs})")


#: the demo, in order: (name, stage)
STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("locate", stage_locate),
    ("tile", stage_tile),
    ("quicklook", stage_quicklook),
    ("labels", stage_labels),
    ("split", stage_split),
    ("pretrain", stage_pretrain),
    ("features", stage_features),
    ("evaluate", stage_evaluate),
    ("pictures", stage_pictures),
    ("map", stage_map),
]


def run_demo(ctx: DemoContext, stages: list[tuple[str, Callable[[DemoContext], None]]]
             | None = None) -> DemoContext:
    """Run the demo stages on ``ctx`` and return it.

    Raises:
        DataError: ``--out`` cannot be a folder written here (a file, a read-only place).
    """
    from geossl.core.io import check_writable

    check_writable(ctx.out, folder=True)  # one line before any work, not a traceback
    ctx.out.mkdir(parents=True, exist_ok=True)
    chosen = stages if stages is not None else STAGES
    for n, (name, stage) in enumerate(chosen, 1):
        if stages is None:
            _say(f"[{n}/{len(chosen)}] {name}")
        start, cpu = time.perf_counter(), time.process_time()
        stage(ctx)
        ctx.extra.setdefault("seconds", {})[name] = time.perf_counter() - start
        ctx.extra.setdefault("cpu_seconds", {})[name] = time.process_time() - cpu
    return ctx


def demo(ctx: DemoContext) -> DemoContext:
    """Run the whole demo on ``ctx`` and print its report (what ``geossl demo`` does).

    Returns:
        ``ctx`` after the last stage (outputs, summary, results).

    Raises:
        DataError: the sample is not installed, or the scene or its chips are unusable.
        ConfigError: invalid options.
    """
    from geossl.core.io import check_output, mark_output

    # absent, empty or an earlier demo (rerun); never a user's folder
    check_output(ctx.out, "demo", own=("chips", "pretrain", "results.json"))
    mark_output(ctx.out, "demo")
    run_demo(ctx)
    print_report(ctx)
    return ctx


def print_report(ctx: DemoContext) -> None:
    """Print the closing report: summary, the table, the files written and the timings."""
    seconds = ctx.extra.get("seconds", {})
    print("geossl demo")
    for line in ctx.summary:
        print(f"  {line}")
    if "table_md" in ctx.extra:
        print()
        print(ctx.extra["table_md"])
    print("files written:")
    for name, path in ctx.outputs.items():
        print(f"  {name:<20} {path}")
    cpu = ctx.extra.get("cpu_seconds", {})
    print("time (wall / CPU of this process): " + ", ".join(
        f"{k} {v:.0f}/{cpu.get(k, 0):.0f} s" for k, v in seconds.items()))
    print(f"done in {sum(seconds.values()):.1f} s ({sum(cpu.values()):.0f} s CPU)")
