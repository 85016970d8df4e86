"""Evaluation of pretrained encoders: frozen features, probes, fine-tuning, clustering, reports.

Entry point: :func:`geossl.eval.run.evaluate` (``geossl evaluate``). The pieces are usable alone:
:mod:`~geossl.eval.metrics` (pure metric functions), :mod:`~geossl.eval.features` (cached
frozen features), :mod:`~geossl.eval.linear`, :mod:`~geossl.eval.knn`,
:mod:`~geossl.eval.finetune`, :mod:`~geossl.eval.cluster`, :mod:`~geossl.eval.budgets`,
:mod:`~geossl.eval.report`. Pictures come from :mod:`geossl.viz.plots` and
:mod:`geossl.runtime.threads`
runs the small CPU workloads on one thread (both shared with training and the demo).
"""

from __future__ import annotations

from typing import Any

from geossl.eval.config import EvaluateConfig

__all__ = ["PROTOCOLS", "EvaluateConfig", "evaluate"]

PROTOCOLS = ("linear", "knn", "finetune", "cluster")


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """See :func:`geossl.eval.run.evaluate` (imported lazily to keep ``import geossl`` light)."""
    from geossl.eval.run import evaluate as _evaluate

    return _evaluate(config)
