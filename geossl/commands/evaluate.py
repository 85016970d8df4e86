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

from jsonargparse import ArgumentParser, Namespace

from geossl.commands import _common

NAME = "evaluate"
HELP = "evaluate a checkpoint (linear, knn, finetune, cluster) with label budgets and seeds"


def add_arguments(parser: ArgumentParser) -> None:
    """Declare the flags of ``geossl evaluate``: one per field of :class:`EvaluateConfig`."""
    from geossl.eval.config import EvaluateConfig  # light: no torch while the parser is built

    _common.add_dataclass_flags(parser, EvaluateConfig)


def run(cfg: Namespace) -> int:
    """Run ``geossl evaluate``."""
    from geossl.core.options import config_from
    from geossl.eval.config import EvaluateConfig
    from geossl.eval.report import to_markdown
    from geossl.eval.run import evaluate

    res = evaluate(config_from(EvaluateConfig, cfg))
    for note in res.get("notes", []):
        print(note)
    print(to_markdown(res["summary"]), end="")
    for path in res["paths"].values():
        print(f"wrote {path}")
    return 0
