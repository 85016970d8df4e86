"""End to end through the CLI on real `geossl pretrain` checkpoints.

Fake SEN12MS (the real on-disk layout, tests/data/sen12ms) whose Sentinel-2 patches carry a
class-dependent spectrum, split by the overlap-aware splitter (`geossl split`); three tiny
pretraining runs (resnet18, 32 px, batch 4, 2 steps) on the TRAIN side only:

* ``aug``: single-sensor S2 SimCLR with a linear 1x1 band adapter (13 -> 3);
* ``geo``: MoCo with S1/S2 pairs through per-sensor stems and one shared trunk;
* ``fusion``: MoCo on stacked S1+S2 with the missing-sensor mask (``partial-fusion``);

then on each checkpoint ``geossl export`` (loaded into TorchGeo's classification task, logits
equal to geossl's encoder + the same linear head), ``geossl evaluate`` (every protocol, label
budgets from the train side, two seeds) and ``geossl embed`` (zarr cube and cluster map of a
GeoTIFF scene), plus the one-line errors for bad input.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from torch import nn

from geossl.cli import main
from geossl.pretrained.checkpoint import load_encoder
from tests._cli_helpers import one_line_error

S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
            "B12"]
#: scenes whose 4 patches have majority IGBP classes 3, 4, 5, 6 (class = (scene + patch) % 17 + 1)
SCENES = {"ROIs1158_spring": [1, 18], "ROIs1868_summer": [35, 52], "ROIs1970_fall": [69, 86]}
PATCHES = 4
N_CLASSES_PRESENT = 4
ORIGIN = (400000.0, 5350000.0)

COMMON = ["--data", "sen12ms", "--backbone", "resnet18", "--batch-size", "4", "--workers", "0",
          "--accelerator", "cpu", "--devices", "1", "--img-size", "32", "--log-every", "1"]
RUNS: dict[str, list[str]] = {
    "aug": ["--method", "simclr", "--pairing", "aug", "--sensors", "s2", "--adapter", "linear"],
    "geo": ["--method", "moco", "--pairing", "geo", "--sensors", "s1,s2"],
    "fusion": ["--method", "moco", "--pairing", "partial-fusion", "--sensors", "s1,s2"],
}


def _spectrum(cls: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """13-band uint16 patch whose spectrum depends on the class (what a probe can learn)."""
    level = 500 + 1500 * ((cls + np.arange(13)) % 4)
    noise = rng.integers(0, 300, (13, size, size))
    return (level[:, None, None] + noise).astype(np.uint16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fake labelled SEN12MS + an overlap-aware split written by `geossl split`."""
    from tests.data.sen12ms.data import generate

    base = tmp_path_factory.mktemp("e2e")
    root = base / "sen12ms"
    generate(root, scenes=SCENES, patches=PATCHES, size=32)
    rng = np.random.default_rng(0)
    for tif in sorted(root.glob("ROIs*/s2_*/*.tif")):
        patch = int(tif.stem.rsplit("_p", 1)[1])
        with rasterio.open(tif, "r+") as f:
            f.write(_spectrum(patch - 1, rng, f.height))
    splits = base / "splits.json"
    assert main(["split", "--data", "sen12ms", "--root", str(root), "--strategy", "overlap",
                 "--fractions", "0.67,0.33", "--seed", "0", "--out", str(splits)]) == 0
    return {"base": base, "root": root, "splits": splits}


class _Runs(dict[str, Path]):
    """Checkpoints of `geossl pretrain`, one per pairing mode, each trained on first use."""

    def __init__(self, data: dict[str, Path]) -> None:
        super().__init__()
        self.data = data

    def __missing__(self, name: str) -> Path:
        out = self.data["base"] / f"run_{name}"
        torch.set_num_threads(1)
        rc = main(["pretrain", *COMMON, *RUNS[name], "--root", str(self.data["root"]),
                   "--out", str(out), "--splits", str(self.data["splits"]), "--split", "train",
                   "--max-steps", "2"])
        assert rc == 0
        ckpt = out / "checkpoints" / "last.ckpt"
        assert ckpt.is_file()
        self[name] = ckpt
        return ckpt


@pytest.fixture(scope="module")
def runs(data: dict[str, Path]) -> dict[str, Path]:
    """`geossl pretrain`, two steps on the TRAIN side of the split only, shared by the module
    (a configuration is trained when a test first asks for it, so `-k fusion` trains one)."""
    return _Runs(data)


# --------------------------------------------------------------------------------------------
# export -> TorchGeo
# --------------------------------------------------------------------------------------------
def _inputs(name: str) -> tuple[Any, torch.Tensor, dict[str, Any]]:
    """A batch for geossl's encoder, the same batch as the exported model's input, and kwargs."""
    g = torch.Generator().manual_seed(0)
    s1, s2 = torch.rand(3, 2, 32, 32, generator=g), torch.rand(3, 13, 32, 32, generator=g)
    if name == "fusion":
        return {"s1": s1, "s2": s2}, s2, {}  # the exported input is built by encoder.fuse
    if name == "geo":
        return s2, s2, {"sensor": "s2"}
    return s2, s2, {}


@pytest.mark.parametrize("name", list(RUNS))
def test_export_loads_in_torchgeo(name: str, runs: dict[str, Path], tmp_path: Path) -> None:
    from geossl.core.compat import task_class

    ClassificationTask = task_class("classification")  # Classification on 0.10

    out = tmp_path / f"{name}.ckpt"
    extra = ["--sensor", "s2"] if name == "geo" else []
    assert main(["export", str(runs[name]), "--out", str(out), *extra]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    encoder, _ = load_encoder(runs[name])
    want_chans = {"aug": 13, "geo": 13, "fusion": 2 + 13 + 2}[name]
    assert side["model"] == "resnet18" and side["in_chans"] == want_chans
    assert side["timm_kwargs"] == {}  # resnet18 is built by name
    if name == "fusion":
        assert side["sensors"] == ["s1", "s2"]
        assert side["bands"] == ["VV", "VH", *S2_BANDS, "mask_s1", "mask_s2"]
    else:
        assert side["sensors"] == ["s2"] and side["bands"] == S2_BANDS
        assert side["normalization"] == "s2"
        assert side["mean"] == [0.0] * 13 and side["std"] == [10000.0] * 13
    assert side["adapter_folded"] == (name == "aug")

    k = 4
    task = ClassificationTask(model="resnet18", weights=str(out), in_channels=want_chans,
                              num_classes=k)
    # every backbone tensor came from the checkpoint (no silently re-initialised stem)
    blob = torch.load(out, weights_only=True)
    state = task.model.state_dict()
    exported = {key.removeprefix("model."): v for key, v in blob["state_dict"].items()}
    assert set(state) - set(exported) == {"fc.weight", "fc.bias"}
    assert all(torch.equal(state[key], v) for key, v in exported.items())
    trunk = encoder.backbone.state_dict()
    assert all(torch.equal(state[key], v) for key, v in trunk.items() if key != "conv1.weight")

    head = nn.Linear(encoder.num_features, k)
    task.model.fc.load_state_dict(head.state_dict())
    task.model.eval()
    x, plain, kwargs = _inputs(name)
    if name == "fusion":
        plain = encoder.fuse(x)
        assert plain.shape[1] == want_chans
    with torch.no_grad():
        ours = head(encoder(x, **kwargs))
        theirs = task.model(plain)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()

    if name == "aug":  # one optimiser step through TorchGeo's model and loss
        task.model.train()
        opt = torch.optim.SGD(task.model.parameters(), lr=0.1)
        before = task.model.conv1.weight.detach().clone()
        loss = task.criterion(task.model(plain), torch.tensor([0, 1, 2]))
        loss.backward()
        opt.step()
        assert torch.isfinite(loss) and not torch.equal(before, task.model.conv1.weight)


def test_export_bad_input(runs: dict[str, Path], data: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.ckpt")
    assert main(["export", str(runs["geo"]), "--out", out]) == 2
    one_line_error(capsys, "export", "--sensor", "s1, s2")
    assert main(["export", str(runs["geo"]), "--out", out, "--sensor", "s3"]) == 2
    one_line_error(capsys, "export", "unknown sensor 's3'")
    assert main(["export", str(runs["aug"]), "--out", out, "--sensor", "s1"]) == 2
    one_line_error(capsys, "export", "unknown sensor 's1'", "s2")
    assert main(["export", str(runs["fusion"]), "--out", out, "--sensor", "s2"]) == 2
    one_line_error(capsys, "export", "fusion", "stacked")
    # a non-linear band adapter cannot be folded: refused, or kept beside the backbone
    run = data["base"] / "run_nonlinear"
    assert main(["pretrain", *COMMON, *RUNS["aug"][:-1], "nonlinear", "--root",
                 str(data["root"]), "--out", str(run), "--max-steps", "1"]) == 0
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert main(["export", ckpt, "--out", out]) == 2
    one_line_error(capsys, "export", "--keep-adapter")
    assert main(["export", ckpt, "--out", out, "--keep-adapter", "true"]) == 0
    blob = torch.load(out, weights_only=True)
    assert blob["hyper_parameters"]["in_channels"] == 3 and "geossl_adapter" in blob


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
PROTOCOLS = {"linear", "knn20", "knn200", "finetune", "scratch", "cluster"}


@pytest.mark.parametrize("name", list(RUNS))
def test_evaluate_every_protocol(name: str, runs: dict[str, Path], data: dict[str, Path],
                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "eval"
    extra = ["--sensor", "s2"] if name == "geo" else []
    args = ["evaluate", str(runs[name]), "--data", "sen12ms", "--root", str(data["root"]),
            "--splits", str(data["splits"]), "--labels-per-class", "2", "--seeds", "0,1",
            "--out", str(out), "--accelerator", "cpu", "--batch-size", "16",
            "--finetune-steps", "3", "--finetune-batch-size", "4", *extra]
    assert main([*args, "--protocol", "linear,knn,cluster,finetune"]) == 0

    split = json.loads(data["splits"].read_text())["splits"]
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["n_train"] == len(split["train"]) and res["meta"]["n_test"] == len(
        split["test"])
    assert res["meta"]["sensor"] == {"aug": "s2", "geo": "s2", "fusion": "s1,s2"}[name]
    runs_ = res["runs"]
    assert {r["protocol"] for r in runs_} == PROTOCOLS
    for proto in PROTOCOLS:
        assert sorted(r["seed"] for r in runs_ if r["protocol"] == proto) == [0, 1]
    for r in runs_:
        m = r["metrics"]
        if r["protocol"] == "cluster":
            assert 0 <= m["nmi"] <= 1 and -1 <= m["ari"] <= 1 and 0 <= m["acc"] <= 1
            assert r["info"]["k"] == N_CLASSES_PRESENT
            continue
        assert r["n_labels"] == 2 * N_CLASSES_PRESENT  # 2 per class, from the train side
        for key in ("oa", "aa", "f1_macro", "top5"):
            assert 0 <= m[key] <= 1, (r["protocol"], key, m[key])
        assert np.asarray(m["confusion"]).sum() == len(split["test"])
    # the same labels and schedule for the fine-tuned encoder and its scratch baseline
    for seed in (0, 1):
        ft = next(r for r in runs_ if r["protocol"] == "finetune" and r["seed"] == seed)
        sc = next(r for r in runs_ if r["protocol"] == "scratch" and r["seed"] == seed)
        assert ft["n_labels"] == sc["n_labels"] and ft["info"]["steps"] == sc["info"]["steps"]
    # classes differ by their spectrum: frozen features of a barely trained encoder separate them
    linear = [r["metrics"]["oa"] for r in runs_ if r["protocol"] == "linear"]
    assert np.mean(linear) >= 0.75, linear

    md = (out / "results.md").read_text()
    assert re.search(r"\| linear \| 2/class \| 2 \| [0-9.]+ ± [0-9.]+", md), md
    assert "| cluster | none | 2 |" in md
    pngs = ["tsne.png", "knn_grid.png", "confusion_linear.png", "confusion_finetune.png",
            "confusion_scratch.png", "finetune_curves.png"]
    pngs += {"aug": ["knn_grid_false.png"], "geo": ["knn_grid_false.png"],
             "fusion": ["knn_grid_false.png", "knn_grid_sar.png"]}[name]
    for png in pngs:
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    assert len(list((out / "cache").glob("features-*.pt"))) == 2

    if name == "aug":  # features are extracted once: a second run reads the cache
        import geossl.eval.features as features

        def no_encoder(*a: Any, **k: Any) -> Any:
            raise AssertionError("features were extracted again")

        monkeypatch.setattr(features, "extract_features", no_encoder)
        assert main([*args, "--protocol", "knn", "--no-plots", "true"]) == 0


@pytest.mark.slow
def test_evaluate_budgets_seeds_and_longer_finetune(runs: dict[str, Path],
                                                    data: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """The heavier variant: several budgets and three seeds, a fine-tuning long enough for its
    loss to fall, beside its scratch baseline on the same labels and schedule."""
    out = tmp_path / "eval"
    assert main(["evaluate", str(runs["aug"]), "--data", "sen12ms", "--root", str(data["root"]),
                 "--splits", str(data["splits"]), "--labels-per-class", "1,2", "--labels", "6",
                 "--seeds", "0,1,2", "--out", str(out), "--accelerator", "cpu",
                 "--batch-size", "16", "--finetune-steps", "30", "--finetune-batch-size", "4",
                 "--finetune-lr", "3e-4", "--protocol", "linear,knn,finetune"]) == 0
    res = json.loads((out / "results.json").read_text())
    budgets = {"1/class": N_CLASSES_PRESENT, "2/class": 2 * N_CLASSES_PRESENT, "6": 6}
    for r in res["runs"]:
        assert r["n_labels"] == budgets[r["budget"]], r
    rows = {(row["protocol"], row["budget"]) for row in res["summary"]}
    assert rows == {(p, b) for p in ("linear", "knn20", "knn200", "finetune", "scratch")
                    for b in budgets}
    md = (out / "results.md").read_text()
    assert re.search(r"\| finetune \| 6 \| 3 \| [0-9.]+ ± [0-9.]+", md), md
    for proto in ("finetune", "scratch"):
        for seed in (0, 1, 2):
            log = np.loadtxt(out / "logs" / f"{proto}-2pc-seed{seed}.csv", delimiter=",",
                             skiprows=1)
            assert log.shape == (30, 3)
            assert log[-10:, 2].mean() < log[:10, 2].mean(), (proto, seed, log[:, 2])


def test_evaluate_bad_input(runs: dict[str, Path], data: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data.aid.data import generate_ucmerced

    base = ["--data", "sen12ms", "--root", str(data["root"]), "--splits", str(data["splits"]),
            "--out", str(tmp_path / "ev"), "--accelerator", "cpu", "--protocol", "knn"]
    assert main(["evaluate", str(runs["geo"]), *base, "--sensor", "s3"]) == 2
    one_line_error(capsys, "evaluate", "unknown sensor 's3'", "s1, s2")
    # s1,s2 side by side suits frozen features (tested with the study's config); fine-tuning
    # reads one sensor of an encoder with per-sensor stems
    assert main(["evaluate", str(runs["geo"]), *base, "--sensor", "s1,s2",
                 "--protocol", "finetune"]) == 2
    one_line_error(capsys, "evaluate", "reads one sensor")
    assert main(["evaluate", str(runs["aug"]), *base, "--sensor", "s1"]) == 2
    one_line_error(capsys, "evaluate", "unknown sensor 's1'")
    # an RGB dataset for a 13-band encoder
    ucm = generate_ucmerced(tmp_path / "ucm", n_per_class=2, size=32)
    assert main(["evaluate", str(runs["aug"]), "--data", "ucmerced", "--root", str(ucm),
                 "--out", str(tmp_path / "ev2"), "--accelerator", "cpu"]) == 2
    one_line_error(capsys, "evaluate", "3 bands", "takes 13")


# --------------------------------------------------------------------------------------------
# embed
# --------------------------------------------------------------------------------------------
def _scene(path: Path, names: bool = True, bands: int = 13, h: int = 96, w: int = 128) -> Path:
    """A 10 m UTM scene: left half class 0's spectrum, right half class 2's."""
    rng = np.random.default_rng(1)
    data = np.concatenate([_spectrum(0, rng, h)[:, :, : w // 2],
                           _spectrum(2, rng, h)[:, :, : w - w // 2]], axis=2)[:bands]
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=bands,
                       dtype="uint16", crs="EPSG:32633",
                       transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])) as dst:
        dst.write(data)
        if names:
            dst.descriptions = tuple(S2_BANDS[:bands])
    return path


@pytest.mark.parametrize("name", list(RUNS))
def test_embed_scene(name: str, runs: dict[str, Path], tmp_path: Path) -> None:
    import rioxarray  # noqa: F401 - registers .rio
    import xarray as xr

    from geossl.pretrained.normalize import get_normalizer

    # the geo run's scene has no band names: read whole, in file order (13 = the s2 stem)
    tif = _scene(tmp_path / "scene.tif", names=name != "geo")
    out = tmp_path / "scene.zarr"
    extra = [] if name == "aug" else ["--sensor", "s2"]
    assert main(["embed", str(runs[name]), str(tif), "--out", str(out), "--size", "32",
                 "--block-rows", "2", "--clusters", "2", "--accelerator", "cpu", *extra]) == 0
    ds = xr.open_zarr(out, decode_coords="all")
    emb = ds["embedding"]
    assert emb.dims == ("band", "y", "x") and emb.shape == (512, 3, 4)
    assert ds.rio.crs.to_epsg() == 32633
    assert np.allclose(ds.x.values, ORIGIN[0] + 10 * (16 + 32 * np.arange(4)))
    assert np.allclose(ds.y.values, ORIGIN[1] - 10 * (16 + 32 * np.arange(3)))
    assert tuple(ds.rio.transform())[:6] == (320, 0, ORIGIN[0], 0, -320, ORIGIN[1])
    values = emb.values
    assert np.isfinite(values).all()
    # one cell equals the encoder on the normalised window (the pretraining normalisation)
    encoder, _ = load_encoder(runs[name])
    with rasterio.open(tif) as f:
        win = torch.from_numpy(f.read(window=rasterio.windows.Window(64, 32, 32, 32))
                               .astype(np.float32))[None]
    x = get_normalizer("s2")(win)
    with torch.no_grad():
        want = encoder(x, sensor="s2").numpy()[0]
    assert np.allclose(values[:, 1, 2], want, atol=1e-4)
    cmap = out.with_name("scene_clusters.tif")
    with rasterio.open(cmap) as cm:
        assert (cm.height, cm.width) == (3, 4) and cm.crs.to_epsg() == 32633
        assert tuple(cm.transform)[:6] == (320, 0, ORIGIN[0], 0, -320, ORIGIN[1])
        labels = cm.read(1)
    assert set(np.unique(labels)) <= {0, 1}


def test_embed_bad_input(runs: dict[str, Path], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    tif = _scene(tmp_path / "five.tif", names=False, bands=5)
    out = str(tmp_path / "x.zarr")
    assert main(["embed", str(runs["aug"]), str(tif), "--out", out, "--size", "32",
                 "--accelerator", "cpu"]) == 2
    one_line_error(capsys, "embed", "five.tif")
    assert main(["embed", str(runs["geo"]), str(tif), "--out", out, "--sensor", "s3"]) == 2
    one_line_error(capsys, "embed", "unknown sensor 's3'")
    named = _scene(tmp_path / "named.tif", bands=5)
    assert main(["embed", str(runs["aug"]), str(named), "--out", out, "--size", "32",
                 "--accelerator", "cpu"]) == 2
    one_line_error(capsys, "embed", "B06")
