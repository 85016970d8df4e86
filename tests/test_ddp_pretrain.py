"""``geossl pretrain`` through the Lightning Trainer on 2 CPU processes (gloo, DDP).

For SimCLR and MoCo, one optimiser step of 2 processes x 4 chips equals one step of 1 process x
the same 8 chips: the mean of the per-process losses is the single-process loss and the
(all-reduced) gradients are the single-process gradients. That holds only if SimCLR gathers the
negatives of both processes (with gradients) and MoCo's shuffle-BN sends every key back to its
query after the cross-process shuffle; the two processes must also read disjoint chips (the
sampler is sharded) that together make the whole set.

Deterministic set-up: augmentations are identities (full-frame crop, no flip/jitter/blur), and
the networks hold no BatchNorm (``test_convnext``: LayerNorm; one-layer projector), whose batch
statistics would legitimately differ between a 4- and an 8-sample batch (SyncBatchNorm is
CUDA-only).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from geossl.bench.train import make_chips

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "ddp_pretrain_run.py"
CHIPS = 8
IDENTITY = ("{crop_scale: [1.0, 1.0], crop_ratio: [1.0, 1.0], hflip: 0.0, vflip: 0.0, "
            "rot90: false, jitter_p: 0.0, grayscale_p: 0.0, blur_p: 0.0, speckle_p: 0.0}")
METHOD_ARGS = {
    "simclr": f"{{proj_layers: 1, proj_dim: 16, augment: {IDENTITY}}}",
    "moco": f"{{proj_hidden: 32, proj_dim: 16, augment: {IDENTITY}}}",
}


def _run(method: str, root: Path, out: Path, devices: int) -> list[dict[str, Any]]:
    record = out / "record"
    args = [str(record), "pretrain", "--data", "chips", "--root", str(root), "--out", str(out),
            "--sensors", "s2", "--pairing", "aug", "--method", method,
            "--backbone", "test_convnext", "--img-size", "32", "--workers", "0",
            "--accelerator", "cpu", "--devices", str(devices),
            "--strategy", "ddp" if devices > 1 else "auto",
            "--batch-size", str(CHIPS // devices), "--max-steps", "1", "--optimizer", "sgd",
            "--lr", "0.05", "--method-args", METHOD_ARGS[method]]
    if method == "moco":
        args += ["--queue-size", "16"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(record / f"rank{r}.pt", weights_only=True) for r in range(devices)]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_two_processes_equal_one_on_the_same_global_batch(method: str, tmp_path: Path) -> None:
    root = tmp_path / "chips"
    make_chips(root, n=CHIPS, bands=4, size=32)
    one = _run(method, root, tmp_path / "one", 1)[0]
    two = _run(method, root, tmp_path / "two", 2)

    assert [r["world"] for r in two] == [2, 2] and one["world"] == 1
    # disjoint shards that together are the whole set
    seen = [{p for batch in r["positions"] for p in batch} for r in two]
    assert all(len(s) == CHIPS // 2 for s in seen)
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(CHIPS)) == set(one["positions"][0])

    # loss of the global batch = mean of the per-process losses
    assert len(one["losses"]) == 1 and all(len(r["losses"]) == 1 for r in two)
    mean = sum(r["losses"][0] for r in two) / 2
    assert mean == pytest.approx(one["losses"][0], rel=1e-5, abs=1e-6)

    # gradients of the global batch on every process
    ref = one["grads"]
    assert len(ref) > 10 and sum(float(g.abs().sum()) for g in ref.values()) > 0
    for r in two:
        assert r["grads"].keys() == ref.keys()
        for name, grad in ref.items():
            torch.testing.assert_close(r["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_device_node_and_strategy_flags_are_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--num-nodes and --strategy reach the Trainer: a value Lightning refuses is one line."""
    from geossl.cli import main

    root = tmp_path / "chips"
    make_chips(root, n=4, bands=3, size=16)
    base = ["pretrain", "--data", "chips", "--root", str(root), "--sensors", "s2",
            "--pairing", "aug", "--backbone", "test_resnet", "--img-size", "16",
            "--batch-size", "2", "--workers", "0", "--accelerator", "cpu", "--max-steps", "1"]
    assert main([*base, "--out", str(tmp_path / "a"), "--num-nodes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--num-nodes must be >= 1" in err
    assert main([*base, "--out", str(tmp_path / "b"), "--strategy", "no_such_strategy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--strategy no_such_strategy" in err, err
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_deepcluster_weighted_draw_is_one_draw_sharded_over_ranks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weighted sampler draws the same sequence on every rank; ranks take disjoint slices."""
    from collections import Counter

    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from geossl.data.datamodule import SSLDataModule

    class Chips(torch.utils.data.Dataset[dict[str, Any]]):
        def __len__(self) -> int:
            return 12

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"image": torch.full((2, 4, 4), float(i))}

    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    weights = torch.tensor([1.0, 2.0, 3.0] * 4)

    def draw() -> Any:
        dm = SSLDataModule(data="folder", root=tmp_path, sensors=["s2"], pairing="aug",
                           batch_size=2, dataset=Chips(), normalize=False)
        dm.setup()
        dm.set_sample_weights(weights)
        return dm.train_dataloader().sampler

    sampler = draw()
    sequence = list(sampler)
    assert sequence == list(draw())  # another process draws the same sequence
    shards = [list(DistributedSamplerWrapper(draw(), num_replicas=2, rank=r, shuffle=False))
              for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert Counter(shards[0] + shards[1]) == Counter(sequence)
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    assert list(draw()) != sequence  # seed (+ epoch) decide the draw
