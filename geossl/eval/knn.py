"""Weighted cosine k-nearest-neighbour classification on frozen features.

As in InstDisc (Wu et al. 2018) and DINO: features are L2-normalised, the k most similar
training features vote for their class with weight ``exp(similarity / T)`` (T = 0.07), and the
summed votes are the class scores. Written in torch (a matrix product and ``topk`` per chunk of
queries) because scikit-learn's ``KNeighborsClassifier`` has no temperature-weighted votes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: neighbourhood sizes reported by default
KS: tuple[int, ...] = (20, 200)
#: vote temperature
TEMPERATURE = 0.07


@torch.no_grad()
def knn_scores(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = TEMPERATURE,
    chunk: int = 1024,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Class scores of test features from their k nearest training features.

    Args:
        train_x: bank features ``(N, D)``.
        train_y: bank labels ``(N,)`` or multi-hot ``(N, K)``.
        test_x: query features ``(M, D)``.
        num_classes: K.
        k: neighbours (capped at N).
        temperature: vote temperature T.
        chunk: queries per matrix product (bounds memory).
        device: where to compute.

    Returns:
        ``(M, K)`` scores on CPU: summed vote weights (single-label), or the weighted fraction
        of neighbours carrying each label (multi-label, in [0, 1]).
    """
    dev = torch.device(device)
    bank = F.normalize(train_x.to(dev, torch.float32), dim=1)
    if train_y.ndim == 2:
        onehot = train_y.to(dev, torch.float32)
    else:
        onehot = F.one_hot(train_y.to(dev).long(), num_classes).float()
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, test_x.shape[0], chunk):
        q = F.normalize(test_x[start:start + chunk].to(dev, torch.float32), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        w = (sim / temperature).exp()
        votes = (w.unsqueeze(-1) * onehot[idx]).sum(1)
        if train_y.ndim == 2:
            votes = votes / w.sum(1, keepdim=True)
        out.append(votes.cpu())
    return torch.cat(out)


@torch.no_grad()
def nearest_neighbours(
    bank: Tensor, queries: Tensor, k: int = 10, exclude_self: bool = False
) -> Tensor:
    """Indices ``(M, k)`` of the ``k`` most cosine-similar bank rows of every query.

    Args:
        bank: ``(N, D)``.
        queries: ``(M, D)``.
        k: neighbours.
        exclude_self: drop exact self-matches (when the queries are bank rows).
    """
    sim = F.normalize(queries.float(), dim=1) @ F.normalize(bank.float(), dim=1).T
    if exclude_self:
        sim[sim > 1 - 1e-6] = -2
    return sim.topk(min(k, bank.shape[0]), dim=1).indices
