r"""Pretrain an encoder with self-supervision (SimCLR, MoCo v2, BYOL, DeepCluster).

Examples:
    geossl pretrain --sensors s1,s2 --pairing geo --method moco --backbone resnet50 \\
        --data sen12ms --root DIR --out RUN --max-steps 10000
    geossl pretrain --config conf/pretrain/moco_sen12ms_geo.yaml --root DIR --out RUN
    geossl pretrain --config RUN/config.yaml --resume last      # continue after a kill
    geossl pretrain --data chips --root MAJOR_TOM_CHIPS --sensors s2 --pairing aug \
        --normalization s2=s2_offset --out RUN --max-steps 1000     # baseline >= 04.00
    geossl pretrain --data chips --root CHIPS --sensors s2 --pairing aug \
        --stats CHIPS/stats.json --out RUN --max-steps 1000         # the data's own mean/std
    geossl pretrain --data ssl4eo --root SSL4EO --sensors s1,s2 --pairing geo \
        --patch-size 64 --out RUN --max-steps 1000                  # grid of 64 px windows

Writes RUN/checkpoints/{last.ckpt,step=N.ckpt}, RUN/logs (CSV, TensorBoard), RUN/config.yaml
and RUN/loss_curve.png.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import ActionYesNo, ArgumentParser, Namespace

from geossl.commands import _common

NAME = "pretrain"
HELP = "self-supervised pretraining (SimCLR, MoCo, BYOL, DeepCluster) on any dataset"


def _yes_no() -> ActionYesNo:
    """A boolean flag: ``--compile`` / ``--no-compile`` (``compile: true`` in YAML)."""
    return ActionYesNo(yes_prefix="", no_prefix="no-")


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl pretrain``."""
    _common.add_data(parser, default="sen12ms")
    _common.add_out(parser, default="runs/pretrain")
    _common.add_seed(parser)
    _common.add_workers(parser, default=4)
    _common.add_trainer(parser)
    parser.add_argument("--method", type=str, default="simclr",
                        help="simclr, moco, byol or deepcluster")
    parser.add_argument("--backbone", type=str, default="resnet50",
                        help="timm model name (resnet18, resnet50, vit_small_patch16_224, "
                             "convnext_tiny, ...)")
    parser.add_argument("--sensors", type=str | list[str], default="s1,s2",
                        help="comma-separated sensors, e.g. s1,s2 or s2")
    parser.add_argument("--pairing", type=str, default="geo",
                        help="geo, aug, fusion, partial-fusion or temporal")
    parser.add_argument("--resume", type=str | None, default=None,
                        help="checkpoint to continue from, or 'last' (OUT/checkpoints/last.ckpt)")
    parser.add_argument("--lr", type=float | None, default=None,
                        help="base learning rate (method default when unset)")
    parser.add_argument("--optimizer", type=str | None, default=None,
                        help="adam, adamw, sgd, lars or lamb (method default when unset)")
    parser.add_argument("--weight-decay", type=float | None, default=None, help="weight decay")
    parser.add_argument("--warmup-steps", type=int | None, default=None,
                        help="linear warm-up steps before the cosine schedule")
    parser.add_argument("--temperature", type=float | None, default=None,
                        help="contrastive temperature (SimCLR, MoCo)")
    parser.add_argument("--momentum", type=float | None, default=None,
                        help="MoCo/BYOL momentum of the key/target encoder (e.g. 0.99)")
    parser.add_argument("--queue-size", type=int | None, default=None, help="MoCo queue length")
    parser.add_argument("--adapter", type=str | None, default=None,
                        help="1x1 band adapter before an RGB-shaped backbone, one of: none, "
                             "linear, nonlinear, linear-frozen, nonlinear-frozen. Unset or none: "
                             "no adapter, the backbone's first layer takes the N bands (not "
                             "possible with geo pairing); with geo pairing it is the kind of the "
                             "per-sensor stems (default linear)")
    parser.add_argument("--pretrained", type=str | None, default=None,
                        help="local file of pretrained backbone weights (RGB stems are adapted)")
    parser.add_argument("--patch-size", type=int | None, default=None,
                        help="crop loaded samples to this many pixels (full samples when unset; "
                             "--data ssl4eo: size of the grid windows read, default 64)")
    parser.add_argument("--img-size", type=int | None, default=None,
                        help="size of the augmented views fed to the encoder")
    parser.add_argument("--splits", type=str | None, default=None,
                        help="split file from `geossl split`: train on its --split side only")
    parser.add_argument("--split", type=str, default="train", help="which side of --splits")
    parser.add_argument("--index", type=str | None, default=None,
                        help="chip index for --data chips (default ROOT/index.parquet)")
    parser.add_argument("--stats", type=str | None, default=None,
                        help="band statistics JSON from `geossl stats --out`: standardise each "
                             "sensor with its mean/std (key image_<sensor>, or the file's only "
                             "entry for one sensor) instead of the sensor's default")
    parser.add_argument("--normalization", type=str | dict[str, str] | None, default=None,
                        help="per-sensor normaliser, SENSOR=NAME[,SENSOR=NAME], e.g. "
                             "s2=s2_offset (Sentinel-2 from processing baseline 04.00 on: DN "
                             "- 1000), s1=s1_std, x=none (raw values); names of "
                             "geossl.data.normalize.NORMALIZERS")
    parser.add_argument("--ckpt-every", type=int, default=500,
                        help="save a checkpoint every N optimiser steps (and last.ckpt)")
    parser.add_argument("--log-every", type=int | None, default=None,
                        help="log metrics every N steps (default: ~20 points per run, at most 50)")
    parser.add_argument("--compile", action=_yes_no(), default=False,
                        help="torch.compile the encoders (worth it on a GPU for long runs)")
    parser.add_argument("--channels-last", action=_yes_no(), default=False,
                        help="channels_last memory format (faster convolutions on GPUs)")
    parser.add_argument("--method-args", type=dict[str, Any] | None, default=None,
                        help="further method options, e.g. {num_clusters: 30}")


def run(cfg: Namespace) -> int:
    """Run ``geossl pretrain``."""
    from geossl.train import PretrainConfig, pretrain

    last = pretrain(PretrainConfig.from_namespace(cfg))
    print(f"geossl pretrain: last checkpoint {last}")
    return 0
