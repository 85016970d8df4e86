"""DDP: SimCLR loss and gradients on two CPU processes (gloo) equal one process on the same batch.

Each rank holds half of a fixed global batch of views. ``nt_xent`` gathers the other rank's
embeddings with gradients, DDP averages the gradients: the result must be the gradient of the
single-process loss over the whole batch. BatchNorm runs in eval mode (its batch statistics
would otherwise differ per device; SyncBatchNorm is CUDA-only).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from geossl.methods import SimCLR
from geossl.methods.losses import nt_xent

GLOBAL_BATCH = 8


class _Net(torch.nn.Module):
    """Encoder + projector of a SimCLR module (what DDP wraps)."""

    def __init__(self, method: SimCLR) -> None:
        super().__init__()
        self.encoder, self.projector = method.encoder, method.projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.projector(self.encoder(x))
        return out


def _setup() -> tuple[_Net, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    method = SimCLR.from_hparams({"backbone": "resnet10t", "sensors": ["s2"],
                                  "in_chans": {"s2": 4}, "pairing": "aug", "proj_hidden": 32,
                                  "proj_dim": 16})
    net = _Net(method).eval()
    g = torch.Generator().manual_seed(1)
    v1 = torch.randn(GLOBAL_BATCH, 4, 16, 16, generator=g)
    v2 = v1 + 0.3 * torch.randn(GLOBAL_BATCH, 4, 16, 16, generator=g)
    return net, v1, v2


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        net, v1, v2 = _setup()
        ddp = DistributedDataParallel(net)
        part = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
        loss = nt_xent(ddp(v1[part]), ddp(v2[part]), temperature=0.1, gather=True)
        loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= world
        if rank == 0:
            grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
            torch.save({"loss": mean_loss, "grads": grads}, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(worker: Callable[..., None], out: Path, *args: Any, world: int = 2) -> Any:
    """``worker(rank, world, port, *args, out)`` on ``world`` processes; what rank 0 saved in
    ``out``.

    fork: the ranks inherit the imported modules (spawn would import torch, Lightning and timm
    again in each of them: most of a test's time on a small machine).
    """
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(worker, args=(world, _free_port(), *args, str(out)), nprocs=world,
                       join=True, start_method=method)
    return torch.load(out, weights_only=True)


def test_simclr_ddp_matches_single_process(tmp_path: Path) -> None:
    ddp = run_ranks(_worker, tmp_path / "ddp.pt")

    net, v1, v2 = _setup()
    loss = nt_xent(net(v1), net(v2), temperature=0.1)
    loss.backward()
    torch.testing.assert_close(ddp["loss"], loss.detach(), atol=1e-5, rtol=1e-5)
    grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert grads.keys() == ddp["grads"].keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(ddp["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=name)

    # without the gather each rank only sees its own negatives: a different (smaller) loss
    half = GLOBAL_BATCH // 2
    local = (nt_xent(net(v1[:half]), net(v2[:half])) + nt_xent(net(v1[half:]),
                                                               net(v2[half:]))) / 2
    assert not torch.allclose(local, loss)
