r"""Evaluate a pretrained encoder: linear probe, kNN, fine-tuning vs scratch, clustering.

Examples:
    geossl evaluate RUN/checkpoints/last.ckpt --protocol linear,knn --data ucmerced \\
        --root UCMerced_LandUse --splits splits.json --labels-per-class 10 --seeds 0,1,2 \\
        --out eval/
    geossl evaluate random --backbone resnet18 --protocol linear --data aid --root AID \\
        --out eval_random/            # the random-init baseline
    geossl evaluate GEO_RUN/checkpoints/last.ckpt --sensor s2 --protocol linear,knn,cluster \\
        --data sen12ms --root SEN12MS --splits splits.json --labels-per-class 5 --out eval_s2/
    geossl evaluate RUN/checkpoints/last.ckpt --data polsar --root SF_AIRSAR \\
        --label-path SF_AIRSAR/labels/label.png --data-args '{patch_size: 16}' --out eval_sar/
    geossl evaluate RUN/checkpoints/last.ckpt --data chips --root CHIPS \\
        --label-column landcover --out eval_chips/
    geossl evaluate RUN/checkpoints/last.ckpt --data bigearthnet --root BEN --task farmland \\
        --protocol linear --out eval_ben/   # 19-class mAP + farmland sensitivity/specificity
    geossl evaluate product:chips_embeddings.parquet --data chips --root CHIPS \
        --protocol linear,knn --out eval_product/   # an embedding product's vectors per chip

Without --splits, a dataset with no split of its own (SEN12MS, PolSAR, chips, BigEarthNet v1)
gets an overlap-aware split (overlapping footprints on one side only), saved as
OUT/splits.json; pass it as --splits to repeat the run on the same sides.

Writes OUT/results.json, OUT/results.md (mean ± std over seeds), OUT/tsne.png,
OUT/knn_grid.png, OUT/confusion_*.png (row-normalised; per --task too),
OUT/per_class_*.png (per-class AP and F1 bars; per --task too),
OUT/finetune_curves.png, OUT/predictions/*.csv (every run's test predictions) and a feature
cache.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common
from geossl.commands._common import get as _get
from geossl.commands._common import ints as _ints

NAME = "evaluate"
HELP = "evaluate a checkpoint (linear, knn, finetune, cluster) with label budgets and seeds"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl evaluate``."""
    parser.add_argument("ckpt", type=str,
                        help="pretraining checkpoint, 'random'/'none' with --backbone, or "
                        "named weights torchgeo:<Enum.MEMBER> / timm:<model>.<tag> (frozen, "
                        "matched to the data's bands), or product:PATH (an embedding product: "
                        "GeoParquet, zarr cube or GSE/Tessera GeoTIFF, matched to the chips by "
                        "id or footprint)")
    parser.add_argument("--preprocess", type=str, default="weights",
                        help="named weights: weights (their own normalisation, e.g. /10000) "
                        "or dataset (the data's default normalisation)")
    parser.add_argument("--protocol", type=str, default="linear,knn",
                        help="comma-separated: linear, knn, finetune, cluster")
    _common.add_data(parser, required=True)
    parser.add_argument("--splits", type=str | None, default=None,
                        help="saved overlap-aware split (JSON/GeoParquet); default: the "
                             "dataset's own split, else an overlap-aware split made now and "
                             "saved as OUT/splits.json")
    parser.add_argument("--data-args", type=str | dict[str, Any] | None, default=None,
                        help="dataset arguments as a YAML/JSON mapping, e.g. "
                             "'{patch_size: 16, purity: 0.9}' (polsar) or '{version: 1}' "
                             "(bigearthnet)")
    parser.add_argument("--bands", type=str | None, default=None,
                        help="comma-separated band names to read, in order, e.g. B04,B03,B02 "
                             "(every dataset: read by those that select bands, e.g. chips, "
                             "sliced from the samples of the others); the encoder must take "
                             "that many bands")
    parser.add_argument("--label-path", type=str | None, default=None,
                        help="polsar: class raster aligned with the scene (0 = unlabelled; "
                             "default: the single image in ROOT/labels)")
    parser.add_argument("--label-column", type=str | None, default=None,
                        help="chips: chip-index column holding each chip's class (default: "
                             "'label' when the index has it)")
    parser.add_argument("--task", type=str | list[str] | None, default=None,
                        help="binary task(s) scored next to the classes: farmland (BigEarthNet) "
                             "or NAME=Class A;Class B (positive when a sample has any of them); "
                             "a list in YAML")
    _common.add_split_names(parser)
    parser.add_argument("--labels-per-class", type=str | None, default=None,
                        help="label budget(s) per class, e.g. 10 or 10,50")
    parser.add_argument("--labels", type=str | None, default=None,
                        help="label budget(s) in total (stratified), e.g. 1024")
    parser.add_argument("--seeds", type=str, default="0", help="comma-separated seeds")
    _common.add_out(parser, default="eval")
    parser.add_argument("--sensor", type=str | None, default=None,
                        help="sensor(s) fed to the encoder: for a geo encoder (per-sensor "
                             "stems) the one to evaluate (default: its first), for a fusion "
                             "encoder a subset such as s2 (default: all, stacked)")
    parser.add_argument("--backbone", type=str | None, default=None,
                        help="timm backbone for CKPT 'random' (or a plain state-dict file)")
    _common.add_extraction(parser)
    _common.add_finetune(
        parser, steps_help="optimiser steps of the fine-tuned and from-scratch encoders")
    parser.add_argument("--freeze", type=str | list[str] | None, default=None,
                        help="finetune: encoder parts kept fixed while fine-tuning (partial "
                             "freezing), comma-separated: adapters (the 1x1 band adapter(s)) "
                             "or module names such as backbone.layer1; applied to the finetune "
                             "and scratch rows alike")
    parser.add_argument("--reinit", type=str | list[str] | None, default=None,
                        help="finetune: encoder parts whose weights are drawn afresh before "
                             "fine-tuning, comma-separated, e.g. adapters")
    parser.add_argument("--no-plots", default=False, help="skip the PNGs", **_common.FLAG)
    _common.add_workers(parser)


def run(cfg: Namespace) -> int:
    """Run ``geossl evaluate``."""
    from geossl.eval.data import parse_data_args
    from geossl.eval.run import evaluate

    res = evaluate(
        cfg.ckpt, _get(cfg, "data"), _get(cfg, "root"), _get(cfg, "protocol"),
        splits=_get(cfg, "splits"), train_split=_get(cfg, "train_split"),
        test_split=_get(cfg, "test_split"),
        labels_per_class=_ints(_get(cfg, "labels_per_class")),
        labels_total=_ints(_get(cfg, "labels")), seeds=_ints(_get(cfg, "seeds")) or [0],
        out=_get(cfg, "out"), backbone=_get(cfg, "backbone"),
        batch_size=_get(cfg, "batch_size"), device=_get(cfg, "accelerator"),
        bf16=bool(_get(cfg, "bf16")),
        workers=_get(cfg, "workers"), finetune_steps=_get(cfg, "finetune_steps"),
        finetune_lr=_get(cfg, "finetune_lr"),
        finetune_batch_size=_get(cfg, "finetune_batch_size"),
        plots=not _get(cfg, "no_plots"), sensor=_get(cfg, "sensor"),
        data_args=parse_data_args(_get(cfg, "data_args"), bands=_get(cfg, "bands")),
        label_path=_get(cfg, "label_path"),
        label_column=_get(cfg, "label_column"), tasks=_get(cfg, "task"),
        preprocess=_get(cfg, "preprocess") or "weights",
        freeze=_get(cfg, "freeze") or (), reinit=_get(cfg, "reinit") or (),
    )
    for note in res.get("notes", []):
        print(note)
    from geossl.eval.report import to_markdown

    print(to_markdown(res["summary"]), end="")
    for path in res["paths"].values():
        print(f"wrote {path}")
    return 0
