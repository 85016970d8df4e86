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

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import check_output, mark_output
from geossl.datasets.protocol import class_names, declared_bands, single_sensor
from geossl.datasets.registry import dataset_class
from geossl.eval.budgets import Budget, draw_budget
from geossl.eval.cluster import cluster_eval
from geossl.eval.config import EvaluateConfig
from geossl.eval.data import EvalData, resolve
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
from geossl.eval.tasks import BinaryTask, parse_tasks, task_sides
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
    assert config.data is not None  # EvaluateConfig refuses a missing --data
    t0 = time.time()
    names = parse_protocols(config.protocol)
    if (requested(config.freeze) or requested(config.reinit)) and "finetune" not in names:
        raise ConfigError("--freeze and --reinit act on fine-tuning: add finetune to --protocol")
    binary_tasks = parse_tasks(config.task)
    if config.out is not None:
        # before loading data and extracting features: absent, empty or an earlier evaluation
        check_output(config.out, "evaluate", own=("results.json", "logs", "predictions"),
                     inputs=(config.root, config.splits))
    resolved = resolve(config.data, config.root, config.splits, config.train_split,
                       config.test_split, data_args=config.dataset_args(),
                       label_path=config.label_path, label_column=config.label_column,
                       out=config.out)
    dataset, train_pos, test_pos = resolved.dataset, resolved.train, resolved.test
    enc, product = _encoder(config, resolved, names)
    out_dir = Path(config.out) if config.out is not None else None
    train, test = _features(config, resolved, enc, product, names, out_dir)
    train_labels = train.labels if train is not None else _labels(dataset, train_pos)
    classes = class_names(dataset)
    num_classes = _num_classes(train_labels, classes, test)
    task_sets, task_notes = _task_sets(resolved, train_labels, test, num_classes, classes,
                                       binary_tasks)
    budgets = _budgets(config)

    pred_dir = out_dir / "predictions" if out_dir is not None and config.predictions else None
    rec = _Runs([resolved.ids[p] for p in test_pos], pred_dir, per_task=bool(binary_tasks))
    from geossl.core.progress import progress

    bar = progress(total=len(config.seeds) * len(budgets) * len(task_sets), desc="evaluate",
                   unit="draw")
    for seed in config.seeds:
        for budget in budgets:
            for ts in task_sets:
                bar.update(1)  # one label draw: every protocol on it
                _label_draw(config, names, rec, ts, budget, seed, resolved, enc, train, test,
                            out_dir)
        if "cluster" in names and test is not None and test.labels.ndim == 1:
            # as many clusters as classes present in the test side (no label is used to fit)
            k_present = int(torch.unique(test.labels).numel())
            m = cluster_eval(test.features, test.labels, k_present, seed)
            rec.runs.append({"protocol": "cluster", "budget": "none", "seed": seed,
                             "n_labels": 0, "metrics": m, "info": {"k": k_present}})
    bar.close()

    meta = _meta(config, resolved, enc, names, num_classes, binary_tasks, task_notes, t0)
    results: dict[str, Any] = {"meta": meta, "runs": rec.runs}
    paths: dict[str, Any] = {}
    if out_dir is not None:
        if not config.no_plots:
            paths.update(_pictures(out_dir, dataset, enc.source, train, test, rec.first,
                                   classes, config.seeds[0], enc.sensor))
            paths.update(_task_pictures(out_dir, task_sets[1:], rec.first, config.seeds[0]))
        paths.update({k: str(v) for k, v in write_report(results, out_dir).items()})
    if resolved.split_path is not None:
        paths["splits"] = str(resolved.split_path)
    results["paths"] = paths
    results["notes"] = list(resolved.notes) + task_notes
    from geossl.eval.report import summarise

    results["summary"] = summarise(rec.runs)
    return results


@dataclasses.dataclass(frozen=True)
class _Encoder:
    """The encoder as :func:`evaluate` runs it: what every feature set and label draw reads."""

    source: EncoderSource
    #: the sensor(s) fed to it
    sensor: SensorSelection
    normalizer: Callable[[torch.Tensor], torch.Tensor] | None
    device: torch.device
    #: ``--freeze`` / ``--reinit``: the encoder's parts, checked before any feature is extracted
    frozen: list[str]
    drawn: list[str]


def _encoder(config: EvaluateConfig, resolved: EvalData,
             names: Sequence[str]) -> tuple[_Encoder, Path | None]:
    """The encoder of ``config.ckpt`` and the sensor(s) it reads, checked against the data.

    Returns:
        the encoder, and the path of an embedding product (``product:PATH``: it gives the
        features instead of an encoder; ``None`` for anything else).

    Raises:
        ConfigError: finetune on an embedding product or on sensors side by side.
        DataError: samples whose band count does not match the encoder.
    """
    from geossl.eval.product import product_ref, product_source
    from geossl.pretrained.foundation import dataset_bands, is_weights_spec

    dataset, first = resolved.dataset, resolved.train[0]
    # the sensor a plain ``image`` stands for, declared by the dataset (random baselines)
    data = config.data
    default_sensor = single_sensor(dataset_class(data) if isinstance(data, str) else data)
    product = product_ref(config.ckpt)
    if product is not None:
        if "finetune" in names:
            raise ConfigError("finetune needs an encoder; an embedding product gives frozen "
                              "features only (use linear, knn, cluster)")
        source = product_source(product)
    else:
        path_like = isinstance(config.ckpt, (str, os.PathLike))
        random_init = (isinstance(config.ckpt, (str, os.PathLike))
                       and os.fspath(config.ckpt).lower() in ("random", "none"))
        in_chans: int | None = None
        data_bands: list[str] | None = None
        # random init, named weights (or a plain state dict with --backbone): the encoder takes
        # the data's bands (a geossl checkpoint ignores them)
        if random_init or is_weights_spec(config.ckpt) or (config.backbone and path_like):
            chosen0 = select_sensors({}, config.sensor, default_sensor)
            in_chans = int(image_of(dataset[first], chosen0).shape[0])
            if not random_init:
                data_bands = dataset_bands(dataset, chosen0 if isinstance(chosen0, str) else None)
        source = load_source(config.ckpt, backbone=config.backbone, in_chans=in_chans,
                             seed=config.seeds[0], data_bands=data_bands,
                             preprocess=config.preprocess)
    dev = resolve_device(config.accelerator)
    chosen = select_sensors(source.meta, config.sensor, default_sensor, side_by_side=True)
    if isinstance(chosen, list) and not is_fusion(source.meta) and "finetune" in names:
        raise ConfigError("--protocol finetune reads one sensor of an encoder with per-sensor "
                          "stems; several sensors (features side by side) suit linear, knn "
                          "and cluster")
    if product is None:
        check_bands(source.meta, chosen, dataset[first], config.root)
    frozen, drawn = parts(source.encoder, config.freeze), parts(source.encoder, config.reinit)
    return _Encoder(source, chosen, make_normalizer(source.meta, chosen), dev, frozen,
                    drawn), product


def _features(config: EvaluateConfig, resolved: EvalData, enc: _Encoder, product: Path | None,
              names: Sequence[str], out_dir: Path | None
              ) -> tuple[FeatureSet | None, FeatureSet | None]:
    """Frozen features of the train and test sides (``None`` when no protocol reads them).

    From the embedding product, else extracted once and cached (``config.cache_dir``, default
    ``OUT/cache`` when the data is a name), keyed by the data, its split and the sensor(s).
    """
    dataset, ids = resolved.dataset, resolved.ids
    cache_dir = config.cache_dir
    if cache_dir is None and out_dir is not None and isinstance(config.data, str):
        mark_output(out_dir, "evaluate")  # before the cache: a rerun reuses it
        cache_dir = out_dir / "cache"
    if not any(p in names for p in _FEATURE_PROTOCOLS):
        return None, None
    sides = ((resolved.train, "train", config.train_split),
             (resolved.test, "test", config.test_split))
    if product is not None:
        from geossl.datasets.protocol import footprints_of
        from geossl.eval.product import product_feature_set

        fps = footprints_of(dataset)
        train, test = (product_feature_set(product, dataset, pos, [ids[p] for p in pos], fps)
                       for pos, _, _ in sides)
        return train, test
    # features depend on the sensor(s) fed to the encoder: part of the cache key
    feature_key = f"{resolved.key}|sensor={','.join(sensor_list(enc.sensor))}"
    auto = resolved.split_source == "auto"  # a split made now names its sides train, test
    train, test = (cached_features(enc.source, dataset, pos, dataset_key=feature_key,
                                   split=default if auto else name, cache_dir=cache_dir,
                                   ids=[ids[p] for p in pos], normalizer=enc.normalizer,
                                   sensor=enc.sensor, batch_size=config.batch_size,
                                   device=enc.device, bf16=config.bf16, workers=config.workers)
                   for pos, default, name in sides)
    return train, test


def _num_classes(train_labels: torch.Tensor, classes: Sequence[str] | None,
                 test: FeatureSet | None) -> int:
    """K: the multi-hot width, else the dataset's classes, else the largest label seen + 1."""
    if train_labels.ndim == 2:
        return int(train_labels.shape[1])
    if classes is not None and len(classes) > 0:
        return len(classes)
    test_max = int(test.labels.max()) if test is not None else 0
    return int(max(int(train_labels.max()), test_max)) + 1


def _task_sets(resolved: EvalData, train_labels: torch.Tensor, test: FeatureSet | None,
               num_classes: int, classes: Sequence[str] | None,
               binary_tasks: Sequence[BinaryTask]) -> tuple[list[_TaskSet], list[str]]:
    """The dataset's own task, then each binary ``--task``; and the notes of their labels."""
    dataset, train_pos, test_pos = resolved.dataset, resolved.train, resolved.test
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
    return task_sets, task_notes


def _budgets(config: EvaluateConfig) -> list[Budget]:
    """The label budgets: per class, then in total; every label when neither is given."""
    budgets = [Budget(per_class=k) for k in _as_list(config.labels_per_class)]
    budgets += [Budget(total=n) for n in _as_list(config.labels)]
    return budgets or [Budget()]


class _Runs:
    """The runs of one evaluation: each scored, its test predictions written when asked."""

    def __init__(self, test_ids: list[str], pred_dir: Path | None, per_task: bool) -> None:
        self.test_ids = test_ids
        self.pred_dir = pred_dir
        #: binary tasks were asked: every run names its task
        self.per_task = per_task
        self.runs: list[dict[str, Any]] = []
        #: metrics of the first run of each protocol (``task/protocol`` for a binary task) and
        #: the fine-tuning logs (``log_<protocol>``): what the pictures show
        self.first: dict[str, Any] = {}

    def record(self, ts: _TaskSet, proto: str, base: dict[str, Any], labels: torch.Tensor,
               scores: torch.Tensor, info: dict[str, Any], probabilities: bool = False) -> None:
        m = score(labels, scores, ts.num_classes, probabilities=probabilities)
        run: dict[str, Any] = {"protocol": proto, **base, "metrics": m, "info": info}
        if self.per_task:
            run = {"task": ts.name, **run}
        if self.pred_dir is not None:
            slug = proto if ts.name == MAIN_TASK else f"{ts.name}-{proto}"
            path = self.pred_dir / f"{slug}-{base['budget_slug']}-seed{base['seed']}.csv"
            run["predictions"] = str(write_predictions(path, self.test_ids, labels, scores,
                                                       probabilities))
        run.pop("budget_slug", None)
        self.runs.append(run)
        self.first.setdefault(proto if ts.name == MAIN_TASK else f"{ts.name}/{proto}", m)


def _label_draw(config: EvaluateConfig, names: Sequence[str], rec: _Runs, ts: _TaskSet,
                budget: Budget, seed: int, resolved: EvalData, enc: _Encoder,
                train: FeatureSet | None, test: FeatureSet | None, out_dir: Path | None) -> None:
    """One label draw of one task: every requested protocol on the same labels."""
    rows = draw_budget(ts.train.numpy(), budget, seed)
    n_labels = len(rows)
    base = {"budget": budget.name, "seed": seed, "n_labels": n_labels,
            "budget_slug": budget.slug}
    if "linear" in names and train is not None and test is not None and ts.test is not None:
        s, info = linear_probe(train.features[rows], ts.train[rows], test.features,
                               ts.num_classes, seed=seed, device=enc.device)
        rec.record(ts, "linear", base, ts.test, s, info)
    if "knn" in names and train is not None and test is not None and ts.test is not None:
        for k in config.knn_k:
            s = knn_scores(train.features[rows], ts.train[rows], test.features, ts.num_classes,
                           k=k, temperature=config.knn_temperature, device=enc.device)
            rec.record(ts, f"knn{k}", base, ts.test, s,
                       {"k": min(k, n_labels), "temperature": config.knn_temperature},
                       probabilities=True)
    if "finetune" in names:
        tag = f"{budget.slug}-seed{seed}"
        if ts.name != MAIN_TASK:
            tag = f"{ts.name}-{tag}"
        budget_pos = [resolved.train[int(r)] for r in rows]
        for proto, source in (("finetune", enc.source),
                              ("scratch", random_like(enc.source, seed))):
            log = out_dir / "logs" / f"{proto}-{tag}.csv" if out_dir else None
            res = finetune(source.encoder, ts.dataset, budget_pos, resolved.test,
                           ts.num_classes, steps=config.finetune_steps,
                           batch_size=config.finetune_batch_size, lr=config.finetune_lr,
                           normalizer=enc.normalizer, sensor=enc.sensor, device=enc.device,
                           bf16=config.bf16, seed=seed, workers=config.workers, log_csv=log,
                           desc=proto, freeze=enc.frozen, reinit=enc.drawn)
            rec.record(ts, proto, base, res["labels"], res["scores"],
                       {"steps": config.finetune_steps, "lr": config.finetune_lr,
                        **({"freeze": enc.frozen} if enc.frozen else {}),
                        **({"reinit": enc.drawn} if enc.drawn else {}),
                        "final_loss": res["curve"][-1][1] if res["curve"] else None})
            if log is not None and ts.name == MAIN_TASK:
                rec.first.setdefault(f"log_{proto}", log)


def _meta(config: EvaluateConfig, resolved: EvalData, enc: _Encoder, names: Sequence[str],
          num_classes: int, binary_tasks: Sequence[BinaryTask], task_notes: list[str],
          t0: float) -> dict[str, Any]:
    """``results.json``'s ``meta``: what was evaluated, on what, how, and how long it took."""
    source, splits = enc.source, config.splits
    return {
        "checkpoint": (os.fspath(config.ckpt) if not isinstance(config.ckpt, EncoderSource)
                       else source.key),
        "checkpoint_key": source.key,
        "data": config.data if isinstance(config.data, str) else resolved.key,
        "root": os.fspath(config.root) if config.root is not None else None,
        "splits": (os.fspath(splits) if isinstance(splits, (str, os.PathLike))
                   else str(resolved.split_path) if resolved.split_path is not None else None),
        "split_source": resolved.split_source,
        "data_args": resolved.args or None,
        "backbone": source.meta.get("backbone"),
        "method": source.meta.get("method"),
        "pairing": source.meta.get("pairing"),
        "sensor": ",".join(sensor_list(enc.sensor)) or None,
        "num_classes": num_classes,
        "n_train": len(resolved.train),
        "n_test": len(resolved.test),
        "protocols": ",".join(names),
        "seeds": config.seeds,
        "tasks": [t.as_dict() for t in binary_tasks] or None,
        "task_notes": task_notes or None,
        "device": str(enc.device),
        "seconds": round(time.time() - t0, 2),
    }


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
