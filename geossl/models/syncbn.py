"""BatchNorm with batch statistics over every training process, on CPUs too.

torch's :class:`torch.nn.SyncBatchNorm` refuses CPU tensors ("expected input tensor to be on
GPU"), so DDP on CPUs (gloo) trained each process's BatchNorm on its own share of the batch:
the loss of a BatchNorm backbone (the ResNets) then differs from one process over the same
global batch. :class:`CPUSyncBatchNorm` is the same computation as ``SyncBatchNorm`` (per-
channel sum, sum of squares and count all-reduced over the processes, with gradients through
the all-reduce) written with ``torch.distributed.nn.functional.all_reduce``, which runs on any
backend; own code because no library offers it for CPUs. ``geossl pretrain --sync-batchnorm``
uses torch's on GPUs and this one on CPUs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm layer whose training statistics cover every process's batch."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise with the statistics of the global batch while training."""
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        count = torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype,
                             device=input.device)
        local = torch.cat([input.sum(dims), (input * input).sum(dims), count])
        total = all_reduce(local)  # differentiable: gradients flow to every process
        channels = input.shape[1]
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None \
                and self.running_var is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm*d`` of ``module`` by this layer, keeping its state."""
        out: nn.Module = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats)
            if module.affine:
                with torch.no_grad():
                    out.weight = module.weight
                    out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
        for name, child in module.named_children():
            out.add_module(name, cls.convert(child))
        return out


def _layer_sync_base() -> Any:
    from lightning.pytorch.plugins.layer_sync import LayerSync

    return LayerSync


class CPULayerSync(_layer_sync_base()):  # type: ignore[misc]
    """Lightning plugin converting BatchNorm layers to :class:`CPUSyncBatchNorm` under DDP."""

    def apply(self, model: nn.Module) -> nn.Module:
        """Convert the layers (Lightning calls this for multi-process strategies only)."""
        return CPUSyncBatchNorm.convert(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Keep the layers: their state dict is that of ``BatchNorm*d``."""
        return model
