"""Self-supervised losses as pure functions of tensors (solo-learn style).

Every loss takes the embeddings (and, where needed, a queue or labels) and returns a scalar; no
module state. :func:`nt_xent` gathers the negatives of every device itself under DDP, keeping the
gradient path through the gather, so the loss and gradients equal those of one process holding
the whole global batch (``tests/test_ddp.py`` checks it).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def distributed() -> bool:
    """Whether this process is one of several DDP ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _rank() -> int:
    return dist.get_rank() if distributed() else 0


class GatherLayer(torch.autograd.Function):
    """All-gather that keeps gradients: backward sums every rank's gradient for its slice.

    Written here (as solo-learn/lightly do) rather than using
    ``torch.distributed.nn.functional.all_gather``: that one does give the same gradients on
    every backend (reduce-scatter on NCCL, all-to-all on gloo, checked on torch 2.14), but it is
    deprecated there in favour of the private ``torch.distributed._functional_collectives``.
    This Function needs only ``all_gather`` and ``all_reduce``, public on every backend.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, ...]:  # type: ignore[no-untyped-def, override]
        """Gather ``x`` from every rank."""
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:  # type: ignore[no-untyped-def, override]
        """Sum the gradients of all ranks and keep this rank's slice."""
        stacked = torch.stack(grads)
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` over all DDP ranks along dim 0, with gradients (identity otherwise)."""
    if not distributed():
        return x
    return torch.cat(GatherLayer.apply(x), dim=0)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` over all DDP ranks along dim 0, without gradients."""
    if not distributed():
        return x
    out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1, gather: bool = True) -> Tensor:
    """NT-Xent (SimCLR) loss of two views.

    Each of the ``2B`` local embeddings has its other view as positive and the other
    ``2 B_global - 2`` embeddings of the (global) batch as negatives. Under DDP with
    ``gather=True`` the candidates are gathered from every device with gradients; the local
    loss is the mean over local rows, and DDP's gradient averaging then gives exactly the
    gradient of the global-batch loss.

    Args:
        z1: ``(B, D)`` projections of view 1 (need not be normalised).
        z2: ``(B, D)`` projections of view 2.
        temperature: softmax temperature.
        gather: gather negatives across DDP ranks.

    Returns:
        scalar loss.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"views differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}")
    z1 = F.normalize(z1.float(), dim=1)
    z2 = F.normalize(z2.float(), dim=1)
    b = z1.shape[0]
    local = torch.cat([z1, z2], dim=0)  # (2B, D)
    if gather and distributed():
        a1, a2 = _gather_pair(z1, z2)
        offset = _rank() * b
    else:
        a1, a2, offset = z1, z2, 0
    n = a1.shape[0]  # global batch
    cand = torch.cat([a1, a2], dim=0)  # (2N, D)
    logits = local @ cand.T / temperature  # (2B, 2N)
    rows = torch.arange(b, device=z1.device)
    self_idx = torch.cat([offset + rows, n + offset + rows])
    pos_idx = torch.cat([n + offset + rows, offset + rows])
    logits[torch.arange(2 * b, device=z1.device), self_idx] = float("-inf")
    return F.cross_entropy(logits, pos_idx)


def _gather_pair(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    both = gather(torch.stack([z1, z2], dim=0).transpose(0, 1))  # (N, 2, D)
    return both[:, 0], both[:, 1]


def moco_infonce(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """MoCo InfoNCE: the key of the same image is the positive, the queue holds negatives.

    Args:
        q: ``(B, D)`` queries (gradients flow).
        k: ``(B, D)`` keys from the momentum encoder (detached here).
        queue: ``(K, D)`` past keys (negatives), L2-normalised.
        temperature: softmax temperature (0.2 in MoCo v2).

    Returns:
        scalar loss.
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    neg = q @ queue.detach().float().T  # (B, K)
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL regression loss ``2 - 2 cos(p, z)``, mean over the batch.

    Args:
        p: ``(B, D)`` online predictions.
        z: ``(B, D)`` target projections (detached here: the target gets no gradient).

    Returns:
        scalar loss in ``[0, 4]``.
    """
    p = F.normalize(p.float(), dim=1)
    z = F.normalize(z.detach().float(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()


def deepcluster_loss(logits: Tensor, pseudo_labels: Tensor) -> Tensor:
    """Cross-entropy of the cluster classifier against k-means pseudo-labels.

    Args:
        logits: ``(B, K)`` classifier outputs.
        pseudo_labels: ``(B,)`` cluster ids (negative ids are ignored: not yet clustered).

    Returns:
        scalar loss.
    """
    return F.cross_entropy(logits.float(), pseudo_labels.long(), ignore_index=-1)


def mae_token_loss(pred: Tensor, target: Tensor, norm_pix_loss: bool = True,
                   eps: float = 1e-6) -> Tensor:
    """MAE's per-patch reconstruction error: mean squared error over each patch's pixels.

    Args:
        pred: ``(B, N, P)`` predicted pixels of every patch (``P = patch**2 * bands``).
        target: ``(B, N, P)`` the patches' pixels.
        norm_pix_loss: compare with each target patch normalised to zero mean and unit variance
            (unbiased variance, ``(t - mean) / sqrt(var + eps)``, as in MAE's reference code).
        eps: added to the variance.

    Returns:
        ``(B, N)`` loss per patch.
    """
    target = target.detach().float()
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    return ((pred.float() - target) ** 2).mean(dim=-1)


def mae_loss(pred: Tensor, target: Tensor, mask: Tensor, norm_pix_loss: bool = True,
             eps: float = 1e-6) -> Tensor:
    """MAE loss: :func:`mae_token_loss` averaged over the masked patches only.

    Args:
        pred: ``(B, N, P)`` predicted pixels.
        target: ``(B, N, P)`` true pixels.
        mask: ``(B, N)``, 1 where the patch was masked (hidden from the encoder), else 0.
        norm_pix_loss: per-patch normalised targets.
        eps: added to the variance.

    Returns:
        scalar loss.
    """
    per_token = mae_token_loss(pred, target, norm_pix_loss, eps)
    mask = mask.float()
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)
