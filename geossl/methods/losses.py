"""Self-supervised losses as pure functions of tensors (solo-learn style).

Every loss takes the embeddings (and, where needed, a queue or labels) and returns a scalar; no
module state. :func:`nt_xent` gathers the negatives of every device itself under DDP, keeping the
gradient path through the gather, so the loss and gradients equal those of one process holding
the whole global batch (``tests/test_ddp.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

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


# -- DINO, Barlow Twins, VICReg (issue 20) -------------------------------------------------------
def dino_loss(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    center: Tensor,
    teacher_temp: float,
    student_temp: float = 0.1,
) -> Tensor:
    """DINO cross-entropy between the sharpened, centred teacher and the student (Caron 2021).

    ``H(t, s) = -sum_d softmax((t - c) / T_t)_d log softmax(s / T_s)_d``, averaged over the
    batch and over every (teacher view ``i``, student view ``j``) pair with ``i != j``: teacher
    view ``i`` and student view ``i`` are the same crop (the global crops come first in
    ``student``). The same average as ``lightly.loss.DINOLoss`` (checked in the tests).

    Args:
        student: ``V_s`` tensors ``(B, K)`` of student logits (global crops first, then local).
        teacher: ``V_t`` tensors ``(B, K)`` of teacher logits of the global crops (detached here).
        center: ``(K,)`` (or ``(1, K)``) centre subtracted from the teacher logits.
        teacher_temp: teacher temperature (sharpening: lower than ``student_temp``).
        student_temp: student temperature.

    Returns:
        scalar loss.

    Raises:
        ValueError: fewer than one cross-view pair.
    """
    n_pairs = sum(1 for i in range(len(teacher)) for j in range(len(student)) if i != j)
    if n_pairs == 0:
        raise ValueError(f"DINO needs two views at least, got {len(teacher)} teacher and "
                         f"{len(student)} student view(s)")
    c = center.detach().float().reshape(1, -1)
    t_prob = [F.softmax((t.detach().float() - c) / teacher_temp, dim=-1) for t in teacher]
    s_logp = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student]
    total = student[0].new_zeros((), dtype=torch.float32)
    for i, t in enumerate(t_prob):
        for j, s in enumerate(s_logp):
            if i != j:
                total = total + (-(t * s).sum(dim=-1)).mean()
    return total / n_pairs


@torch.no_grad()
def update_center(center: Tensor, teacher: Sequence[Tensor], momentum: float = 0.9) -> Tensor:
    """DINO's new centre: ``m * center + (1 - m) * mean of the teacher logits``.

    The mean is over every teacher view and sample (over all DDP ranks under DDP, as DINO's
    all-reduce). Pure: returns the new centre, ``center`` is not changed.

    Args:
        center: ``(K,)`` current centre.
        teacher: ``V_t`` tensors ``(B, K)`` of teacher logits.
        momentum: centre EMA rate (0.9 in DINO).

    Returns:
        ``(K,)`` new centre (float32).
    """
    stacked = torch.cat([t.detach().float() for t in teacher], dim=0)  # (V_t B, K)
    total, n = stacked.sum(dim=0), torch.tensor(float(stacked.shape[0]), device=stacked.device)
    if distributed():
        dist.all_reduce(total)
        dist.all_reduce(n)
    batch_center = total / n
    return center.float().reshape(-1) * momentum + batch_center * (1 - momentum)


def _standardise_batch(z: Tensor, eps: float) -> Tensor:
    """Each feature to zero mean and unit (biased) variance over the batch, as BatchNorm."""
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def _off_diagonal(c: Tensor) -> Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = c.shape[0]
    return c.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(
    z1: Tensor, z2: Tensor, lambda_offdiag: float = 5e-3, eps: float = 1e-5
) -> Tensor:
    """Barlow Twins: the cross-correlation of the two views to the identity (Zbontar 2021).

    Each embedding dimension is standardised over the batch (mean 0, biased variance 1,
    ``eps`` as in BatchNorm), ``C = z1n^T z2n / B``, and the loss is
    ``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2``, the paper's Algorithm 1 and
    ``lightly.loss.BarlowTwinsLoss`` (lambda 5e-3, no 1/32 scaling of later versions).

    Args:
        z1: ``(B, D)`` projections of view 1 (``B >= 2``).
        z2: ``(B, D)`` projections of view 2.
        lambda_offdiag: weight of the redundancy-reduction (off-diagonal) term.
        eps: added to the variance before the division.

    Returns:
        scalar loss.
    """
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"Barlow Twins needs two (B >= 2, D) views of one shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    a, b = gather(z1.float()), gather(z2.float())  # the global batch's statistics under DDP
    c = _standardise_batch(a, eps).T @ _standardise_batch(b, eps) / a.shape[0]
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = _off_diagonal(c).pow(2).sum()
    return on + lambda_offdiag * off


def vicreg_terms(
    z1: Tensor, z2: Tensor, eps: float = 1e-4
) -> tuple[Tensor, Tensor, Tensor]:
    """VICReg's three terms: invariance, variance and covariance (Bardes 2022).

    * invariance: mean squared error between the views, ``mean_{b,d} (z1 - z2)^2``;
    * variance: ``(mean_d relu(1 - std_d(z1)) + mean_d relu(1 - std_d(z2))) / 2`` with
      ``std = sqrt(unbiased var + eps)``;
    * covariance: ``sum_{i != j} cov(z1)_ij^2 / D + sum_{i != j} cov(z2)_ij^2 / D`` with the
      unbiased covariance (divided by ``B - 1``).

    Args:
        z1: ``(B, D)`` projections of view 1 (``B >= 2``).
        z2: ``(B, D)`` projections of view 2.
        eps: added to the variance before the square root.

    Returns:
        ``(invariance, variance, covariance)``, scalars.
    """
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"VICReg needs two (B >= 2, D) views of one shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    z1, z2 = z1.float(), z2.float()
    inv = F.mse_loss(z1, z2)
    a, b = gather(z1), gather(z2)  # variance and covariance of the global batch under DDP

    def std_term(z: Tensor) -> Tensor:
        return F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean()

    def cov_term(z: Tensor) -> Tensor:
        z = z - z.mean(dim=0)
        cov = z.T @ z / (z.shape[0] - 1)
        return _off_diagonal(cov).pow(2).sum() / z.shape[1]

    return inv, (std_term(a) + std_term(b)) / 2, cov_term(a) + cov_term(b)


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """VICReg loss ``sim_coeff * inv + std_coeff * var + cov_coeff * cov``.

    The terms are those of :func:`vicreg_terms`; the weights default to the paper's and
    ``lightly.loss.VICRegLoss``'s 25, 25, 1.

    Args:
        z1: ``(B, D)`` projections of view 1.
        z2: ``(B, D)`` projections of view 2.
        sim_coeff: weight of the invariance term.
        std_coeff: weight of the variance term.
        cov_coeff: weight of the covariance term.
        eps: added to the variance before the square root.

    Returns:
        scalar loss.
    """
    inv, var, cov = vicreg_terms(z1, z2, eps)
    return sim_coeff * inv + std_coeff * var + cov_coeff * cov
