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

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from geossl.core.errors import ConfigError
from geossl.methods.base import SSLMethod
from geossl.methods.byol import check_momentum
from geossl.methods.losses import distributed, gather_no_grad, moco_infonce
from geossl.methods.metrics import queue_top1
from geossl.methods.specs import MethodOptions, OptimSpec
from geossl.methods.views import View
from geossl.models import Encoder, ProjectionHead
from geossl.models.norm import auto_splits, convert_split_bn


@torch.no_grad()
def batch_shuffle(view: View) -> tuple[View, Tensor | None]:
    """Shuffle a view across DDP ranks (MoCo's shuffle-BN); identity on one device."""
    if not distributed():
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


@dataclasses.dataclass(frozen=True)
class MoCoOptions(MethodOptions):
    """MoCo's own options.

    Attributes:
        temperature: InfoNCE temperature (0.2 in MoCo v2).
        momentum: key-encoder momentum (e.g. 0.9, 0.99, 0.999).
        queue_size: number of negative keys kept.
        symmetric: also use view 2 as query and view 1 as key.
        shuffle_bn: shuffle-BN: the key batch is shuffled across devices (DDP) or across the
            ``bn_splits`` BatchNorm groups (one device), see the module docstring.
        sync_bn: convert BatchNorm to SyncBatchNorm when training on several devices (instead
            of shuffle-BN).
        proj_batch_norm: BatchNorm in the projector (MoCo v3 style). MoCo v2 has none, but
            without it small batches learn slowly (all projections start nearly parallel).
        bn_splits: BatchNorm groups per batch for shuffle-BN on one device (``None``: up to 8
            groups of at least 32 samples; 1: plain BatchNorm, no shuffle).
        proj_dim: projection size.
        proj_hidden: projector hidden width.
    """

    temperature: float = 0.2
    momentum: float = 0.99
    queue_size: int = 65536
    symmetric: bool = False
    shuffle_bn: bool = True
    sync_bn: bool = False
    proj_batch_norm: bool = False
    bn_splits: int | None = None
    proj_dim: int = 128
    proj_hidden: int = 2048

    def __post_init__(self) -> None:
        """Check the momentum, queue size and BatchNorm groups."""
        check_momentum(self.momentum)
        if self.queue_size < 1:
            raise ConfigError(f"queue_size must be positive, got {self.queue_size}")
        if self.bn_splits is not None and self.bn_splits < 1:
            raise ConfigError(f"bn_splits must be >= 1, got {self.bn_splits}")


class MoCo(SSLMethod[MoCoOptions]):
    """MoCo v2 over any pairing mode.

    Optimiser defaults: SGD, lr 0.03 per 256 samples, weight decay 1e-4, as in MoCo v2.
    """

    method_name = "moco"
    options_type = MoCoOptions
    default_optim = OptimSpec(optimizer="sgd", lr=0.03, weight_decay=1e-4)
    momentum_pairs = (
        ("encoder", "encoder_momentum"), ("projector", "projector_momentum"))
    encoder_momentum: Encoder
    projector_momentum: ProjectionHead
    queue: Tensor
    queue_ptr: Tensor

    def build_heads(self) -> None:
        """The projector and the queue; the key copies follow from ``momentum_pairs``.

        MoCo v2's projector is a 2-layer MLP (BatchNorm only with ``proj_batch_norm``); the
        queue starts as L2-normalised random keys.
        """
        o = self.options
        #: BatchNorm groups in use on one device (set in ``setup``; 1 = plain BatchNorm)
        self.bn_splits = 1
        self.projector = ProjectionHead(self.encoder.num_features, o.proj_hidden, o.proj_dim,
                                        num_layers=2, batch_norm=o.proj_batch_norm)
        queue = nn.functional.normalize(torch.randn(o.queue_size, o.proj_dim), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def keys_per_step(self) -> int:
        """Keys enqueued per optimiser step over all devices."""
        return self.global_batch_size() * (2 if self.options.symmetric else 1)

    def check_queue(self) -> None:
        """The queue must hold a whole number of steps' keys.

        Raises:
            ConfigError: if ``queue_size`` is not a multiple of the keys per step.
        """
        k, n = self.queue.shape[0], self.keys_per_step()
        if k % n != 0:
            raise ConfigError(
                f"MoCo queue_size {k} is not a multiple of the {n} keys enqueued per step "
                f"(global batch{' x 2 (symmetric)' if self.options.symmetric else ''}); "
                f"use e.g. {max(n, (k // n) * n)}"
            )

    def setup(self, stage: str) -> None:
        """SyncBatchNorm (several devices, ``sync_bn``) or split BatchNorm (one device)."""
        trainer = getattr(self, "_trainer", None)
        world = int(trainer.world_size) if trainer is not None else 1
        o = self.options
        if o.sync_bn and world > 1:  # before DDP wraps the module
            self.encoder = nn.SyncBatchNorm.convert_sync_batchnorm(self.encoder)
            self.encoder_momentum = nn.SyncBatchNorm.convert_sync_batchnorm(
                self.encoder_momentum)
        elif o.shuffle_bn and world == 1:
            splits = o.bn_splits
            self.set_bn_splits(auto_splits(self.optim_spec.batch_size)
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
        self.ema_update(self.options.momentum)

    @torch.no_grad()
    def keys(self, view: View) -> Tensor:
        """L2-normalised keys of a view from the momentum encoder, with shuffle-BN.

        Under DDP the keys are shuffled across devices; on one device with split BatchNorm
        (``bn_splits > 1``) across the BN groups. The permutation is drawn on the device and
        undone after the encoder: no host synchronisation.
        """
        shuffle = self.options.shuffle_bn and not self.options.sync_bn
        if shuffle and distributed():
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
        key (``pos_sim``) and with the queue (``neg_sim``), and the share of queries closer to
        their key than to every queued key (``contrastive_acc``).
        """
        self.momentum_update()
        queue = self.queue.clone().detach()
        q1 = self.projector(self.encode(view1))
        k2 = self.keys(view2)
        temperature = self.options.temperature
        loss = moco_infonce(q1, k2, queue, temperature)
        new_keys = [k2]
        if self.options.symmetric:
            q2 = self.projector(self.encode(view2))
            k1 = self.keys(view1)
            loss = (loss + moco_infonce(q2, k1, queue, temperature)) / 2
            new_keys.append(k1)
        with torch.no_grad():
            q = nn.functional.normalize(q1.detach().float(), dim=1)
            logs = {"pos_sim": (q * k2).sum(dim=1).mean(), "neg_sim": (q @ queue.T).mean(),
                    "contrastive_acc": queue_top1(q, k2, queue)}
        self.enqueue(torch.cat(new_keys))
        return loss, logs
