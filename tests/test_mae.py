"""MAE: the loss against hand-computed values and lightly's pieces, exact masking share, the
sin-cos position embedding, spectral groups, export to timm/TorchGeo, and `geossl pretrain
--method mae` on real Major-TOM chips (falling loss, resume, export loaded by TorchGeo)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F

from geossl.cli import main
from geossl.core import compat
from geossl.core.errors import ConfigError, DataError
from geossl.methods import METHODS, check_method_pairing
from geossl.methods.losses import mae_loss, mae_token_loss
from geossl.methods.mae import MAE, parse_groups, random_masking
from tests.conftest import real_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: a small ViT: 32 px chips, patch 8 (16 tokens), timm's vit_tiny trunk, a 1-block decoder
TINY: dict[str, Any] = {
    "backbone": "vit_tiny_patch8", "in_chans": {"s2": 4}, "sensors": ("s2",), "img_size": 32,
    "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2,
}


def _tiny(**extra: Any) -> MAE:
    """A small MAE on a real timm ViT."""
    import timm.models.vision_transformer as tvit

    torch.manual_seed(0)
    method = METHODS["mae"].from_hparams({**TINY, **extra})
    assert isinstance(method, MAE)
    vit = method.encoder.backbone
    assert isinstance(vit, tvit.VisionTransformer)
    return method


# ---- the loss ------------------------------------------------------------------------------
def test_mae_loss_hand_computed() -> None:
    # two patches of 3 values; prediction 0 for the first and 1 for the second
    pred = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    target = torch.tensor([[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]])
    # norm_pix: patch 1 has mean 2, unbiased variance 1 -> (-1, 0, 1); patch 2 mean 4,
    # variance 4 -> (-1, 0, 1). Errors: (1 + 0 + 1) / 3 = 2/3 and (4 + 1 + 0) / 3 = 5/3
    per = mae_token_loss(pred, target, norm_pix_loss=True)
    assert torch.allclose(per, torch.tensor([[2 / 3, 5 / 3]]), atol=1e-5)
    only_first = mae_loss(pred, target, torch.tensor([[1.0, 0.0]]))
    assert math.isclose(only_first.item(), 2 / 3, rel_tol=1e-5)
    both = mae_loss(pred, target, torch.tensor([[1.0, 1.0]]))
    assert math.isclose(both.item(), (2 / 3 + 5 / 3) / 2, rel_tol=1e-5)
    # raw pixels: (1 + 4 + 9) / 3 for the first patch, (1 + 9 + 25) / 3 for the second
    raw = mae_loss(pred, target, torch.tensor([[1.0, 1.0]]), norm_pix_loss=False)
    assert math.isclose(raw.item(), (14 / 3 + 35 / 3) / 2, rel_tol=1e-6)
    # the target gets no gradient
    p = pred.clone().requires_grad_()
    t = target.clone().requires_grad_()
    mae_loss(p, t, torch.ones(1, 2)).backward()
    assert p.grad is not None and t.grad is None


def test_mae_loss_matches_lightly_pieces() -> None:
    """lightly's MAE recipe (and TorchGeo's MAE task): MSE on the masked patches against
    ``normalize_mean_var`` targets."""
    from lightly.models import utils as lutils

    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 5, 16, 16, generator=g)
    target = lutils.patchify(images, 4)  # (3, 16, 80)
    pred = torch.randn(target.shape, generator=g)
    _, idx_mask, mask = random_masking(3, 16, 0.75, generator=g)
    ours = mae_loss(pred, target, mask)
    theirs = F.mse_loss(lutils.get_at_index(pred, idx_mask),
                        lutils.normalize_mean_var(lutils.get_at_index(target, idx_mask)))
    assert torch.allclose(ours, theirs, atol=1e-6)
    raw = F.mse_loss(lutils.get_at_index(pred, idx_mask), lutils.get_at_index(target, idx_mask))
    assert torch.allclose(mae_loss(pred, target, mask, norm_pix_loss=False), raw, atol=1e-6)


# ---- masking -------------------------------------------------------------------------------
@pytest.mark.parametrize(("tokens", "ratio"), [(16, 0.75), (64, 0.75), (10, 0.9), (49, 0.5),
                                               (4, 0.25), (256, 0.6)])
def test_masking_keeps_exactly_the_requested_share(tokens: int, ratio: float) -> None:
    g = torch.Generator().manual_seed(tokens)
    keep, masked, mask = random_masking(5, tokens, ratio, generator=g)
    n_mask = round(ratio * tokens)
    assert masked.shape == (5, n_mask) and keep.shape == (5, tokens - n_mask)
    assert torch.equal(mask.sum(dim=1), torch.full((5,), float(n_mask)))
    for b in range(5):  # keep and mask partition the tokens
        both = torch.cat([keep[b], masked[b]]).sort().values
        assert torch.equal(both, torch.arange(tokens))
        assert torch.equal(mask[b].nonzero().flatten().sort().values, masked[b].sort().values)
    assert len({tuple(r.tolist()) for r in masked}) > 1  # random per sample


def test_masking_refuses_a_share_that_empties_a_side() -> None:
    with pytest.raises(ConfigError, match="mask_ratio"):
        random_masking(2, 4, 0.1)  # masks no token of 4
    with pytest.raises(ConfigError, match="mask_ratio"):
        MAE.options_type(mask_ratio=1.0)


def test_method_masks_exactly_its_share() -> None:
    method = _tiny(mask_ratio=0.75)
    preds, mask = method.reconstruct(torch.randn(3, 4, 32, 32))
    assert mask.shape == (3, 16) and torch.equal(mask.sum(1), torch.full((3,), 12.0))
    assert preds[0].shape == (3, 16, 8 * 8 * 4)


# ---- the model -----------------------------------------------------------------------------
def test_sincos_position_embedding_for_the_chip_grid() -> None:
    method = _tiny()
    pos = method.pos_embed
    assert pos.shape == (1, 1 + 16, 192) and not pos.requires_grad  # 4 x 4 grid, frozen
    d = 192 // 4
    # MAE's 2D table: [sin(h w_k), cos(h w_k), sin(w w_k), cos(w w_k)], w_k = 10000^(-k/d)
    assert torch.equal(pos[0, 0], torch.zeros(192))  # class token
    origin = torch.cat([torch.zeros(d), torch.ones(d), torch.zeros(d), torch.ones(d)])
    assert torch.allclose(pos[0, 1], origin)
    # patch (row 0, column 1) in the table's order: the first coordinate is the column
    w = 1.0 / 10000 ** (torch.arange(d, dtype=torch.float64) / d)
    expected = torch.cat([torch.sin(w), torch.cos(w), torch.zeros(d), torch.ones(d)]).float()
    assert torch.allclose(pos[0, 2], expected, atol=1e-6)
    assert method.decoder.pos_embed.shape == (1, 17, 32)


def test_loss_is_finite_and_all_trainable_parameters_get_gradients() -> None:
    method = _tiny()
    loss = method.mae_loss(torch.randn(2, 4, 32, 32))
    assert torch.isfinite(loss)
    loss.backward()
    lost = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not lost, lost
    x = torch.randn(2, 4, 32, 32)
    assert torch.equal(method.features(x), method.encoder(x))  # the exported encoder's output


def test_mae_optimizer_gets_the_papers_betas() -> None:
    """AdamW with betas (0.9, 0.95) by default (MAE paper), configurable; others keep Adam's."""
    opt = _tiny().configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["betas"] for g in opt.param_groups] == [(0.9, 0.95)] * len(opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    # flat options (checkpoints, --method-args, YAML) may give a list
    opt = _tiny(betas=[0.8, 0.9]).configure_optimizers()["optimizer"]
    assert {g["betas"] for g in opt.param_groups} == {(0.8, 0.9)}
    simclr = METHODS["simclr"].from_hparams({**{k: TINY[k] for k in ("in_chans", "sensors")},
                                            "backbone": "test_resnet", "optimizer": "adamw"})
    opt = simclr.configure_optimizers()["optimizer"]
    assert {g["betas"] for g in opt.param_groups} == {(0.9, 0.999)}
    with pytest.raises(ConfigError, match="betas"):
        _tiny(betas=[0.9, 1.0])


def test_mae_refuses_non_vit_and_other_pairings() -> None:
    with pytest.raises(ConfigError, match="timm ViT"):
        METHODS["mae"].from_hparams({**TINY, "backbone": "resnet18"})
    check_method_pairing("mae", "aug")
    for pairing in ("geo", "fusion", "temporal"):
        with pytest.raises(ConfigError, match="positive pair"):
            check_method_pairing("mae", pairing)


# ---- spectral groups -----------------------------------------------------------------------
BANDS = ["B02", "B03", "B04", "B08"]


def test_groups_parse_and_errors() -> None:
    assert parse_groups("B02,B03, B04;B08") == [["B02", "B03", "B04"], ["B08"]]
    assert parse_groups([["B02"], ["B03"]]) == [["B02"], ["B03"]]
    with pytest.raises(ConfigError, match="more than one group"):
        parse_groups("B02,B03;B03")
    with pytest.raises(ConfigError, match="empty group"):
        parse_groups("B02;;B03")
    with pytest.raises(ConfigError, match="B05 is not one of"):
        _tiny(mae_groups="B02,B05", bands={"s2": BANDS})
    with pytest.raises(ConfigError, match="names of the 4 bands"):
        _tiny(mae_groups="B02,B03")


def test_grouped_mae_tokens_masking_and_gradients() -> None:
    method = _tiny(mae_groups="B02,B03,B04;B08", bands={"s2": BANDS}, mask_ratio=0.75)
    x = torch.randn(2, 4, 32, 32)
    preds, mask = method.reconstruct(x)
    # 2 groups x 16 tokens: 24 of 32 masked, over the groups together
    assert mask.shape == (2, 32) and torch.equal(mask.sum(1), torch.full((2,), 24.0))
    assert [p.shape for p in preds] == [(2, 16, 64 * 3), (2, 16, 64 * 1)]
    targets = method.targets(x)
    assert torch.equal(targets[1][:, 0], x[:, 3, :8, :8].reshape(2, 64))  # B08's first patch
    loss = method.mae_loss(x)
    loss.backward()
    lost = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not lost, lost
    assert method.features(x).shape == (2, 192)
    # a group's tokens change only with its own bands
    y = x.clone()
    y[:, 3] += 1.0
    tok_x, tok_y = method._patch_tokens(x), method._patch_tokens(y)
    assert torch.equal(tok_x[:, :16], tok_y[:, :16]) and not torch.equal(tok_x[:, 16:],
                                                                        tok_y[:, 16:])


# ---- export --------------------------------------------------------------------------------
def _checkpoint(method: MAE, path: Path) -> Path:
    state = {"state_dict": method.state_dict(), "hyper_parameters": dict(method.hparams),
             "geossl": method.geossl_metadata()}
    torch.save(state, path)
    return path


def test_patch8_mae_exports_to_timm_with_every_tensor_equal(tmp_path: Path) -> None:
    from geossl.inference.export import export

    method = _tiny()
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    res = export(_checkpoint(method, tmp_path / "mae.ckpt"), tmp_path / "enc.pth", format="timm")
    import json

    meta = json.loads(res.metadata.read_text())
    # MAE's features are the mean of the patch tokens: the sidecar rebuilds that pooling
    assert meta["ssl_method"] == "mae" and meta["timm_kwargs"] == {
        "img_size": 32, "patch_size": 8, "global_pool": "avg", "fc_norm": False}
    model = timm.create_model(meta["model"], num_classes=0, in_chans=4, **meta["timm_kwargs"])
    model.load_state_dict(torch.load(res.weights, weights_only=True))
    ours = method.vit.state_dict()
    assert model.state_dict().keys() == ours.keys()
    assert all(torch.equal(v, ours[k]) for k, v in model.state_dict().items())
    x = torch.randn(2, 4, 32, 32)
    method.eval()
    with torch.no_grad():
        feats, tokens = model.eval()(x), model.forward_features(x)
        torch.testing.assert_close(feats, method.features(x))
        torch.testing.assert_close(feats, tokens[:, model.num_prefix_tokens:].mean(dim=1))


def test_mae_feature_pool_is_the_patch_token_mean_and_token_keeps_the_class_token() -> None:
    """``feature_pool``: ``avg`` (default) averages the patch tokens, ``token`` is timm's class
    token; both have the weights of the same class-token ViT, and the random-init baseline and
    the reloaded encoder pool alike."""
    from geossl.pretrained.checkpoint import EncoderSource, random_like

    avg, tok = _tiny(), _tiny(feature_pool="token")
    assert avg.encoder.config["global_pool"] == "avg"
    assert tok.encoder.config["global_pool"] == "token"
    assert avg.vit.state_dict().keys() == tok.vit.state_dict().keys()
    tok.vit.load_state_dict(avg.vit.state_dict())
    x = torch.randn(2, 4, 32, 32)
    avg.eval()
    tok.eval()
    with torch.no_grad():
        tokens = avg.vit.forward_features(x)
        torch.testing.assert_close(avg.encoder(x), tokens[:, 1:].mean(dim=1))
        torch.testing.assert_close(tok.encoder(x), tokens[:, 0])
    rnd = random_like(EncoderSource(avg.encoder, {}, "k"), seed=0)
    assert getattr(rnd.encoder.backbone, "global_pool", None) == "avg"
    with pytest.raises(ConfigError, match="feature_pool"):
        _tiny(feature_pool="max")


def test_grouped_mae_export_is_refused_in_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    method = _tiny(mae_groups="B02,B03,B04;B08", bands={"s2": BANDS})
    ckpt = _checkpoint(method, tmp_path / "g.ckpt")
    rc = main(["export", str(ckpt), "--out", str(tmp_path / "g_out.ckpt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--mae-groups" in err, err
    assert not (tmp_path / "g_out.ckpt").exists()
    with pytest.raises(DataError, match="spectral-grouped"):
        from geossl.pretrained.checkpoint import load_encoder

        load_encoder(ckpt)


@pytest.mark.parametrize("task_name", compat.task_names("segmentation"))
def test_mae_exports_into_torchgeo_segmentation_dpt(tmp_path: Path, task_name: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``geossl export --task segmentation``: the MAE encoder (patch 16, pretrained at 32 px)
    loads into TorchGeo's segmentation task as smp's DPT encoder with every tensor equal (the
    position embedding resampled to 224 px, the size TorchGeo builds DPT at)."""
    from timm.layers import resample_abs_pos_embed

    method = _tiny(backbone="vit_tiny_patch16_224")
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = tmp_path / "mae_seg.ckpt"
    assert main(["export", str(_checkpoint(method, tmp_path / "mae.ckpt")), "--out", str(out),
                 "--task", "segmentation"]) == 0
    assert "vit_tiny_patch16_224" in capsys.readouterr().out
    task = compat.resolve(task_name)(model="dpt", backbone="tu-vit_tiny_patch16_224",
                                     weights=str(out), in_channels=4, num_classes=3)
    ours = {k: v.detach() for k, v in method.vit.state_dict().items()}
    ours["pos_embed"] = resample_abs_pos_embed(ours["pos_embed"], [14, 14], num_prefix_tokens=1)
    theirs = task.model.encoder.model.state_dict()
    assert set(theirs) == set(ours) | {"head.weight", "head.bias"}
    assert all(torch.equal(theirs[k], v) for k, v in ours.items()), task_name
    task.model.eval()
    with torch.no_grad():
        assert task.model(torch.randn(1, 4, 224, 224)).shape == (1, 3, 224, 224)


# ---- geossl pretrain on real Major-TOM chips -----------------------------------------------
def _losses(run: Path) -> list[float]:
    rows = list(csv.DictReader((run / "logs" / "csv" / "metrics.csv").open()))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.mark.real
def test_pretrain_mae_on_major_tom_resumes_and_loads_in_torchgeo(tmp_path: Path) -> None:
    cell = real_path("major_tom_s2l2a", "0U", "0U_199R")
    (product,) = [p for p in cell.iterdir() if p.is_dir()]
    chips = tmp_path / "chips"
    assert main(["tile", str(product), "--out", str(chips), "--size", "224"]) == 0
    run = tmp_path / "run"
    args = ["pretrain", "--data", "chips", "--root", str(chips), "--sensors", "s2",
            "--pairing", "aug", "--normalization", "s2=s2_offset", "--method", "mae",
            "--backbone", "vit_tiny_patch16_224", "--img-size", "224", "--batch-size", "4",
            "--workers", "0", "--accelerator", "cpu", "--devices", "1", "--lr", "2e-3",
            "--warmup-steps", "0", "--log-every", "1", "--ckpt-every", "100",
            "--method-args", "{decoder_dim: 64, decoder_depth: 1, decoder_heads: 4}",
            "--out", str(run)]
    assert main([*args, "--max-steps", "6"]) == 0
    first = _losses(run)
    assert len(first) == 6 and all(math.isfinite(v) for v in first)
    assert sum(first[-2:]) < sum(first[:2]), first  # falling
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 6
    assert main([*args, "--max-steps", "8", "--resume", "last"]) == 0
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert blob["global_step"] == 8 and blob["geossl"]["method"] == "mae"
    assert all(math.isfinite(v) for v in _losses(run))

    out = tmp_path / "mae_tg.ckpt"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    encoder = {k.removeprefix("encoder.backbone."): v for k, v in blob["state_dict"].items()
               if k.startswith("encoder.backbone.")}
    for task_name in compat.task_names("classification"):
        task = compat.resolve(task_name)(model="vit_tiny_patch16_224", weights=str(out),
                                         in_channels=12, num_classes=5)
        state = task.model.state_dict()
        loaded = [k for k in state if not k.startswith("head.")]
        assert sorted(loaded) == sorted(encoder)
        assert all(torch.equal(state[k], encoder[k]) for k in loaded), task_name


# ---- does it learn? (slow) -----------------------------------------------------------------
#: the demo-scene check: steps, batch and the small decoder of a CPU run
LEARN_STEPS, LEARN_BATCH = 600, 32


def _pretrain_mae_stage(ctx: Any) -> None:
    """The demo's pretraining stage for MAE (ViT at the chip size, a light decoder)."""
    import contextlib
    import sys

    import pandas as pd

    from geossl.demo.run import fresh_run_dir
    from geossl.training.trainer import PretrainConfig, pretrain

    run = ctx.out / "pretrain"
    fresh_run_dir(run)
    n_train = int(ctx.extra["train"].sum())
    config = PretrainConfig(
        data="chips", root=str(ctx.chips), index=str(ctx.index), out=str(run), method="mae",
        backbone=ctx.backbone, sensors=["s2"], pairing="aug", seed=ctx.seed, workers=0,
        max_steps=ctx.steps, batch_size=ctx.batch_size, img_size=ctx.size,
        splits=str(ctx.outputs["splits"]), split="train", ckpt_every=ctx.steps, log_every=10,
        lr=1.5e-3, warmup_steps=30, accelerator="cpu", devices="1",
        method_args={"decoder_dim": 128, "decoder_depth": 2, "decoder_heads": 4})
    with contextlib.redirect_stdout(sys.stderr):
        ctx.checkpoint = pretrain(config)
    losses = pd.read_csv(run / "logs" / "csv" / "metrics.csv")["train/loss"].dropna()
    ctx.outputs["checkpoint"] = ctx.checkpoint
    ctx.extra["pretrain"] = {
        "method": "mae", "backbone": ctx.backbone, "pairing": "aug", "sensor": "s2",
        "steps": ctx.steps, "batch_size": ctx.batch_size, "view_size": ctx.size,
        "training_chips": n_train, "losses": [float(v) for v in losses],
        "loss_first": float(losses.iloc[0]), "loss_last": float(losses.iloc[-1]),
        "checkpoint": str(ctx.checkpoint)}


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_mae_learns_on_the_demo_scene(tmp_path: Path) -> None:
    """A short MAE pretraining on the demo scene's chips lowers the loss and gives frozen
    features (linear probe, kNN against the demo's proxy classes, spatial-block split) at least
    as good as the same ViT randomly initialised (both pooling the patch tokens)."""
    from geossl.demo import run as demo_run

    ctx = demo_run.DemoContext(out=tmp_path / "demo", size=32, steps=LEARN_STEPS,
                               batch_size=LEARN_BATCH, crop_size=None, method="mae",
                               backbone="vit_tiny_patch8")
    stages = dict(demo_run.STAGES)
    demo_run.run_demo(ctx, [
        ("locate", stages["locate"]), ("tile", stages["tile"]), ("labels", stages["labels"]),
        ("split", stages["split"]), ("pretrain", _pretrain_mae_stage),
        ("features", stages["features"]), ("evaluate", stages["evaluate"])])
    print(ctx.extra["table_md"])
    losses = ctx.extra["pretrain"]["losses"]
    print("losses", [round(v, 3) for v in losses])
    first, last = float(sum(losses[:3]) / 3), float(sum(losses[-3:]) / 3)
    assert all(math.isfinite(v) for v in losses) and last < 0.9 * first, losses
    rows = {r["features"].split(" (")[0]: r for r in ctx.extra["rows"]}
    ssl, rnd = rows["SSL"], rows["random init"]
    for probe in ("linear", "knn"):
        print(probe, "SSL", ssl[probe]["oa"], "random", rnd[probe]["oa"])
    # the features are the mean of the patch tokens (MAE's feature_pool default; the random
    # ViT pools alike). With the class token instead, the same run measured kNN OA 0.9900
    # against 0.9908 for random init: the class token is not what MAE's loss trains
    assert ssl["linear"]["oa"] >= rnd["linear"]["oa"], (ssl["linear"], rnd["linear"])
    assert ssl["knn"]["oa"] >= rnd["knn"]["oa"], (ssl["knn"], rnd["knn"])


def test_checkpoint_saved_before_feature_pool_reloads_with_the_class_token(
        tmp_path: Path) -> None:
    """An MAE checkpoint whose options predate ``feature_pool`` was evaluated on the class
    token: :meth:`load_from_checkpoint` rebuilds it so (``MAE.legacy_defaults``); a checkpoint
    that records ``avg`` and a new run keep the patch-token mean."""
    method = _tiny()
    new = _checkpoint(method, tmp_path / "new.ckpt")
    old_state = torch.load(new, weights_only=True)
    del old_state["hyper_parameters"]["feature_pool"]
    old = tmp_path / "old.ckpt"
    torch.save(old_state, old)
    assert MAE.load_from_checkpoint(old).vit.global_pool == "token"
    assert MAE.load_from_checkpoint(new).vit.global_pool == "avg"
    assert MAE.from_hparams(TINY).vit.global_pool == "avg"
