"""Tiny in-memory data for method tests (shared by tests/test_methods.py and tests/test_ddp.py)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from torch.utils.data import DataLoader, Dataset


class TinyPairs(Dataset[dict[str, Any]]):
    """``n`` co-registered S1 (2 bands) / S2 (13 bands) patches, each a smooth random pattern.

    S1 is a fixed linear mix of S2 plus noise, so the two sensors share content (a learnable
    geo pairing); ``image_s2_t2`` is S2 with fresh noise (a second date).
    """

    def __init__(self, n: int = 32, size: int = 32, seed: int = 0,
                 protos: int | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        # each sample its own pattern, or ``protos`` shared patterns (clusterable data)
        proto = torch.randn(protos or n, 13, size // 8, size // 8, generator=g)
        proto = proto[torch.arange(n) % len(proto)]
        s2 = torch.nn.functional.interpolate(proto, size=(size, size), mode="bilinear")
        s2 = s2 + 0.3 * torch.randn(n, 13, size, size, generator=g)
        mix = torch.randn(2, 13, generator=g) / 13**0.5
        s1 = torch.einsum("oc,nchw->nohw", mix, s2) + 0.1 * torch.randn(n, 2, size, size,
                                                                           generator=g)
        self.s1, self.s2 = s1, s2
        self.t2 = s2 + 0.1 * torch.randn(n, 13, size, size, generator=g)

    def __len__(self) -> int:
        return len(self.s2)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image_s1": self.s1[i], "image_s2": self.s2[i], "image_s2_t2": self.t2[i],
                "index": i}


class TinyDataModule(LightningDataModule):
    def __init__(self, n: int = 32, batch_size: int = 16, protos: int | None = None) -> None:
        super().__init__()
        self.ds = TinyPairs(n, protos=protos)
        self.batch_size = batch_size
        self.weights: torch.Tensor | None = None

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        return DataLoader(self.ds, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def cluster_dataloader(self) -> DataLoader[dict[str, Any]]:
        return DataLoader(self.ds, batch_size=self.batch_size, shuffle=False)

    def set_sample_weights(self, weights: torch.Tensor) -> None:
        self.weights = weights


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def fit(module: Any, steps: int, dm: LightningDataModule | None = None,
        **trainer_kwargs: Any) -> list[float]:
    rec = LossRecorder()
    trainer = Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
                      callbacks=[rec], **trainer_kwargs)
    trainer.fit(module, datamodule=dm or TinyDataModule())
    module._test_trainer = trainer
    return rec.losses
