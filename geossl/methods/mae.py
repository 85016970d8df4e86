"""MAE: masked autoencoding of multispectral chips with a timm ViT (He et al., 2022).

The encoder is the geossl :class:`~geossl.models.Encoder` every method uses, whose trunk is a
timm ``VisionTransformer`` (``--backbone vit_small_patch8`` etc.), so the pretrained encoder
exports to TorchGeo/timm like any other (:mod:`geossl.inference.export`). MAE adds:

* **masking**: a random ``mask_ratio`` share of the patch tokens of each image is removed
  before the encoder; exactly ``round(mask_ratio * N)`` of the ``N`` tokens are masked in every
  image (:func:`random_masking`);
* **positional embeddings**: fixed 2D sine-cosine embeddings computed for the chip's patch
  grid (``img_size / patch``), in the encoder (timm's ``pos_embed``, frozen, as in MAE) and in
  the decoder; with ``--pretrained`` weights the encoder keeps their (resampled) embedding;
* **a light decoder** (lightly's ``MaskedVisionTransformerDecoderTIMM``: mask token, timm
  blocks, norm) of ``decoder_depth`` blocks of width ``decoder_dim``, and a linear head that
  predicts every pixel of every band of each patch;
* **the loss** (:func:`geossl.methods.losses.mae_loss`): the mean squared error over the
  masked patches, against per-patch normalised pixels with ``norm_pix_loss`` (the MAE default).

**Spectral grouping** (``mae_groups``, ``--mae-groups "B02,B03,B04;B05,B06,B07,B08,B8A;B11,B12"``,
as in SatMAE, Cong et al., 2022): the bands are split by name into groups, each group has its
own patch embedding, and its tokens carry the 2D position embedding plus a learned group
embedding; the ``G x N`` tokens are masked independently (the share over all of them) and every
group's head reconstructs its own bands. Bands in no group are neither encoded nor
reconstructed (SatMAE leaves B01, B09, B10 out). A grouped encoder is not a plain timm ViT (it
has one patch embedding per group and ``G`` times the tokens): ``geossl export`` refuses it in
one line; train without ``mae_groups`` for a TorchGeo-loadable encoder.

**Features** (``feature_pool``, default ``avg``): the encoder's ``(B, D)`` output is the mean
of its patch tokens (timm's ``global_pool="avg"``, with the trunk's final norm kept and no
``fc_norm``, so the weights are those of the default class-token ViT, tensor for tensor). MAE's
loss trains the patch tokens, which the decoder reads; the class token only takes part through
attention, and after a short pretraining it is close to its initialisation. Average-pooled
patch tokens are what MAE's own fine-tuning uses (``global_pool`` in its main_finetune.py) and
what a frozen MAE encoder is usually probed with; ``feature_pool="token"`` keeps timm's class
token. Measured on the demo scene (600 steps of 32 chips, ViT-Tiny/8, seed 0; kNN OA,
random init with the same pooling in brackets): class token 0.990 (0.991), patch-token mean
0.994 (0.988). The choice is recorded in the checkpoint's encoder configuration, so
:func:`~geossl.pretrained.checkpoint.load_encoder`, the random-init baseline
(:func:`~geossl.pretrained.checkpoint.random_like`) and ``geossl export --format timm`` (its
``timm_kwargs``) rebuild the same pooling; TorchGeo's trainers build their ViT by name, with
the class token, and fine-tune it.

MAE needs no positive pair: it makes one augmented view (random resized crop and flips, no
colour jitter or blur, as in MAE) of the first sensor, so it supports the ``aug`` pairing only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from geossl.core.errors import ConfigError
from geossl.core.pairing import image_key
from geossl.methods.base import SSLMethod, fp32_region
from geossl.methods.losses import mae_token_loss
from geossl.methods.specs import EncoderSpec, MethodOptions, OptimSpec, ViewSpec
from geossl.methods.views import View

#: MAE's view augmentation: crop and flips only (no photometric change, as in the MAE paper)
MAE_AUGMENT: dict[str, Any] = {"jitter_p": 0.0, "blur_p": 0.0, "grayscale_p": 0.0}


def parse_groups(value: str | Sequence[Sequence[str]] | None) -> list[list[str]]:
    """Band-name groups of ``--mae-groups`` (``"B02,B03,B04;B05,B06"``) or of a YAML list.

    Raises:
        ConfigError: an empty group or a band named twice.
    """
    if value is None or value == "":
        return []
    if isinstance(value, str):
        groups = [[b.strip() for b in part.split(",") if b.strip()] for part in value.split(";")]
    else:
        groups = [[str(b).strip() for b in part] for part in value]
    if any(not g for g in groups):
        raise ConfigError(f"--mae-groups {value!r}: empty group (groups are split by ';', "
                          "bands by ',')")
    names = [b for g in groups for b in g]
    twice = sorted({b for b in names if names.count(b) > 1})
    if twice:
        raise ConfigError(f"--mae-groups: band {twice[0]} is in more than one group")
    return groups


def random_masking(
    batch: int, tokens: int, mask_ratio: float, device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mask exactly ``round(mask_ratio * tokens)`` random tokens of every sample.

    Written here rather than using lightly's ``random_token_mask``: that one keeps
    ``int(N * (1 - ratio))`` tokens, whose floating-point floor can drop one (``int(10 * (1 -
    0.9)) == 0``), so the masked share would not be exactly the one asked for.

    Args:
        batch: samples.
        tokens: patch tokens per sample (no prefix tokens).
        mask_ratio: share of the tokens to mask, in ``(0, 1)``.
        device: where the indices live.
        generator: random generator (for tests).

    Returns:
        ``(idx_keep, idx_mask, mask)``: ``(B, N - M)`` and ``(B, M)`` token indices, and the
        ``(B, N)`` float mask (1 = masked).

    Raises:
        ConfigError: a ratio that masks no token or every token.
    """
    n_mask = round(mask_ratio * tokens)
    if not 0 < n_mask < tokens:
        raise ConfigError(f"mask_ratio {mask_ratio} masks {n_mask} of {tokens} tokens: it must "
                          "mask at least one and keep at least one")
    noise = torch.rand(batch, tokens, generator=generator,
                       device=device if generator is None else generator.device)
    order = torch.argsort(noise.to(device) if device is not None else noise, dim=1)
    idx_keep, idx_mask = order[:, : tokens - n_mask], order[:, tokens - n_mask:]
    mask = torch.zeros(batch, tokens, device=order.device)
    mask.scatter_(1, idx_mask, 1.0)
    return idx_keep, idx_mask, mask


def _gather(tokens: Tensor, index: Tensor) -> Tensor:
    """``tokens[b, index[b]]`` for ``(B, N, D)`` tokens and ``(B, K)`` indices."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


@dataclasses.dataclass(frozen=True)
class MAEOptions(MethodOptions):
    """MAE's own options.

    Attributes:
        mask_ratio: share of the patch tokens masked (0.75 in MAE).
        norm_pix_loss: reconstruct per-patch normalised pixels (MAE's better default).
        decoder_dim: decoder width (512 in MAE).
        decoder_depth: decoder blocks (8 in MAE).
        decoder_heads: decoder attention heads.
        mae_groups: spectral groups by band name, ``"B02,B03,B04;B05,B06;B11,B12"`` (SatMAE);
            ``None``: one patch embedding over all bands.
        feature_pool: the encoder's features: ``avg`` (mean of the patch tokens, the tokens
            MAE's loss trains) or ``token`` (timm's class token); see the module docstring.
    """

    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    mae_groups: str | None = None
    feature_pool: str = "avg"

    def __post_init__(self) -> None:
        """Check the ratio, the decoder shape and the pooling."""
        if self.feature_pool not in ("avg", "token"):
            raise ConfigError(f"feature_pool must be avg or token, got {self.feature_pool!r}")
        if not 0 < self.mask_ratio < 1:
            raise ConfigError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.decoder_depth < 1 or self.decoder_dim < 1 or self.decoder_heads < 1:
            raise ConfigError("decoder_depth, decoder_dim and decoder_heads must be >= 1")
        if self.decoder_dim % self.decoder_heads:
            raise ConfigError(f"decoder_dim {self.decoder_dim} is not a multiple of "
                              f"decoder_heads {self.decoder_heads}")
        parse_groups(self.mae_groups)


class MAE(SSLMethod[MAEOptions]):
    """Masked autoencoder on a timm ViT, optionally with SatMAE spectral groups.

    Optimiser defaults: AdamW, lr 1.5e-4 per 256 samples, weight decay 0.05, betas
    (0.9, 0.95), as in MAE.
    """

    method_name = "mae"
    pairings = ("aug",)
    pairing_note = ("MAE reconstructs one masked image and needs no positive pair: it uses "
                    "one augmented view of the first sensor (aug)")
    options_type = MAEOptions
    #: the MAE paper's pretraining recipe (its Table 8): AdamW, base lr 1.5e-4 per 256 samples,
    #: weight decay 0.05, betas (0.9, 0.95) (a lower beta2 than Adam's 0.999 keeps the
    #: large-batch ViT training stable, as in the paper and its repository's main_pretrain.py)
    default_optim = OptimSpec(optimizer="adamw", lr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95))
    #: MAE checkpoints saved before ``feature_pool`` existed used the class token
    legacy_defaults: ClassVar[dict[str, Any]] = {"feature_pool": "token"}

    def __init__(
        self,
        encoder: EncoderSpec,
        optim: OptimSpec | None = None,
        views: ViewSpec | None = None,
        options: MAEOptions | None = None,
    ) -> None:
        """Configure MAE (see :class:`~geossl.methods.base.SSLMethod`).

        The views default to crop + flips (:data:`MAE_AUGMENT` under the given ``augment``).
        """
        views = ViewSpec() if views is None else views
        views = dataclasses.replace(views, augment={**MAE_AUGMENT, **(views.augment or {})})
        super().__init__(encoder, optim, views, options)

    # -- building -----------------------------------------------------------------------------
    def encoder_pool(self) -> str:
        """The ViT pools as ``feature_pool`` says (the patch-token mean by default)."""
        return self.options.feature_pool

    def build_heads(self) -> None:
        """Check the ViT trunk, set its sin-cos position embedding, build groups and decoder."""
        from lightly.models import utils as lutils
        from lightly.models.modules.masked_vision_transformer_decoder_timm import (
            MaskedVisionTransformerDecoderTIMM,
        )
        from lightly.models.modules.masked_vision_transformer_timm import init_weights
        from timm.layers import PatchEmbed

        o = self.options
        vit = self.encoder.backbone
        if not isinstance(vit, VisionTransformer) or vit.pos_embed is None:
            raise ConfigError(f"method mae needs a timm ViT backbone (e.g. vit_small_patch8), got "
                              f"{self.encoder_spec.backbone!r}")
        if vit.reg_token is not None or getattr(vit, "dynamic_img_size", False):
            raise ConfigError(f"method mae: backbone {self.encoder_spec.backbone!r} has register "
                              "tokens or a dynamic image size, which MAE does not handle")
        grid = vit.patch_embed.grid_size
        self.patch = int(vit.patch_embed.patch_size[0])
        self.num_patches = int(grid[0] * grid[1])
        self.prefix = int(vit.num_prefix_tokens)
        dim = int(vit.embed_dim)
        sensor = self.sensors[0]
        n_bands = int((self.encoder_spec.in_chans or {})[sensor])
        self.groups = parse_groups(o.mae_groups)
        self.group_index: list[list[int]] = []
        if self.groups:
            if self.encoder.adapter is not None:
                raise ConfigError("method mae: --mae-groups replaces the band adapter; drop "
                                  "--adapter")
            names = list((self.encoder_spec.bands or {}).get(sensor) or [])
            if len(names) != n_bands:
                raise ConfigError(f"--mae-groups needs the names of the {n_bands} bands of "
                                  f"sensor {sensor} (the data gave {names or 'none'})")
            for group in self.groups:
                unknown = [b for b in group if b not in names]
                if unknown:
                    raise ConfigError(f"--mae-groups: band {unknown[0]} is not one of the data's "
                                      f"bands ({','.join(names)})")
                self.group_index.append([names.index(b) for b in group])
            img = int(grid[0]) * self.patch
            # one patch embedding per group (SatMAE); timm's, as the trunk's own
            self.group_embeds = nn.ModuleList(
                PatchEmbed(img, self.patch, len(g), dim) for g in self.group_index)
            self.group_pos = nn.Parameter(torch.zeros(1, len(self.groups), 1, dim))
            # the trunk's own patch embedding is unused: frozen, so DDP sees no unused gradient
            vit.patch_embed.requires_grad_(False)
        if self.encoder_spec.pretrained is None:
            # MAE's initialisation (lightly's init_weights: xavier linears, unit norms)
            w = vit.patch_embed.proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            vit.apply(init_weights)
            for embed in getattr(self, "group_embeds", []):
                w = embed.proj.weight.data
                nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            lutils.initialize_2d_sine_cosine_positional_embedding(
                vit.pos_embed, num_prefix_tokens=0 if vit.no_embed_class else self.prefix)
        vit.pos_embed.requires_grad_(False)  # fixed, as in MAE
        n_groups = max(1, len(self.groups))
        self.decoder_embed = nn.Linear(dim, o.decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=self.num_patches * n_groups, embed_dim=o.decoder_dim,
            depth=o.decoder_depth, num_heads=o.decoder_heads, num_prefix_tokens=self.prefix,
            initialize_weights=not self.groups)
        outs = ([len(g) for g in self.group_index] if self.groups else [n_bands])
        self.decoder_preds = nn.ModuleList(
            nn.Linear(o.decoder_dim, self.patch**2 * c) for c in outs)
        if self.groups:
            # lightly's decoder sizes its sin-cos grid from sqrt(#tokens): with G groups the
            # table is the chip's 2D table once per group, plus a learned group embedding
            nn.init.normal_(self.decoder.mask_token, std=0.02)
            table = torch.from_numpy(lutils.get_2d_sine_cosine_positional_embedding(
                o.decoder_dim, int(grid[0]), num_prefix_tokens=self.prefix)).float()
            patches = table[self.prefix:].repeat(n_groups, 1)
            self.decoder.pos_embed.data.copy_(
                torch.cat([table[: self.prefix], patches]).unsqueeze(0))
            self.decoder.apply(init_weights)
            self.decoder_group_pos = nn.Parameter(torch.zeros(1, n_groups, 1, o.decoder_dim))
            nn.init.normal_(self.group_pos, std=0.02)
            nn.init.normal_(self.decoder_group_pos, std=0.02)
        self.decoder_embed.apply(init_weights)
        self.decoder_preds.apply(init_weights)

    # -- the forward passes -------------------------------------------------------------------
    @property
    def vit(self) -> VisionTransformer:
        """The encoder's timm ViT trunk."""
        return cast("VisionTransformer", self.encoder.backbone)

    @property
    def pos_embed(self) -> Tensor:
        """The trunk's (fixed sin-cos) position embedding, prefix tokens first."""
        pos = self.vit.pos_embed
        assert pos is not None  # checked in build_heads
        return pos

    def _patch_tokens(self, x: Tensor) -> Tensor:
        """``(B, G*N, D)`` patch tokens with position (and group) embeddings, no prefix."""
        vit = self.vit
        pos = self.pos_embed if vit.no_embed_class else self.pos_embed[:, self.prefix:]
        if not self.groups:
            if self.encoder.adapter is not None:
                x = self.encoder.adapter(x)
            out: Tensor = vit.patch_embed(x) + pos
            return out
        parts = [embed(x[:, idx]) + pos + self.group_pos[:, g]
                 for g, (embed, idx) in enumerate(zip(self.group_embeds, self.group_index,
                                                      strict=True))]
        return torch.cat(parts, dim=1)

    def _encode_tokens(self, tokens: Tensor) -> Tensor:
        """Prefix tokens + the given patch tokens through the ViT trunk (normed output)."""
        vit = self.vit
        prefix = vit.cls_token.expand(tokens.shape[0], -1, -1) if vit.cls_token is not None \
            else tokens[:, :0]
        if not vit.no_embed_class and self.prefix:
            prefix = prefix + self.pos_embed[:, : self.prefix]
        x = vit.pos_drop(torch.cat([prefix, tokens], dim=1))
        x = vit.norm_pre(x)
        x = vit.blocks(x)
        out: Tensor = vit.norm(x)
        return out

    def features(self, x: Tensor) -> Tensor:
        """Unmasked features ``(B, D)`` of images, pooled as ``feature_pool`` says.

        For an ungrouped MAE this equals ``self.encoder(x)``; a grouped one needs this path.
        """
        if not self.groups:
            out: Tensor = self.encoder(x)
            return out
        tokens = self._encode_tokens(self._patch_tokens(x))
        vit = self.vit
        if getattr(vit, "global_pool", "token") == "avg":
            return tokens[:, self.prefix:].mean(dim=1)
        return tokens[:, 0]

    def targets(self, x: Tensor) -> list[Tensor]:
        """Per group, the ``(B, N, p*p*C_g)`` pixels each patch token reconstructs."""
        from lightly.models.utils import patchify

        if not self.groups:
            return [patchify(x, self.patch)]
        return [patchify(x[:, idx], self.patch) for idx in self.group_index]

    def reconstruct(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """Mask, encode the kept tokens, decode all of them.

        Returns:
            per group the ``(B, N, p*p*C_g)`` predictions, and the ``(B, G*N)`` mask
            (1 = masked).
        """
        from lightly.models.utils import repeat_token, set_at_index

        tokens = self._patch_tokens(x)
        b, n = tokens.shape[0], tokens.shape[1]
        idx_keep, _, mask = random_masking(b, n, self.options.mask_ratio, tokens.device,
                                           generator)
        encoded = self._encode_tokens(_gather(tokens, idx_keep))
        dec = self.decoder_embed(encoded)
        full = repeat_token(self.decoder.mask_token, (b, n)).to(dec.dtype)
        full = set_at_index(full, idx_keep, dec[:, self.prefix:])
        seq = self.decoder.add_pos_embed(torch.cat([dec[:, : self.prefix], full], dim=1))
        if self.groups:
            g = len(self.groups)
            patches = seq[:, self.prefix:].reshape(b, g, self.num_patches, -1)
            patches = (patches + self.decoder_group_pos).reshape(b, n, -1)
            seq = torch.cat([seq[:, : self.prefix], patches], dim=1)
        out = self.decoder.decode(seq)[:, self.prefix:]
        chunks = out.split(self.num_patches, dim=1)
        preds = [head(chunk) for head, chunk in zip(self.decoder_preds, chunks, strict=True)]
        return preds, mask

    def mae_loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The MAE loss of a batch of images (mean over the masked patches of all groups)."""
        preds, mask = self.reconstruct(x, generator)
        per_token = torch.cat(
            [mae_token_loss(p, t, self.options.norm_pix_loss)
             for p, t in zip(preds, self.targets(x), strict=True)], dim=1)
        return (per_token * mask).sum() / mask.sum()

    # -- training -----------------------------------------------------------------------------
    def make_view(self, batch: Mapping[str, Any]) -> View:
        """One augmented view of the first sensor (float32, outside autocast)."""
        sensor = self.sensors[0]
        ref = batch[image_key(sensor)]
        aug = self.augments(int(ref.shape[-1]))[sensor]
        with fp32_region(ref.device):
            x = aug(ref.float())
        return View(x, sensor)

    def compute_loss(
        self, view1: View, view2: View, batch: Mapping[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The MAE loss of ``view1`` (MAE takes one view; ``view2`` is not used)."""
        return self.mae_loss(view1.x), {}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """One view -> mask -> encoder -> decoder -> loss; logs ``train/loss``."""
        view = self.make_view(batch)
        loss, _ = self.compute_loss(view, view, batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False,
                 batch_size=int(view.x.shape[0]))
        return loss

    def compile_encoders(self) -> None:
        """Compile the encoder's and the decoder's blocks in place (MAE calls them directly)."""
        if self._compiled:
            return
        self.vit.blocks.compile()
        self.decoder.blocks.compile()
        self._compiled = True

    def geossl_metadata(self) -> dict[str, Any]:
        """The shared metadata, plus the spectral groups of a grouped MAE (export refuses it)."""
        meta = super().geossl_metadata()
        if self.groups:
            meta["mae_groups"] = [list(g) for g in self.groups]
        return meta
