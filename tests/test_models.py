"""Encoders: backbones for any band count, adapters, stems, fusion, pretrained stems, folding."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.models._manipulate import adapt_input_conv

from geossl.core.errors import ConfigError, DataError
from geossl.models import (
    BandAdapter,
    ClusterHead,
    PredictionHead,
    ProjectionHead,
    build_encoder,
    create_backbone,
    fold_adapter,
)


@pytest.mark.parametrize(
    ("name", "img", "features", "bands"),
    [("resnet18", None, 512, 2), ("resnet18", None, 512, 4), ("resnet18", None, 512, 13),
     ("vit_tiny_patch4", 32, 192, 2), ("vit_small_patch8_224", 32, 384, 4),
     ("vit_tiny_patch16_224", 32, 192, 13)],
)
def test_backbone_any_bands(name: str, img: int | None, features: int, bands: int) -> None:
    model = create_backbone(name, bands, img_size=img)
    out = model(torch.randn(2, bands, 32, 32))
    assert out.shape == (2, features)


def test_vit_patch_size_and_convnext() -> None:
    vit = create_backbone("vit_tiny_patch4", 13, img_size=64)
    assert vit.patch_embed.proj.kernel_size == (4, 4)
    assert vit.patch_embed.num_patches == 16 * 16
    assert create_backbone("vit_base_patch8", 2, img_size=32)(torch.randn(1, 2, 32, 32)).shape == (
        1, 768)
    convnext = create_backbone("convnext_tiny", 4)
    assert convnext(torch.randn(1, 4, 32, 32)).shape == (1, 768)


def test_unknown_backbone() -> None:
    with pytest.raises(ConfigError, match="unknown backbone"):
        create_backbone("resnet_does_not_exist", 3)


@pytest.mark.parametrize(("bands", "kind"), [(2, "linear"), (4, "nonlinear"),
                                           (13, "linear-frozen"), (13, "nonlinear")])
def test_adapter_encoder_shapes(bands: int, kind: str) -> None:
    enc = build_encoder("resnet18", bands, adapter=kind)
    assert enc.adapter is not None and enc.adapter.conv.in_channels == bands
    assert enc(torch.randn(2, bands, 32, 32)).shape == (2, enc.num_features)
    frozen = kind.endswith("frozen")
    assert all(p.requires_grad != frozen for p in enc.adapter.parameters())
    assert enc.backbone.conv1.in_channels == 3


def test_per_sensor_stems() -> None:
    enc = build_encoder("resnet18", {"s1": 2, "s2": 13, "rgbn": 4})
    assert enc.stems is not None and set(enc.stems) == {"s1", "s2", "rgbn"}
    for sensor, c in {"s1": 2, "s2": 13, "rgbn": 4}.items():
        x = torch.randn(2, c, 32, 32)
        assert enc(x, sensor=sensor).shape == (2, 512)
        assert enc({f"image_{sensor}": x}).shape == (2, 512)
        assert torch.equal(enc.eval()(x), enc(x, sensor=sensor))  # sensor told by bands
        enc.train()
    with pytest.raises(ValueError, match="unknown sensor"):
        enc(torch.randn(1, 2, 32, 32), sensor="s3")
    # one trunk shared by every sensor
    assert sum(1 for m in enc.modules() if isinstance(m, torch.nn.Linear | type(enc.backbone))) == 1


def test_for_sensor_matches_stem() -> None:
    enc = build_encoder("resnet18", {"s1": 2, "s2": 13}).eval()
    single = enc.for_sensor("s2").eval()
    x = torch.randn(2, 13, 32, 32)
    torch.testing.assert_close(single(x), enc(x, sensor="s2"))
    assert single.adapter is not None and single.stems is None


def test_fusion_mask_zero_fills() -> None:
    enc = build_encoder("resnet18", {"s1": 2, "s2": 13}, fusion=True).eval()
    assert enc.backbone.conv1.in_channels == 2 + 13 + 2
    s1, s2 = torch.randn(3, 2, 32, 32), torch.randn(3, 13, 32, 32)
    full = enc({"s1": s1, "s2": s2})
    assert full.shape == (3, 512)
    stacked = torch.cat([s1, s2], dim=1)
    torch.testing.assert_close(enc(stacked), full)
    # S2 only: the S1 block is zero-filled whatever it holds, and the mask channel says so
    mask = torch.tensor([[0.0, 1.0]]).expand(3, -1)
    only_s2 = enc(stacked, sensor_mask=mask)
    torch.testing.assert_close(only_s2, enc({"s2": s2}))
    torch.testing.assert_close(only_s2, enc(s2, sensor="s2"))
    assert not torch.allclose(only_s2, full)
    fused = enc.fuse(stacked, sensor_mask=mask)
    assert torch.equal(fused[:, :2], torch.zeros_like(fused[:, :2]))
    assert torch.equal(fused[:, 15], torch.zeros_like(fused[:, 15]))
    assert torch.equal(fused[:, 16], torch.ones_like(fused[:, 16]))


# ---------------------------------------------------------------------------------------------
# pretrained local weights
# ---------------------------------------------------------------------------------------------
def _rgb_weights(
    tmp_path: Path, name: str, **kwargs: object
) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    rgb = timm.create_model(name, pretrained=False, **kwargs)  # with its classifier
    state = rgb.state_dict()
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("bands", [2, 4, 13])
def test_pretrained_stem_adapted_not_discarded(tmp_path: Path, bands: int) -> None:
    path, state = _rgb_weights(tmp_path, "resnet18")
    model = create_backbone("resnet18", bands, pretrained=str(path))
    want = adapt_input_conv(bands, state["conv1.weight"])
    torch.testing.assert_close(model.conv1.weight, want)
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(model.bn1.running_var, state["bn1.running_var"])


def test_pretrained_lightning_checkpoint_and_vit_resample(tmp_path: Path) -> None:
    torch.manual_seed(2)
    rgb = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64)
    path = tmp_path / "vit.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in rgb.state_dict().items()}}, path)
    model = create_backbone("vit_tiny_patch16_224", 13, pretrained=str(path), img_size=32)
    torch.testing.assert_close(model.patch_embed.proj.weight,
                               adapt_input_conv(13, rgb.patch_embed.proj.weight.detach()))
    assert model.pos_embed.shape == (1, 1 + 4, 192)
    torch.testing.assert_close(model.blocks[3].attn.qkv.weight, rgb.blocks[3].attn.qkv.weight)


def test_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never downloads"):
        create_backbone("resnet18", 13, pretrained="imagenet")
    with pytest.raises(DataError, match="not found"):
        create_backbone("resnet18", 13, pretrained=str(tmp_path / "missing.pth"))
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"corrupt\.pth"):
        create_backbone("resnet18", 13, pretrained=str(bad))
    path, _ = _rgb_weights(tmp_path, "resnet10t")
    with pytest.raises(DataError, match=r"not for this backbone|do not fit"):
        create_backbone("resnet18", 13, pretrained=str(path))


# ---------------------------------------------------------------------------------------------
# folding a linear adapter into the stem
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "img"), [("resnet18", None), ("vit_tiny_patch4", 32),
                                           ("resnet10t", None)])
def test_fold_adapter_exact(name: str, img: int | None) -> None:
    torch.manual_seed(0)
    enc = build_encoder(name, 13, adapter="linear", img_size=img).eval()
    assert enc.adapter is not None
    folded = fold_adapter(enc.adapter, enc.backbone).eval()
    x = torch.randn(2, 13, 32, 32)
    with torch.no_grad():
        diff = (folded(x) - enc(x)).abs().max().item()
    assert diff < 1e-4
    # a plain timm model with 13 input channels: the keys of timm.create_model(in_chans=13)
    kwargs = {"img_size": img, "patch_size": 4} if img else {}
    base = "vit_tiny_patch16_224" if name.startswith("vit") else name
    ref = timm.create_model(base, num_classes=0, in_chans=13, **kwargs)
    assert {k: v.shape for k, v in folded.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()}
    assert type(folded) is type(enc.backbone)
    assert enc.backbone.state_dict().keys() == folded.state_dict().keys()


def test_fold_adapter_bias_only_without_padding() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 3, 1, bias=True)
    torch.nn.init.normal_(conv.bias)
    vit = create_backbone("vit_tiny_patch4", 3, img_size=32).eval()
    folded = fold_adapter(conv, vit).eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert (folded(x) - vit(conv(x))).abs().max() < 1e-4
    with pytest.raises(ConfigError, match="zero-padded"):
        fold_adapter(conv, create_backbone("resnet18", 3))


def test_fold_nonlinear_refused() -> None:
    enc = build_encoder("resnet18", 4, adapter="nonlinear")
    assert enc.adapter is not None
    with pytest.raises(ConfigError, match="cannot fold a non-linear adapter; export with "
                                          "--keep-adapter"):
        fold_adapter(enc.adapter, enc.backbone)


def test_band_adapter_validation() -> None:
    with pytest.raises(ConfigError, match="unknown adapter"):
        BandAdapter(4, 3, kind="quadratic")
    assert BandAdapter(4, 3).conv.bias is None  # linear adapters are bias-free (foldable)


def test_heads() -> None:
    x = torch.randn(4, 32)
    assert ProjectionHead(32, 64, 16)(x).shape == (4, 16)
    assert ProjectionHead(32, 64, 16, num_layers=3, batch_norm=False)(x).shape == (4, 16)
    assert PredictionHead(32, 64, 32)(x).shape == (4, 32)
    head = ClusterHead(32, 5)
    before = head.fc.weight.clone()
    head.reset_parameters()
    assert head(x).shape == (4, 5) and not torch.equal(before, head.fc.weight)
