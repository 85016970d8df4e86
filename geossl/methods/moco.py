"""MoCo v2: momentum key encoder, queue of negative keys, InfoNCE (He et al.; Chen et al., 2020).

* The key encoder and projector are deep copies of the online ones (equal at start), receive no
  gradient and follow ``theta_k <- m theta_k + (1 - m) theta_q`` before every step.
* The queue is a ``(queue_size, proj_dim)`` buffer of L2-normalised keys; each step enqueues
  the (all-device) keys at ``queue_ptr`` and advances the pointer (``queue_size`` must be a
  multiple of the global number of keys per step).
* Shuffle-BN: under DDP the key batch is shuffled across devices before the key encoder and
  unshuffled after, so BatchNorm statistics cannot leak which key matches which query. On one
  device the whole batch would be one BN group (the positive key and its query normalised by the
  statistics of the very same samples, a leak no shuffle can undo), so there the BatchNorm layers
  of both encoders become :class:`~geossl.models.norm.SplitBatchNorm2d` with ``bn_splits``
  groups (default: up to 8 groups of at least 32 samples) and the keys are shuffled between the
  groups, as in the MoCo authors' single-GPU demo. ``sync_bn=True`` converts BatchNorm to
  SyncBatchNorm instead (several devices).
* ``geo`` pairing: queries from the first sensor's view, keys from the second's (with
  ``symmetric=True`` also the reverse, both key sets being enqueued).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from geossl.errors import ConfigError
from geossl.methods.base import SSLMethod
from geossl.methods.losses import gather_no_grad, moco_infonce
from geossl.methods.views import View
from geossl.models import ProjectionHead
from geossl.models.norm import auto_splits, convert_split_bn


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for every parameter."""
    for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
        p_t.mul_(momentum).add_(p_o.detach(), alpha=1 - momentum)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def batch_shuffle(view: View) -> tuple[View, Tensor | None]:
    """Shuffle a view across DDP ranks (MoCo's shuffle-BN); identity on one device."""
    if not _distributed():
        return view, None
    b = view.x.shape[0]
    x_all = gather_no_grad(view.x)
    n = x_all.shape[0]
    perm = torch.randperm(n, device=x_all.device)
    dist.broadcast(perm, src=0)
    unshuffle = torch.argsort(perm)
    mine = perm.view(-1, b)[dist.get_rank()]
    mask = None if view.sensor_mask is None else gather_no_grad(view.sensor_mask)[mine]
    return View(x_all[mine], view.sensor, mask), unshuffle


@torch.no_grad()
def batch_unshuffle(x: Tensor, unshuffle: Tensor | None) -> Tensor:
    """Undo :func:`batch_shuffle` on the key features."""
    if unshuffle is None:
        return x
    b = x.shape[0]
    return gather_no_grad(x)[unshuffle.view(-1, b)[dist.get_rank()]]


class MoCo(SSLMethod):
    """MoCo v2 over any pairing mode."""

    method_name: ClassVar[str] = "moco"

    def __init__(  # noqa: D417 - shared arguments documented in SSLMethod
        self,
        backbone: str = "resnet50",
        sensors: Sequence[str] = ("s2",),
        in_chans: dict[str, int] | None = None,
        pairing: str = "aug",
        adapter: str | None = None,
        adapter_out: int = 3,
        pretrained: str | None = None,
        img_size: int | None = None,
        optimizer: str = "sgd",
        lr: float = 0.03,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        base_batch_size: int = 256,
        warmup_steps: int | None = None,
        max_steps: int = -1,
        proj_dim: int = 128,
        proj_hidden: int = 2048,
        crop_size: int | None = None,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        same_crop: bool = False,
        augment: dict[str, Any] | None = None,
        sensor_augment: dict[str, dict[str, Any]] | None = None,
        sar_sensors: Sequence[str] = ("s1",),
        bands: dict[str, list[str]] | None = None,
        normalization: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        temperature: float = 0.2,
        momentum: float = 0.99,
        queue_size: int = 65536,
        symmetric: bool = False,
        shuffle_bn: bool = True,
        sync_bn: bool = False,
        proj_batch_norm: bool = False,
        bn_splits: int | None = None,
    ) -> None:
        """Configure MoCo v2.

        Args:
            temperature: InfoNCE temperature (0.2 in MoCo v2).
            momentum: key-encoder momentum (e.g. 0.9, 0.99, 0.999).
            queue_size: number of negative keys kept.
            symmetric: also use view 2 as query and view 1 as key.
            shuffle_bn: shuffle-BN: the key batch is shuffled across devices (DDP) or across
                the ``bn_splits`` BatchNorm groups (one device), see the module docstring.
            sync_bn: convert BatchNorm to SyncBatchNorm when training on several devices
                (instead of shuffle-BN).
            bn_splits: BatchNorm groups per batch for shuffle-BN on one device (``None``: up to
                8 groups of at least 32 samples; 1: plain BatchNorm, no shuffle).
            proj_batch_norm: BatchNorm in the projector (MoCo v3 style). MoCo v2 has none, but
                without it small batches learn slowly (all projections start nearly parallel).

        The other arguments are those of :class:`~geossl.methods.base.SSLMethod` (defaults: SGD,
        lr 0.03 per 256 samples, weight decay 1e-4, as in MoCo v2).
        """
        super().__init__(
            backbone=backbone,
            sensors=sensors,
            in_chans=in_chans,
            pairing=pairing,
            adapter=adapter,
            adapter_out=adapter_out,
            pretrained=pretrained,
            img_size=img_size,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            base_batch_size=base_batch_size,
            warmup_steps=warmup_steps,
            max_steps=max_steps,
            proj_dim=proj_dim,
            proj_hidden=proj_hidden,
            crop_size=crop_size,
            crop_scale=crop_scale,
            same_crop=same_crop,
            augment=augment,
            sensor_augment=sensor_augment,
            sar_sensors=sar_sensors,
            bands=bands,
            normalization=normalization,
            channels_last=channels_last,
            compile=compile,
        )
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        if queue_size < 1:
            raise ConfigError(f"queue_size must be positive, got {queue_size}")
        if bn_splits is not None and bn_splits < 1:
            raise ConfigError(f"bn_splits must be >= 1, got {bn_splits}")
        #: BatchNorm groups in use on one device (set in ``setup``; 1 = plain BatchNorm)
        self.bn_splits = 1
        self.temperature = temperature
        self.momentum = momentum
        self.symmetric = symmetric
        # MoCo v2 projector: 2-layer MLP (without BatchNorm unless proj_batch_norm)
        self.projector = ProjectionHead(self.encoder.num_features, proj_hidden, proj_dim,
                                        num_layers=2, batch_norm=proj_batch_norm)
        self.encoder_momentum = copy.deepcopy(self.encoder)
        self.projector_momentum = copy.deepcopy(self.projector)
        for p in [*self.encoder_momentum.parameters(), *self.projector_momentum.parameters()]:
            p.requires_grad_(False)
        queue = nn.functional.normalize(torch.randn(queue_size, proj_dim), dim=1)
        self.queue: Tensor
        self.queue_ptr: Tensor
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def keys_per_step(self) -> int:
        """Keys enqueued per optimiser step over all devices."""
        return self.global_batch_size() * (2 if self.symmetric else 1)

    def check_queue(self) -> None:
        """The queue must hold a whole number of steps' keys.

        Raises:
            ConfigError: if ``queue_size`` is not a multiple of the keys per step.
        """
        k, n = self.queue.shape[0], self.keys_per_step()
        if k % n != 0:
            raise ConfigError(
                f"MoCo queue_size {k} is not a multiple of the {n} keys enqueued per step "
                f"(global batch{' x 2 (symmetric)' if self.symmetric else ''}); "
                f"use e.g. {max(n, (k // n) * n)}"
            )

    def setup(self, stage: str) -> None:
        """SyncBatchNorm (several devices, ``sync_bn``) or split BatchNorm (one device)."""
        trainer = getattr(self, "_trainer", None)
        world = int(trainer.world_size) if trainer is not None else 1
        if self.hparams["sync_bn"] and world > 1:  # before DDP wraps the module
            self.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(self.encoder)
            self.encoder_momentum = nn.SyncBatchNorm.convert_sync_batchnorm(
                self.encoder_momentum)
        elif self.hparams["shuffle_bn"] and world == 1:
            splits = self.hparams.get("bn_splits")
            self.set_bn_splits(auto_splits(int(self.hparams["batch_size"]))
                               if splits is None else int(splits))

    def set_bn_splits(self, splits: int) -> None:
        """Use ``splits`` BatchNorm groups in both encoders (1: plain BatchNorm)."""
        convert_split_bn(self.encoder, splits)
        convert_split_bn(self.encoder_momentum, splits)
        self.bn_splits = max(1, int(splits))

    def on_fit_start(self) -> None:
        """Check the queue size against the global batch."""
        super().on_fit_start()
        self.check_queue()

    @torch.no_grad()
    def momentum_update(self) -> None:
        """Move the key encoder and projector towards the online ones."""
        momentum_update(self.encoder, self.encoder_momentum, self.momentum)
        momentum_update(self.projector, self.projector_momentum, self.momentum)

    @torch.no_grad()
    def keys(self, view: View) -> Tensor:
        """L2-normalised keys of a view from the momentum encoder, with shuffle-BN.

        Under DDP the keys are shuffled across devices; on one device with split BatchNorm
        (``bn_splits > 1``) across the BN groups. The permutation is drawn on the device and
        undone after the encoder: no host synchronisation.
        """
        shuffle = self.hparams["shuffle_bn"] and not self.hparams["sync_bn"]
        if shuffle and _distributed():
            view, unshuffle = batch_shuffle(view)
            k = self.projector_momentum(self.encode(view, self.encoder_momentum))
            k = batch_unshuffle(k, unshuffle)
        elif shuffle and self.bn_splits > 1:
            perm = torch.randperm(view.x.shape[0], device=view.x.device)
            mask = None if view.sensor_mask is None else view.sensor_mask[perm]
            k = self.projector_momentum(
                self.encode(View(view.x[perm], view.sensor, mask), self.encoder_momentum))
            k = k[torch.argsort(perm)]
        else:
            k = self.projector_momentum(self.encode(view, self.encoder_momentum))
        return nn.functional.normalize(k.float(), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (gathered over devices) at the queue pointer and advance it.

        Everything stays on the device: the pointer is a tensor and the slots are computed from
        it with tensor arithmetic, so no value is read back to the host (a ``.item()`` here
        would synchronise the GPU every step).
        """
        keys = gather_no_grad(keys.detach().float())
        n, size = keys.shape[0], self.queue.shape[0]
        if n > size:  # only the newest ``size`` keys fit
            keys, n = keys[-size:], size
        idx = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % size
        self.queue.index_copy_(0, idx, keys.to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """InfoNCE of queries (view 1) against keys (view 2) and the queue.

        Also returns, as device tensors (Lightning reads them back only when it writes a log
        line, never per step), the mean cosine similarity of the queries with their positive
        key (``pos_sim``) and with the queue (``neg_sim``).
        """
        self.momentum_update()
        queue = self.queue.clone().detach()
        q1 = self.projector(self.encode(view1))
        k2 = self.keys(view2)
        loss = moco_infonce(q1, k2, queue, self.temperature)
        new_keys = [k2]
        if self.symmetric:
            q2 = self.projector(self.encode(view2))
            k1 = self.keys(view1)
            loss = (loss + moco_infonce(q2, k1, queue, self.temperature)) / 2
            new_keys.append(k1)
        with torch.no_grad():
            q = nn.functional.normalize(q1.detach().float(), dim=1)
            logs = {"pos_sim": (q * k2).sum(dim=1).mean(), "neg_sim": (q @ queue.T).mean()}
        self.enqueue(torch.cat(new_keys))
        return loss, logs
