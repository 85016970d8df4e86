"""Export round trip: geossl encoder -> file -> TorchGeo's classification and segmentation tasks
/ WeightsEnum / timm, with every backbone tensor loaded.

The task classes are the ones the installed TorchGeo offers (:func:`geossl.core.compat.task_names`):
``torchgeo.trainers.ClassificationTask`` on 0.8.1; on 0.10 ``torchgeo.tasks.Classification``
(preferred) and the deprecated ``torchgeo.trainers.ClassificationTask`` alias, both tested."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torch import nn

from geossl.core import compat
from geossl.core.errors import ConfigError
from geossl.inference.export import export
from geossl.pretrained.checkpoint import EncoderSource

N_BANDS = 4
K = 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class PlainEncoder(nn.Module):
    """The encoder contract without geossl.models: ``.backbone`` (timm), ``.adapter``."""

    def __init__(self, backbone: nn.Module, adapter: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        self.num_features = backbone.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adapter is not None:
            x = self.adapter(x)
        return self.backbone(x)  # type: ignore[no-any-return]


def _perturb(model: nn.Module) -> None:
    """Make every tensor (BN statistics included) differ from a fresh initialisation."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(0.05 * torch.randn(t.shape, generator=g))
                if "running_var" in name:
                    t.abs_().add_(0.5)


def _source(adapter: nn.Module | None = None, in_chans: int = N_BANDS) -> EncoderSource:
    torch.manual_seed(0)
    backbone = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=in_chans)
    _perturb(backbone)
    meta = {"backbone": "resnet18", "in_chans": N_BANDS, "bands": ["B02", "B03", "B04", "B08"],
            "sensors": ["s2"], "method": "moco", "pairing": "aug",
            "adapter": None if adapter is None else "linear",
            "normalization": {"mean": [0.1] * N_BANDS, "std": [0.2] * N_BANDS}}
    return EncoderSource(PlainEncoder(backbone, adapter).eval(), meta, "abc123")


def _assert_backbone_loaded(model: nn.Module, source_state: dict[str, torch.Tensor],
                            skip: tuple[str, ...] = ("fc.",)) -> None:
    state = model.state_dict()
    compared = 0
    for k, v in state.items():
        if k.startswith(skip) or k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(v, source_state[k]), f"{k} was not loaded"
        compared += 1
    assert compared == len([k for k in source_state if not k.endswith("num_batches_tracked")])


@pytest.mark.parametrize("task_name", compat.task_names("classification"))
def test_classification_task_round_trip(tmp_path: Path, task_name: str) -> None:
    task_cls = compat.resolve(task_name)
    preferred = task_name == compat.task_names("classification")[0]

    src = _source()
    res = export(src, tmp_path / "enc.ckpt")
    assert res.model == "resnet18" and res.in_chans == N_BANDS
    blob = torch.load(res.weights, weights_only=True)  # as TorchGeo loads it
    assert blob["hyper_parameters"]["model"] == "resnet18"
    name, state = compat.extract_backbone(str(res.weights))  # what the task calls
    assert name == "resnet18" and "fc.weight" not in state
    assert all(torch.equal(v, src.encoder.backbone.state_dict()[k]) for k, v in state.items())  # type: ignore[union-attr,operator]

    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = task_cls(model="resnet18", weights=str(res.weights), in_channels=N_BANDS,
                        num_classes=K)
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning)
                  and "torchgeo" in str(w.message)]
    assert not deprecated if preferred else deprecated  # the alias warns on 0.10 only
    _assert_backbone_loaded(task.model, src.encoder.backbone.state_dict())  # type: ignore[union-attr,operator]

    head = nn.Linear(src.encoder.num_features, K)  # type: ignore[arg-type]
    task.model.fc.load_state_dict(head.state_dict())
    x = torch.randn(3, N_BANDS, 64, 64)
    task.model.eval()
    with torch.no_grad():
        ours = head(src.encoder(x))
        theirs = task.model(x)
    assert torch.allclose(ours, theirs, atol=1e-5)

    # one training step through TorchGeo's model and loss
    task.model.train()
    opt = torch.optim.SGD(task.model.parameters(), lr=0.1)
    before = task.model.conv1.weight.detach().clone()
    loss = task.criterion(task.model(x), torch.tensor([0, 1, 2]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, task.model.conv1.weight)

    side = json.loads(res.metadata.read_text())
    assert side["model"] == "resnet18" and side["in_chans"] == N_BANDS
    assert side["bands"] == ["B02", "B03", "B04", "B08"] and side["ssl_method"] == "moco"
    assert side["mean"] == [0.1] * N_BANDS and side["std"] == [0.2] * N_BANDS


@pytest.mark.parametrize("task_name", compat.task_names("segmentation"))
def test_segmentation_task_loads_encoder(tmp_path: Path, task_name: str) -> None:
    # segmentation_models_pytorch is a dependency of torchgeo: its absence is a failure
    task_cls = compat.resolve(task_name)

    src = _source()
    res = export(src, tmp_path / "enc.ckpt")
    task = task_cls(model="unet", backbone="resnet18", weights=str(res.weights),
                    in_channels=N_BANDS, num_classes=3)
    _assert_backbone_loaded(task.model.encoder, src.encoder.backbone.state_dict())  # type: ignore[union-attr,operator]
    out = task.model(torch.randn(1, N_BANDS, 64, 64))
    assert out.shape == (1, 3, 64, 64)


def test_timm_format_hash_name_and_weights_enum(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ClassificationTask = compat.task_class("classification")
    from torchvision.models._api import Weights, WeightsEnum  # what torchgeo.models uses

    src = _source()
    res = export(src, tmp_path / "resnet18_s2_moco.pth", format="timm")
    sha = hashlib.sha256(res.weights.read_bytes()).hexdigest()
    assert res.weights.name == f"resnet18_s2_moco-{sha[:8]}.pth"
    side = json.loads(res.metadata.read_text())
    assert side["sha256"] == sha and side["file"] == res.weights.name

    model = timm.create_model(side["model"], num_classes=0, in_chans=side["in_chans"])
    model.load_state_dict(torch.load(res.weights, weights_only=True))  # strict: every key
    assert torch.equal(model.conv1.weight, src.encoder.backbone.conv1.weight)  # type: ignore[union-attr]

    # a WeightsEnum declared as in docs/export.md; the hub cache makes it work offline
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    class MyWeights(WeightsEnum):  # type: ignore[misc]
        S2_MOCO = Weights(url=res.weights.as_uri(), transforms=nn.Identity(),
                          meta={k: side[k] for k in ("model", "in_chans", "bands", "ssl_method")})

    task = ClassificationTask(model="resnet18", weights=MyWeights.S2_MOCO, in_channels=N_BANDS,
                              num_classes=K)
    _assert_backbone_loaded(task.model, src.encoder.backbone.state_dict())  # type: ignore[union-attr,operator]
    sd = MyWeights.S2_MOCO.get_state_dict(check_hash=True)  # the name's hash prefix verifies
    assert set(sd) == set(model.state_dict())


def _fold_available() -> Any:
    import geossl.models as models

    assert callable(models.fold_adapter)  # documented in docs/export.md: never a skip
    return models


def test_linear_adapter_folded(tmp_path: Path) -> None:
    ClassificationTask = compat.task_class("classification")

    _fold_available()
    adapter = nn.Conv2d(13, 3, 1, bias=False)
    src = _source(adapter, in_chans=3)
    res = export(src, tmp_path / "folded.ckpt")
    assert res.in_chans == 13
    task = ClassificationTask(model="resnet18", weights=str(res.weights), in_channels=13,
                              num_classes=K)
    head = nn.Linear(512, K)
    task.model.fc.load_state_dict(head.state_dict())
    task.model.eval()
    x = torch.randn(2, 13, 64, 64)
    with torch.no_grad():
        assert torch.allclose(head(src.encoder(x)), task.model(x), atol=1e-4)


def test_nonlinear_adapter_refused_or_kept(tmp_path: Path) -> None:
    _fold_available()
    adapter = nn.Sequential(nn.Conv2d(13, 3, 1), nn.ReLU())
    src = _source(adapter, in_chans=3)
    src.meta["adapter"] = "nonlinear"
    with pytest.raises(ConfigError, match="keep-adapter"):
        export(src, tmp_path / "x.ckpt")
    res = export(src, tmp_path / "x.ckpt", keep_adapter=True)
    assert res.in_chans == 3
    blob = torch.load(res.weights, weights_only=True)
    assert set(blob["geossl_adapter"]["state_dict"]) == {"0.weight", "0.bias"}


def test_vit_with_other_patch_size_refused(tmp_path: Path) -> None:
    backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                                 in_chans=3, img_size=32, patch_size=4)
    src = EncoderSource(PlainEncoder(backbone), {"backbone": "vit_tiny_patch16_224"}, "k")
    with pytest.raises(ConfigError, match="patch_embed"):
        export(src, tmp_path / "vit.ckpt")


def test_vit_pos_embed_resampled(tmp_path: Path) -> None:
    ClassificationTask = compat.task_class("classification")

    backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                                 in_chans=3, img_size=64)
    src = EncoderSource(PlainEncoder(backbone), {"backbone": "vit_tiny_patch16_224"}, "k")
    res = export(src, tmp_path / "vit.ckpt")
    task = ClassificationTask(model="vit_tiny_patch16_224", weights=str(res.weights),
                              in_channels=3, num_classes=K)
    assert torch.equal(task.model.patch_embed.proj.weight, backbone.patch_embed.proj.weight)
    assert task.model.pos_embed.shape == (1, 197, 192)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        export(_source(), tmp_path / "x", format="onnx")


def test_geossl_encoder_per_sensor_stem_and_adapter(tmp_path: Path) -> None:
    ClassificationTask = compat.task_class("classification")

    models = _fold_available()
    torch.manual_seed(0)
    enc = models.build_encoder("resnet18", {"s1": 2, "s2": 13}).eval()
    src = EncoderSource(enc, {"backbone": "resnet18", "sensors": ["s1", "s2"], "method": "moco",
                              "pairing": "geo"}, "k")
    with pytest.raises(ConfigError, match="--sensor"):
        export(src, tmp_path / "x.ckpt")
    res = export(src, tmp_path / "s1.ckpt", sensor="s1")
    assert res.in_chans == 2
    task = ClassificationTask(model="resnet18", weights=str(res.weights), in_channels=2,
                              num_classes=K)
    head = nn.Linear(enc.num_features, K)
    task.model.fc.load_state_dict(head.state_dict())
    task.model.eval()
    x = torch.randn(2, 2, 64, 64)
    with torch.no_grad():
        assert torch.allclose(head(enc(x, sensor="s1")), task.model(x), atol=1e-4)
    lin = models.build_encoder("resnet18", 13, adapter="linear").eval()
    res = export(EncoderSource(lin, {"backbone": "resnet18", "adapter": "linear"}, "k"),
                 tmp_path / "lin.ckpt")
    assert res.in_chans == 13
    nonlin = models.build_encoder("resnet18", 13, adapter="nonlinear")
    with pytest.raises(ConfigError, match="keep-adapter"):
        export(EncoderSource(nonlin, {"backbone": "resnet18"}, "k"), tmp_path / "n.ckpt")


def test_cli_export_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    assert main(["export", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "x.ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geossl export: error:") and "not found" in err
    assert main(["export", str(tmp_path / "nope.ckpt"), "--out", "x", "--format", "onnx"]) == 2
    assert "onnx" in capsys.readouterr().err


# ---- ViT encoders in TorchGeo's segmentation task ---------------------------------------------
#: smp's only decoder that takes a timm ViT; TorchGeo builds it without ``dynamic_img_size``,
#: so the encoder is the timm model at its default size (224 px for ``*_224``)
VIT, SEG_SIZE = "vit_tiny_patch16_224", 224


def _vit_source(img_size: int = 64) -> tuple[EncoderSource, nn.Module]:
    torch.manual_seed(0)
    backbone = timm.create_model(VIT, pretrained=False, num_classes=0, in_chans=N_BANDS,
                                 img_size=img_size)
    _perturb(backbone)
    meta = {"backbone": VIT, "in_chans": N_BANDS, "bands": ["B02", "B03", "B04", "B08"],
            "sensors": ["s2"], "method": "mae", "pairing": "aug"}
    return EncoderSource(PlainEncoder(backbone).eval(), meta, "vit"), backbone


def _vit_reference(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The ViT's tensors as TorchGeo's fixed-size model holds them (pos_embed resampled)."""
    from timm.layers import resample_abs_pos_embed

    state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], [14, 14],
                                                num_prefix_tokens=1)
    return state


def _assert_vit_encoder_loaded(encoder: nn.Module, ref: dict[str, torch.Tensor]) -> None:
    """Every tensor of smp's ViT encoder (``encoder.model`` = the timm model) is ours; the
    classifier that smp's timm model keeps (unused by DPT) is the export's zeros."""
    state = encoder.model.state_dict()
    assert set(state) == set(ref) | {"head.weight", "head.bias"}
    for k, v in ref.items():
        assert torch.equal(state[k], v), f"{k} was not loaded"
    assert not state["head.weight"].any() and not state["head.bias"].any()


def _dpt_forward(model: nn.Module) -> None:
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, N_BANDS, SEG_SIZE, SEG_SIZE))
    assert out.shape == (2, 3, SEG_SIZE, SEG_SIZE) and torch.isfinite(out).all()


@pytest.mark.parametrize("task_name", compat.task_names("segmentation"))
def test_vit_classification_export_does_not_fit_segmentation(tmp_path: Path,
                                                             task_name: str) -> None:
    """Why the default export cannot serve DPT: smp keeps the timm ViT as ``encoder.model``
    (keys ``model.<timm key>``, plus its 1000-class head), and ``extract_backbone`` strips
    every ``model.`` of the default layout. The strict load names the keys."""
    src, _ = _vit_source()
    res = export(src, tmp_path / "vit_cls.ckpt")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*\"model\.cls_token\""):
        compat.resolve(task_name)(model="dpt", backbone=f"tu-{VIT}", weights=str(res.weights),
                                  in_channels=N_BANDS, num_classes=3)


@pytest.mark.parametrize("task_name", compat.task_names("segmentation"))
def test_vit_segmentation_export_loads_into_dpt(tmp_path: Path, task_name: str) -> None:
    src, backbone = _vit_source()
    res = export(src, tmp_path / "vit_seg.ckpt", task="segmentation")
    name, state = compat.extract_backbone(str(res.weights))  # what the task calls
    assert name == f"tu-{VIT}" and all(k.startswith("model.") for k in state)
    task = compat.resolve(task_name)(model="dpt", backbone=f"tu-{VIT}",
                                     weights=str(res.weights), in_channels=N_BANDS,
                                     num_classes=3)
    _assert_vit_encoder_loaded(task.model.encoder, _vit_reference(backbone))
    _dpt_forward(task.model)
    side = json.loads(res.metadata.read_text())
    assert side["task"] == "segmentation" and side["smp_backbone"] == f"tu-{VIT}"
    assert side["smp_model"] == "dpt" and side["input_size"] == [SEG_SIZE, SEG_SIZE]


def test_vit_segmentation_export_is_not_a_classification_file(tmp_path: Path) -> None:
    """One file cannot serve both: the segmentation layout has no ``model`` hyper-parameter,
    so the classification task finds no ViT keys (KeyError), never a silent partial load."""
    src, _ = _vit_source()
    res = export(src, tmp_path / "vit_seg.ckpt", task="segmentation")
    with pytest.raises(KeyError, match="patch_embed"):
        compat.task_class("classification")(model=VIT, weights=str(res.weights),
                                            in_channels=N_BANDS, num_classes=K)


def test_vit_only_dpt_takes_a_vit() -> None:
    """smp's other decoders build a feature pyramid a ViT (stride 16 throughout) has not:
    the reason docs/export.md gives for DPT only."""
    seg = compat.task_class("segmentation")
    with pytest.raises(ValueError, match="downsampling pattern"):
        seg(model="upernet", backbone=f"tu-{VIT}", in_channels=N_BANDS, num_classes=3)


def test_segmentation_task_for_resnet_and_refusals(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    seg = compat.task_class("segmentation")
    src = _source()
    res = export(src, tmp_path / "r.ckpt", task="segmentation")  # the default layout fits smp
    task = seg(model="unet", backbone="resnet18", weights=str(res.weights), in_channels=N_BANDS,
               num_classes=3)
    _assert_backbone_loaded(task.model.encoder, src.encoder.backbone.state_dict())  # type: ignore[union-attr,operator]
    with pytest.raises(ConfigError, match="task"):
        export(src, tmp_path / "x.ckpt", task="detection")
    with pytest.raises(ConfigError, match="format timm"):
        export(_vit_source()[0], tmp_path / "v.pth", format="timm", task="segmentation")
    conv = timm.create_model("convnext_atto", pretrained=False, num_classes=0, in_chans=3)
    csrc = EncoderSource(PlainEncoder(conv), {"backbone": "convnext_atto"}, "c")
    with pytest.raises(ConfigError, match="convnext_atto"):
        export(csrc, tmp_path / "c.ckpt", task="segmentation")
    assert not (tmp_path / "c.ckpt").exists()

    from geossl.cli import main

    ckpt = tmp_path / "vit_src.ckpt"
    out = tmp_path / "cli_seg.ckpt"
    assert main(["export", str(ckpt), "--out", str(out), "--task", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--task" in err and not out.exists()


def test_vit_timm_export_loads_through_torchgeo_models_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A geossl ViT-S/16 exported with ``--format timm`` is accepted by ``torchgeo.models``'
    own ViT builder as a ``WeightsEnum`` (the way TorchGeo ships its ViT weights), with the
    sidecar's ``timm_kwargs``: every tensor equal, same features (offline, hub cache)."""
    import torchgeo.models as tgm
    from torchvision.models._api import Weights, WeightsEnum

    torch.manual_seed(0)
    backbone = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0,
                                 in_chans=N_BANDS, img_size=64)
    _perturb(backbone)
    src = EncoderSource(PlainEncoder(backbone), {"backbone": "vit_small_patch16_224"}, "k")
    res = export(src, tmp_path / "vit_s2_ssl.pth", format="timm")
    side = json.loads(res.metadata.read_text())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    class MyViT(WeightsEnum):  # type: ignore[misc]
        S2_SSL = Weights(url=res.weights.as_uri(), transforms=nn.Identity(),
                         meta={"in_chans": side["in_chans"], "model": side["model"]})

    model = tgm.vit_small_patch16_224(weights=MyViT.S2_SSL, num_classes=0,
                                      **side["timm_kwargs"])
    theirs, mine = model.state_dict(), backbone.state_dict()
    assert set(theirs) == set(mine)
    for k, v in mine.items():
        assert torch.equal(theirs[k], v), k
    x = torch.randn(2, N_BANDS, 64, 64)
    backbone.eval(), model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), backbone(x))


def test_swin_timm_export_adds_no_vit_only_arguments(tmp_path: Path) -> None:
    """A pooled backbone that is not a timm ``VisionTransformer`` (Swin: ``global_pool`` avg,
    a ``patch_embed``, no ``fc_norm`` argument) exports with ``--format timm`` and its
    sidecar's ``timm_kwargs`` rebuild it, every tensor equal."""
    backbone = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False,
                                 num_classes=0, in_chans=N_BANDS)
    src = EncoderSource(PlainEncoder(backbone), {"backbone": "swin_tiny_patch4_window7_224"},
                        "k")
    res = export(src, tmp_path / "swin.pth", format="timm")
    side = json.loads(res.metadata.read_text())
    assert "fc_norm" not in side["timm_kwargs"]
    model = timm.create_model(side["model"], num_classes=0, in_chans=N_BANDS,
                              **side["timm_kwargs"])
    model.load_state_dict(torch.load(res.weights, weights_only=True))
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in model.state_dict().items())
