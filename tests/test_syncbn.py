"""Issue 18, item 18: with --sync-batchnorm, two DDP processes on CPUs (gloo) train a BatchNorm
backbone as one process does on the whole batch; without it they do not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from geossl.models.syncbn import CPULayerSync, CPUSyncBatchNorm
from tests.test_ddp import run_ranks

BATCH = 8


def _net() -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet10t", pretrained=False, num_classes=0, in_chans=3).train()


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    # per-half shift: the two processes' batches have different statistics, as in real runs
    x = torch.randn(BATCH, 3, 32, 32, generator=g)
    x[BATCH // 2:] += 2.0
    return x


def _loss(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (net(x) ** 2).mean()


def _worker(rank: int, world: int, port: int, sync: bool, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        net = _net()
        if sync:
            net = CPUSyncBatchNorm.convert(net)
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        part = _batch()[rank * BATCH // world:(rank + 1) * BATCH // world]
        loss = _loss(ddp, part)
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0:
            grad = next(p.grad for p in net.parameters() if p.grad is not None)
            torch.save({"loss": total / world, "grad": grad.clone(),
                        "running_mean": next(m for m in net.modules()
                                             if hasattr(m, "running_mean")).running_mean},
                       out)
    finally:
        dist.destroy_process_group()


def _two_processes(sync: bool, out: Path) -> dict[str, torch.Tensor]:
    return run_ranks(_worker, out, sync)  # type: ignore[no-any-return]


def test_synced_batchnorm_on_two_cpu_processes_equals_one(tmp_path: Path) -> None:
    net = _net()
    loss = _loss(net, _batch())
    loss.backward()
    want = next(p for p in net.parameters() if p.grad is not None).grad
    mean = next(m for m in net.modules() if hasattr(m, "running_mean")).running_mean

    synced = _two_processes(True, tmp_path / "sync.pt")
    torch.testing.assert_close(synced["loss"], loss.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(synced["grad"], want, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(synced["running_mean"], mean, rtol=1e-4, atol=1e-5)

    apart = _two_processes(False, tmp_path / "apart.pt")  # what DDP did before
    assert abs(float(apart["loss"]) - float(loss)) > 1e-3


def test_pretrain_plugs_it_in_for_several_cpu_processes() -> None:
    from lightning.pytorch import Trainer

    from geossl.training.trainer import _batchnorm_sync

    sync, plugins = _batchnorm_sync("auto", "cpu")
    assert not sync and isinstance(plugins[0], CPULayerSync)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", plugins=plugins,
                      logger=False, enable_checkpointing=False)
    layer_sync = getattr(trainer.strategy, "_layer_sync", None)
    assert isinstance(layer_sync, CPULayerSync)
    assert _batchnorm_sync("on", "gpu") == (True, [])
    assert _batchnorm_sync("off", "cpu") == (False, [])
    converted = layer_sync.apply(_net())
    assert any(isinstance(m, CPUSyncBatchNorm) for m in converted.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in converted.modules())


@pytest.mark.slow
def test_pretrain_on_two_cpu_processes_with_a_batchnorm_backbone(tmp_path: Path) -> None:
    """`geossl pretrain --devices 2 --strategy ddp` (gloo) with a BatchNorm backbone: with
    --sync-batchnorm (the default) the mean loss of the two processes is the loss of one
    process on the same global batch; with `off` it is not."""
    import subprocess
    import sys

    from geossl.bench.train import make_chips
    from tests.test_ddp_pretrain import CHIPS, METHOD_ARGS, REPO, SCRIPT

    root = tmp_path / "chips"
    make_chips(root, n=CHIPS, bands=4, size=32)

    def run(devices: int, sync: str) -> list[dict[str, Any]]:
        out = tmp_path / f"{devices}_{sync}"
        args = [str(out / "record"), "pretrain", "--data", "chips", "--root", str(root),
                "--out", str(out), "--sensors", "s2", "--pairing", "aug", "--method", "simclr",
                "--backbone", "test_resnet", "--img-size", "32", "--workers", "0",
                "--accelerator", "cpu", "--devices", str(devices),
                "--strategy", "ddp" if devices > 1 else "auto", "--sync-batchnorm", sync,
                "--batch-size", str(CHIPS // devices), "--max-steps", "1", "--optimizer",
                "sgd", "--lr", "0.05", "--method-args", METHOD_ARGS["simclr"]]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [torch.load(out / "record" / f"rank{r}.pt", weights_only=True)
                for r in range(devices)]

    one = run(1, "auto")[0]["losses"][0]
    synced = sum(r["losses"][0] for r in run(2, "auto")) / 2
    apart = sum(r["losses"][0] for r in run(2, "off")) / 2
    assert synced == pytest.approx(one, rel=1e-4, abs=1e-5)
    assert apart != pytest.approx(one, rel=1e-3, abs=1e-4)
