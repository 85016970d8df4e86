"""Optimisers and the learning-rate schedule shared by every method.

Learning rate scaling: the configured ``lr`` is the rate for ``base_batch_size`` (256) samples;
the rate used is ``lr * batch_size / base_batch_size`` (the linear scaling rule of Goyal et al.
2017, used by SimCLR with LARS and by MoCo/BYOL), where ``batch_size`` is the *global* batch
(per-device batch x devices).

Weight decay is not applied to biases, normalisation weights (every 1-d parameter) nor to the
parameters a timm model lists in ``no_weight_decay()`` (ViT position embedding, class token).
The same parameters are excluded from the LARS/LAMB trust-ratio adaptation: timm's ``Lars`` and
``Lamb`` adapt only groups with non-zero weight decay unless ``always_adapt`` is set.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from geossl.core.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "lars", "lamb")


def _no_decay_names(module: nn.Module) -> set[str]:
    """Full names of what every sub-module lists in ``no_weight_decay()`` (timm models).

    timm's own optimiser factory asks only the top module; here the timm backbone sits inside
    geossl's encoder, so every sub-module is asked.
    """
    names: set[str] = set()
    for prefix, sub in module.named_modules():
        fn = getattr(sub, "no_weight_decay", None)
        if callable(fn):
            try:
                for name in fn():
                    names.add(f"{prefix}.{name}" if prefix else str(name))
            except Exception:
                continue
    return names


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a non-decayed group.

    The split is timm's :func:`timm.optim.param_groups_weight_decay` (1-d parameters, biases and
    the ``no_weight_decay()`` names of every sub-module are not decayed). The decayed group
    comes first and both exist even with ``weight_decay`` 0 (where timm makes one group), so an
    optimiser's state has the same layout as in earlier geossl checkpoints, which resume.

    Args:
        module: the module to optimise.
        weight_decay: decay of the decayed group.

    Returns:
        param groups for a torch optimiser (empty groups dropped).
    """
    from timm.optim import param_groups_weight_decay

    # a placeholder decay of 1 makes timm split even when weight_decay is 0
    split = param_groups_weight_decay(module, 1.0, no_weight_decay_list=_no_decay_names(module))
    decay = [p for g in split if g["weight_decay"] for p in g["params"]]
    no_decay = [p for g in split if not g["weight_decay"] for p in g["params"]]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def scaled_lr(lr: float, batch_size: int, base_batch_size: int = 256) -> float:
    """``lr * batch_size / base_batch_size`` (linear scaling rule)."""
    return lr * batch_size / base_batch_size


def build_optimizer(
    name: str,
    params: nn.Module,
    lr: float,
    weight_decay: float,
    batch_size: int,
    base_batch_size: int = 256,
    momentum: float = 0.9,
    betas: tuple[float, float] | None = None,
) -> Optimizer:
    """Build an optimiser with a batch-scaled learning rate and no decay on bias/norm.

    Args:
        name: ``adam``, ``adamw``, ``sgd``, ``lars`` (timm ``Lars``) or ``lamb`` (timm ``Lamb``).
        params: the module to optimise.
        lr: learning rate for ``base_batch_size`` samples.
        weight_decay: weight decay of the decayed group.
        batch_size: global batch size.
        base_batch_size: batch size ``lr`` refers to.
        momentum: SGD/LARS momentum.
        betas: Adam/AdamW/LAMB ``(beta1, beta2)`` (``None``: the optimiser's default).

    Returns:
        the optimiser.

    Raises:
        ConfigError: unknown optimiser name or non-positive learning rate.
    """
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if lr <= 0:
        raise ConfigError(f"learning rate must be positive, got {lr}")
    rate = scaled_lr(lr, batch_size, base_batch_size)
    groups = param_groups(params, weight_decay)
    adam: dict[str, Any] = {} if betas is None else {"betas": tuple(betas)}
    if key == "adam":
        # Adam's L2 penalty, as torch.optim.Adam applies weight_decay
        return torch.optim.Adam(groups, lr=rate, **adam)
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=rate, **adam)
    if key == "sgd":
        return torch.optim.SGD(groups, lr=rate, momentum=momentum)
    from timm.optim import Lamb, Lars

    if key == "lars":
        return Lars(groups, lr=rate, momentum=momentum)
    return Lamb(groups, lr=rate, **adam)


def cosine_value(start: float, end: float, step: int, total: int) -> float:
    """A value on a cosine from ``start`` (step 0) to ``end`` (step ``total`` and after).

    DINO's weight-decay schedule (``utils.cosine_scheduler``, per iteration); ``total <= 0``
    (run length unknown): ``start`` throughout.
    """
    if total <= 0:
        return start
    progress = min(1.0, max(0.0, step / total))
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def clip_grad_per_parameter(params: Any, max_norm: float) -> None:
    """Scale each parameter's gradient down to L2 norm ``max_norm`` where it is larger.

    DINO's ``utils.clip_gradients`` (each tensor on its own, unlike torch's
    :func:`torch.nn.utils.clip_grad_norm_`, which scales all gradients by one global norm and
    would let one large gradient shrink every other); our own because neither torch nor
    Lightning offers the per-tensor form.
    """
    for p in params:
        if p.grad is None:
            continue
        norm = p.grad.detach().norm(2)
        p.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))


def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, max_steps: int, min_ratio: float = 0.0
) -> LambdaLR:
    """Linear warm-up, then cosine decay.

    The factor rises linearly over ``warmup_steps``, then decays on a cosine to ``min_ratio`` at
    ``max_steps`` and stays there (``max_steps <= 0``: constant after the warm-up).

    Args:
        optimizer: the optimiser.
        warmup_steps: warm-up length in optimiser steps.
        max_steps: total optimiser steps.
        min_ratio: final learning rate as a fraction of the peak.

    Returns:
        a per-step :class:`~torch.optim.lr_scheduler.LambdaLR`.
    """

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if max_steps <= 0 or max_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
