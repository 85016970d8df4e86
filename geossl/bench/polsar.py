"""PolSAR San Francisco benchmark: geossl SSL against three baselines, with few labels.

Protocol (issue 5, section 4), all in one call of :func:`run_polsar_benchmark`:

1. **Data.** A PolSARpro T3/C3 scene (AIRSAR San Francisco, 900 x 1024) and its label raster
   (0 = unlabelled). The network input is :func:`geossl.datasets.polsar.polsar_features`: diagonal
   terms in dB and normalised off-diagonal real/imaginary parts (9 channels), standardised with
   the scene-wide mean and std of every channel (no labels used).
2. **Patches.** ``patch`` px windows on a ``stride`` grid, labelled by their majority class when
   it covers >= ``purity`` of the patch (:func:`geossl.datasets.polsar.polsar_patches`).
3. **Split.** A ``block`` px checkerboard of spatial blocks (:func:`checkerboard_split`): white
   blocks train, black blocks test. A patch is assigned by its footprint; one that overlaps
   blocks of both colours is dropped, so no pixel is shared by a training and a test patch.
4. **SSL pretraining** (MoCo v2 by default; SimCLR and BYOL on request) on windows of the
   **whole scene**, labelled or not, without labels (a transductive setting: the test blocks'
   pixels are seen unlabelled, as the issue prescribes). The two views of a sample are random
   crops of about patch size from one ``context`` px window (96 px by default), so nearby
   patches of the scene are positives: land cover is spatially coherent, and the encoder learns
   what stays the same over a few tens of pixels rather than what tells overlapping patches
   apart (with ``context == patch`` the views overlap almost entirely; see
   ``docs/benchmarks_polsar.md`` for what each choice gave). Encoder: timm ``resnet18`` with
   a stem for 16 px patches (:func:`small_input_stem`: one 3 x 3 convolution, no max-pool).
   Augmentations suited to PolSAR: random resized crop, flips, 90-degree rotations,
   multiplicative Gamma speckle added in dB to the diagonal channels only (speckle multiplies
   the whole matrix, which leaves the normalised off-diagonal terms unchanged), optional blur
   (multi-looking), optional polarimetric orientation turns (``orientation_p``; off by default:
   they lowered the selection scores); no brightness or contrast jitter, which would break the
   calibration that the dB values carry.
5. **Evaluation** with ``budgets`` labelled patches per class drawn from the training blocks
   (:func:`geossl.eval.budgets.draw_budget`, the same rows for every row of the table), for
   ``seeds`` seeds; overall (OA) and average (AA) accuracy on all test-block patches:

   * geossl SSL + linear probe and + kNN (:func:`geossl.eval.knn.knn_scores`) on frozen
     features: the global average pools of ResNet stages ``feature_stages`` concatenated
     (:func:`embed_patches`);
   * the same encoder randomly initialised, the same features + the same linear probe;
   * the same encoder trained from scratch on the same labels (:func:`geossl.eval.finetune.
     finetune`, flips/rotations);
   * logistic regression on hand-crafted per-patch features (:mod:`geossl.eval.handcrafted`),
     both from the patch-mean matrix and as the patch mean of the per-pixel features: the same
     linear probe as the learned features, and with scikit-learn's default C = 1.

   With ``windows``, the frozen-feature and hand-crafted rows are also reported on multi-scale
   features (the patch's and those of larger centred windows, concatenated); the verdict is the
   paired comparison (:func:`compare_to_baselines`) of one SSL line fixed in advance (the first
   method, linear probe, richest features) with every baseline line. ``select`` scores on half
   of the training blocks instead of the test blocks, to choose options without test labels.

   Every classifier on frozen features is geossl's one linear probe (:mod:`geossl.eval.linear`).
   The benchmark's choice (:func:`cv_linear_probe`) picks its weight decay by stratified k-fold
   cross-validation on the labelled patches of the draw only, never on test patches, with the
   same grid and folds for every row; the C = 1 baseline is
   :func:`geossl.eval.linear.logreg_scores` (scikit-learn's objective, no search).

SSL pretraining goes through the fit loop of ``geossl pretrain``
(:func:`geossl.training.trainer.fit`) with
the method built by :func:`geossl.training.trainer.build_method`; the windows are an in-memory
dataset of
the standardised scene.

Outputs in ``out``: ``results.json`` (every run, the summary, timings and the configuration),
``table.md``, ``split.png`` (Pauli RGB, labels, checkerboard split), ``tsne_<method>.png`` and the
encoders' weights (``<method>_encoder.pt``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import torch
from geopandas import GeoDataFrame
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from geossl.core.errors import ConfigError, DataError
from geossl.core.io import atomic_path, atomic_write_text, jsonable, load_torch_file, mark_output
from geossl.core.options import option
from geossl.core.progress import phase, progress
from geossl.datasets.polsar import (
    PIXEL_CRS,
    SF_AIRSAR_CLASSES,
    find_label_raster,
    find_polsar_folder,
    patch_labels,
    pauli_rgb,
    polsar_features,
    read_labels,
    read_polsar,
)
from geossl.eval.budgets import Budget, draw_budget, mean_std
from geossl.eval.handcrafted import patch_mean_features
from geossl.eval.knn import knn_scores
from geossl.eval.linear import linear_probe, logreg_scores
from geossl.eval.metrics import single_label_metrics
from geossl.eval.paired import difference_stats, with_interval
from geossl.eval.report import format_cell
from geossl.runtime.devices import resolve_device

#: the sensor name used for the PolSAR input in SSL batches (``image_polsar``)
SENSOR = "polsar"
#: SSL methods the benchmark can pretrain
SSL_METHODS = ("simclr", "moco", "byol")
#: options that determine the pretrained encoders (checked by ``encoders`` reuse)
PRETRAIN_FIELDS = ("root", "patch", "backbone", "stem_stride", "context", "pretrain_stride",
                   "pretrain_steps", "pretrain_batch", "lr", "crop_scale", "speckle_p",
                   "speckle_looks", "blur_p", "moco_queue", "seed", "orientation_p",
                   "orientation_max_deg")
#: evaluation name of the logistic regression with scikit-learn's default C = 1 on hand-crafted
#: features (:func:`geossl.eval.linear.logreg_scores`)
HC_FIXED_C = "logistic regression (C=1)"
#: split names of :func:`checkerboard_split`
SPLIT_NAMES = ("train", "test", "drop")


@dataclasses.dataclass
class PolsarBenchConfig:
    """Options of the PolSAR benchmark (defaults: the documented CPU run).

    Each field is a flag of ``geossl bench polsar`` (``pretrain_steps`` -> ``--pretrain-steps``)
    with its default and help declared here (:func:`geossl.core.options.option`). Helpers named in
    the helps: :func:`small_input_stem` (the replaced stem), :func:`cv_linear_probe` (the probe's
    cross-validation), :func:`run_both_halves` (``select_half=2``),
    :func:`geossl.datasets.polsar.rotate_t3_features` (the orientation turns) and
    :data:`PRETRAIN_FIELDS` (the options an ``encoders`` folder must share).
    """

    root: str = option(help="scene folder (holding T3/ or C3/) or the matrix folder itself")
    out: str = option("runs/polsar", "output folder")
    labels: str | None = option(None, "label raster (default: the single *.png/*.tif in "
                                "ROOT/labels)")
    patch: int = option(16, "patch size in pixels (evaluation patches and SSL views)")
    stride: int = option(8, "step of the labelled patch grid")
    purity: float = option(0.8, "minimum majority-class share of a labelled patch")
    block: int = option(128, "checkerboard block size in pixels")
    budgets: tuple[int, ...] = option((10, 50), "labelled patches per class")
    seeds: int = option(10, "seeds per budget (0 .. seeds - 1)")
    methods: tuple[str, ...] = option(("moco",), "SSL methods to pretrain: simclr, moco, byol "
                                      "(none: no SSL rows)")
    backbone: str = option("resnet18", "timm backbone (its stem is replaced by a small-input "
                           "stem)")
    stem_stride: int = option(2, "stride of the replacement stem convolution")
    context: int = option(96, "size of the windows the SSL views are cropped from (>= --patch)")
    pretrain_stride: int = option(4, "step of the grid of unlabelled pretraining windows")
    pretrain_steps: int = option(2000, "SSL optimiser steps per method")
    pretrain_batch: int = option(128, "SSL batch size")
    lr: float = option(1e-3, "SSL learning rate (AdamW, per --pretrain-batch samples)")
    crop_scale: tuple[float, float] = option((0.02, 0.08), "area range of the random resized "
                                             "crop, relative to a --context window")
    speckle_p: float = option(0.5, "probability of speckle per view")
    speckle_looks: float = option(4.0, "looks of the Gamma speckle")
    blur_p: float = option(0.0, "probability of a Gaussian blur per view")
    orientation_p: float = option(0.0, "probability of turning a view's T3 matrices about the "
                                  "radar line of sight by a random orientation angle (T3 "
                                  "scenes only)")
    orientation_max_deg: float = option(45.0, "largest orientation angle of those turns, in "
                                        "degrees")
    moco_queue: int = option(4096, "MoCo v2 queue size")
    knn_k: int = option(20, "neighbours of the kNN classifier")
    feature_stages: tuple[int, ...] = option((1, 2, 3, 4), "ResNet stages whose pooled outputs "
                                             "are concatenated into the frozen features (SSL "
                                             "and random-init rows alike); none: the encoder "
                                             "output only")
    probe_folds: int = option(5, "folds of the cross-validation that picks the linear probe's "
                              "weight decay on the labelled patches only, for the SSL, "
                              "random-init and hand-crafted rows alike (< 2: a single 20 % "
                              "hold-out for the learned features and the C = 1 logistic "
                              "regression only for the hand-crafted ones)")
    windows: tuple[int, ...] = option((32, 48), "sizes (px, each > --patch) of extra windows "
                                      "centred on every patch (shifted inside the scene at its "
                                      "borders) whose features are concatenated with the "
                                      "patch's own: multi-scale frozen features and multi-scale "
                                      "hand-crafted rows, image pixels only, no labels; none: "
                                      "the patch alone (the rows on the patch alone are "
                                      "reported as well)")
    select: bool = option(False, "score on the patches of one half of the training blocks "
                          "(every other block row), with labels drawn from the other half, "
                          "instead of on the test blocks: the mode in which options are chosen "
                          "without any test label")
    select_half: int = option(0, "with --select, which block rows give the labels: 0 the even "
                              "ones (scored on the odd ones), 1 the odd ones, 2 both in turn "
                              "(every training block scored once, the two halves' draws "
                              "pooled: 2 x seeds paired draws). Prefer 2: one half can hold "
                              "most of a rare class (on the San Francisco scene, 43 of the 47 "
                              "bare-soil training patches are in the odd block rows)")
    scratch_steps: int = option(500, "optimiser steps of the supervised-from-scratch baseline "
                                "(0: no row)")
    scratch_lr: float = option(1e-3, "learning rate of the supervised-from-scratch baseline")
    threads: int = option(2, "torch CPU threads")
    device: str | None = option(None, "cpu, cuda, ... (default: GPU when present)")
    seed: int = option(0, "seed of pretraining and of the random encoders")
    tsne: bool = option(True, "draw t-SNE plots")
    log_every: int = option(50, "print the SSL loss every this many steps (0: never)")
    encoders: str | None = option(None, "folder of an earlier run (results.json + "
                                  "<method>_encoder.pt) with the same pretraining options; "
                                  "its encoders are loaded instead of pretraining again "
                                  "(evaluation-only rerun)")

    def check(self) -> None:
        """Refuse inconsistent options.

        Raises:
            ConfigError: with a one-line reason.
        """
        unknown = [m for m in self.methods if m not in SSL_METHODS]
        if unknown:
            raise ConfigError(f"unknown SSL method {unknown[0]!r}; use {', '.join(SSL_METHODS)}")
        if self.patch < 4 or self.stride < 1 or self.block < self.patch:
            raise ConfigError(f"need patch >= 4, stride >= 1 and block >= patch, got patch "
                              f"{self.patch}, stride {self.stride}, block {self.block}")
        if self.context < self.patch:
            raise ConfigError(f"context ({self.context}) must be >= patch ({self.patch})")
        if not self.budgets or min(self.budgets) < 1 or self.seeds < 1:
            raise ConfigError("budgets must be positive label counts and seeds >= 1")
        if not 0 < self.purity <= 1:
            raise ConfigError(f"purity must be in (0, 1], got {self.purity}")
        if any(i not in (1, 2, 3, 4) for i in self.feature_stages):
            raise ConfigError(f"feature_stages must be ResNet stages 1 to 4, got "
                              f"{list(self.feature_stages)}")
        if any(s <= self.patch for s in self.windows):
            raise ConfigError(f"windows must be larger than the patch ({self.patch} px), got "
                              f"{list(self.windows)}")
        if self.select_half not in (0, 1, 2):
            raise ConfigError(f"select_half must be 0, 1 or 2 (both), got {self.select_half}")
        if self.moco_queue % self.pretrain_batch:
            raise ConfigError(f"moco_queue ({self.moco_queue}) must be a multiple of "
                              f"pretrain_batch ({self.pretrain_batch})")


# ----------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------
def patch_footprints(rows: np.ndarray, cols: np.ndarray, size: int) -> GeoDataFrame:
    """Footprints of square pixel patches in :data:`~geossl.datasets.polsar.PIXEL_CRS`.

    ``x = col``, ``y = -row``; columns ``chip_id``, ``row``, ``col``, ``height``, ``width``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    geoms = shapely.box(cols, -(rows + size), cols + size, -rows)
    return GeoDataFrame(
        {"chip_id": [f"r{r}_c{c}" for r, c in zip(rows, cols)], "row": rows, "col": cols,
         "height": size, "width": size},
        geometry=geoms, crs=PIXEL_CRS,
    )


def checkerboard_split(
    footprints: GeoDataFrame,
    block: float,
    origin: tuple[float, float] | None = None,
    colours: tuple[str, str] = ("train", "test"),
) -> pd.Series:
    """Assign footprints to a checkerboard of square spatial blocks; drop border-straddlers.

    Block ``(i, j)`` (row ``i`` counted down from the top, column ``j`` from the left, both from
    ``origin``) has colour ``(i + j) % 2``: ``colours[0]`` or ``colours[1]``. A footprint takes
    the colour of the blocks it overlaps; one overlapping blocks of both colours (any footprint
    that crosses a block border, since neighbouring blocks differ) is ``drop``, so training and
    test footprints never share a pixel. Touching a border is not overlapping it (half-open
    blocks).

    This is :func:`geossl.splits.checkerboard_split` (the ``checkerboard`` strategy of
    ``geossl split``) in the footprints' own CRS units (pixels for
    :data:`~geossl.datasets.polsar.PIXEL_CRS` scenes), with the origin defaulting to the top-left
    of the footprints' bounds.

    Args:
        footprints: any GeoDataFrame of footprints (chip index, patch footprints, ...).
        block: block size in CRS units.
        origin: ``(x, y)`` of the top-left block corner (default: the top-left of the bounds).
        colours: split names of the two colours.

    Returns:
        split names, indexed like ``footprints``.

    Raises:
        ConfigError: ``block`` is not positive.
    """
    from geossl import splits

    if not block > 0:
        raise ConfigError(f"checkerboard block size must be positive, got {block}")
    if len(footprints) == 0:
        return pd.Series([], index=footprints.index, dtype=object)
    if origin is None:
        b = footprints.geometry.bounds
        origin = (float(b["minx"].min()), float(b["maxy"].max()))
    out = splits.checkerboard_split(footprints, block, names=colours, origin=origin)
    return out.rename(None)


def split_leakage(footprints: GeoDataFrame, split: pd.Series) -> dict[str, Any]:
    """Pixels shared by train and test footprints, by the overlap-aware splitter's report.

    :func:`geossl.splits.leakage_report` works in the footprints' own units when they have
    no georeferenced CRS (:data:`~geossl.datasets.polsar.PIXEL_CRS`, or none): pixels here.

    Returns:
        ``{"leaking": train + test footprints sharing area with the other side,
        "overlap_px": shared area in CRS units² (pixels), "report": the splitter's rows}``.
    """
    from geossl.splits import footprints as metric_footprints
    from geossl.splits import leakage_report, report_units

    fp = metric_footprints(footprints)
    report = leakage_report(footprints, split, fp=fp)
    area_unit, _, scale = report_units(fp)
    rows = report.to_dict(orient="records")
    leaking = int(report["leaking_a"].sum() + report["leaking_b"].sum()) if len(report) else 0
    overlap = float(report[f"overlap_{area_unit}"].sum() * scale) if len(report) else 0.0
    return {"leaking": leaking, "overlap_px": overlap, "report": rows}


# ----------------------------------------------------------------------------------------------
# encoder
# ----------------------------------------------------------------------------------------------
def small_input_stem(encoder: nn.Module, stride: int = 2) -> nn.Module:
    """Replace a timm ResNet stem by one 3 x 3 convolution of ``stride`` and no max-pool.

    The stock stem (7 x 7 stride-2 convolution + max-pool) divides a 16 px patch by 4 before the
    first block; the replacement keeps some spatial extent for small patches.

    Works on a :class:`geossl.models.Encoder` (``encoder.backbone``) or a bare timm model, in
    place; the feature size is unchanged, so heads built on ``num_features`` still fit.

    Args:
        encoder: encoder or timm ResNet.
        stride: stride of the new stem convolution.

    Returns:
        the same module.

    Raises:
        ConfigError: the backbone has no ResNet-style ``conv1``/``maxpool``.
    """
    trunk = getattr(encoder, "backbone", encoder)
    conv = getattr(trunk, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(trunk, "maxpool"):
        raise ConfigError(f"{type(trunk).__name__} has no ResNet stem (conv1 + maxpool) to "
                          "replace; use a timm ResNet backbone")
    trunk.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride, 1, bias=False)
    trunk.maxpool = nn.Identity()
    return encoder


def build_bench_encoder(backbone: str, in_chans: int, stem_stride: int, seed: int) -> nn.Module:
    """The benchmark's encoder, randomly initialised with ``seed`` (timm backbone + small stem)."""
    from geossl.models import build_encoder

    torch.manual_seed(seed)
    return small_input_stem(build_encoder(backbone, in_chans), stem_stride)


# ----------------------------------------------------------------------------------------------
# data helpers
# ----------------------------------------------------------------------------------------------
class _Windows(Dataset[dict[str, Tensor]]):
    """Square windows of a standardised scene tensor, as SSL samples ``{"image_polsar": x}``."""

    def __init__(self, scene: Tensor, rows: np.ndarray, cols: np.ndarray, size: int) -> None:
        self.scene, self.rows, self.cols, self.size = scene, rows, cols, size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        r, c, s = int(self.rows[i]), int(self.cols[i]), self.size
        return {f"image_{SENSOR}": self.scene[:, r : r + s, c : c + s]}


class _Patches(Dataset[dict[str, Tensor]]):
    """Labelled patches as evaluation samples ``{"image", "label"}``."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}


def _grid(h: int, w: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.meshgrid(np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride),
                             indexing="ij")
    return rows.ravel().astype(np.int64), cols.ravel().astype(np.int64)


def _cut(scene: Tensor, rows: np.ndarray, cols: np.ndarray, size: int) -> Tensor:
    view = scene.unfold(1, size, 1).unfold(2, size, 1)  # (C, H', W', s, s), no copy
    return view[:, torch.as_tensor(rows), torch.as_tensor(cols)].permute(1, 0, 2, 3).contiguous()


@torch.no_grad()
def embed_patches(encoder: nn.Module, images: Tensor, device: torch.device,
                  batch_size: int = 512, stages: Sequence[int] | None = None) -> Tensor:
    """Frozen features ``(N, D)`` of patches (eval mode, on CPU afterwards).

    Args:
        encoder: encoder (a :class:`geossl.models.Encoder` or a bare timm ResNet).
        images: ``(N, C, H, W)`` patches.
        device: where to run.
        batch_size: patches per forward pass.
        stages: ResNet stages (1 to 4) whose outputs are globally average-pooled and
            concatenated; ``None``: the encoder's own output (the pooled last stage).

    Returns:
        ``(N, D)`` float32 features.

    Raises:
        ConfigError: a stage the backbone does not have.
    """
    encoder = encoder.to(device).eval()
    pooled: dict[int, Tensor] = {}
    hooks = []
    if stages:
        trunk = getattr(encoder, "backbone", encoder)
        for i in stages:
            layer = getattr(trunk, f"layer{i}", None)
            if not isinstance(layer, nn.Module):
                raise ConfigError(f"{type(trunk).__name__} has no stage layer{i}; use stages "
                                  "1 to 4 of a ResNet")

            def hook(_m: nn.Module, _i: Any, o: Tensor, i: int = i) -> None:
                pooled[i] = o.float().mean((2, 3))

            hooks.append(layer.register_forward_hook(hook))
    try:
        out = []
        for a in range(0, len(images), batch_size):
            f = encoder(images[a : a + batch_size].to(device))
            if stages:
                f = torch.cat([pooled[i] for i in stages], 1)
            out.append(f.float().cpu())
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(out) if out else torch.empty(0)


def window_origins(rows: np.ndarray, cols: np.ndarray, patch: int, size: int, h: int, w: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners of ``size`` px windows centred on ``patch`` px patches.

    A window that would leave the ``h`` x ``w`` scene is shifted inside it (so it still holds
    the whole patch when ``size >= patch``), which avoids inventing padded pixels.
    """
    off = (size - patch) // 2
    r = np.clip(np.asarray(rows, dtype=np.int64) - off, 0, max(0, h - size))
    c = np.clip(np.asarray(cols, dtype=np.int64) - off, 0, max(0, w - size))
    return r, c


def embed_windows(encoder: nn.Module, scene: Tensor, rows: np.ndarray, cols: np.ndarray,
                  sizes: Sequence[int], device: torch.device, stages: Sequence[int] | None,
                  batch_size: int = 512, desc: str = "features") -> list[Tensor]:
    """Frozen features of square windows of ``scene``, one ``(N, D)`` tensor per size.

    Windows are cut batch by batch (48 px windows of every patch would not fit in memory
    at once on small machines); ``rows``/``cols`` are the windows' top-left corners per size.

    Args:
        encoder: the frozen encoder (:func:`embed_patches`).
        scene: ``(C, H, W)`` standardised scene.
        rows: ``(len(sizes), N)`` top rows of the windows, one line per size.
        cols: ``(len(sizes), N)`` left columns.
        sizes: window sizes in pixels.
        device: where to run.
        stages: ResNet stages of :func:`embed_patches`.
        batch_size: windows per forward pass.
        desc: label of the progress bar (:func:`geossl.core.progress.progress`).

    Returns:
        one ``(N, D)`` float32 tensor per size.
    """
    out = []
    starts = range(0, rows.shape[1], batch_size)
    with progress(total=len(sizes) * len(starts), desc=desc, unit="batch") as bar:
        for j, size in enumerate(sizes):
            parts = []
            for a in starts:
                parts.append(embed_patches(encoder, _cut(scene, rows[j][a : a + batch_size],
                                                         cols[j][a : a + batch_size], size),
                                           device, batch_size=batch_size, stages=stages))
                bar.update(1)
            out.append(torch.cat(parts) if parts else torch.empty(0))
    return out


#: weight decays searched by :func:`cv_linear_probe` (L2 per sample, as in ``fit_linear``)
PROBE_WEIGHT_DECAYS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


#: the benchmark's linear probe: :func:`geossl.eval.linear.linear_probe` with its weight decay
#: chosen from :data:`PROBE_WEIGHT_DECAYS` by stratified 5-fold cross-validation on the labelled
#: rows only (features standardised with their statistics; score: mean validation accuracy, ties
#: to the lower validation loss; then refitted on all of them); no test row is used for any
#: choice. With fewer than two labels in some class, the same grid is searched on a hold-out.
#: Returns test logits and ``{"weight_decay", "cv_score"}`` (``cv_score``: cross-validated only).
cv_linear_probe = functools.partial(linear_probe, weight_decays=PROBE_WEIGHT_DECAYS, folds=5)


# ----------------------------------------------------------------------------------------------
# SSL pretraining
# ----------------------------------------------------------------------------------------------
def pretrain(
    method_name: str,
    windows: Dataset[dict[str, Tensor]],
    cfg: PolsarBenchConfig,
    stats: tuple[Sequence[float], Sequence[float]],
    device: torch.device,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict[str, Any]]:
    """Pretrain one SSL method on unlabelled windows with a Lightning ``Trainer``.

    Args:
        method_name: ``simclr``, ``moco`` or ``byol``.
        windows: dataset of ``{"image_polsar": (C, context, context)}`` samples.
        cfg: the benchmark configuration.
        stats: scene ``(mean, std)`` of the 9 input channels: the std (dB) of the three
            diagonal ones lets speckle add dB correctly to standardised data, and the
            orientation views (``cfg.orientation_p``) undo and redo the standardisation.
        device: where to train.
        log: where progress lines go.

    Returns:
        the trained encoder (eval mode, on CPU) and ``{"seconds", "steps", "loss_first",
        "loss_last", "curve"}``.
    """
    from lightning.pytorch import Callback

    from geossl.training.config import PretrainConfig
    from geossl.training.trainer import build_method, fit

    torch.manual_seed(cfg.seed)
    in_chans = 9
    # speckle: dB per standardised unit on the diagonal; the normalised off-diagonal terms are
    # invariant to a multiplicative speckle of the whole matrix, so they get (practically) none
    db_per_unit = [float(s) for s in stats[1][:3]] + [1e12] * (in_chans - 3)
    augment: dict[str, Any] = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": cfg.blur_p,
               "speckle_p": cfg.speckle_p, "speckle_looks": cfg.speckle_looks,
               "db_per_unit": db_per_unit}
    if cfg.orientation_p > 0:
        augment.update(orientation_p=cfg.orientation_p,
                       orientation_max_deg=cfg.orientation_max_deg,
                       polsar_stats=[[float(v) for v in stats[0]], [float(v) for v in stats[1]]])
    moco = method_name == "moco"
    config = PretrainConfig(
        method=method_name, backbone=cfg.backbone, sensors=[SENSOR], pairing="aug",
        batch_size=cfg.pretrain_batch, optimizer="adamw", lr=cfg.lr, weight_decay=1e-4,
        warmup_steps=max(1, cfg.pretrain_steps // 10),
        temperature=0.2 if method_name in ("simclr", "moco") else None,
        momentum=0.99 if moco else None, queue_size=cfg.moco_queue if moco else None,
        method_args={"base_batch_size": cfg.pretrain_batch, "proj_hidden": 512, "proj_dim": 128,
                     "crop_size": cfg.patch, "crop_scale": tuple(cfg.crop_scale),
                     "augment": augment, "sar_sensors": (SENSOR,),
                     **({"proj_batch_norm": True} if moco else {})},
    )
    method = build_method(config, {SENSOR: in_chans}, cfg.pretrain_steps)
    small_input_stem(method.encoder, cfg.stem_stride)
    method.copy_momentum_pairs()  # MoCo/BYOL: the key/target copies get the new stem too

    curve: list[tuple[int, float]] = []

    class _Curve(Callback):  # type: ignore[misc]
        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            step = int(trainer.global_step)
            curve.append((step, float(loss)))
            if cfg.log_every and step % cfg.log_every == 0:
                log(f"  {method_name} step {step}/{cfg.pretrain_steps} loss {float(loss):.4f}")

    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(windows, batch_size=cfg.pretrain_batch, shuffle=True, drop_last=True,
                        generator=gen, num_workers=0)
    if len(loader) == 0:
        raise ConfigError(f"only {len(windows)} pretraining windows for a batch of "  # type: ignore[arg-type]
                          f"{cfg.pretrain_batch}; lower pretrain_batch or pretrain_stride")
    t0 = time.perf_counter()
    # full fp32 on every device, as the published runs of this benchmark
    fit(method, loader, max_steps=cfg.pretrain_steps, accelerator=device, devices=1,
        precision="32-true", progress=sys.stderr.isatty(), callbacks=[_Curve()])
    seconds = time.perf_counter() - t0
    encoder = method.encoder.cpu().eval()
    head = [v for _, v in curve[: max(1, len(curve) // 10)]]
    tail = [v for _, v in curve[-max(1, len(curve) // 10):]]
    info = {"seconds": seconds, "steps": len(curve),
            "loss_first": float(np.mean(head)) if head else math.nan,
            "loss_last": float(np.mean(tail)) if tail else math.nan, "curve": curve}
    return encoder, info


def load_pretrained(folder: str | Path, name: str, cfg: PolsarBenchConfig
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Load ``<folder>/<name>_encoder.pt`` pretrained by an earlier run with the same options.

    Returns:
        the encoder and that run's pretraining record for ``name`` plus ``loaded_from``.

    Raises:
        ConfigError: the earlier run used other pretraining options or lacks ``name``.
        DataError: its ``results.json`` or encoder file is missing or unreadable.
    """
    folder = Path(folder)
    res_path, weights = folder / "results.json", folder / f"{name}_encoder.pt"
    try:
        earlier = json.loads(res_path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the earlier run's results ({err})", res_path) from err
    old, new = earlier.get("config", {}), jsonable(dataclasses.asdict(cfg))
    diff = [f for f in PRETRAIN_FIELDS if old.get(f) != new.get(f)]
    if diff:
        raise ConfigError(f"{folder} was pretrained with other options ({', '.join(diff)}: "
                          f"{[old.get(f) for f in diff]} vs {[new.get(f) for f in diff]})")
    info = dict(earlier.get("pretrain", {}).get(name) or {})
    if not info or not weights.is_file():
        raise ConfigError(f"{folder} holds no {name} encoder")
    enc = build_bench_encoder(cfg.backbone, 9, cfg.stem_stride, cfg.seed)
    state = load_torch_file(weights, "encoder file")  # data only: never runs code from it
    try:
        enc.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        raise DataError(f"cannot load the encoder ({err})", weights) from err
    info["loaded_from"] = str(weights)
    info.setdefault("curve", [])
    return enc.eval(), info


# ----------------------------------------------------------------------------------------------
# the benchmark
# ----------------------------------------------------------------------------------------------
def _metrics(y: np.ndarray, scores: Any, k: int) -> dict[str, float]:
    m = single_label_metrics(y, np.asarray(scores), num_classes=k)
    return {"oa": m["oa"], "aa": m["aa"], "f1_macro": m["f1_macro"]}


def run_polsar_benchmark(cfg: PolsarBenchConfig, log: Callable[[str], None] = print
                         ) -> dict[str, Any]:
    """Run the whole benchmark (see the module docstring) and write its outputs.

    Args:
        cfg: options.
        log: where progress lines go.

    Returns:
        the results dict also written to ``<out>/results.json`` (``summary``: rows of the table;
        ``runs``: every (row, budget, seed); ``pretrain``: per-method timings and losses;
        ``data``: patch and split counts; ``table``: the markdown table; ``seconds``).

    Raises:
        DataError: unreadable scene or labels, or a budget with no training patches.
        ConfigError: bad options.
    """
    from geossl.eval.finetune import finetune

    cfg.check()
    if cfg.select and cfg.select_half == 2:
        return run_both_halves(cfg, log)
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, cfg.threads))
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    timings: dict[str, float] = {}

    # -- data --------------------------------------------------------------------------------
    root = Path(cfg.root)
    folder, kind = find_polsar_folder(root)
    arr, _meta = read_polsar(folder)
    label_path = Path(cfg.labels) if cfg.labels else find_label_raster(
        root if folder != root else root.parent)
    labels = read_labels(label_path, arr.shape[1:])
    if cfg.orientation_p > 0 and kind != "t3":
        raise ConfigError(f"orientation views need a T3 scene, {folder} holds {kind.upper()}")
    feats = polsar_features(arr, kind)
    mean = feats.reshape(9, -1).mean(1)
    std = feats.reshape(9, -1).std(1).clip(1e-6)
    scene = torch.from_numpy((feats - mean[:, None, None]) / std[:, None, None]).float()
    h, w = labels.shape
    if cfg.patch > min(h, w):
        raise ConfigError(f"patch {cfg.patch} is larger than the scene ({h} x {w})")
    if cfg.methods and cfg.context > min(h, w):
        raise ConfigError(f"context {cfg.context} is larger than the scene ({h} x {w}); "
                          "lower --context (and --crop-scale with it)")
    # after the scene and labels are read: nothing is written for a missing or unreadable
    # scene (the caller checked --out with geossl.core.io.check_output)
    mark_output(out, "bench")

    rows, cols = _grid(h, w, cfg.patch, cfg.stride)
    lab = patch_labels(labels, rows, cols, cfg.patch, cfg.purity)
    keep = lab > 0
    rows, cols, lab = rows[keep], cols[keep], lab[keep]
    footprints = patch_footprints(rows, cols, cfg.patch)
    split_series = checkerboard_split(footprints, cfg.block, origin=(0.0, 0.0))
    split = split_series.to_numpy()
    leak = split_leakage(footprints, split_series)
    if leak["leaking"]:
        raise DataError(f"the split leaks: {leak}")  # cannot happen by construction
    if cfg.select:  # score on every other block row of the training blocks, never on test
        block_row = rows // cfg.block
        split = np.where(split == "train",
                         np.where(block_row % 2 == cfg.select_half, "train", "test"), "drop")
    class_ids = np.unique(lab)
    k = len(class_ids)
    y_all = np.searchsorted(class_ids, lab)  # 0..K-1
    known = list(SF_AIRSAR_CLASSES)
    class_names = [known[c] if c < len(known) else str(c) for c in class_ids]
    tr, te = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    missing = [class_names[c] for c in range(k) if not np.any(y_all[tr] == c)]
    if missing or len(te) == 0:
        raise DataError(f"the checkerboard leaves no training patch of {missing} or no test "
                        "patch; use a smaller --block or --stride", label_path)
    data_info = {
        "scene": str(folder), "labels": str(label_path), "shape": [h, w], "classes": class_names,
        "patches_labelled": len(lab), "train": len(tr), "test": len(te),
        "dropped_on_borders": int((split == "drop").sum()), "leakage": leak,
        "train_per_class": np.bincount(y_all[tr], minlength=k).tolist(),
        "test_per_class": np.bincount(y_all[te], minlength=k).tolist(),
        "scored_on": ("half of the training blocks (--select)" if cfg.select
                      else "test blocks"),
    }
    log(f"PolSAR {h}x{w}, {k} classes; {len(lab)} labelled {cfg.patch}px patches (stride "
        f"{cfg.stride}, purity {cfg.purity}): {len(tr)} train / {len(te)} test / "
        f"{data_info['dropped_on_borders']} dropped on {cfg.block}px block borders")
    images = _cut(scene, rows, cols, cfg.patch)
    sizes = (cfg.patch, *cfg.windows)
    origins = [window_origins(rows, cols, cfg.patch, s_, h, w) for s_ in sizes]
    #: evaluation-name suffix of the multi-scale rows
    ms = f" ({'+'.join(str(s_) for s_ in sizes)} px)" if cfg.windows else ""
    y_train, y_test = y_all[tr], y_all[te]
    _plot_split(arr, kind, labels, rows, cols, split, cfg, class_ids, class_names,
                out / "split.png")

    # budgets: the same rows for every method
    draws = {(b, s): tr[draw_budget(y_train, Budget(per_class=b), s)]
             for b in cfg.budgets for s in range(cfg.seeds)}
    runs: list[dict[str, Any]] = []

    def record(row: str, evaluation: str, budget: int, seed: int, metrics: dict[str, float],
               **extra: Any) -> None:
        runs.append({"row": row, "eval": evaluation, "budget": budget, "seed": seed,
                     "metrics": metrics, **extra})

    def probe(x: Tensor, idx: np.ndarray, seed: int) -> tuple[Tensor, dict[str, float]]:
        """The linear probe of every frozen-feature row: fitted on the rows ``idx`` only."""
        xb, yb = x[idx], torch.as_tensor(y_all[idx])
        if cfg.probe_folds >= 2:
            return cv_linear_probe(xb, yb, x[te], k, folds=cfg.probe_folds, seed=seed,
                                   device=device)
        return linear_probe(xb, yb, x[te], k, seed=seed, device=device)

    # -- hand-crafted baseline ---------------------------------------------------------------
    # five phases, each logged with its time; the loops inside show progress and the time left
    n_draws = len(draws)
    done = phase(log, 1, 5, f"hand-crafted baselines: 2 feature sets x {n_draws} label draws")
    t0 = time.perf_counter()
    for mode, row in (("matrix", "hand-crafted (patch-mean T3)"),
                      ("pixel", "hand-crafted (mean per-pixel features)")):
        per_size = [patch_mean_features(arr, r_, c_, s_, kind, mode)
                    for (r_, c_), s_ in zip(origins, sizes)]
        variants = [("", per_size[0])] + ([(ms, np.concatenate(per_size, 1))] if ms else [])
        for suffix, hc in variants:
            for (b, s), idx in progress(draws.items(), desc=row + suffix, total=n_draws,
                                        unit="draw"):
                p = logreg_scores(hc[idx], y_all[idx], hc[te], k, device=device)  # C = 1
                record(row, HC_FIXED_C + suffix, b, s, _metrics(y_test, p, k))
                if cfg.probe_folds >= 2:  # the very probe (and CV) of the learned features
                    logits, chosen = probe(torch.from_numpy(hc), idx, s)
                    record(row, "linear probe" + suffix, b, s, _metrics(y_test, logits, k),
                           probe=chosen)
    timings["handcrafted"] = time.perf_counter() - t0
    done()

    # -- frozen-feature protocols --------------------------------------------------------------
    def probe_rows(row: str, feats_all: Tensor, knn: bool, suffix: str = "") -> None:
        for (b, s), idx in progress(draws.items(), desc=row + suffix, total=len(draws),
                                    unit="draw"):
            logits, chosen = probe(feats_all, idx, s)
            record(row, "linear probe" + suffix, b, s, _metrics(y_test, logits, k),
                   probe=chosen)
            if knn:
                xb, yb = feats_all[idx], torch.as_tensor(y_all[idx])
                sc = knn_scores(xb, yb, feats_all[te], k, k=min(cfg.knn_k, len(idx)),
                                device=device)
                record(row, f"kNN (k={cfg.knn_k})" + suffix, b, s, _metrics(y_test, sc, k))

    eval_rows = np.concatenate([tr, te])
    stages = tuple(cfg.feature_stages) or None

    def frozen_rows(row: str, enc: nn.Module, knn: bool) -> Tensor:
        """Probe (and kNN) rows of a frozen encoder: on the patch, then multi-scale."""
        win_r = np.stack([r_[eval_rows] for r_, _ in origins])
        win_c = np.stack([c_[eval_rows] for _, c_ in origins])
        parts = embed_windows(enc, scene, win_r, win_c, sizes, device, stages,
                              desc=f"{row}: features")
        feats_all = []
        for f_eval in (parts[0], torch.cat(parts, 1)) if ms else (parts[0],):
            f_all = torch.zeros(len(lab), f_eval.shape[1])
            f_all[torch.as_tensor(eval_rows)] = f_eval
            feats_all.append(f_all)
        probe_rows(row, feats_all[0], knn)
        if ms:
            probe_rows(row, feats_all[1], knn, ms)
        return feats_all[-1]
    pretrain_info: dict[str, Any] = {}
    done = phase(log, 2, 5, f"SSL encoders ({', '.join(cfg.methods) or 'none'}): "
                 f"{'loading' if cfg.encoders else 'pretraining'}, then frozen features, "
                 f"linear probe and kNN on {n_draws} label draws each")
    if cfg.methods:
        prow, pcol = _grid(h, w, cfg.context, cfg.pretrain_stride)
        windows = _Windows(scene, prow, pcol, cfg.context)
        if cfg.encoders:
            log(f"loading the SSL encoders of {cfg.encoders} (same pretraining options)")
        else:
            log(f"SSL pretraining on {len(windows)} unlabelled {cfg.context}px windows of the "
                f"whole scene, {cfg.pretrain_steps} steps x batch {cfg.pretrain_batch} on {device}")
    for name in cfg.methods:
        if cfg.encoders:
            enc, info = load_pretrained(cfg.encoders, name, cfg)
        else:
            enc, info = pretrain(name, windows, cfg, (mean.tolist(), std.tolist()), device, log)
        log(f"{name}: {info['seconds']:.0f}s, loss {info['loss_first']:.3f} -> "
            f"{info['loss_last']:.3f}")
        pretrain_info[name] = {k_: v for k_, v in info.items() if k_ != "curve"}
        pretrain_info[name]["curve"] = info["curve"][:: max(1, len(info["curve"]) // 100)]
        if Path(info.get("loaded_from", "")).resolve() != (out / f"{name}_encoder.pt").resolve():
            with atomic_path(out / f"{name}_encoder.pt") as tmp:
                torch.save(enc.state_dict(), tmp)
        t0 = time.perf_counter()
        f_all = frozen_rows(f"geossl {pretty_name(name)}", enc, knn=True)
        timings[f"eval_{name}"] = time.perf_counter() - t0
        if cfg.tsne:
            _tsne(f_all[te].numpy(), y_test, class_names, out / f"tsne_{name}.png",
                  f"t-SNE of geossl {pretty_name(name)} embeddings (test patches)")

    done()

    # -- random encoder, linear probe --------------------------------------------------------
    done = phase(log, 3, 5, f"random-init encoder: frozen features, linear probe on {n_draws} "
                 "label draws")
    t0 = time.perf_counter()
    rnd = build_bench_encoder(cfg.backbone, 9, cfg.stem_stride, cfg.seed)
    frozen_rows("random init", rnd, knn=False)
    timings["eval_random"] = time.perf_counter() - t0
    done()

    # -- supervised from scratch on the same labels ------------------------------------------
    done = phase(log, 4, 5, f"supervised from scratch: {n_draws if cfg.scratch_steps > 0 else 0}"
                 f" trainings of {cfg.scratch_steps} steps")
    t0 = time.perf_counter()
    dataset = _Patches(images, torch.as_tensor(y_all))
    for (b, s), idx in progress(draws.items() if cfg.scratch_steps > 0 else (),
                                desc="supervised from scratch", unit="training",
                                total=n_draws if cfg.scratch_steps > 0 else 0):
        enc = build_bench_encoder(cfg.backbone, 9, cfg.stem_stride, cfg.seed + s)
        res = finetune(enc, dataset, idx.tolist(), te.tolist(), k, steps=cfg.scratch_steps,
                       batch_size=64, lr=cfg.scratch_lr, weight_decay=1e-4, device=device,
                       seed=s, desc=f"scratch {b}/class seed {s}")
        record("supervised from scratch", "same encoder, end to end", b, s,
               _metrics(res["labels"].numpy(), res["scores"], k))
    timings["scratch"] = time.perf_counter() - t0
    done()

    # -- report ------------------------------------------------------------------------------
    # the SSL line judged against every baseline, fixed before any score is seen: the first
    # method, linear probe, on the richest features (multi-scale when windows are given)
    primary = (f"geossl {pretty_name(cfg.methods[0])}" if cfg.methods else "",
               "linear probe" + ms)
    done = phase(log, 5, 5, "summary, comparison and verdict")
    result = _report(cfg, runs, primary, t_start, log, device=str(device),
                     threads=torch.get_num_threads(), data=data_info, pretrain=pretrain_info,
                     timings=timings)
    done()
    return result


def _report(cfg: PolsarBenchConfig, runs: list[dict[str, Any]], primary: tuple[str, str],
            t_start: float, log: Callable[[str], None], **record: Any) -> dict[str, Any]:
    """Summary, table and paired comparison of ``runs``: written and logged.

    The results go to ``<out>/results.json`` (with ``record``: device, data, pretraining,
    timings) and the table to ``<out>/table.md``; one owner for both kinds of run.
    """
    summary = summarise(runs, cfg.budgets)
    comparison = compare_to_baselines(runs, primary, cfg.budgets) if cfg.methods else []
    seconds = time.perf_counter() - t_start
    table = to_markdown(summary, cfg.budgets)
    results = {
        "config": jsonable(dataclasses.asdict(cfg)), **record, "seconds": seconds,
        "summary": summary, "runs": runs, "table": table,
        "verdict": verdict(summary, cfg.budgets[0], runs),
        "primary": list(primary), "comparison": comparison,
        "comparison_table": comparison_markdown(comparison, primary, cfg.budgets),
        "comparison_verdict": comparison_verdict(comparison, primary, cfg.budgets),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(cfg.out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "table.md", table)
    log(table)
    log(results["comparison_table"])
    log(results["comparison_verdict"])
    log(f"total {seconds:.0f}s")
    return results


def run_both_halves(cfg: PolsarBenchConfig, log: Callable[[str], None] = print
                    ) -> dict[str, Any]:
    """A selection run (``select``) scored on each half of the training blocks in turn.

    Runs :func:`run_polsar_benchmark` with ``select_half`` 0 then 1 (in ``<out>/half0`` and
    ``<out>/half1``; the second reuses the SSL encoders of the first, pretraining uses no
    label) and pools their runs: the draws of half 1 get seeds ``seeds .. 2 seeds - 1``, so
    the table and the paired comparison cover ``2 x seeds`` draws and every training block is
    scored once. No test-block patch is used.

    Returns:
        the pooled results, also written to ``<out>/results.json`` (``data.halves``: each
        half's data record).
    """
    out = Path(cfg.out)
    t_start = time.perf_counter()
    first = run_polsar_benchmark(
        dataclasses.replace(cfg, select_half=0, out=str(out / "half0")), log)
    encoders = cfg.encoders or (str(out / "half0") if cfg.methods else None)
    second = run_polsar_benchmark(
        dataclasses.replace(cfg, select_half=1, out=str(out / "half1"), encoders=encoders), log)
    runs = [{**r, "half": 0} for r in first["runs"]]
    runs += [{**r, "half": 1, "seed": r["seed"] + cfg.seeds} for r in second["runs"]]
    halves = [first["data"], second["data"]]
    data = {**{k_: v for k_, v in first["data"].items()
               if k_ not in ("train", "test", "train_per_class", "test_per_class")},
            "scored_on": "each half of the training blocks in turn (--select-half 2), pooled",
            "train": sum(d["train"] for d in halves), "test": sum(d["test"] for d in halves),
            "train_per_class": np.sum([d["train_per_class"] for d in halves], 0).tolist(),
            "test_per_class": np.sum([d["test_per_class"] for d in halves], 0).tolist(),
            "halves": halves}
    log("both halves of the training blocks, pooled:")
    primary = (first["primary"][0], first["primary"][1])
    return _report(cfg, runs, primary, t_start, log, device=first["device"],
                   threads=first["threads"], data=data, pretrain=first["pretrain"],
                   timings={f"half{i}_{k_}": v for i, r in enumerate((first, second))
                            for k_, v in r["timings"].items()})


def pretty_name(name: str) -> str:
    """Display name of an SSL method in the table (``moco`` -> ``MoCo v2``)."""
    return {"simclr": "SimCLR", "moco": "MoCo v2", "byol": "BYOL"}.get(name, name)


# ----------------------------------------------------------------------------------------------
# summary and table
# ----------------------------------------------------------------------------------------------
def summarise(runs: Sequence[dict[str, Any]], budgets: Sequence[int]) -> list[dict[str, Any]]:
    """Mean and std over seeds of OA/AA/F1 per (row, evaluation, budget).

    The aggregation is evaluation's own (:func:`geossl.eval.report.summarise`, a table line
    as its task and the evaluation as its protocol), laid out per table line.

    Returns:
        one record per (row, evaluation) in first-seen order, ``{"row", "eval", "budgets":
        {budget: {"oa": {"mean", "std", "n"}, "aa": ..., "f1_macro": ...}}}``.
    """
    from geossl.eval.report import summarise as summarise_runs

    groups = summarise_runs([{"task": r["row"], "protocol": r["eval"], "budget": r["budget"],
                              "seed": r["seed"], "metrics": r["metrics"]} for r in runs])
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for g in groups:
        rec = out.setdefault((g["task"], g["protocol"]),
                             {"row": g["task"], "eval": g["protocol"], "budgets": {}})
        rec["budgets"][g["budget"]] = {m: g["metrics"].get(m, mean_std([]))
                                       for m in ("oa", "aa", "f1_macro")}
    order = {str(b): i for i, b in enumerate(budgets)}
    for rec in out.values():
        rec["budgets"] = dict(sorted(rec["budgets"].items(), key=lambda kv: order.get(kv[0], 99)))
    return list(out.values())


def to_markdown(summary: Sequence[dict[str, Any]], budgets: Sequence[int]) -> str:
    """The benchmark table: one line per (row, evaluation), OA and AA per budget."""
    head = "| method | evaluation | " + " | ".join(
        f"OA @{b}/class | AA @{b}/class" for b in budgets) + " |"
    lines = [head, "| --- | --- |" + " ---: | ---: |" * len(budgets)]
    for rec in summary:
        cells = []
        for b in budgets:
            stat = rec["budgets"].get(str(b), {})
            cells += [format_cell(stat.get("oa"), always_std=True),
                      format_cell(stat.get("aa"), always_std=True)]
        lines.append(f"| {rec['row']} | {rec['eval']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_gap(runs: Sequence[dict[str, Any]], a: tuple[str, str], b: tuple[str, str],
               budget: int, metric: str = "oa") -> dict[str, float] | None:
    """Per-seed difference ``a - b`` of ``metric`` on the same label draws.

    Args:
        runs: the benchmark's per-seed records (``row``, ``eval``, ``budget``, ``seed``,
            ``metrics``).
        a: ``(row, eval)`` of the first table line.
        b: ``(row, eval)`` of the second.
        budget: labels per class.
        metric: ``oa``, ``aa`` or ``f1_macro``.

    Returns:
        ``{"mean", "std" (over seeds, ddof 1), "wins" (seeds where a > b), "n"}``, or ``None``
        when the two lines share no seed.
    """
    def by_seed(key: tuple[str, str]) -> dict[int, float]:
        return {int(r["seed"]): float(r["metrics"][metric]) for r in runs
                if (r["row"], r["eval"]) == key and int(r["budget"]) == int(budget)}

    x, y = by_seed(a), by_seed(b)
    seeds = sorted(set(x) & set(y))
    if not seeds:
        return None
    return difference_stats([x[i] - y[i] for i in seeds])


def compare_to_baselines(runs: Sequence[dict[str, Any]], primary: tuple[str, str],
                         budgets: Sequence[int]) -> list[dict[str, Any]]:
    """Paired comparison of one SSL line with every baseline line, per budget and metric.

    A baseline line is every ``(row, eval)`` whose row does not start with ``geossl``. The gap
    is ``primary - baseline`` per seed on the same label draws (:func:`paired_gap`), with a
    two-sided 95 % Student t interval of its mean; a gap is *clear* when that interval lies
    above zero.

    Args:
        runs: per-seed records of the benchmark.
        primary: ``(row, eval)`` of the SSL line, fixed before the run (never the best on test).
        budgets: labels per class.

    Returns:
        one record per baseline line: ``{"row", "eval", "budgets": {budget: {"oa": gap, "aa":
        gap}}}`` with each gap ``{"mean", "std", "wins", "n", "low", "high", "clear"}`` (or
        ``None`` when the lines share no seed).
    """
    lines = list(dict.fromkeys((r["row"], r["eval"]) for r in runs
                               if not str(r["row"]).startswith("geossl")))
    out = []
    for line in lines:
        rec: dict[str, Any] = {"row": line[0], "eval": line[1], "budgets": {}}
        for b in budgets:
            cell: dict[str, Any] = {}
            for m in ("oa", "aa"):
                gap = paired_gap(runs, primary, line, b, m)
                cell[m] = with_interval(gap) if gap is not None else None
            rec["budgets"][str(b)] = cell
        out.append(rec)
    return out


def comparison_markdown(comparison: Sequence[dict[str, Any]], primary: tuple[str, str],
                        budgets: Sequence[int]) -> str:
    """Table of :func:`compare_to_baselines`: paired gap, 95 % interval and seeds won."""
    def cell(g: dict[str, Any] | None) -> str:
        if g is None:
            return "-"
        return (f"{g['mean']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}] "
                f"{g['wins']}/{g['n']}{' ✓' if g['clear'] else ''}")

    head = (f"| {primary[0]}, {primary[1]} minus ... | " + " | ".join(
        f"ΔOA @{b} | ΔAA @{b}" for b in budgets) + " |")
    lines = [head, "| --- |" + " ---: | ---: |" * len(budgets)]
    for rec in comparison:
        cells = []
        for b in budgets:
            c = rec["budgets"].get(str(b), {})
            cells += [cell(c.get("oa")), cell(c.get("aa"))]
        lines.append(f"| {rec['row']}, {rec['eval']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_verdict(comparison: Sequence[dict[str, Any]], primary: tuple[str, str],
                       budgets: Sequence[int]) -> str:
    """One paragraph: does the SSL line beat every baseline line clearly, per budget?

    Clearly = the 95 % paired interval of the gap above zero on OA and on AA, against every
    baseline line (:func:`compare_to_baselines`).
    """
    parts = []
    for b in budgets:
        if not comparison:
            parts.append(f"at {b}/class: no baseline")
            continue
        lost = {m: [f"{r['row']}, {r['eval']}" for r in comparison
                    if not (r["budgets"].get(str(b), {}).get(m) or {}).get("clear")]
                for m in ("oa", "aa")}
        if not lost["oa"] and not lost["aa"]:
            parts.append(f"at {b}/class SSL is clearly ahead of all {len(comparison)} baseline "
                         "lines on OA and AA")
        else:
            parts.append(
                f"at {b}/class SSL is NOT clearly ahead of every baseline: not clear on OA "
                f"against {len(lost['oa'])}/{len(comparison)} lines"
                + (f" ({'; '.join(lost['oa'])})" if lost["oa"] else "")
                + f", on AA against {len(lost['aa'])}/{len(comparison)}"
                + (f" ({'; '.join(lost['aa'])})" if lost["aa"] else ""))
    return (f"SSL line fixed in advance: {primary[0]}, {primary[1]}; "
            + "; ".join(parts) + ".")


def verdict(summary: Sequence[dict[str, Any]], budget: int,
            runs: Sequence[dict[str, Any]] | None = None) -> str:
    """One line: does the best geossl SSL row beat every baseline at ``budget`` labels/class?

    Compares mean OA and mean AA; SSL must be higher on both against the best baseline of each.
    With ``runs``, adds the paired per-seed gaps (:func:`paired_gap`) to those two baselines,
    so that a gap smaller than the seed-to-seed spread reads as such.
    """
    b = str(budget)

    def score(rec: dict[str, Any], m: str) -> float:
        stat = rec["budgets"].get(b, {}).get(m) or {}
        v = stat.get("mean")
        return float(v) if v is not None else -math.inf

    ssl = [r for r in summary if r["row"].startswith("geossl")]
    base = [r for r in summary if not r["row"].startswith("geossl")]
    if not ssl or not base:
        return "no SSL row or no baseline to compare"
    best_ssl = max(ssl, key=lambda r: (score(r, "oa"), score(r, "aa")))
    best_oa = max(base, key=lambda r: score(r, "oa"))
    best_aa = max(base, key=lambda r: score(r, "aa"))
    wins = score(best_ssl, "oa") > score(best_oa, "oa") and score(best_ssl, "aa") > score(
        best_aa, "aa")
    text = (f"At {budget} labels/class, best SSL ({best_ssl['row']}, {best_ssl['eval']}) OA "
            f"{score(best_ssl, 'oa'):.3f} / AA {score(best_ssl, 'aa'):.3f} vs best baseline OA "
            f"{score(best_oa, 'oa'):.3f} ({best_oa['row']}, {best_oa['eval']}) / AA "
            f"{score(best_aa, 'aa'):.3f} ({best_aa['row']}, {best_aa['eval']}): SSL "
            f"{'has higher means than' if wins else 'does NOT have higher means than'} all "
            "baselines (means only: no test of a clear win).")
    if runs:
        key = (best_ssl["row"], best_ssl["eval"])
        parts = []
        for m, ref in (("oa", best_oa), ("aa", best_aa)):
            gap = paired_gap(runs, key, (ref["row"], ref["eval"]), budget, m)
            if gap is not None:
                parts.append(f"{m.upper()} {gap['mean']:+.3f} ± {gap['std']:.3f} (SSL ahead in "
                             f"{gap['wins']}/{gap['n']} seeds)")
        if parts:
            text += " Paired over the same label draws: " + ", ".join(parts) + "."
    return text


# ----------------------------------------------------------------------------------------------
# pictures
# ----------------------------------------------------------------------------------------------
def _plot_split(arr: np.ndarray, kind: str, labels: np.ndarray, rows: np.ndarray,
                cols: np.ndarray, split: np.ndarray, cfg: PolsarBenchConfig,
                class_ids: np.ndarray, class_names: list[str], path: Path) -> None:
    """Pauli RGB | labels with the checkerboard | the patches kept for train/test."""
    from geossl.viz.plots import plot_polsar_split

    plot_polsar_split(pauli_rgb(arr, kind), labels, rows, cols, split, cfg.block, cfg.patch,
                      class_ids, class_names, path)


def _tsne(x: np.ndarray, y: np.ndarray, names: list[str], path: Path, title: str) -> None:
    from geossl.viz.plots import plot_tsne

    try:
        plot_tsne(x, y, path, class_names=names, max_points=2000, title=title)
    except DataError:
        pass  # fewer than 3 test patches (tiny test scenes)
