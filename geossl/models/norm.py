"""Split BatchNorm: statistics over groups of the batch (MoCo's shuffle-BN on one device).

MoCo shuffles the key batch across GPUs so that a query and its positive key are not normalised
with the statistics of the same samples (otherwise BatchNorm lets the model find the positive by
its batch statistics instead of its content). On a single device the whole batch is one BN
group, so there is nothing to shuffle across; :class:`SplitBatchNorm2d` emulates several
devices by normalising ``num_splits`` groups of the batch separately (as the single-GPU MoCo
demo of the MoCo authors does), and MoCo then shuffles the keys between the groups.

Parameters, buffers and state-dict keys are those of :class:`torch.nn.BatchNorm2d`, so
checkpoints load into plain models, and in eval mode the layer *is* a BatchNorm2d.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed per group of ``num_splits``.

    Sample ``i`` of a batch of ``n`` belongs to group ``i % num_splits``. Batches whose size is
    not a multiple of ``num_splits`` fall back to ordinary BatchNorm. The running statistics
    are the mean of the groups' running statistics.
    """

    num_splits: int

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` ``(N, C, H, W)``."""
        splits = int(getattr(self, "num_splits", 1))
        n = x.shape[0]
        if not self.training or splits <= 1 or n % splits != 0 or n // splits < 2:
            return super().forward(x)
        c, h, w = x.shape[1:]
        running_mean = running_var = None
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None
            running_mean = self.running_mean.repeat(splits)
            running_var = self.running_var.repeat(splits)
        if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
            assert self.num_batches_tracked is not None
            momentum = 1.0 / (float(self.num_batches_tracked) + 1.0)
        else:
            momentum = self.momentum
        weight = self.weight.repeat(splits) if self.weight is not None else None
        bias = self.bias.repeat(splits) if self.bias is not None else None
        # (n, c, h, w) -> (n / s, s * c, h, w): channel j * c + k is channel k of group j
        out = F.batch_norm(
            x.reshape(n // splits, splits * c, h, w), running_mean, running_var, weight, bias,
            True, momentum, self.eps,
        )
        if running_mean is not None and running_var is not None:
            assert self.running_mean is not None and self.running_var is not None
            self.running_mean.copy_(running_mean.view(splits, c).mean(dim=0))
            self.running_var.copy_(running_var.view(splits, c).mean(dim=0))
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
        return out.reshape(n, c, h, w)


def convert_split_bn(module: nn.Module, num_splits: int) -> int:
    """Turn every ``BatchNorm2d`` of ``module`` into a :class:`SplitBatchNorm2d`, in place.

    Only plain ``nn.BatchNorm2d`` layers are converted. The layers keep their parameter and
    buffer objects (an optimiser built before still points at them); ``num_splits=1`` turns them
    back into plain BatchNorm.

    Args:
        module: model to convert.
        num_splits: BN groups per batch.

    Returns:
        how many layers were converted.
    """
    count = 0
    for sub in module.modules():
        # exact types only: subclasses (timm's BatchNormAct2d, SyncBatchNorm) have their own
        # forward, which a class swap would drop
        if type(sub) in (nn.BatchNorm2d, SplitBatchNorm2d):
            sub.__class__ = SplitBatchNorm2d if num_splits > 1 else nn.BatchNorm2d
            sub.num_splits = int(num_splits)  # type: ignore[assignment]
            count += 1
    return count


def auto_splits(batch_size: int, max_splits: int = 8, min_group: int = 32) -> int:
    """The number of BatchNorm groups for a batch of ``batch_size`` on one device.

    Returns:
        the most groups (at most ``max_splits``) of at least ``min_group`` samples each that
        divide ``batch_size`` evenly; 1 when the batch is too small to split.
    """
    for splits in range(max_splits, 1, -1):
        if batch_size % splits == 0 and batch_size // splits >= min_group:
            return splits
    return 1
