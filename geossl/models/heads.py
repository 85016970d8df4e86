"""Small reusable heads (lightly-style): projection and prediction MLPs, cluster classifier."""

from __future__ import annotations

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
