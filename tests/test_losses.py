"""Pure SSL losses against reference computations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from geossl.methods.losses import byol_loss, deepcluster_loss, moco_infonce, nt_xent


def _nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Row-by-row NT-Xent as written in the SimCLR paper."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = [math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / sum(sims))
    return total / (2 * n)


def test_nt_xent_matches_reference() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    for t in (0.1, 0.5):
        got = nt_xent(z1, z2, temperature=t).item()
        assert abs(got - _nt_xent_reference(z1, z2, t)) < 1e-4


def test_nt_xent_prefers_aligned_views() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 32)
    aligned = nt_xent(z, z + 0.01 * torch.randn_like(z))
    shuffled = nt_xent(z, z[torch.randperm(16)])
    assert aligned < 0.1 < shuffled


def test_nt_xent_gradient_flows_to_both_views() -> None:
    z1 = torch.randn(4, 8, requires_grad=True)
    z2 = torch.randn(4, 8, requires_grad=True)
    nt_xent(z1, z2).backward()
    assert z1.grad is not None and z2.grad is not None and z1.grad.abs().sum() > 0


def test_moco_infonce_matches_reference() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(5, 8, requires_grad=True), torch.randn(5, 8)
    queue = F.normalize(torch.randn(12, 8), dim=1)
    t = 0.2
    loss = moco_infonce(q, k, queue, t)
    qn, kn = F.normalize(q.detach(), dim=1), F.normalize(k, dim=1)
    ref = 0.0
    for i in range(5):
        pos = math.exp(float(qn[i] @ kn[i]) / t)
        neg = sum(math.exp(float(qn[i] @ queue[j]) / t) for j in range(12))
        ref += -math.log(pos / (pos + neg))
    assert abs(loss.item() - ref / 5) < 1e-4
    loss.backward()
    assert q.grad is not None


def test_byol_loss_values_and_stop_gradient() -> None:
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    assert byol_loss(p.detach(), p.detach()).item() < 1e-6
    assert abs(byol_loss(p.detach(), -p.detach()).item() - 4.0) < 1e-5
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_deepcluster_loss_is_cross_entropy() -> None:
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(deepcluster_loss(logits, labels), F.cross_entropy(logits, labels))
    # not-yet-clustered samples (-1) are ignored
    labels2 = torch.tensor([0, 1, 2, 3, -1, -1])
    torch.testing.assert_close(deepcluster_loss(logits, labels2),
                               F.cross_entropy(logits[:4], labels2[:4]))
