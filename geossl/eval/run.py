"""``evaluate``: every evaluation protocol for one checkpoint on one labelled dataset.

The flow:

1. the encoder comes from a pretraining checkpoint (or ``random`` for the random-init baseline);
2. the dataset's train and test sides come from a saved overlap-aware split (``--splits``),
   from the dataset's own deterministic split when it has one, or else from an overlap-aware
   split made now and saved as ``OUT/splits.json`` (:mod:`geossl.eval.data`);
3. frozen features of both sides are extracted once and cached (checkpoint hash + dataset +
   split);
4. for every seed and label budget (k per class or N in total, drawn from the TRAIN side only),
   the requested protocols run: ``linear`` probe, ``knn`` (k = 20 and 200), ``finetune`` next to
   ``scratch`` (the same architecture from random weights, same labels and schedule), and
   ``cluster`` (k-means on the test features; no labels used);
5. ``results.json``, ``results.md`` (mean ± std over seeds) and pictures (t-SNE, nearest-neighbour
   grid, confusion matrices, fine-tuning curves) are written to ``out``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import check_output, mark_output
from geossl.datasets.base import class_names, declared_bands, single_sensor
from geossl.datasets.registry import dataset_class
from geossl.eval.budgets import Budget, draw_budget
from geossl.eval.cluster import cluster_eval
from geossl.eval.config import EvaluateConfig
from geossl.eval.data import resolve
from geossl.eval.features import (
    FeatureSet,
    cached_features,
    image_of,
    label_of,
)
from geossl.eval.finetune import finetune, parts, requested
from geossl.eval.knn import knn_scores, nearest_neighbours
from geossl.eval.linear import linear_probe
from geossl.eval.metrics import binary_metrics, multi_label_metrics, single_label_metrics
from geossl.eval.predictions import write_predictions
from geossl.eval.report import write_report
from geossl.eval.tasks import parse_tasks, task_sides
from geossl.pretrained.checkpoint import (
    EncoderSource,
    SensorSelection,
    bands_for,
    expected_channels,
    is_fusion,
    load_source,
    random_like,
    select_sensors,
    sensor_list,
)
from geossl.pretrained.normalize import make_normalizer
from geossl.runtime.devices import resolve_device

#: protocols ``evaluate`` knows
PROTOCOLS: tuple[str, ...] = ("linear", "knn", "finetune", "cluster")
_FEATURE_PROTOCOLS = ("linear", "knn", "cluster")


def parse_protocols(protocols: str | Sequence[str]) -> list[str]:
    """``"linear,knn"`` -> ``["linear", "knn"]``, checking every name.

    Raises:
        ConfigError: an unknown protocol.
    """
    items = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    names = [p.strip().lower() for p in items if p.strip()]
    bad = [p for p in names if p not in PROTOCOLS]
    if bad or not names:
        raise ConfigError(f"unknown protocol {', '.join(bad) or '(none)'}; choose from "
                          f"{', '.join(PROTOCOLS)}")
    return list(dict.fromkeys(names))


def _as_list(v: int | Sequence[int] | None) -> list[int]:
    if v is None:
        return []
    return [int(v)] if isinstance(v, int) else [int(x) for x in v]


# --------------------------------------------------------------------------------------------
# dataset and split resolution (see geossl.eval.data)
# --------------------------------------------------------------------------------------------
def resolve_data(
    data: str | Dataset[dict[str, Any]],
    root: str | os.PathLike[str] | None,
    splits: str | os.PathLike[str] | dict[str, Any] | None,
    train_split: str = "train",
    test_split: str = "test",
    **kwargs: Any,
) -> tuple[Dataset[dict[str, Any]], list[int], list[int], list[str], str]:
    """The dataset and the positions of its train and test sides.

    See :func:`geossl.eval.data.resolve` (``kwargs``: ``data_args``, ``label_path``,
    ``label_column``, ``out``): a saved split, else the dataset's own, else an overlap-aware
    split made now; never the same samples on both sides.

    Returns:
        ``(dataset, train_positions, test_positions, ids, dataset_key)``.
    """
    d = resolve(data, root, splits, train_split, test_split, **kwargs)
    return d.dataset, d.train, d.test, d.ids, d.key


def _labels(dataset: Dataset[dict[str, Any]], positions: Sequence[int]) -> torch.Tensor:
    return torch.stack([label_of(dataset[p]) for p in positions])


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------
def score(labels: torch.Tensor, scores: torch.Tensor, num_classes: int,
          probabilities: bool = False) -> dict[str, Any]:
    """Metrics of scores against labels: single-label (plus binary for 2 classes) or multi-label.

    Args:
        labels: ``(N,)`` classes or ``(N, K)`` multi-hot.
        scores: ``(N, K)``; logits unless ``probabilities``.
        num_classes: K.
        probabilities: multi-label scores are already in [0, 1].
    """
    if labels.ndim == 2:
        probs = scores if probabilities else torch.sigmoid(scores)
        return multi_label_metrics(labels, probs)
    out = single_label_metrics(labels, scores, num_classes)
    if num_classes == 2:
        out.update(binary_metrics(labels, scores.argmax(1)))
    cm = np.asarray(out["confusion"], dtype=np.float64)
    # rows sum to 1: the share of each true class predicted as each class (empty rows stay 0)
    out["confusion_normalized"] = (cm / np.maximum(cm.sum(1, keepdims=True), 1)).tolist()
    return out


#: name of the dataset's own task (its classes) in results, next to the binary ``--task``s
MAIN_TASK = "classes"


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate an encoder with the requested protocols, seeds and label budgets.

    Args:
        config: every option (:class:`~geossl.eval.config.EvaluateConfig`, the flags of
            ``geossl evaluate``): the encoder (``ckpt``: a pretraining checkpoint,
            ``random``/``none`` with ``backbone``, named weights, ``product:PATH`` or an
            :class:`EncoderSource`), the data (a dataset name with ``root``, or a dataset of
            sample dicts) and its split (a saved one, else the dataset's own, else an
            overlap-aware split made now and saved as ``OUT/splits.json``, see
            :mod:`geossl.eval.data`), the protocols, label budgets (per class and in total,
            drawn from the training side) and seeds (tables show mean ± std), the sensor(s)
            fed to the encoder (see :func:`~geossl.pretrained.checkpoint.select_sensors`), binary
            tasks
            scored next to the classes (:mod:`geossl.eval.tasks`: every protocol runs once per
            task on the same features and label budgets), extraction and fine-tuning settings
            and the output folder (``results.json``, ``results.md``, PNGs, feature cache,
            ``predictions/``, see :mod:`geossl.eval.predictions`).

    Returns:
        ``{"meta": ..., "runs": [...], "summary": [...], "paths": {...}, "notes": [...]}``
        (``notes``: lines worth printing, e.g. that a split was made).

    Raises:
        ConfigError: unknown protocol or sensor, bad budget, no split.
        DataError: unreadable checkpoint or dataset, samples whose band count does not match
            the encoder.
    """
    ckpt, data, root, protocols = config.ckpt, config.data, config.root, config.protocol
    splits, train_split, test_split = config.splits, config.train_split, config.test_split
    labels_per_class, labels_total, seeds = config.labels_per_class, config.labels, config.seeds
    out, backbone, batch_size = config.out, config.backbone, config.batch_size
    device, bf16, workers = config.accelerator, config.bf16, config.workers
    cache_dir, knn_k, knn_temperature = config.cache_dir, config.knn_k, config.knn_temperature
    finetune_steps, finetune_lr = config.finetune_steps, config.finetune_lr
    finetune_batch_size, plots = config.finetune_batch_size, not config.no_plots
    sensor, data_args, label_path = config.sensor, config.dataset_args(), config.label_path
    label_column, tasks, predictions = config.label_column, config.task, config.predictions
    preprocess = config.preprocess or "weights"
    freeze, reinit = config.freeze or (), config.reinit or ()
    assert data is not None  # EvaluateConfig refuses a missing --data
    t0 = time.time()
    names = parse_protocols(protocols)
    if (requested(freeze) or requested(reinit)) and "finetune" not in names:
        raise ConfigError("--freeze and --reinit act on fine-tuning: add finetune to --protocol")
    binary_tasks = parse_tasks(tasks)
    seeds = [int(s) for s in seeds] or [0]
    if out is not None:
        # before loading data and extracting features: absent, empty or an earlier evaluation
        check_output(out, "evaluate", own=("results.json", "logs", "predictions"),
                     inputs=(root, splits))
    resolved = resolve(data, root, splits, train_split, test_split, data_args=data_args,
                       label_path=label_path, label_column=label_column, out=out)
    dataset, train_pos, test_pos, ids = (resolved.dataset, resolved.train, resolved.test,
                                         resolved.ids)
    data_key = resolved.key
    if resolved.split_source == "auto":
        train_split, test_split = "train", "test"
    # the sensor a plain ``image`` stands for, declared by the dataset (random baselines)
    default_sensor = single_sensor(dataset_class(data) if isinstance(data, str) else data)
    in_chans = None
    if isinstance(ckpt, (str, os.PathLike)) and os.fspath(ckpt).lower() in ("random", "none"):
        first_image = image_of(dataset[train_pos[0]], select_sensors({}, sensor, default_sensor))
        in_chans = int(first_image.shape[0])
    # an embedding product (``product:PATH``) gives the features instead of an encoder
    from geossl.eval.product import product_feature_set, product_ref, product_source
    from geossl.pretrained.foundation import dataset_bands, is_weights_spec

    product = product_ref(ckpt)
    if product is not None:
        if "finetune" in names:
            raise ConfigError("finetune needs an encoder; an embedding product gives frozen "
                              "features only (use linear, knn, cluster)")
        source = product_source(product)
    else:
        data_bands = None
        if is_weights_spec(ckpt) or (backbone and in_chans is None
                                     and isinstance(ckpt, (str, os.PathLike))):
            # named weights (or a plain state dict with --backbone): the encoder takes the
            # data's bands (a geossl checkpoint ignores them)
            chosen0 = select_sensors({}, sensor, default_sensor)
            first_image = image_of(dataset[train_pos[0]], chosen0)
            in_chans = int(first_image.shape[0])
            data_bands = dataset_bands(dataset, chosen0 if isinstance(chosen0, str) else None)
        source = load_source(ckpt, backbone=backbone, in_chans=in_chans, seed=seeds[0],
                             data_bands=data_bands, preprocess=preprocess)
    dev = resolve_device(device)
    chosen = select_sensors(source.meta, sensor, default_sensor, side_by_side=True)
    if isinstance(chosen, list) and not is_fusion(source.meta) and "finetune" in names:
        raise ConfigError("--protocol finetune reads one sensor of an encoder with per-sensor "
                          "stems; several sensors (features side by side) suit linear, knn "
                          "and cluster")
    if product is None:
        check_bands(source.meta, chosen, dataset[train_pos[0]], root)
    # --freeze / --reinit: the encoder's parts, checked before any feature is extracted
    frozen, drawn = parts(source.encoder, freeze), parts(source.encoder, reinit)
    normalizer = make_normalizer(source.meta, chosen)
    out_dir = Path(out) if out is not None else None
    if cache_dir is None and out_dir is not None and isinstance(data, str):
        mark_output(out_dir, "evaluate")  # before the cache: a rerun reuses it
        cache_dir = out_dir / "cache"
    extract = {"normalizer": normalizer, "sensor": chosen, "batch_size": batch_size,
               "device": dev, "bf16": bf16, "workers": workers}
    # features depend on the sensor(s) fed to the encoder: part of the cache key
    feature_key = f"{data_key}|sensor={','.join(sensor_list(chosen))}"

    train: FeatureSet | None = None
    test: FeatureSet | None = None
    if product is not None and any(p in names for p in _FEATURE_PROTOCOLS):
        from geossl.datasets.base import footprints_of

        fps = footprints_of(dataset)
        train = product_feature_set(product, dataset, train_pos, [ids[p] for p in train_pos],
                                    fps)
        test = product_feature_set(product, dataset, test_pos, [ids[p] for p in test_pos], fps)
        train_labels = train.labels
    elif any(p in names for p in _FEATURE_PROTOCOLS):
        train = cached_features(source, dataset, train_pos, dataset_key=feature_key,
                                split=train_split, cache_dir=cache_dir,
                                ids=[ids[p] for p in train_pos], **extract)
        test = cached_features(source, dataset, test_pos, dataset_key=feature_key,
                               split=test_split, cache_dir=cache_dir,
                               ids=[ids[p] for p in test_pos], **extract)
        train_labels = train.labels
    else:
        train_labels = _labels(dataset, train_pos)
    classes = class_names(dataset)
    if train_labels.ndim == 2:
        num_classes = int(train_labels.shape[1])
    elif classes is not None and len(classes) > 0:
        num_classes = len(classes)
    else:
        test_max = int(test.labels.max()) if test is not None else 0
        num_classes = int(max(int(train_labels.max()), test_max)) + 1

    test_labels = test.labels if test is not None else None
    task_sets = [_TaskSet(MAIN_TASK, train_labels, test_labels, num_classes,
                          list(classes) if classes is not None else None, dataset)]
    task_notes: list[str] = []
    for task in binary_tasks:
        te_source = test_labels if test_labels is not None else _labels(dataset, test_pos)
        tr, te, notes, relabelled = task_sides(task, dataset, train_pos, train_labels,
                                               test_pos, te_source)
        task_notes += list(dict.fromkeys(notes))
        task_sets.append(_TaskSet(task.name, tr, te, 2, task.class_names, relabelled))

    budgets = [Budget(per_class=k) for k in _as_list(labels_per_class)]
    budgets += [Budget(total=n) for n in _as_list(labels_total)]
    budgets = budgets or [Budget()]

    runs: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    test_ids = [ids[p] for p in test_pos]
    pred_dir = out_dir / "predictions" if out_dir is not None and predictions else None

    def record(ts: _TaskSet, proto: str, base: dict[str, Any], labels: torch.Tensor,
               scores: torch.Tensor, info: dict[str, Any], probabilities: bool = False) -> None:
        m = score(labels, scores, ts.num_classes, probabilities=probabilities)
        run: dict[str, Any] = {"protocol": proto, **base, "metrics": m, "info": info}
        if binary_tasks:
            run = {"task": ts.name, **run}
        if pred_dir is not None:
            slug = proto if ts.name == MAIN_TASK else f"{ts.name}-{proto}"
            path = pred_dir / f"{slug}-{base['budget_slug']}-seed{base['seed']}.csv"
            run["predictions"] = str(write_predictions(path, test_ids, labels, scores,
                                                       probabilities))
        run.pop("budget_slug", None)
        runs.append(run)
        first.setdefault(proto if ts.name == MAIN_TASK else f"{ts.name}/{proto}", m)

    from geossl.core.progress import progress

    bar = progress(total=len(seeds) * len(budgets) * len(task_sets), desc="evaluate",
                   unit="draw")
    for seed in seeds:
        for budget in budgets:
            for ts in task_sets:
                bar.update(1)  # one label draw: every protocol on it
                rows = draw_budget(ts.train.numpy(), budget, seed)
                n_labels = len(rows)
                base = {"budget": budget.name, "seed": seed, "n_labels": n_labels,
                        "budget_slug": budget.slug}
                tag = f"{budget.slug}-seed{seed}"
                if ts.name != MAIN_TASK:
                    tag = f"{ts.name}-{tag}"
                if "linear" in names and train is not None and test is not None \
                        and ts.test is not None:
                    s, info = linear_probe(train.features[rows], ts.train[rows], test.features,
                                           ts.num_classes, seed=seed, device=dev)
                    record(ts, "linear", base, ts.test, s, info)
                if "knn" in names and train is not None and test is not None \
                        and ts.test is not None:
                    for k in knn_k:
                        s = knn_scores(train.features[rows], ts.train[rows], test.features,
                                       ts.num_classes, k=k, temperature=knn_temperature,
                                       device=dev)
                        record(ts, f"knn{k}", base, ts.test, s,
                               {"k": min(k, n_labels), "temperature": knn_temperature},
                               probabilities=True)
                if "finetune" in names:
                    budget_pos = [train_pos[int(r)] for r in rows]
                    for proto, enc in (("finetune", source),
                                       ("scratch", random_like(source, seed))):
                        log = out_dir / "logs" / f"{proto}-{tag}.csv" if out_dir else None
                        res = finetune(enc.encoder, ts.dataset, budget_pos, test_pos,
                                       ts.num_classes, steps=finetune_steps,
                                       batch_size=finetune_batch_size, lr=finetune_lr,
                                       normalizer=normalizer, sensor=chosen, device=dev,
                                       bf16=bf16, seed=seed, workers=workers, log_csv=log,
                                       desc=proto, freeze=frozen, reinit=drawn)
                        record(ts, proto, base, res["labels"], res["scores"],
                               {"steps": finetune_steps, "lr": finetune_lr,
                                **({"freeze": frozen} if frozen else {}),
                                **({"reinit": drawn} if drawn else {}),
                                "final_loss": res["curve"][-1][1] if res["curve"] else None})
                        if log is not None and ts.name == MAIN_TASK:
                            first.setdefault(f"log_{proto}", log)
        if "cluster" in names and test is not None and test.labels.ndim == 1:
            # as many clusters as classes present in the test side (no label is used to fit)
            k_present = int(torch.unique(test.labels).numel())
            m = cluster_eval(test.features, test.labels, k_present, seed)
            runs.append({"protocol": "cluster", "budget": "none", "seed": seed, "n_labels": 0,
                         "metrics": m, "info": {"k": k_present}})
    bar.close()

    meta = {
        "checkpoint": os.fspath(ckpt) if not isinstance(ckpt, EncoderSource) else source.key,
        "checkpoint_key": source.key,
        "data": data if isinstance(data, str) else data_key,
        "root": os.fspath(root) if root is not None else None,
        "splits": (os.fspath(splits) if isinstance(splits, (str, os.PathLike))
                   else str(resolved.split_path) if resolved.split_path is not None else None),
        "split_source": resolved.split_source,
        "data_args": resolved.args or None,
        "backbone": source.meta.get("backbone"),
        "method": source.meta.get("method"),
        "pairing": source.meta.get("pairing"),
        "sensor": ",".join(sensor_list(chosen)) or None,
        "num_classes": num_classes,
        "n_train": len(train_pos),
        "n_test": len(test_pos),
        "protocols": ",".join(names),
        "seeds": seeds,
        "tasks": [t.as_dict() for t in binary_tasks] or None,
        "task_notes": task_notes or None,
        "device": str(dev),
        "seconds": round(time.time() - t0, 2),
    }
    results: dict[str, Any] = {"meta": meta, "runs": runs}
    paths: dict[str, Any] = {}
    if out_dir is not None:
        if plots:
            paths.update(_pictures(out_dir, dataset, source, train, test, first, classes,
                                   seeds[0], chosen))
            paths.update(_task_pictures(out_dir, task_sets[1:], first, seeds[0]))
        paths.update({k: str(v) for k, v in write_report(results, out_dir).items()})
    if resolved.split_path is not None:
        paths["splits"] = str(resolved.split_path)
    results["paths"] = paths
    results["notes"] = list(resolved.notes) + task_notes
    from geossl.eval.report import summarise

    results["summary"] = summarise(runs)
    return results


class _TaskSet:
    """The labels one task is scored on: the dataset's classes, or a binary task's 0/1."""

    def __init__(self, name: str, train: torch.Tensor, test: torch.Tensor | None,
                 num_classes: int, classes: list[str] | None,
                 dataset: Dataset[dict[str, Any]]) -> None:
        self.name = name
        self.train = train
        self.test = test
        self.num_classes = num_classes
        self.classes = classes
        #: what fine-tuning reads samples (and their labels) from
        self.dataset = dataset


def _task_pictures(out: Path, task_sets: Sequence[_TaskSet], first: dict[str, Any],
                   seed: int) -> dict[str, str]:
    """Row-normalised confusion matrix of each binary task, per protocol (first seed)."""
    from geossl.viz import plots

    paths: dict[str, str] = {}
    for ts in task_sets:
        for proto in ("linear", "finetune", "scratch", "knn20"):
            m = first.get(f"{ts.name}/{proto}")
            if m is not None:
                paths[f"confusion_{ts.name}_{proto}"] = str(plots.plot_confusion(
                    m["confusion"], out / f"confusion_{ts.name}_{proto}.png", ts.classes,
                    title=f"{ts.name}, {proto} (seed {seed})"))
                paths.update(_per_class_picture(out, m, ts.classes, f"{ts.name}_{proto}",
                                                f"{ts.name}, {proto} (seed {seed})"))
    return paths


def _per_class_picture(out: Path, m: Mapping[str, Any], classes: Sequence[str] | None,
                       name: str, title: str) -> dict[str, str]:
    """``per_class_<name>.png``: per-class AP (multi-label) and F1 of one run's metrics."""
    from geossl.viz import plots

    if m.get("f1_per_class") is None:
        return {}
    return {f"per_class_{name}": str(plots.plot_per_class(
        {"AP": m.get("ap_per_class"), "F1": m["f1_per_class"]}, out / f"per_class_{name}.png",
        classes, title=f"per-class scores, {title}"))}


def _pictures(
    out: Path,
    dataset: Dataset[dict[str, Any]],
    source: EncoderSource,
    train: FeatureSet | None,
    test: FeatureSet | None,
    first: dict[str, Any],
    classes: Sequence[str] | None,
    seed: int,
    sensor: SensorSelection = None,
) -> dict[str, str]:
    from geossl.viz import plots

    names = list(classes) if classes is not None else None
    paths: dict[str, str] = {}
    if test is not None and len(test.ids) >= 3:
        paths["tsne"] = str(plots.plot_tsne(test.features, test.labels, out / "tsne.png",
                                            names, seed=seed))
    if train is not None and test is not None:
        rng = np.random.default_rng(seed)
        labels = test.labels.numpy()
        lab1 = labels.argmax(1) if labels.ndim == 2 else labels
        picks = []
        for c in np.unique(lab1)[:8]:  # one query per class, up to 8 rows
            picks.append(int(rng.choice(np.flatnonzero(lab1 == c))))
        nn_idx = nearest_neighbours(train.features, test.features[picks], k=10)
        bands = bands_for(source.meta, sensor) or declared_bands(dataset)
        bands = list(bands) if bands is not None else None

        def title(lab: torch.Tensor) -> str:
            c = int(lab.argmax()) if lab.ndim == 1 else int(lab)
            return names[c] if names is not None and c < len(names) else str(c)

        queries = [image_of(dataset[test.positions[q]], sensor) for q in picks]
        neigh = [[image_of(dataset[train.positions[int(j)]], sensor) for j in row]
                 for row in nn_idx]
        grid: dict[str, Any] = {
            "queries": queries, "neighbours": neigh, "bands": bands,
            "query_titles": [title(test.labels[q]) for q in picks],
            "neighbour_titles": [[title(train.labels[int(j)]) for j in row] for row in nn_idx],
        }
        modes = plots.composite_modes(bands, int(queries[0].shape[0]))
        # knn_grid.png in the first (most natural) rendering, one more file per other rendering
        for i, mode in enumerate(modes):
            name = "knn_grid.png" if i == 0 else f"knn_grid_{mode}.png"
            paths["knn_grid" if i == 0 else f"knn_grid_{mode}"] = str(
                plots.plot_neighbour_grid(path=out / name, mode=mode, **grid))
    for proto in ("linear", "finetune", "scratch", "knn20"):
        m = first.get(proto)
        if m is not None and "confusion" in m:
            paths[f"confusion_{proto}"] = str(plots.plot_confusion(
                m["confusion"], out / f"confusion_{proto}.png", names,
                title=f"{proto} (seed {seed})"))
        if m is not None:
            paths.update(_per_class_picture(out, m, names, proto, f"{proto} (seed {seed})"))
    logs = {k.removeprefix("log_"): v for k, v in first.items() if k.startswith("log_")}
    if logs:
        paths["curves"] = str(plots.plot_training_curves(logs, out / "finetune_curves.png"))
    return paths


def check_bands(meta: dict[str, Any], sensor: SensorSelection, sample: dict[str, Any],
                where: str | os.PathLike[str] | None = None) -> None:
    """Refuse samples whose band count differs from what the encoder takes.

    Raises:
        DataError: one line naming the sensor(s) and both band counts.
    """
    want = expected_channels(meta, sensor)
    if want is None:
        return
    have = int(image_of(sample, sensor).shape[0])
    if have != want:
        which = ",".join(sensor_list(sensor)) or "image"
        raise DataError(f"the samples have {have} bands ({which}) but the encoder takes {want}",
                        where)
