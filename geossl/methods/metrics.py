"""Monitoring values of contrastive training: top-1 accuracy of the positive pair.

A contrastive loss is a classification of the positive among candidates; its top-1 accuracy
(how often the positive is the most similar candidate) is the usual sanity signal next to the
loss (SimCLR's "contrastive accuracy", MoCo's "acc@1"). Pure functions, no gradient, no host
synchronisation: the result stays a device tensor until Lightning writes a log line.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def contrastive_top1(z1: Tensor, z2: Tensor) -> Tensor:
    """SimCLR top-1: share of the ``2B`` embeddings whose other view is their nearest candidate.

    Candidates are the other ``2B - 1`` embeddings of the (local) batch, by cosine similarity,
    as in :func:`geossl.methods.losses.nt_xent`.

    Args:
        z1: ``(B, D)`` projections of view 1.
        z2: ``(B, D)`` projections of view 2.

    Returns:
        a float scalar tensor in [0, 1].
    """
    z = F.normalize(torch.cat([z1, z2]).detach().float(), dim=1)
    n = z1.shape[0]
    sim = z @ z.T
    sim.fill_diagonal_(float("-inf"))
    positive = torch.arange(2 * n, device=z.device).roll(n)  # i <-> i + n, made on the device
    return (sim.argmax(dim=1) == positive).float().mean()


@torch.no_grad()
def queue_top1(q: Tensor, k: Tensor, queue: Tensor) -> Tensor:
    """MoCo top-1: share of queries more similar to their key than to every queued key.

    Args:
        q: ``(B, D)`` queries.
        k: ``(B, D)`` their positive keys.
        queue: ``(K, D)`` negative keys.

    Returns:
        a float scalar tensor in [0, 1].
    """
    qn = F.normalize(q.detach().float(), dim=1)
    pos = (qn * F.normalize(k.detach().float(), dim=1)).sum(dim=1)
    neg = qn @ F.normalize(queue.detach().float(), dim=1).T
    return (pos > neg.max(dim=1).values).float().mean()
