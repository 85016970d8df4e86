"""DeepCluster: k-means pseudo-labels on the network's own features (Caron et al., 2018).

Before the first epoch and after every epoch (so that the labels and the sampling weights are in
place when Lightning reloads the training loader for the next epoch):

1. features of the whole training set are extracted with the encoder in eval mode from the data
   module's ``cluster_dataloader()`` (no augmentation, no shuffle; batches carry ``index``);
2. PCA-whitened to ``pca_dim`` dimensions and L2-normalised (:func:`pca_whiten`);
3. clustered by k-means (:func:`kmeans`, in torch on the training device), empty clusters being
   re-seeded by splitting a non-empty one (:func:`reassign_empty_clusters`, as in the paper);
4. the pseudo-labels are stored (and checkpointed), the data module is asked to sample uniformly
   over pseudo-labels (``datamodule.set_sample_weights(1 / cluster size)``; the Trainer must use
   ``reload_dataloaders_every_n_epochs=1``, which ``geossl pretrain`` sets), and the classifier
   head is re-initialised (with its optimiser state cleared).

k-means is written in torch rather than taken from scikit-learn because the features live on the
GPU (no host copy of the whole feature matrix per epoch) and because scikit-learn relocates
empty clusters itself, in its own way, where DeepCluster prescribes the split above.
Training batches carry ``index`` (the sample's position in the training set), which looks up
the pseudo-label. Under DDP the labels are computed on rank 0 and broadcast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from geossl.core.errors import ConfigError
from geossl.core.pairing import image_key
from geossl.methods.base import SSLMethod
from geossl.methods.losses import deepcluster_loss, distributed
from geossl.methods.specs import MethodOptions, OptimSpec
from geossl.methods.views import View
from geossl.models import ClusterHead


def pca_whiten(x: Tensor, dim: int, eps: float = 1e-5) -> Tensor:
    """Project on the top ``dim`` principal components, whiten, and L2-normalise.

    Args:
        x: ``(N, D)`` features.
        dim: output dimension (capped at ``min(N - 1, D)``).
        eps: added to the variances before whitening.

    Returns:
        ``(N, dim')`` unit-norm rows.
    """
    x = x.double()
    x = x - x.mean(dim=0, keepdim=True)
    dim = max(1, min(dim, x.shape[1], max(1, x.shape[0] - 1)))
    cov = x.T @ x / max(1, x.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:dim]
    proj = evecs[:, order] / torch.sqrt(evals[order].clamp(min=0) + eps)
    return F.normalize((x @ proj).float(), dim=1)


def _assign(x: Tensor, centroids: Tensor) -> Tensor:
    d = (centroids * centroids).sum(1)[None, :] - 2 * x @ centroids.T
    return d.argmin(dim=1)


def reassign_empty_clusters(
    x: Tensor,
    centroids: Tensor,
    assign: Tensor,
    generator: torch.Generator | None = None,
    eps: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Re-seed every empty cluster by splitting a non-empty one (DeepCluster / faiss).

    For an empty cluster ``j``: pick a cluster ``c`` with more than one point (probability
    proportional to its size), set ``centroid_j = centroid_c + e`` and ``centroid_c -= e`` for a
    small random ``e``, and split ``c``'s points between the two by distance.

    Args:
        x: ``(N, D)`` points.
        centroids: ``(K, D)`` centroids.
        assign: ``(N,)`` cluster of each point.
        generator: random generator (on ``x``'s device) for reproducibility.
        eps: perturbation scale.

    Returns:
        new ``(centroids, assign)``; no cluster is empty if ``N >= K``.
    """
    centroids, assign = centroids.clone(), assign.clone()
    k = centroids.shape[0]
    for j in range(k):
        counts = torch.bincount(assign, minlength=k)
        if counts[j] > 0:
            continue
        big = (counts > 1).float() * counts.float()
        if big.sum() == 0:
            break
        c = int(torch.multinomial(big / big.sum(), 1, generator=generator).item())
        noise = torch.randn(centroids.shape[1], generator=generator, device=x.device,
                            dtype=centroids.dtype) * eps
        centroids[j] = centroids[c] + noise
        centroids[c] = centroids[c] - noise
        members = torch.nonzero(assign == c).flatten()
        pair = centroids[[c, j]]
        side = _assign(x[members], pair)
        if bool((side == 0).all()) or bool((side == 1).all()):
            # a degenerate split (identical points): move half of them
            side = torch.zeros_like(side)
            side[: len(members) // 2] = 1
        assign[members[side == 1]] = j
    return centroids, assign


def kmeans(
    x: Tensor, k: int, iters: int = 20, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Lloyd k-means with empty-cluster re-seeding.

    Args:
        x: ``(N, D)`` points (``N >= k``).
        k: number of clusters.
        iters: Lloyd iterations.
        seed: seed of the initialisation and re-seeding.

    Returns:
        ``(assign (N,), centroids (k, D))``.
    """
    n = x.shape[0]
    if n < k:
        raise ConfigError(f"cannot make {k} clusters of {n} samples; lower num_clusters")
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    init = torch.randperm(n, generator=gen, device=x.device)[:k]
    centroids = x[init].clone()
    assign = _assign(x, centroids)
    for _ in range(iters):
        centroids, assign = reassign_empty_clusters(x, centroids, assign, gen)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).clamp(min=1).to(x.dtype)
        centroids = sums / counts[:, None]
        new = _assign(x, centroids)
        if torch.equal(new, assign):
            break
        assign = new
    centroids, assign = reassign_empty_clusters(x, centroids, assign, gen)
    return assign, centroids


def uniform_label_weights(labels: Tensor) -> Tensor:
    """Per-sample weights ``1 / |cluster|``: sampling uniform over pseudo-labels."""
    counts = torch.bincount(labels)
    return 1.0 / counts[labels].double()


@dataclasses.dataclass(frozen=True)
class DeepClusterOptions(MethodOptions):
    """DeepCluster's own options.

    Attributes:
        num_clusters: k of k-means (capped at the number of training samples).
        pca_dim: PCA dimensions before k-means (256 in the paper).
        kmeans_iters: Lloyd iterations per clustering.
        cluster_seed: seed of the k-means initialisation (plus the epoch).
    """

    num_clusters: int = 100
    pca_dim: int = 256
    kmeans_iters: int = 20
    cluster_seed: int = 0

    def __post_init__(self) -> None:
        """Check the number of clusters."""
        if self.num_clusters < 2:
            raise ConfigError(f"num_clusters must be >= 2, got {self.num_clusters}")


class DeepCluster(SSLMethod[DeepClusterOptions]):
    """DeepCluster on single-sensor (``aug``) or stacked (``fusion``) input.

    Optimiser defaults: SGD, lr 0.05 per 256 samples, weight decay 1e-5, as in DeepCluster.
    """

    method_name = "deepcluster"
    pairings = ("aug", "fusion")
    pairing_note = (
        "DeepCluster clusters one image per sample, so it takes a single sensor ('aug') or "
        "stacked sensors ('fusion')")
    options_type = DeepClusterOptions
    default_optim = OptimSpec(optimizer="sgd", lr=0.05, weight_decay=1e-5)
    #: projector options of the other methods, saved by older DeepCluster checkpoints (unused)
    ignored_options = ("proj_dim", "proj_hidden")
    #: new pseudo-labels every epoch come with new sampling weights: a new training loader
    reload_dataloaders_every_epoch = True
    #: pseudo-label of every training sample (by ``index``), once clustered
    pseudo_labels: Tensor | None

    def build_heads(self) -> None:
        """The cluster classifier, and no pseudo-labels yet."""
        self.head = ClusterHead(self.encoder.num_features, self.options.num_clusters)
        self.pseudo_labels = None
        self.clusters_used = 0
        self.clusterings = 0

    # -- clustering ---------------------------------------------------------------------------
    def _features_input(self, batch: Mapping[str, Any]) -> tuple[Any, Tensor | None]:
        dev = self.device
        size = self.crop_size
        images: dict[str, Tensor] = {}
        for s in self.sensors:
            x = batch[image_key(s)].to(dev, non_blocking=True).float()
            if size is not None and x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=True)
            images[s] = x
        mask = batch.get("sensor_mask")
        mask = mask.to(dev).float() if isinstance(mask, Tensor) else None
        if self.pairing == "aug":
            return images[self.sensors[0]], None
        return images, mask

    @torch.no_grad()
    def extract_features(self, loader: Any) -> Tensor:
        """Encoder features of every sample of ``loader``, in ``index`` order (eval mode)."""
        from geossl.core.progress import progress

        was_training = self.encoder.training
        self.encoder.eval()
        feats: Tensor | None = None
        seen = 0
        try:
            for batch in progress(loader, desc="deepcluster: features",
                              disable=not self._is_rank_zero()):
                x, mask = self._features_input(batch)
                f = self.encoder(x, sensor_mask=mask).float()
                idx = torch.as_tensor(batch["index"], device=f.device).long()
                if feats is None:
                    n = len(loader.dataset)
                    feats = torch.zeros(n, f.shape[1], device=f.device)
                feats[idx] = f
                seen += len(idx)
        finally:
            self.encoder.train(was_training)
        if feats is None:
            raise ConfigError("the cluster loader gave no samples")
        return feats

    def _is_rank_zero(self) -> bool:
        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0

    def cluster(self) -> Tensor:
        """Extract features, PCA-whiten, k-means; set labels, sample weights, reset the head."""
        trainer = self._trainer
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        if dm is None or not hasattr(dm, "cluster_dataloader"):
            raise ConfigError("DeepCluster needs a data module with cluster_dataloader()")
        feats = self.extract_features(dm.cluster_dataloader())
        o = self.options
        k = min(o.num_clusters, feats.shape[0])
        labels = kmeans(pca_whiten(feats, o.pca_dim), k, o.kmeans_iters,
                        o.cluster_seed + self.clusterings)[0]
        if distributed():
            dist.broadcast(labels, src=0)
        self.set_pseudo_labels(labels)
        if hasattr(dm, "set_sample_weights"):
            dm.set_sample_weights(uniform_label_weights(labels).cpu())
        self.reset_head()
        self.clusterings += 1
        return labels

    def set_pseudo_labels(self, labels: Tensor) -> None:
        """Store the pseudo-label of every training sample (by ``index``)."""
        self.pseudo_labels = labels.long().to(self.device)
        self.clusters_used = int(torch.unique(self.pseudo_labels).numel())

    def reset_head(self) -> None:
        """Re-initialise the classifier and drop its optimiser state (momentum buffers)."""
        self.head.reset_parameters()
        trainer = getattr(self, "_trainer", None)
        for opt in getattr(trainer, "optimizers", []) if trainer is not None else []:
            for p in self.head.parameters():
                opt.state.pop(p, None)

    def on_train_start(self) -> None:
        """Cluster once before the first epoch (unless labels were restored)."""
        if self.pseudo_labels is None:
            self.cluster()

    def on_train_epoch_end(self) -> None:
        """Re-cluster for the next epoch (before its loader is rebuilt)."""
        trainer = self._trainer
        if trainer is None or trainer.should_stop:
            return
        max_steps = int(getattr(trainer, "max_steps", -1) or -1)
        if max_steps > 0 and trainer.global_step >= max_steps:
            return
        max_epochs = getattr(trainer, "max_epochs", None)
        if max_epochs is not None and max_epochs > 0 and self.current_epoch + 1 >= max_epochs:
            return
        self.cluster()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the pseudo-labels in the checkpoint (a resumed run continues with them)."""
        super().on_save_checkpoint(checkpoint)
        if self.pseudo_labels is not None:
            checkpoint["deepcluster"] = {"labels": self.pseudo_labels.cpu(),
                                         "clusterings": self.clusterings}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the pseudo-labels."""
        state = checkpoint.get("deepcluster")
        if state is not None:
            self.pseudo_labels = state["labels"].long()
            self.clusters_used = int(torch.unique(self.pseudo_labels).numel())
            self.clusterings = int(state.get("clusterings", 0))

    # -- training -----------------------------------------------------------------------------
    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy of both augmented views against the samples' pseudo-labels."""
        if self.pseudo_labels is None:
            raise ConfigError("DeepCluster has no pseudo-labels yet (cluster() was not run)")
        device = view1.x.device
        if self.pseudo_labels.device != device:  # restored from a checkpoint: move them once
            self.pseudo_labels = self.pseudo_labels.to(device)
        idx = torch.as_tensor(batch["index"], device=device).long()
        labels = self.pseudo_labels[idx]
        h1, h2 = self.encode_pair(view1, view2)
        logits = self.head(torch.cat([h1, h2]))
        loss = deepcluster_loss(logits, torch.cat([labels, labels]))
        acc = (logits.argmax(1) == torch.cat([labels, labels])).float().mean()
        # counted once per clustering: torch.unique here would synchronise every step
        return loss, {"cluster_acc": acc, "clusters_used": torch.tensor(float(self.clusters_used))}
