r"""Compare representations on one split and the same label draws, paired against a reference.

Examples:
    geossl compare --data eurosat --root EuroSAT_MS \\
        --ckpt runs/moco/checkpoints/last.ckpt \\
        --weights torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO \\
        --baselines random,band-means,scratch --backbone resnet18 \\
        --labels-per-class 5,50 --seeds 0,1,2,3,4 --out compare_eurosat/
    geossl compare --config compare.yaml --data bigearthnet --root BigEarthNet-v1.0 \\
        --task farmland --labels 1024 --out compare_ben/

A YAML config lists the rows and any flag below:

    rows:
      - {name: ssl, kind: ckpt, ckpt: runs/moco/checkpoints/last.ckpt}
      - {name: ssl4eo, kind: weights, weights: "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"}
      - {name: ssl4eo+ssl, kind: ckpt, ckpt: runs/moco_from_ssl4eo/checkpoints/last.ckpt}
      - {name: random, kind: random, backbone: resnet18}
      - {name: means, kind: band-means}
      - {name: supervised, kind: scratch, backbone: resnet18}
      - {name: gse, kind: product, product: gse_eurosat.parquet}
    reference: ssl4eo
    labels_per_class: 5,50
    seeds: 0,1,2,3,4

Row kinds: ckpt (a pretraining checkpoint, frozen), weights (named foundation weights, frozen),
random, band-means, scratch (trained from random weights on the drawn labels only), product
(an embedding product's vectors per chip: GeoParquet, zarr cube or GeoTIFF; --product PATH or
--row NAME=product:PATH); a frozen row takes protocol linear (default), knn or finetune (not a
product). Every row learns from the very same labelled samples in each draw (seed x budget)
and is scored on the same test side; each row minus the reference (default: the first row)
with a 95 % paired interval. A product must cover every chip of both sides (else one line,
exit 2, nothing written).

Writes OUT/compare.json (rows, draws with their sample ids, runs, paired differences,
verdict), OUT/compare.md, OUT/compare.csv, OUT/compare.png, the feature cache and, for a
dataset without a split of its own, OUT/splits.json. OUT must be new, empty, or an earlier
comparison's folder.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common
from geossl.commands._common import get as _get
from geossl.commands._common import ints as _ints

NAME = "compare"
HELP = "compare representations (own SSL, foundation weights, baselines) on the same label draws"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl compare``."""
    parser.add_argument("--rows", type=list[dict[str, Any] | str] | None, default=None,
                        help="rows as a YAML list of {name, kind, ckpt/weights/backbone, "
                             "protocol, ...} (usually in --config)")
    parser.add_argument("--row", action="append", type=str, default=None,
                        help="one more row, [NAME=]KIND[:VALUE], e.g. ssl=ckpt:RUN/last.ckpt, "
                             "weights:torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO, band-means, "
                             "scratch:resnet18, emb=product:EMB.parquet (repeatable)")
    parser.add_argument("--ckpt", action="append", type=str, default=None,
                        help="a pretraining checkpoint row (repeatable)")
    parser.add_argument("--weights", action="append", type=str, default=None,
                        help="a named foundation weights row: torchgeo:Enum.MEMBER or "
                             "timm:model.tag (repeatable)")
    parser.add_argument("--product", action="append", type=str, default=None,
                        help="an embedding product row: GeoParquet, zarr cube or GeoTIFF of "
                             "vectors per chip (repeatable)")
    parser.add_argument("--baselines", type=str | None, default=None,
                        help="comma-separated baseline rows: random, band-means, scratch")
    parser.add_argument("--reference", type=str | None, default=None,
                        help="row every other row is compared with (default: the first)")
    _common.add_data(parser, required=True)
    parser.add_argument("--splits", type=str | None, default=None,
                        help="saved overlap-aware split; default: the dataset's own split, else "
                             "an overlap-aware split made now and saved as OUT/splits.json")
    parser.add_argument("--data-args", type=str | dict[str, Any] | None, default=None,
                        help="dataset arguments as a YAML/JSON mapping, e.g. '{version: 1}'")
    parser.add_argument("--bands", type=str | None, default=None,
                        help="comma-separated band names to read, in order")
    parser.add_argument("--label-path", type=str | None, default=None,
                        help="polsar: class raster aligned with the scene")
    parser.add_argument("--label-column", type=str | None, default=None,
                        help="chips: chip-index column holding each chip's class")
    parser.add_argument("--task", type=str | list[str] | None, default=None,
                        help="binary task(s) scored next to the classes: farmland "
                             "(BigEarthNet) or NAME=Class A;Class B")
    _common.add_split_names(parser)
    parser.add_argument("--labels-per-class", type=str | int | list[int] | None, default=None,
                        help="label budget(s) per class, e.g. 10 or 10,50")
    parser.add_argument("--labels", type=str | int | list[int] | None, default=None,
                        help="label budget(s) in total (stratified), e.g. 1024")
    parser.add_argument("--seeds", type=str | int | list[int], default="0,1,2",
                        help="comma-separated seeds: one label draw per seed and budget "
                             "(paired intervals need >= 2)")
    _common.add_out(parser, default="compare")
    parser.add_argument("--sensor", type=str | None, default=None,
                        help="sensor(s) fed to multi-sensor encoders (rows may override)")
    parser.add_argument("--backbone", type=str | None, default=None,
                        help="architecture of random/scratch rows (default: that of the first "
                             "ckpt/weights row)")
    _common.add_extraction(parser)
    _common.add_finetune(parser, steps_help="steps of scratch (and protocol finetune) rows")
    parser.add_argument("--no-plots", default=False, help="skip compare.png", **_common.FLAG)
    _common.add_workers(parser)


def collect_rows(cfg: Namespace) -> list[Any]:
    """Rows from --rows (config), --ckpt, --weights, --product, --row and --baselines."""
    rows: list[Any] = list(_get(cfg, "rows") or [])
    rows += [f"ckpt:{c}" for c in _get(cfg, "ckpt") or []]
    rows += [f"weights:{w}" for w in _get(cfg, "weights") or []]
    rows += [f"product:{p}" for p in _get(cfg, "product") or []]
    rows += list(_get(cfg, "row") or [])
    baselines = _get(cfg, "baselines")
    if baselines:
        rows += [b.strip() for b in str(baselines).split(",") if b.strip()]
    return rows


def run(cfg: Namespace) -> int:
    """Run ``geossl compare``."""
    from geossl.compare.run import compare
    from geossl.eval.data import parse_data_args

    res = compare(
        collect_rows(cfg), _get(cfg, "data"), _get(cfg, "root"),
        reference=_get(cfg, "reference"), splits=_get(cfg, "splits"),
        train_split=_get(cfg, "train_split"), test_split=_get(cfg, "test_split"),
        labels_per_class=_ints(_get(cfg, "labels_per_class")),
        labels_total=_ints(_get(cfg, "labels")), seeds=_ints(_get(cfg, "seeds")) or [0],
        out=_get(cfg, "out"), backbone=_get(cfg, "backbone"), sensor=_get(cfg, "sensor"),
        batch_size=_get(cfg, "batch_size"), device=_get(cfg, "accelerator"),
        bf16=bool(_get(cfg, "bf16")), workers=_get(cfg, "workers"),
        data_args=parse_data_args(_get(cfg, "data_args"), bands=_get(cfg, "bands")),
        label_path=_get(cfg, "label_path"), label_column=_get(cfg, "label_column"),
        tasks=_get(cfg, "task"), finetune_steps=_get(cfg, "finetune_steps"),
        finetune_lr=_get(cfg, "finetune_lr"),
        finetune_batch_size=_get(cfg, "finetune_batch_size"),
        plots=not _get(cfg, "no_plots"),
    )
    print(open(res["paths"]["markdown"], encoding="utf-8").read(), end="")
    for path in res["paths"].values():
        print(f"wrote {path}")
    return 0
