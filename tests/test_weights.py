"""Foundation weights by name (geossl.pretrained.foundation): files in a temporary TORCH_HOME.

The files are built with ``torchgeo.models`` constructors (same keys and shapes as the real
weights) and known random values, and saved under the exact file name the installed TorchGeo
expects (the basename of the enum's url in ``TORCH_HOME/hub/checkpoints``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchgeo.models

from geossl.core.errors import ConfigError, DataError
from geossl.pretrained.checkpoint import load_source
from geossl.pretrained.foundation import (
    is_weights_spec,
    match_bands,
    resolve_weights,
    torchgeo_cache_path,
    torchgeo_weight,
)

R18 = "ResNet18_Weights.SENTINEL2_ALL_MOCO"
S1 = "ResNet50_Weights.SENTINEL1_ALL_MOCO"
VIT = "ViTSmall16_Weights.SENTINEL2_ALL_DINO"
#: Sentinel-2 L1C band order of the SSL4EO weights, as TorchGeo names them
S2_13 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
#: Major-TOM L2A chips (no B10), as geossl names them
S2_12 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def put_weights(name: str, seed: int = 0) -> Path:
    """Write a TorchGeo-format weights file for ``name`` into the current TORCH_HOME."""
    weight = torchgeo_weight(name)
    build = getattr(torchgeo.models, weight.meta["model"])
    torch.manual_seed(seed)
    model = build(weights=None, in_chans=weight.meta["in_chans"])
    with torch.no_grad():  # known non-trivial values, BatchNorm statistics included
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                if key.endswith("running_var"):
                    value.uniform_(0.5, 1.5)
                else:
                    value.normal_(0, 0.05)
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(("fc.", "head."))}
    path = torchgeo_cache_path(weight)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def reference_features(name: str, x: torch.Tensor) -> torch.Tensor:
    """Features of ``torchgeo.models.<model>(weights=...)`` (pre-logits) on ``x``."""
    weight = torchgeo_weight(name)
    model = getattr(torchgeo.models, weight.meta["model"])(weights=weight)
    model.eval()
    with torch.no_grad():
        out: torch.Tensor = model.forward_head(model.forward_features(x), pre_logits=True)
    return out


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("GEOSSL_OFFLINE", "1")  # never try the network in tests
    return home


def test_spec_names() -> None:
    assert is_weights_spec(f"torchgeo:{R18}") and is_weights_spec("timm:resnet18.a1_in1k")
    assert not is_weights_spec("run/last.ckpt") and not is_weights_spec("random")


def test_cache_path_is_torch_hub(torch_home: Path) -> None:
    weight = torchgeo_weight(R18)
    path = torchgeo_cache_path(weight)
    assert path == torch_home / "hub" / "checkpoints" / os.path.basename(weight.url)


def test_resolve_torchgeo(torch_home: Path) -> None:
    put_weights(R18)
    res = resolve_weights(f"torchgeo:{R18}")
    assert res.backbone == "resnet18" and res.in_chans == 13 and res.source == "torchgeo"
    assert res.bands is not None and res.bands[8] == "B8A" and res.bands[0] == "B01"
    assert res.mean == [0.0] * 13 and res.std == [10000.0] * 13  # SSL4EO: /10000
    assert "conv1.weight" in res.state_dict and "fc.weight" not in res.state_dict
    assert res.meta["publication"].startswith("https://")


def test_same_features_as_torchgeo(torch_home: Path) -> None:
    put_weights(R18, seed=1)
    x = torch.rand(2, 13, 64, 64)
    src = load_source(f"torchgeo:{R18}", data_bands=S2_13)
    assert src.meta["method"] == "foundation" and src.meta["adapter"] is None
    assert src.meta["bands"] == S2_13 and src.meta["normalization"]["std"] == [10000.0] * 13
    with torch.no_grad():
        mine = src.encoder(x)
    torch.testing.assert_close(mine, reference_features(R18, x), rtol=1e-5, atol=1e-6)


def test_vit_same_features(torch_home: Path) -> None:
    put_weights(VIT, seed=2)
    x = torch.rand(1, 13, 224, 224)
    src = load_source(f"torchgeo:{VIT}", data_bands=S2_13)
    with torch.no_grad():
        mine = src.encoder(x)
    torch.testing.assert_close(mine, reference_features(VIT, x), rtol=1e-4, atol=1e-5)


def test_vit_other_size_and_l2a(torch_home: Path) -> None:
    put_weights(VIT, seed=11)
    src = load_source(f"torchgeo:{VIT}", data_bands=S2_12, img_size=64)
    with torch.no_grad():
        assert src.encoder(torch.rand(2, 12, 64, 64)).shape == (2, 384)
    assert src.meta["img_size"] == 64 and src.meta["band_match"]["missing"] == ["B10"]


def test_permuted_and_subset_bands(torch_home: Path) -> None:
    put_weights(R18, seed=3)
    x = torch.rand(2, 13, 32, 32)
    ref = reference_features(R18, x)
    perm = [12, 3, 0, 7, 1, 10, 5, 8, 2, 11, 4, 9, 6]
    src = load_source(f"torchgeo:{R18}", data_bands=[S2_13[i] for i in perm])
    assert src.meta["adapter"] == "linear"
    with torch.no_grad():
        torch.testing.assert_close(src.encoder(x[:, perm]), ref, rtol=1e-5, atol=1e-6)
    # a subset (RGB + NIR, another spelling): the other weight bands see zeros
    subset = ["b08", "B4", "B03", "blue"]
    pos = [7, 3, 2, 1]
    src = load_source(f"torchgeo:{R18}", data_bands=subset)
    x0 = torch.zeros_like(x)
    x0[:, pos] = x[:, pos]
    with torch.no_grad():
        torch.testing.assert_close(src.encoder(x[:, pos]), reference_features(R18, x0),
                                   rtol=1e-5, atol=1e-6)
    assert src.meta["band_match"]["missing"][0] == "B01"


def test_l2a_12_bands_through_adapter(torch_home: Path) -> None:
    put_weights(R18, seed=4)
    x = torch.rand(2, 13, 32, 32)
    x[:, 10] = 0  # B10, which L2A drops, is the zero-initialised channel
    keep = [i for i in range(13) if i != 10]
    src = load_source(f"torchgeo:{R18}", data_bands=S2_12)
    assert src.meta["in_chans"] == 12 and src.meta["band_match"]["missing"] == ["B10"]
    adapter = getattr(src.encoder, "adapter", None)
    assert adapter is not None and adapter.conv.weight.shape == (13, 12, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(src.encoder(x[:, keep]), reference_features(R18, x),
                                   rtol=1e-5, atol=1e-6)


def test_extra_bands_and_preprocess(torch_home: Path) -> None:
    put_weights(R18)
    res = resolve_weights(f"torchgeo:{R18}")
    match = match_bands([*S2_12, "NDVI"], res)
    assert match.extra == ["NDVI"] and match.missing == ["B10"]
    with pytest.warns(Warning, match="NDVI"):
        src = load_source(f"torchgeo:{R18}", data_bands=[*S2_12, "NDVI"])
    norm = src.meta["normalization"]
    assert norm["std"][-1] == 1.0 and norm["std"][0] == 10000.0
    src = load_source(f"torchgeo:{R18}", data_bands=S2_13, preprocess="dataset")
    assert src.meta["normalization"] is None


def test_no_band_in_common(torch_home: Path) -> None:
    put_weights(S1)
    with pytest.raises(ConfigError, match="no band in common"):
        load_source(f"torchgeo:{S1}", data_bands=S2_12)


def test_unknown_name(torch_home: Path) -> None:
    with pytest.raises(ConfigError, match="not a weights name"):
        resolve_weights("torchgeo:ResNet18_Weights.NOPE")


def test_missing_offline_names_path(torch_home: Path) -> None:
    with pytest.raises(DataError) as err:
        resolve_weights(f"torchgeo:{R18}")
    assert str(torchgeo_cache_path(torchgeo_weight(R18))) in str(err.value)


def test_refuses_pickled_code(torch_home: Path) -> None:
    path = torchgeo_cache_path(torchgeo_weight(R18))
    path.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(1), "evil": os.getcwd}, path)
    with pytest.raises(DataError, match=r"refused|unreadable"):
        resolve_weights(f"torchgeo:{R18}")


def test_cli_missing_offline_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "th"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("GEOSSL_OFFLINE", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "geossl.cli", "export", f"torchgeo:{R18}",
                           "--out", str(tmp_path / "out.ckpt")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    expected = tmp_path / "th" / "hub" / "checkpoints" / os.path.basename(
        torchgeo_weight(R18).url)
    assert str(expected) in lines[0] and "put the file" in lines[0]
    assert not (tmp_path / "out.ckpt").exists()
    assert time.monotonic() - t0 < 60


def test_export_spec_sidecar(torch_home: Path, tmp_path: Path) -> None:
    import json

    from geossl.inference.export import export

    put_weights(R18, seed=5)
    res = export(f"torchgeo:{R18}", tmp_path / "w.ckpt", bands=S2_12)
    side = json.loads(res.metadata.read_text())
    assert side["pretrained_from"] == f"torchgeo:{R18}" and side["in_chans"] == 12
    assert side["bands"] == S2_12 and side["ssl_method"] == "foundation"
    assert side["adapter_folded"] is True


def test_plain_state_dict_file(tmp_path: Path) -> None:
    import timm

    model = timm.create_model("resnet18", num_classes=0, in_chans=4)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ConfigError, match="--backbone"):
        resolve_weights(str(path))
    res = resolve_weights(str(path), backbone="resnet18")
    assert res.source == "file" and res.in_chans == 4 and res.bands is None
    # load_source: a plain state dict with --backbone is weights taking the data's 4 bands
    src = load_source(str(path), backbone="resnet18", in_chans=4, preprocess="dataset")
    x = torch.rand(2, 4, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(src.encoder(x), model(x))
    with pytest.raises(DataError, match="not a geossl pretraining checkpoint"):
        load_source(str(path))


def test_timm_offline_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """timm:<model>.<tag> from a file in the Hugging Face cache layout, offline."""
    import timm
    from safetensors.torch import save_file

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(cache))
    repo = cache / "models--timm--resnet18.a1_in1k"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=1000)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(snap / "model.safetensors"))
    res = resolve_weights("timm:resnet18.a1_in1k")
    assert res.source == "timm" and res.bands == ["B04", "B03", "B02"] and res.in_chans == 3
    torch.testing.assert_close(res.state_dict["conv1.weight"], model.state_dict()["conv1.weight"])
    with pytest.raises(DataError, match=r"models--timm--resnet34\.a1_in1k"):
        resolve_weights("timm:resnet34.a1_in1k")


# ---- continued pretraining ---------------------------------------------------------------
def _tile_major_tom(product_dirs: list[Path], out: Path, size: int) -> Path:
    from geossl.tiling.tile import TileOptions, tile

    tile(product_dirs, out, TileOptions(size=size), progress=False)
    return out


def _pretrain(chips: Path, out: Path, steps: int, resume: str | None = None,
              **extra: object) -> Path:
    from geossl.training.trainer import PretrainConfig, pretrain

    cfg = PretrainConfig(data="chips", root=str(chips), out=str(out), method="moco",
                         backbone="resnet50", sensors=["s2"], pairing="aug",
                         pretrained=f"torchgeo:{R18}", max_steps=steps, batch_size=4,
                         workers=0, accelerator="cpu", devices="1", ckpt_every=1,
                         resume=resume, **{"img_size": 32, **extra})  # type: ignore[arg-type]
    return pretrain(cfg)


def _state(path: Path) -> dict[str, torch.Tensor]:
    from geossl.pretrained.checkpoint import read_checkpoint

    return read_checkpoint(path)["state_dict"]  # type: ignore[no-any-return]


def test_foundation_start_builds_matched_method(torch_home: Path, tmp_path: Path) -> None:
    """The method of `pretrain --pretrained torchgeo:...` starts from the weights (no Trainer)."""
    from geossl.data.datamodule import SSLDataModule
    from geossl.training.trainer import (
        PretrainConfig,
        build_method,
        foundation_start,
        load_foundation,
        sample_in_chans,
    )
    from tests.data.chips.data import generate_major_tom

    product = generate_major_tom(tmp_path / "mt", size10=48)
    chips = _tile_major_tom([product], tmp_path / "chips", 16)
    put_weights(R18, seed=10)
    cfg = PretrainConfig(data="chips", root=str(chips), method="moco", sensors=["s2"],
                         pairing="aug", pretrained=f"torchgeo:{R18}", max_steps=2, batch_size=4)
    dm = SSLDataModule(data="chips", root=str(chips), sensors=["s2"], pairing="aug",
                       batch_size=4, workers=0)
    dm.setup("fit")
    in_chans = sample_in_chans(dm)
    start = foundation_start(cfg, dm, in_chans)
    assert start is not None and cfg.backbone == "resnet18"
    method = build_method(cfg, in_chans, 2, start)
    load_foundation(method, start)
    x = torch.rand(2, 13, 16, 16)
    x[:, 10] = 0
    keep = [i for i in range(13) if i != 10]
    method.eval()
    with torch.no_grad():
        ref = reference_features(R18, x)
        torch.testing.assert_close(method.encoder(x[:, keep]), ref, rtol=1e-5, atol=1e-6)
        momentum = getattr(method, "encoder_momentum")  # noqa: B009 - the key encoder
        torch.testing.assert_close(momentum(x[:, keep]), ref, rtol=1e-5, atol=1e-6)
    assert dm.normalization == {"s2": {"mean": [0.0] * 12, "std": [10000.0] * 12}}
    assert method.geossl_metadata()["pretrained_from"] == f"torchgeo:{R18}"
    batch = next(iter(dm.train_dataloader()))
    samples = dm.train_dataset
    assert samples is not None
    raws = [samples[i]["image_s2"].float() for i in range(len(samples))]
    first = batch["image_s2"][0] * 10000.0  # the weights' preprocessing: DN / 10000
    assert any(torch.allclose(first, r, atol=0.05) for r in raws)


@pytest.mark.slow
def test_continued_pretraining_fake_major_tom(torch_home: Path, tmp_path: Path) -> None:
    from geossl.pretrained.checkpoint import load_encoder, read_checkpoint
    from tests.data.chips.data import generate_major_tom

    product = generate_major_tom(tmp_path / "mt", size10=48)
    chips = _tile_major_tom([product], tmp_path / "chips", 16)
    put_weights(R18, seed=6)
    weights = resolve_weights(f"torchgeo:{R18}")
    out = tmp_path / "run"
    last = _pretrain(chips, out, 2, freeze_stem_steps=100, backbone_lr_scale=0.1)
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 2
    meta = ckpt["geossl"]
    assert meta["pretrained_from"] == f"torchgeo:{R18}" and meta["band_match"]["missing"] == [
        "B10"]
    assert meta["encoder_config"]["backbone"] == "resnet18"  # the weights', not --backbone
    assert meta["normalization"]["s2"]["std"][0] == 10000.0
    state = ckpt["state_dict"]
    # frozen stem: the first convolution is still the weights'; the rest has moved
    torch.testing.assert_close(state["encoder.backbone.conv1.weight"],
                               weights.state_dict["conv1.weight"])
    adapter = state["encoder.adapter.conv.weight"][:, :, 0, 0]
    assert adapter.shape == (13, 12) and adapter[10].abs().sum() == 0 and adapter[0, 0] == 1
    assert not torch.equal(state["encoder.backbone.layer4.1.conv2.weight"],
                           weights.state_dict["layer4.1.conv2.weight"])
    # the encoder reloads for evaluation/export with its provenance
    _, enc_meta = load_encoder(last)
    assert enc_meta["pretrained_from"] == f"torchgeo:{R18}" and enc_meta["in_chans"] == 12
    # resume like any other run
    last = _pretrain(chips, out, 4, resume="last", freeze_stem_steps=100, backbone_lr_scale=0.1)
    assert read_checkpoint(last)["global_step"] == 4


def test_backbone_lr_scale_groups() -> None:
    from geossl.methods import METHODS

    method = METHODS["simclr"].from_hparams({
        "backbone": "resnet18", "sensors": ("s2",), "in_chans": {"s2": 4}, "pairing": "aug",
        "max_steps": 10, "batch_size": 4, "backbone_lr_scale": 0.1, "optimizer": "adamw",
        "lr": 1e-3})
    opt = method.configure_optimizers()["optimizer"]
    enc = {id(p) for p in method.encoder.parameters()}
    rates = {("enc" if id(g["params"][0]) in enc else "head"): g["lr"] for g in opt.param_groups}
    assert rates["enc"] == pytest.approx(rates["head"] * 0.1)
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == sum(1 for p in method.parameters() if p.requires_grad)


@pytest.mark.real
@pytest.mark.slow
def test_continued_pretraining_real_major_tom(torch_home: Path, tmp_path: Path) -> None:
    from geossl.pretrained.checkpoint import read_checkpoint
    from tests.conftest import real_path

    cell = real_path("major_tom_s2l2a", "0U", "0U_199R")
    (product,) = [p for p in cell.iterdir() if p.is_dir()]
    chips = _tile_major_tom([product], tmp_path / "chips", 128)
    put_weights(R18, seed=7)
    out = tmp_path / "run"
    from geossl.cli import main

    rc = main(["pretrain", "--data", "chips", "--root", str(chips), "--out", str(out),
               "--pretrained", f"torchgeo:{R18}", "--method", "moco", "--sensors", "s2",
               "--pairing", "aug", "--max-steps", "2", "--batch-size", "4", "--img-size", "64",
               "--accelerator", "cpu", "--workers", "0", "--ckpt-every", "1",
               "--backbone-lr-scale", "0.1", "--freeze-stem-steps", "1"])
    assert rc == 0
    last = out / "checkpoints" / "last.ckpt"
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 2 and ckpt["geossl"]["pretrained_from"] == f"torchgeo:{R18}"
    assert ckpt["geossl"]["bands"]["s2"] == S2_12
    last = _pretrain(chips, out, 3, resume="last", img_size=64, backbone_lr_scale=0.1,
                     freeze_stem_steps=1)
    assert read_checkpoint(last)["global_step"] == 3


# ---- evaluate / embed with a spec -------------------------------------------------------------
def test_evaluate_spec_on_eurosat(torch_home: Path, tmp_path: Path) -> None:
    import json

    from geossl.cli import main
    from tests.data.aid.data import generate_eurosat

    put_weights(R18, seed=8)
    root = generate_eurosat(tmp_path / "data", n_per_class=3, size=32)
    out = tmp_path / "ev"
    assert main(["evaluate", f"torchgeo:{R18}", "--protocol", "knn", "--data", "eurosat",
                 "--root", str(root), "--labels-per-class", "1", "--out", str(out),
                 "--accelerator", "cpu", "--batch-size", "8", "--no-plots"]) == 0
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["method"] == "foundation"


def test_embed_spec_on_major_tom_scene(torch_home: Path, tmp_path: Path) -> None:
    import xarray as xr

    from geossl.inference.embed import EmbedConfig, embed
    from tests.data.chips.data import generate_major_tom

    put_weights(R18, seed=9)
    product = generate_major_tom(tmp_path / "mt", size10=48)
    res = embed(EmbedConfig(f"torchgeo:{R18}", product, tmp_path / "e.zarr", size=16, bands=S2_12,
                            accelerator="cpu"))
    assert res.shape[0] == 512
    assert bool(xr.open_zarr(tmp_path / "e.zarr")["embedding"].notnull().all())


def test_bench_weights_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from geossl.cli import main

    out = tmp_path / "b.json"
    env_before = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path / "empty_home")  # no cached file: one is built
    try:
        assert main(["bench", "weights", "--repeats", "1", "--batch-size", "2", "--size", "32",
                     "--json", str(out)]) == 0
    finally:
        if env_before is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = env_before
    res = json.loads(out.read_text())
    assert res["built_file"] and res["ratio"] > 0 and res["max_abs_diff"] < 1e-4
    assert res["missing_bands"] == ["B10"]
    assert "ratio geossl / torchgeo" in capsys.readouterr().out
