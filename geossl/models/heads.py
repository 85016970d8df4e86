"""Small reusable heads (lightly-style): projection and prediction MLPs, cluster classifier."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _mlp(
    in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, batch_norm: bool, last_bn: bool
) -> nn.Sequential:
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


class ProjectionHead(nn.Module):
    """MLP projector ``in -> hidden -> ... -> out`` (SimCLR, MoCo v2, BYOL).

    ``num_layers - 1`` hidden blocks of Linear (+ BatchNorm) + ReLU, then a Linear layer,
    optionally followed by a non-affine BatchNorm (SimCLR v2 / MoCo v3 style).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_bn: bool = False,
    ) -> None:
        """Create the head.

        Args:
            in_dim: encoder feature size.
            hidden_dim: hidden width.
            out_dim: projection size.
            num_layers: number of Linear layers (1 = linear projection).
            batch_norm: BatchNorm after hidden Linear layers.
            last_bn: non-affine BatchNorm on the output.
        """
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.layers = _mlp(in_dim, hidden_dim, out_dim, num_layers, batch_norm, last_bn)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim)`` -> ``(B, out_dim)``."""
        out: Tensor = self.layers(x)
        return out


class PredictionHead(ProjectionHead):
    """BYOL predictor: ``out -> hidden -> out`` MLP with BatchNorm."""

    def __init__(self, in_dim: int = 256, hidden_dim: int = 4096, out_dim: int = 256) -> None:
        """Create the head.

        Args:
            in_dim: projection size.
            hidden_dim: hidden width.
            out_dim: prediction size (equal to the projection size).
        """
        super().__init__(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)


class ClusterHead(nn.Module):
    """Linear classifier over pseudo-labels (DeepCluster), re-initialised after each clustering."""

    def __init__(self, in_dim: int, num_clusters: int) -> None:
        """Create the head.

        Args:
            in_dim: feature size.
            num_clusters: number of k-means clusters.
        """
        super().__init__()
        self.fc = nn.Linear(in_dim, num_clusters)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fresh weights (normal, std 0.01) and zero bias, as DeepCluster does."""
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim)`` -> logits ``(B, num_clusters)``."""
        out: Tensor = self.fc(x)
        return out


class DINOHead(nn.Module):
    """DINO head: MLP to a bottleneck, L2 normalisation, weight-normed linear layer to ``out_dim``.

    As in DINO (Caron et al., 2021, ``DINOHead``): ``num_layers - 1`` Linear (+ BatchNorm) +
    GELU blocks and a Linear layer to ``bottleneck_dim``, the output L2-normalised, then a
    bias-free weight-normalised ``last_layer`` (``torch.nn.utils.parametrizations.weight_norm``)
    whose norm (``original0``) is fixed at 1 when ``norm_last_layer``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        """Create the head.

        Args:
            in_dim: encoder feature size.
            out_dim: number of prototypes (logits).
            hidden_dim: hidden width of the MLP.
            bottleneck_dim: MLP output size (before the normalisation).
            num_layers: Linear layers of the MLP (1: one Linear to the bottleneck).
            batch_norm: BatchNorm after the hidden Linear layers.
            norm_last_layer: fix the weight norm of the last layer at 1 (not trained).
        """
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        last = nn.Linear(bottleneck_dim, out_dim, bias=False)
        nn.init.trunc_normal_(last.weight, std=0.02)
        self.last_layer = nn.utils.parametrizations.weight_norm(last)
        norm = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            norm.fill_(1.0)
        norm.requires_grad_(not norm_last_layer)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim)`` -> logits ``(B, out_dim)``."""
        z = nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        out: Tensor = self.last_layer(z)
        return out
