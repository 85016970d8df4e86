r"""Pretrain an encoder with self-supervision (SimCLR, MoCo v2, BYOL, DeepCluster).

Examples:
    geossl pretrain --sensors s1,s2 --pairing geo --method moco --backbone resnet50 \\
        --data sen12ms --root DIR --out RUN --max-steps 10000
    geossl pretrain --config pretrain/moco_sen12ms_geo --root DIR --out RUN
    geossl pretrain --config RUN/config.yaml --resume last      # continue after a kill
    geossl pretrain --data chips --root MAJOR_TOM_CHIPS --sensors s2 --pairing aug \
        --normalization s2=s2_offset --out RUN --max-steps 1000     # baseline >= 04.00
    geossl pretrain --data chips --root CHIPS --sensors s2 --pairing aug \
        --stats CHIPS/stats.json --out RUN --max-steps 1000         # the data's own mean/std
    geossl pretrain --data ssl4eo --root SSL4EO --sensors s1,s2 --pairing geo \
        --patch-size 64 --out RUN --max-steps 1000                  # grid of 64 px windows

Writes RUN/checkpoints/{last.ckpt,step=N.ckpt}, RUN/logs (CSV, TensorBoard), RUN/config.yaml,
RUN/loss_curve.png and, with --tsne-every N, RUN/tsne/epoch=NNN.png. SimCLR and MoCo log their
contrastive top-1 accuracy; --online-probe logs a linear probe's accuracy (probe/acc).
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "pretrain"
HELP = "self-supervised pretraining (SimCLR, MoCo, BYOL, DeepCluster) on any dataset"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl pretrain``: one per field of :class:`PretrainConfig`."""
    from geossl.training.config import PretrainConfig  # light: no torch while the parser is built

    _common.add_dataclass_flags(parser, PretrainConfig)


def run(cfg: Namespace) -> int:
    """Run ``geossl pretrain``."""
    from geossl.training.trainer import PretrainConfig, pretrain

    last = pretrain(PretrainConfig.from_namespace(cfg))
    print(f"geossl pretrain: last checkpoint {last}")
    return 0
