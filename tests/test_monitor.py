"""What pretraining logs: contrastive top-1 accuracy, an online linear probe on detached features,
t-SNE snapshots every N epochs; SEN12MS scene labels on geo-sampled chips."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geossl.cli import main
from geossl.methods.metrics import contrastive_top1, queue_top1
from tests.data.cifar.data import generate as gen_cifar
from tests.data.sen12ms.data import generate as gen_sen12ms
from tests.data.sen12ms.data import stripe_classes


def test_contrastive_top1_values() -> None:
    z = torch.eye(4)  # four orthogonal embeddings
    assert float(contrastive_top1(z, z)) == 1.0  # each view's twin is the identical vector
    assert float(contrastive_top1(z, z.roll(1, 0))) == 0.0  # twins are orthogonal: never first
    half = torch.cat([z[:2], z[:2].roll(1, 0)])  # rows 0, 1 right; rows 2, 3 swapped
    assert float(contrastive_top1(z, half)) == pytest.approx(0.5)
    q = torch.eye(3)
    queue = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])
    # query 0: key 0.9 similar vs queue 0.995 -> wrong; query 1: key 1 vs queue 0.0995 -> right;
    # query 2: key 1 vs queue 1 (a tie is not a win) -> wrong
    keys = torch.tensor([[0.9, 0.43, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert float(queue_top1(q, keys, queue)) == pytest.approx(1 / 3)


def test_online_probe_learns_on_detached_features(tmp_path: Path) -> None:
    """A probe on a frozen random encoder learns separable classes; the encoder gets no
    gradient and no update; the probe's state goes into the checkpoint dict."""
    from geossl.data.datamodule import SSLDataModule
    from geossl.methods import SimCLR
    from geossl.training.monitor import OnlineProbe

    gen_cifar(tmp_path, per_batch=20, test=2)
    dm = SSLDataModule("cifar10", tmp_path, sensors=["rgb"], pairing="aug", batch_size=20,
                       labels=True)
    assert dm.has_labels and dm.classes[0] == "airplane"
    torch.manual_seed(0)
    module = SimCLR.from_hparams({"backbone": "test_resnet", "sensors": ["rgb"],
                                  "in_chans": {"rgb": 3}, "pairing": "aug", "crop_size": 16})
    before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    logged: dict[str, list[float]] = {}
    module.log = lambda key, value, **kw: logged.setdefault(key, []).append(float(value))  # type: ignore[method-assign]

    class _Trainer:
        datamodule = dm

    probe = OnlineProbe(lr=0.05)
    for _epoch in range(8):
        for i, batch in enumerate(dm.train_dataloader()):
            probe.on_train_batch_end(_Trainer(), module, None, batch, i)
    acc = logged["probe/acc"]
    assert len(acc) == 40 and np.mean(acc[:5]) < 0.5 and np.mean(acc[-5:]) >= 0.9
    assert all(p.grad is None for p in module.encoder.parameters())
    for k, v in module.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k])
    state = probe.state_dict()
    assert state["head"]["weight"].shape == (10, module.encoder.num_features)
    fresh = OnlineProbe()
    fresh.load_state_dict(state)
    fresh.on_train_batch_end(_Trainer(), module, None, next(iter(dm.train_dataloader())), 0)
    assert fresh.head is not None and fresh.optimizer.state_dict()["state"]  # type: ignore[union-attr]


def _metrics(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "logs" / "csv" / "metrics.csv")


def test_pretrain_logs_probe_contrastive_accuracy_and_tsne(tmp_path: Path) -> None:
    gen_cifar(tmp_path / "cifar", per_batch=4, test=2)
    out = tmp_path / "run"
    args = ["pretrain", "--data", "cifar10", "--root", str(tmp_path / "cifar"), "--sensors",
            "rgb", "--pairing", "aug", "--backbone", "test_resnet", "--batch-size", "10",
            "--workers", "0", "--accelerator", "cpu", "--img-size", "16", "--log-every", "1",
            "--online-probe", "--tsne-every", "1", "--tsne-points", "12", "--out", str(out)]
    assert main([*args, "--max-epochs", "2"]) == 0
    frame = _metrics(out)
    for col in ("train/contrastive_acc", "probe/acc_step", "probe/acc_epoch", "probe/loss_step"):
        values = frame[col].dropna()
        assert len(values) and values.between(0, 1).all() if "acc" in col else len(values), col
    assert len(frame["probe/acc_step"].dropna()) == 4  # 2 batches x 2 epochs
    assert sorted(p.name for p in (out / "tsne").glob("*.png")) == [
        "epoch=000.png", "epoch=001.png", "epoch=002.png"]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert "head" in ckpt["callbacks"]["OnlineProbe"]
    # resume: the probe continues from its saved state
    assert main([*args, "--max-epochs", "3", "--resume", "last"]) == 0
    assert zipfile.is_zipfile(out / "checkpoints" / "last.ckpt")
    assert (out / "tsne" / "epoch=003.png").exists()


def test_online_probe_needs_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data.polsar.data import generate as gen_polsar

    gen_polsar(tmp_path / "p", rows=32, cols=32)
    rc = main(["pretrain", "--data", "polsar", "--root", str(tmp_path / "p"), "--sensors",
               "polsar", "--pairing", "aug", "--backbone", "test_resnet", "--patch-size", "16",
               "--batch-size", "2", "--max-steps", "1", "--accelerator", "cpu",
               "--online-probe", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "--online-probe needs labelled samples" in err


def test_sen12ms_scene_labels_on_geo_chips(tmp_path: Path) -> None:
    from geossl.datasets.sen12ms import SEN12MS, pairing_dataset

    gen_sen12ms(tmp_path, scenes={"ROIs1158_spring": [1]}, patches=2, size=32)
    lc = SEN12MS(tmp_path, sensor="lc", label="igbp")
    first = lc.index[lc.index["patch"] == 1].iloc[0]
    minx, _, _, maxy = first.geometry.bounds
    a, b, _, _ = stripe_classes(1, 1)  # stripes: rows 0-18 a, 19-26 b, 27-29 c, 30-31 d
    top = lc[minx : minx + 160, maxy - 160 : maxy]  # rows 0-15: all stripe a
    assert int(top["label"]) == a - 1  # 0-based IGBP index
    low = lc[minx : minx + 160, maxy - 320 : maxy - 160]  # rows 16-31: 3 a, 8 b, 3 c, 2 d
    assert int(low["label"]) == b - 1
    dfc = SEN12MS(tmp_path, sensor="lc", label="dfc", multilabel=True)
    multi = dfc[minx : minx + 160, maxy - 320 : maxy - 160]["label"]
    assert multi.dtype == torch.float32 and multi.shape == (10,) and multi.sum() >= 1
    with pytest.raises(Exception, match="needs sensor='lc'"):
        SEN12MS(tmp_path, sensor="s2", label="igbp")

    chips = pairing_dataset(tmp_path, ["s1", "s2"], label="dfc")
    sample = chips[minx : minx + 160, maxy - 160 : maxy]
    assert sample["image_s1"].shape == (2, 16, 16) and sample["image_s2"].shape == (13, 16, 16)
    assert "mask" not in sample and sample["sensor_mask"].tolist() == [1.0, 1.0]
    from geossl.datasets.labels import igbp_to_index

    assert int(sample["label"]) == int(igbp_to_index(np.array([a]), "dfc")[0])


def test_pretrain_on_sen12ms_geo_chips_with_probe(tmp_path: Path) -> None:
    gen_sen12ms(tmp_path / "s", scenes={"ROIs1158_spring": [1], "ROIs1868_summer": [2]},
                patches=3, size=32)
    out = tmp_path / "run"
    rc = main(["pretrain", "--data", "sen12ms-geo", "--root", str(tmp_path / "s"),
               "--sensors", "s1,s2", "--pairing", "geo", "--method", "moco",
               "--queue-size", "16", "--backbone", "test_resnet", "--patch-size", "16",
               "--batch-size", "4", "--max-steps", "2", "--accelerator", "cpu",
               "--online-probe", "--label-scheme", "dfc", "--log-every", "1", "--out", str(out)])
    assert rc == 0
    frame = _metrics(out)
    assert frame["probe/acc_step"].notna().sum() == 2
    assert frame["train/contrastive_acc"].notna().sum() == 2




def test_tsne_snapshots_at_listed_epochs(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """--tsne-epochs 1,3 (a study's listed epochs, no interval): the snapshot before training and
    after epochs 1 and 3 only; a bad list is one error line, exit 2."""
    gen_cifar(tmp_path / "cifar", per_batch=4, test=2)
    out = tmp_path / "run"
    args = ["pretrain", "--data", "cifar10", "--root", str(tmp_path / "cifar"), "--sensors",
            "rgb", "--pairing", "aug", "--backbone", "test_resnet", "--batch-size", "10",
            "--workers", "0", "--accelerator", "cpu", "--img-size", "16",
            "--tsne-points", "12", "--max-epochs", "3"]
    assert main([*args, "--tsne-epochs", "3,1", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "tsne").glob("*.png")) == [
        "epoch=000.png", "epoch=001.png", "epoch=003.png"]
    rc = main([*args, "--tsne-epochs", "0,x", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "--tsne-epochs" in err and not (tmp_path / "bad" / "tsne").exists()


def test_neighbour_grids_with_the_snapshots(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--neighbour-grids: OUT/neighbours/epoch=NNN.png beside each t-SNE snapshot (PNG pictures
    of the same queries' nearest samples); without snapshots it is one error line, exit 2."""
    gen_cifar(tmp_path / "cifar", per_batch=4, test=2)
    out = tmp_path / "run"
    args = ["pretrain", "--data", "cifar10", "--root", str(tmp_path / "cifar"), "--sensors",
            "rgb", "--pairing", "aug", "--backbone", "test_resnet", "--batch-size", "10",
            "--workers", "0", "--accelerator", "cpu", "--img-size", "16",
            "--tsne-points", "12", "--max-epochs", "1", "--neighbour-grids"]
    assert main([*args, "--tsne-epochs", "1", "--out", str(out)]) == 0
    grids = sorted(p.name for p in (out / "neighbours").glob("*.png"))
    assert grids == ["epoch=000.png", "epoch=001.png"]
    from PIL import Image

    with Image.open(out / "neighbours" / "epoch=001.png") as img:
        assert img.size[0] > 200 and img.size[1] > 100
    rc = main([*args, "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "--neighbour-grids" in err and not (tmp_path / "bad").exists()


def _ben_farmland(ids: list[str]) -> dict[str, int]:
    """Farmland by hand: fake patch k (x = 10 + k in its name) carries LABEL_SETS[k % 4]; the
    farmland CLC codes are 211, 242 and 243."""
    from tests.data.bigearthnet.data import LABEL_SETS

    out = {}
    for name in ids:
        k = int(name.rsplit("_", 2)[1]) - 10
        out[name] = int(bool(set(LABEL_SETS[k % len(LABEL_SETS)]) & {211, 242, 243}))
    return out


def test_online_probe_on_the_farmland_task(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """probe task farmland: the probe is a 2-class head trained on the farmland targets of
    each batch (exact from the 43 CORINE classes), the encoder untouched; with the 19 classes,
    'Non-irrigated arable land' is read as 'Arable land' and said so."""
    import geossl.training.monitor as monitor
    from geossl.data.datamodule import SSLDataModule
    from geossl.datasets.labels import BEN19_CLASSES, CORINE_CLASSES, FARMLAND, task_indices
    from geossl.methods import SimCLR
    from tests.data.bigearthnet.data import generate_v2

    hand = _ben_farmland(generate_v2(tmp_path / "ben", n=8, s1=False))
    dm = SSLDataModule("bigearthnet", tmp_path / "ben", sensors=["s2"], pairing="aug",
                       batch_size=8, labels=True, data_args={"num_classes": 43, "split": "all"})
    indices, readings = task_indices(FARMLAND, dm.classes)
    assert readings == [] and {CORINE_CLASSES[i] for i in indices} == set(FARMLAND.classes)
    coarse, notes = task_indices(FARMLAND, BEN19_CLASSES)
    assert "Arable land" in {BEN19_CLASSES[i] for i in coarse}
    assert notes and "'Non-irrigated arable land' is read as its 19-class parent" in notes[0]
    torch.manual_seed(0)
    module = SimCLR.from_hparams({"backbone": "test_resnet", "sensors": ["s2"],
                                  "in_chans": {"s2": 12}, "pairing": "aug", "crop_size": 16})
    before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    logged: dict[str, list[float]] = {}
    module.log = lambda key, value, **kw: logged.setdefault(key, []).append(float(value))  # type: ignore[method-assign]
    targets: list[torch.Tensor] = []
    real_ce = monitor.F.cross_entropy
    monkeypatch.setattr(monitor.F, "cross_entropy",
                        lambda logits, target, **kw: (targets.append(target.clone()),
                                                      real_ce(logits, target, **kw))[1])

    class _Trainer:
        datamodule = dm

    probe = monitor.OnlineProbe(lr=0.05, task=FARMLAND, task_classes=indices)
    got, want = [], []
    for i, batch in enumerate(dm.train_dataloader()):
        probe.on_train_batch_end(_Trainer(), module, None, batch, i)
        got += targets[-1].tolist()
        want += [int(bool({CORINE_CLASSES[j] for j in row.nonzero().flatten().tolist()}
                          & set(FARMLAND.classes))) for row in batch["label"]]
    # every sample's probe target is its farmland label (by class name); 2 of the 8 patches
    assert got == want and sum(got) == sum(hand.values()) == 2 and len(got) == 8
    assert probe.head is not None and probe.head.weight.shape[0] == 2
    assert set(logged) == {"probe/loss", "probe/acc"}  # single-label: no probe/map
    for k, v in module.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k])
    with pytest.raises(Exception, match="needs the label indices"):
        monitor.OnlineProbe(task=FARMLAND)


def test_pretrain_probe_task_farmland(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pretrain --online-probe --probe-task farmland` on BigEarthNet's 19 classes: the note
    line, probe/acc logged, a 2-class probe in the checkpoint; without --online-probe: exit 2."""
    from tests.data.bigearthnet.data import generate_v2

    generate_v2(tmp_path / "ben", n=8, s1=False, reference_maps=False)
    out = tmp_path / "run"
    args = ["pretrain", "--data", "bigearthnet", "--root", str(tmp_path / "ben"), "--sensors",
            "s2", "--bands", "B04,B03,B02", "--pairing", "aug", "--backbone", "test_resnet",
            "--batch-size", "4", "--workers", "0", "--accelerator", "cpu", "--img-size", "16",
            "--log-every", "1", "--max-steps", "2", "--probe-task", "farmland",
            "--out", str(out)]
    assert main(args) == 2
    assert "--probe-task farmland trains the online probe" in capsys.readouterr().err
    assert main([*args, "--online-probe"]) == 0
    printed = capsys.readouterr().out
    assert "online probe task farmland" in printed and "'Arable land'" in printed
    assert _metrics(out)["probe/acc_step"].dropna().between(0, 1).all()
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["callbacks"]["OnlineProbe"]["head"]["weight"].shape[0] == 2
