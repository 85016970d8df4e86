"""SSL methods: learning on a small problem, MoCo queue/momentum, BYOL target, DeepCluster,
optimisers, views and checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from timm.optim import Lamb, Lars

from geossl.core.errors import ConfigError, DataError
from geossl.core.pairing import sample_sensor_mask
from geossl.methods import (
    BYOL,
    METHODS,
    VALID_PAIRINGS,
    DeepCluster,
    MoCo,
    SimCLR,
    check_method_pairing,
    load_encoder,
)
from geossl.methods.augment import build_augments
from geossl.methods.byol import cosine_momentum
from geossl.methods.deepcluster import (
    kmeans,
    pca_whiten,
    reassign_empty_clusters,
    uniform_label_weights,
)
from geossl.methods.optim import build_optimizer, param_groups, warmup_cosine
from geossl.methods.views import make_views
from tests._ssl_helpers import TinyDataModule, TinyPairs, fit

CHANS = {"s1": 2, "s2": 13}
#: timm's ``test_resnet`` (0.4 M parameters, BatchNorm) on 16 px views: a learnable problem in a
#: few CPU seconds; the ``slow`` variants of the learning tests use resnet10t on 32 px views
TINY: dict[str, Any] = {
    "backbone": "test_resnet", "in_chans": CHANS, "batch_size": 16, "base_batch_size": 16,
    "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0,
    "proj_hidden": 64, "proj_dim": 32, "augment": {"blur_p": 0.0}, "crop_scale": (0.5, 1.0),
    "crop_size": 16,
}
#: mild augmentation (crop, flips and 90-degree rotations only) for the fast learning tests
EASY: dict[str, Any] = {
    "crop_scale": (0.8, 1.0),
    "augment": {"blur_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0, "speckle_p": 0.0},
}
#: the original, longer learning problem: resnet10t, 32 px views, default augmentation
SLOW: dict[str, Any] = {"backbone": "resnet10t", "crop_size": None}
SETTINGS = ["fast", pytest.param("slow", marks=pytest.mark.slow)]


def _tiny(cls: type, pairing: str = "aug", **kwargs: Any) -> Any:
    sensors = ["s1", "s2"] if pairing in ("geo", "fusion", "partial-fusion") else ["s2"]
    return cls.from_hparams({"sensors": sensors, "pairing": pairing, **TINY, **kwargs})


def _falls(losses: list[float], head: slice, tail: int = 6, margin: float = 0.9) -> float:
    first, last = float(np.mean(losses[head])), float(np.mean(losses[-tail:]))
    assert last < margin * first, f"loss did not fall: {first:.3f} -> {last:.3f} ({losses})"
    return last


# ---------------------------------------------------------------------------------------------
# the loss falls on a small learnable problem
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting", SETTINGS)
def test_simclr_geo_learns(setting: str) -> None:
    torch.manual_seed(0)
    # S1 and S2 views of the same place through their own stems must meet in one embedding
    kwargs = SLOW if setting == "slow" else {"lr": 1e-2, "same_crop": True, **EASY}
    steps = 30 if setting == "slow" else 60
    last = _falls(fit(_tiny(SimCLR, "geo", max_steps=steps, **kwargs), steps), slice(0, 5))
    if setting == "fast":
        # below chance, log(2B - 1) = 3.43: the positive is found, not a collapse to uniform
        assert last < np.log(2 * 16 - 1) - 0.2, last


@pytest.mark.parametrize("setting", SETTINGS)
def test_moco_learns(setting: str) -> None:
    torch.manual_seed(0)
    # queue = 2 batches, so negatives are other instances; BN projector (MoCo v3 style) and
    # mild augmentation because 30 steps are short for the MoCo v2 head
    if setting == "slow":
        module = _tiny(MoCo, "aug", max_steps=30, queue_size=32, momentum=0.9, lr=2e-3,
                       proj_batch_norm=True, crop_scale=(0.6, 1.0),
                       augment={"blur_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0}, **SLOW)
        losses = fit(module, 30, TinyDataModule(n=256))
    else:
        module = _tiny(MoCo, "aug", max_steps=30, queue_size=32, momentum=0.9, lr=1e-2,
                       proj_batch_norm=True, **EASY)
        losses = fit(module, 30, TinyDataModule(n=64))
    last = _falls(losses, slice(2, 8))  # once the random initial queue is replaced
    assert last < np.log(1 + 32), last  # below chance over the positive and 32 negatives


def _mean_pairwise_cosine(module: Any) -> float:
    """Mean cosine similarity between the projections of different samples (1: collapse)."""
    x = TinyPairs(16, seed=1).s2[:, :, 8:24, 8:24]
    module.eval()
    with torch.no_grad():
        z = torch.nn.functional.normalize(module.projector(module.encoder(x)), dim=1)
    sim = z @ z.T
    return float((sim.sum() - sim.diagonal().sum()) / (16 * 15))


@pytest.mark.parametrize("setting", SETTINGS)
def test_byol_learns(setting: str) -> None:
    torch.manual_seed(0)
    kwargs = SLOW if setting == "slow" else EASY
    module = _tiny(BYOL, "aug", max_steps=30, pred_hidden=64, momentum=0.9, **kwargs)
    _falls(fit(module, 30), slice(0, 5))
    # BYOL's loss also falls when every sample maps to one point: it must not have collapsed
    assert _mean_pairwise_cosine(module) < 0.9


@pytest.mark.parametrize("setting", SETTINGS)
def test_deepcluster_learns_and_clusters(setting: str) -> None:
    torch.manual_seed(0)
    kwargs = SLOW if setting == "slow" else {"lr": 1e-2, **EASY}
    module = _tiny(DeepCluster, "aug", max_steps=16, num_clusters=8, pca_dim=16, **kwargs)
    dm = TinyDataModule(n=256, protos=8)
    losses = fit(module, 16, dm)
    _falls(losses, slice(0, 4), tail=4)
    assert module.pseudo_labels is not None and module.pseudo_labels.shape == (256,)
    assert dm.weights is not None  # sampling uniform over pseudo-labels
    labels = module.pseudo_labels.cpu()
    counts = torch.bincount(labels)[labels].double()
    torch.testing.assert_close(dm.weights.double() * counts, torch.ones(256, dtype=torch.double))
    # re-clustering resets the classifier head
    before = module.head.fc.weight.detach().clone()
    module.cluster()
    assert not torch.equal(before, module.head.fc.weight)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_valid_pairing_runs_a_step(method: str) -> None:
    for pairing in VALID_PAIRINGS[method]:
        extra: dict[str, Any] = {"max_steps": 1}
        if method == "moco":
            extra["queue_size"] = 32
        if method == "deepcluster":
            extra.update(num_clusters=4, pca_dim=8)
        if method == "byol":
            extra["pred_hidden"] = 32
        if method == "mae":  # a ViT trunk and a decoder, no projector
            module = METHODS[method].from_hparams({
                "sensors": ["s2"], "pairing": pairing, "in_chans": CHANS, "max_steps": 1,
                "backbone": "vit_tiny_patch8", "crop_size": 16, "batch_size": 16,
                "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2})
        else:
            module = _tiny(METHODS[method], pairing, **extra)
        losses = fit(module, 1, TinyDataModule(n=32, batch_size=8))
        assert len(losses) == 1 and np.isfinite(losses[0])


def test_invalid_pairing_refused() -> None:
    with pytest.raises(ConfigError, match="DeepCluster clusters one image"):
        check_method_pairing("deepcluster", "geo")
    with pytest.raises(ConfigError, match="unknown method"):
        check_method_pairing("swav", "aug")
    with pytest.raises(ConfigError, match="unknown pairing"):
        check_method_pairing("simclr", "stereo")
    check_method_pairing("moco", "partial-fusion")
    with pytest.raises(ConfigError, match="does not support pairing"):
        _tiny(DeepCluster, "temporal")
    with pytest.raises(ConfigError, match="needs 2 sensors"):
        SimCLR.from_hparams({"sensors": ["s2"], "pairing": "geo", "in_chans": CHANS})


# ---------------------------------------------------------------------------------------------
# MoCo
# ---------------------------------------------------------------------------------------------
def test_moco_key_encoder_starts_equal_and_frozen() -> None:
    m = _tiny(MoCo, "geo", queue_size=32)
    for a, b in zip(m.encoder.state_dict().values(), m.encoder_momentum.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(m.projector.parameters(), m.projector_momentum.parameters()):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in m.encoder_momentum.parameters())
    assert not any(p.requires_grad for p in m.projector_momentum.parameters())


def test_moco_momentum_update_exact() -> None:
    m = _tiny(MoCo, "aug", queue_size=32, momentum=0.9)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in m.encoder.parameters()]
    old = [p.detach().clone() for p in m.encoder_momentum.parameters()]
    m.momentum_update()
    for q, k0, k in zip(online, old, m.encoder_momentum.parameters()):
        torch.testing.assert_close(k, 0.9 * k0 + 0.1 * q)


def test_moco_queue_enqueue_and_pointer() -> None:
    m = _tiny(MoCo, "aug", queue_size=8, proj_dim=4)
    k1 = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)
    k2 = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)
    untouched = m.queue[4:].clone()
    m.enqueue(k1)
    assert int(m.queue_ptr) == 4
    torch.testing.assert_close(m.queue[:4], k1)
    torch.testing.assert_close(m.queue[4:], untouched)
    m.enqueue(k2)
    assert int(m.queue_ptr) == 0
    torch.testing.assert_close(m.queue[4:], k2)
    m.enqueue(k2)
    torch.testing.assert_close(m.queue[:4], k2)  # oldest keys replaced first


def test_moco_queue_size_check() -> None:
    m = _tiny(MoCo, "aug", queue_size=20)  # batch 16
    with pytest.raises(ConfigError, match="not a multiple"):
        m.check_queue()
    _tiny(MoCo, "aug", queue_size=32).check_queue()
    with pytest.raises(ConfigError, match="not a multiple"):
        _tiny(MoCo, "aug", queue_size=48, symmetric=True).check_queue()


def test_moco_defaults_and_momentum_configurable() -> None:
    m = MoCo.from_hparams({"sensors": ["s1", "s2"], "pairing": "geo", "in_chans": CHANS,
                           "backbone": "test_resnet", "proj_hidden": 32, "queue_size": 64})
    # MoCo v2 temperature, the seeds' 0.99
    assert m.options.temperature == 0.2 and m.options.momentum == 0.99
    assert m.hparams["shuffle_bn"] and not m.hparams["sync_bn"]
    assert _tiny(MoCo, "aug", queue_size=32, momentum=0.9).options.momentum == 0.9
    with pytest.raises(ConfigError, match="momentum"):
        _tiny(MoCo, "aug", queue_size=32, momentum=1.0)


def test_moco_queue_pointer_stays_on_device() -> None:
    """The pointer is a tensor updated by tensor ops (no ``.item()``), wrapping modulo size."""
    m = _tiny(MoCo, "aug", queue_size=8, proj_dim=4)
    keys = torch.nn.functional.normalize(torch.randn(12, 4), dim=1)
    m.enqueue(keys[:6])
    m.enqueue(keys[6:])
    assert isinstance(m.queue_ptr, torch.Tensor) and int(m.queue_ptr) == 4
    torch.testing.assert_close(m.queue[:4], keys[8:])  # 6..11 went to slots 6, 7, 0, 1, 2, 3
    torch.testing.assert_close(m.queue[6:], keys[6:8])


# ---------------------------------------------------------------------------------------------
# no host synchronisation in the training step
# ---------------------------------------------------------------------------------------------
SYNC_CASES = [(MoCo, "aug"), (MoCo, "geo"), (MoCo, "partial-fusion"), (SimCLR, "fusion"),
              (SimCLR, "geo"), (BYOL, "aug"), (DeepCluster, "fusion")]


def _step_on(module: Any, device: str, b: int = 8) -> torch.Tensor:
    batch = {"image_s1": torch.randn(b, 2, 32, 32, device=device),
             "image_s2": torch.randn(b, 13, 32, 32, device=device),
             "index": torch.arange(b, device=device)}
    if isinstance(module, DeepCluster):  # as cluster() leaves them
        module.pseudo_labels = torch.arange(32, device=device) % 4
        module.clusters_used = 4
    v1, v2 = module.make_views(batch)
    loss, _ = module.compute_loss(v1, v2, batch)
    loss.backward()
    return loss


@pytest.mark.parametrize(("cls", "pairing"), SYNC_CASES,
                         ids=[f"{c.__name__}-{p}" for c, p in SYNC_CASES])
def test_training_step_reads_nothing_back_to_the_host(cls: type, pairing: str) -> None:
    """Views, augmentation, encoders, loss, MoCo queue and backward run on the ``meta`` device.

    Tensors there have no data, so anything that reads a value on the host (``.item()``,
    ``bool(t)``, ``nonzero``/boolean indexing, kornia's sigma check, ``torch.multinomial``'s
    input check) raises: on a GPU each of them would be a synchronisation every step.
    """
    extra: dict[str, Any] = {"queue_size": 16} if cls is MoCo else {}
    if cls is DeepCluster:
        extra.update(num_clusters=4)
    if cls is BYOL:
        extra["pred_hidden"] = 16
    module = _tiny(cls, pairing, backbone="test_resnet", proj_hidden=16, proj_dim=8,
                   augment={"blur_p": 0.5}, **extra)
    if cls is MoCo:
        module.set_bn_splits(2)  # shuffle-BN on one device (key permutation on the device)
    module = module.to("meta")
    loss = _step_on(module, "meta")
    assert loss.device.type == "meta" and loss.shape == ()
    if cls is MoCo:
        assert module.queue_ptr.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("cls", "pairing"), SYNC_CASES[:4],
                         ids=[f"{c.__name__}-{p}" for c, p in SYNC_CASES[:4]])
def test_training_step_does_not_synchronise_cuda(cls: type, pairing: str) -> None:
    extra: dict[str, Any] = {"queue_size": 16} if cls is MoCo else {}
    if cls is DeepCluster:
        extra.update(num_clusters=4)
    module = _tiny(cls, pairing, **extra).cuda()
    if cls is MoCo:
        module.set_bn_splits(2)
    _step_on(module, "cuda")  # first step: caches (per-device constants), cuDNN set-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _step_on(module, "cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ---------------------------------------------------------------------------------------------
# shuffle-BN on one device: split BatchNorm
# ---------------------------------------------------------------------------------------------
def test_split_batchnorm_normalises_each_group() -> None:
    from geossl.models import SplitBatchNorm2d, convert_split_bn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    ref = torch.nn.BatchNorm2d(4)
    ref.load_state_dict(model[1].state_dict())
    assert convert_split_bn(model, 2) == 1 and isinstance(model[1], SplitBatchNorm2d)
    x = torch.randn(8, 4, 5, 5) * 3 + 1
    out = model[1](x)
    for g in range(2):  # group g = samples g, g + 2, g + 4, ...
        part = x[g::2]
        mean = part.mean(dim=(0, 2, 3), keepdim=True)
        var = part.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        torch.testing.assert_close(out[g::2], (part - mean) / torch.sqrt(var + 1e-5))
    # running statistics: the mean of the groups' updates, what one BN step would keep
    unbiased = torch.stack([x[g::2].var(dim=(0, 2, 3)) for g in range(2)]).mean(0)
    torch.testing.assert_close(model[1].running_var, 0.9 * torch.ones(4) + 0.1 * unbiased)
    # eval mode and odd batches: plain BatchNorm; state dict keys unchanged
    model.eval()
    ref.eval()
    ref.load_state_dict(model[1].state_dict())
    torch.testing.assert_close(model[1](x), ref(x))
    assert convert_split_bn(model, 1) == 1 and type(model[1]) is torch.nn.BatchNorm2d


def test_moco_shuffle_bn_on_one_device() -> None:
    from geossl.models import SplitBatchNorm2d
    from geossl.models.norm import auto_splits

    assert [auto_splits(b) for b in (16, 64, 128, 256, 512)] == [1, 2, 4, 8, 8]
    torch.manual_seed(0)
    m = _tiny(MoCo, "aug", queue_size=32, max_steps=2)
    m.options = dataclasses.replace(m.options, bn_splits=4)  # as if built with bn_splits=4
    fit(m, 2)  # Trainer on one device: setup() converts both encoders
    splits = [mod for mod in m.modules() if isinstance(mod, SplitBatchNorm2d)]
    assert m.bn_splits == 4 and splits and all(s.num_splits == 4 for s in splits)
    assert len(splits) == sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    # keys are shuffled into the BN groups and put back in order: in eval mode (no batch
    # statistics) the shuffled keys equal the unshuffled ones
    m.eval()
    view = make_views(_batch(8), "aug", ["s2"], build_augments(["s2"], 16))[0]
    shuffled = m.keys(view)
    m.bn_splits = 1
    torch.testing.assert_close(shuffled, m.keys(view))


# ---------------------------------------------------------------------------------------------
# BYOL
# ---------------------------------------------------------------------------------------------
def test_byol_target_and_schedule() -> None:
    m = _tiny(BYOL, "aug", pred_hidden=32)
    for a, b in zip(m.encoder.parameters(), m.encoder_target.parameters()):
        assert torch.equal(a, b) and not b.requires_grad
    assert cosine_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 100, 100) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# DeepCluster pieces
# ---------------------------------------------------------------------------------------------
def test_reassign_empty_clusters_splits_a_cluster() -> None:
    torch.manual_seed(0)
    x = torch.cat([torch.randn(10, 2) * 0.1 + 5, torch.randn(10, 2) * 0.1 - 5])
    centroids = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [100.0, 100.0], [200.0, 0.0]])
    assign = torch.tensor([0] * 10 + [1] * 10)
    assert torch.bincount(assign, minlength=4).tolist() == [10, 10, 0, 0]
    new_c, new_a = reassign_empty_clusters(x, centroids, assign,
                                           torch.Generator().manual_seed(0))
    counts = torch.bincount(new_a, minlength=4)
    assert (counts > 0).all() and counts.sum() == 20
    # each new cluster took over part of an old one; its centroid sits next to that one's
    for j in (2, 3):
        assert (new_c[j] - new_c[:2]).norm(dim=1).min() < 1e-2
    # points never move between the two original groups
    assert set(new_a[:10].tolist()).isdisjoint(set(new_a[10:].tolist()))


def test_kmeans_separates_blobs_without_empty_clusters() -> None:
    torch.manual_seed(0)
    centers = torch.randn(4, 8) * 10
    x = centers.repeat_interleave(25, 0) + torch.randn(100, 8) * 0.1
    assign, _ = kmeans(x, 4, iters=20, seed=0)
    assert torch.bincount(assign, minlength=4).min() > 0
    for b in range(4):
        assert len(set(assign[b * 25:(b + 1) * 25].tolist())) == 1
    assign8, _ = kmeans(x, 8, iters=20, seed=1)  # more clusters than blobs: none empty
    assert torch.bincount(assign8, minlength=8).min() > 0
    with pytest.raises(ConfigError):
        kmeans(x[:3], 4)


def test_pca_whiten_and_weights() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 16) @ torch.randn(16, 16)
    w = pca_whiten(x, 8)
    assert w.shape == (200, 8)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(200))
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    weights = uniform_label_weights(labels)
    sums = [weights[labels == k].sum().item() for k in range(3)]
    assert sums == pytest.approx([1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------------
def _batch(b: int = 4) -> dict[str, torch.Tensor]:
    s2 = torch.randn(b, 13, 32, 32)
    return {"image_s1": s2[:, :2].clone(), "image_s2": s2, "image_s2_t2": s2 + 1,
            "index": torch.arange(b)}


def test_views_per_pairing() -> None:
    torch.manual_seed(0)
    augs = build_augments(["s1", "s2"], 16)
    v1, v2 = make_views(_batch(), "geo", ["s1", "s2"], augs)
    assert (v1.sensor, v2.sensor) == ("s1", "s2")
    assert v1.x.shape == (4, 2, 16, 16) and v2.x.shape == (4, 13, 16, 16)
    v1, v2 = make_views(_batch(), "aug", ["s2"], augs)
    assert v1.sensor == v2.sensor == "s2" and not torch.equal(v1.x, v2.x)
    v1, v2 = make_views(_batch(), "temporal", ["s2"], augs)
    assert v1.x.shape == v2.x.shape == (4, 13, 16, 16)
    v1, v2 = make_views(_batch(), "fusion", ["s1", "s2"], augs)
    assert v1.x.shape == (4, 15, 16, 16) and v1.sensor is None
    assert v1.sensor_mask is not None and torch.equal(v1.sensor_mask, torch.ones(4, 2))
    with pytest.raises(ConfigError, match="no 'image_s1'"):
        make_views({"image_s2": torch.randn(2, 13, 8, 8)}, "geo", ["s1", "s2"], augs)


def test_fusion_view_shares_geometry_across_bands() -> None:
    torch.manual_seed(0)
    off = {"jitter_p": 0.0, "blur_p": 0.0, "grayscale_p": 0.0, "speckle_p": 0.0}
    augs = build_augments(["s1", "s2"], 16, options=off)
    v1, _ = make_views(_batch(), "fusion", ["s1", "s2"], augs)
    torch.testing.assert_close(v1.x[:, :2], v1.x[:, 2:4])  # s1 = s2's first bands


def test_geo_same_crop() -> None:
    torch.manual_seed(0)
    off = {"jitter_p": 0.0, "blur_p": 0.0, "grayscale_p": 0.0, "speckle_p": 0.0}
    augs = build_augments(["s1", "s2"], 16, options=off)
    v1, v2 = make_views(_batch(), "geo", ["s1", "s2"], augs, same_crop=True)
    torch.testing.assert_close(v1.x, v2.x[:, :2])
    v1, v2 = make_views(_batch(), "geo", ["s1", "s2"], augs, same_crop=False)
    assert not torch.allclose(v1.x, v2.x[:, :2])


def test_partial_fusion_masks_and_zero_fill() -> None:
    torch.manual_seed(0)
    augs = build_augments(["s1", "s2"], 16)
    v1, v2 = make_views(_batch(64), "partial-fusion", ["s1", "s2"], augs)
    for v in (v1, v2):
        assert v.sensor_mask is not None
        rows = {tuple(r) for r in v.sensor_mask.tolist()}
        assert rows == {(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)}
        no_s1 = v.sensor_mask[:, 0] == 0
        no_s2 = v.sensor_mask[:, 1] == 0
        assert (v.x[no_s1, :2] == 0).all() and (v.x[no_s2, 2:] == 0).all()
        assert (v.x[~no_s1, :2] != 0).any()
    # a sensor missing in the data is never "present" in a view
    present = torch.tensor([[1.0, 0.0]] * 10)
    mask = sample_sensor_mask(10, 2, present=present)
    assert torch.equal(mask, present)


# ---------------------------------------------------------------------------------------------
# optimisers and schedule
# ---------------------------------------------------------------------------------------------
def test_optimizers_and_weight_decay_groups() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2))
    groups = param_groups(model, 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert groups[1]["weight_decay"] == 0.0
    opt = build_optimizer("lars", model, lr=0.3, weight_decay=1e-6, batch_size=512)
    assert isinstance(opt, Lars)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.6)  # linear scaling 0.3 * 512 / 256
    assert opt.param_groups[1]["weight_decay"] == 0.0  # and no LARS adaptation there
    assert isinstance(build_optimizer("lamb", model, 1e-3, 0.01, 256), Lamb)
    assert isinstance(build_optimizer("adam", model, 1e-3, 0.0, 256), torch.optim.Adam)
    assert isinstance(build_optimizer("sgd", model, 0.1, 0.0, 128), torch.optim.SGD)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        build_optimizer("adagrad", model, 0.1, 0.0, 128)


def test_warmup_cosine() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, max_steps=14)
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[9] == pytest.approx(0.5)
    assert lrs[14] == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# hyper-parameters and checkpoints
# ---------------------------------------------------------------------------------------------
def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _tiny(MoCo, "geo", max_steps=2, queue_size=32, temperature=0.3,
                   bands={"s1": ["VV", "VH"], "s2": [f"B{i}" for i in range(13)]},
                   normalization={"s1": "db-clip"})
    fit(module, 2)
    assert module.hparams["temperature"] == 0.3 and module.hparams["backbone"] == TINY["backbone"]
    path = tmp_path / "moco.ckpt"
    module._test_trainer.save_checkpoint(path)
    enc, meta = load_encoder(path)
    assert meta["method"] == "moco" and meta["pairing"] == "geo"
    assert meta["in_chans"] == CHANS and meta["sensors"] == ["s1", "s2"]
    assert meta["bands"]["s1"] == ["VV", "VH"] and meta["normalization"] == {"s1": "db-clip"}
    for key in ("backbone", "adapter", "img_size"):
        assert key in meta
    module.encoder.eval()
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x, sensor="s1"), module.encoder(x, sensor="s1"))
    # the rebuilt encoder is the online one, not the momentum copy
    assert not all(torch.equal(a, b) for a, b in zip(
        enc.state_dict().values(), module.encoder_momentum.state_dict().values()))
    # a resumed module loads the same checkpoint (queue and pointer included)
    restored = MoCo.load_from_checkpoint(path)
    assert torch.equal(restored.queue, module.queue)


def test_load_encoder_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_encoder(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad\.ckpt"):
        load_encoder(bad)
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(DataError, match="no state_dict"):
        load_encoder(other)
