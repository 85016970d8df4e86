"""Run ``geossl pretrain`` with its own flags plus a recorder of what each process did.

``python tests/ddp_pretrain_run.py RECORD_DIR pretrain --devices 2 --strategy ddp ...``
parses the flags with geossl's own parser and calls :func:`geossl.training.trainer.pretrain` (what
the
``geossl pretrain`` command calls) with one extra callback writing ``RECORD_DIR/rank<R>.pt``:
the training-set positions of every batch the process trained on, its loss per step and the
gradients of the first optimiser step (after DDP's all-reduce). Lightning's DDP launcher starts
the other processes by running this same script with the same arguments.
Used by ``tests/test_ddp_pretrain.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from geossl.cli import build_parser
from geossl.training.trainer import PretrainConfig, pretrain


class Recorder(Callback):  # type: ignore[misc]
    """Collect positions, losses, first-step gradients and step times of one process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.positions: list[list[int]] = []
        self.losses: list[float] = []
        self.grads: dict[str, torch.Tensor] = {}
        self.times: list[float] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        self.positions.append([int(i) for i in batch["index"]])
        self.times.append(time.perf_counter())

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if not self.grads:
            self.grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters()
                          if p.grad is not None}

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach()))
        self.times[-1] = time.perf_counter() - self.times[-1]

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save({"world": trainer.world_size, "positions": self.positions,
                    "losses": self.losses, "grads": self.grads, "step_s": self.times},
                   self.folder / f"rank{trainer.global_rank}.pt")


def main(argv: list[str]) -> int:
    """Parse ``RECORD_DIR pretrain FLAGS...`` and pretrain with the recorder."""
    torch.set_num_threads(1)
    parser, _ = build_parser()
    cfg = parser.parse_args(argv[1:])
    pretrain(PretrainConfig.from_namespace(cfg["pretrain"]), callbacks=[Recorder(Path(argv[0]))])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
