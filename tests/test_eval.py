"""Evaluation protocols on a small fake dataset (tiny encoder, 32 px): budgets, probes, kNN,
fine-tuning vs scratch, clustering, caching, reports and pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from geossl.core.errors import ConfigError, DataError
from geossl.eval.budgets import Budget, draw_budget
from geossl.eval.config import EvaluateConfig
from geossl.eval.features import cached_features, extract_features
from geossl.eval.knn import knn_scores
from geossl.eval.linear import linear_probe
from geossl.eval.run import evaluate as run_evaluate
from geossl.eval.run import parse_protocols
from geossl.pretrained.checkpoint import EncoderSource

K = 3


def evaluate(ckpt: Any, data: Any, root: Any = None, protocol: str = "linear,knn",
             **options: Any) -> dict[str, Any]:
    """The library's ``evaluate`` on an :class:`EvaluateConfig` (no output folder unless given)."""
    options.setdefault("out", None)
    return run_evaluate(EvaluateConfig(ckpt, data=data, root=root, protocol=protocol,
                                       **options))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyEncoder(nn.Module):
    """Conv + global pool: enough to separate classes that differ by colour and texture."""

    def __init__(self, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class FakeScenes(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """``n`` 32 px chips per class; class k has a mean colour shift on band k."""

    classes = ("water", "forest", "urban")
    bands = ("B04", "B03", "B02")

    def __init__(self, n: int = 20, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n * K, 3, size, size, generator=g) * 0.5
        self.targets = torch.arange(K).repeat_interleave(n)
        for i, t in enumerate(self.targets):
            self.images[i, t] += 2.0
        self.ids = [f"chip{i:03d}" for i in range(n * K)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "label": self.targets[i], "id": self.ids[i]}


def _splits(ds: FakeScenes) -> dict[str, list[str]]:
    # alternate samples between sides (a stand-in for the overlap-aware splitter's output)
    train = [i for j, i in enumerate(ds.ids) if j % 2 == 0]
    test = [i for j, i in enumerate(ds.ids) if j % 2 == 1]
    return {"train": train, "test": test}


def _source() -> EncoderSource:
    torch.manual_seed(0)
    meta = {"backbone": "tiny", "in_chans": 3, "method": "simclr", "sensors": None,
            "bands": ["B04", "B03", "B02"], "normalization": None}
    return EncoderSource(TinyEncoder(), meta, "tiny-test")


# --------------------------------------------------------------------------------------------
def test_budget_per_class_stratified_and_seeded() -> None:
    y = np.array([0] * 30 + [1] * 20 + [2] * 5)
    rows = draw_budget(y, Budget(per_class=10), seed=1)
    assert np.bincount(y[rows]).tolist() == [10, 10, 5]  # a small class gives all it has
    assert np.array_equal(rows, draw_budget(y, Budget(per_class=10), seed=1))
    assert not np.array_equal(rows, draw_budget(y, Budget(per_class=10), seed=2))
    total = draw_budget(y, Budget(total=11), seed=0)
    assert len(total) == 11 and len(set(total)) == 11
    assert np.bincount(y[total]).tolist() == [6, 4, 1]  # proportional, every class present
    assert len(draw_budget(y, Budget(), seed=0)) == len(y)
    with pytest.raises(ConfigError):
        draw_budget(y, Budget(total=100), seed=0)
    with pytest.raises(ConfigError):
        Budget(per_class=1, total=3)


def test_budget_multilabel() -> None:
    y = np.zeros((40, 3))
    y[:20, 0] = 1
    y[10:30, 1] = 1
    y[30:, 2] = 1
    rows = draw_budget(y, Budget(per_class=4), seed=0)
    assert (y[rows].sum(0) >= 4).all()


def test_linear_probe_separable() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(K, 8, generator=g) * 3
    y = torch.arange(K).repeat(30)
    x = centres[y] + torch.randn(len(y), 8, generator=g) * 0.3
    scores, info = linear_probe(x[:60], y[:60], x[60:], K)
    assert (scores.argmax(1) == y[60:]).float().mean() == 1.0
    assert info["weight_decay"] > 0


def test_knn_temperature_weighted_votes() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    q = torch.tensor([[0.2, 1.0]])
    s = knn_scores(bank, labels, q, num_classes=2, k=3, temperature=0.07)
    qn = q / q.norm()
    sims = (bank / bank.norm(dim=1, keepdim=True)) @ qn.T
    w = (sims.squeeze(1) / 0.07).exp()
    assert torch.allclose(s[0], torch.stack([w[:2].sum(), w[2]]), rtol=1e-5)
    assert int(s.argmax()) == 1
    # k larger than the bank is capped
    assert knn_scores(bank, labels, q, 2, k=200).shape == (1, 2)


def test_few_threads_limits_small_work_and_restores() -> None:
    from geossl.runtime.threads import few_threads

    torch.set_num_threads(2)
    try:
        with few_threads(1e3):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with few_threads(1e12):  # large work keeps every thread
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_feature_cache(tmp_path: Path) -> None:
    ds = FakeScenes(n=4)
    src = _source()
    pos = list(range(6))
    a = cached_features(src, ds, pos, dataset_key="fake", split="train", cache_dir=tmp_path,
                        ids=ds.ids[:6], device="cpu")
    files = list(tmp_path.glob("features-train-*.pt"))
    assert len(files) == 1
    # a second call reads the cache: the encoder is not run again
    src.encoder.forward = None  # type: ignore[assignment,method-assign]
    b = cached_features(src, ds, pos, dataset_key="fake", split="train", cache_dir=tmp_path,
                        ids=ds.ids[:6], device="cpu")
    assert torch.equal(a.features, b.features) and b.ids == ds.ids[:6]
    direct = extract_features(_source().encoder, ds, pos, device="cpu")
    assert torch.allclose(direct.features, a.features)


def test_evaluate_all_protocols(tmp_path: Path) -> None:
    ds = FakeScenes(n=20)
    res = evaluate(_source(), ds, protocol="linear,knn,finetune,cluster", splits=_splits(ds),
                   labels_per_class=5, seeds=[0, 1], out=tmp_path, accelerator="cpu",
                   finetune_steps=3, finetune_batch_size=8, knn_k=(5, 200))
    protos = {r["protocol"] for r in res["runs"]}
    assert protos == {"linear", "knn5", "knn200", "finetune", "scratch", "cluster"}
    for r in res["runs"]:
        if r["protocol"] != "cluster":
            assert r["n_labels"] == 5 * K
            assert r["budget"] == "5/class"
    linear = [r["metrics"]["oa"] for r in res["runs"] if r["protocol"] == "linear"]
    assert min(linear) > 0.9  # classes differ by a colour shift: frozen features suffice
    data = json.loads((tmp_path / "results.json").read_text())
    assert {row["protocol"] for row in data["summary"]} == protos
    md = (tmp_path / "results.md").read_text()
    assert "| linear | 5/class | 2 |" in md and "±" in md
    for name in ("tsne.png", "knn_grid.png", "confusion_linear.png", "finetune_curves.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "logs" / "scratch-5pc-seed0.csv").exists()


def test_evaluate_same_labels_for_finetune_and_scratch(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import geossl.eval.run as run

    seen: list[tuple[list[int], int]] = []
    real = run.finetune

    def spy(encoder: nn.Module, dataset: Any, train_pos: list[int], *a: Any, **kw: Any) -> Any:
        seen.append((list(train_pos), kw["steps"]))
        return real(encoder, dataset, train_pos, *a, **kw)

    monkeypatch.setattr(run, "finetune", spy)
    ds = FakeScenes(n=10)
    evaluate(_source(), ds, protocol="finetune", splits=_splits(ds), labels=6, seeds=[3],
             accelerator="cpu", finetune_steps=2, no_plots=True)
    assert len(seen) == 2 and seen[0] == seen[1]
    train_ids = set(_splits(ds)["train"])
    assert all(ds.ids[p] in train_ids for p in seen[0][0])  # budgets come from TRAIN only


def test_evaluate_freeze_and_reinit_reach_finetune_and_scratch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate(freeze=, reinit=) (the --freeze/--reinit flags): ``adapters`` names the band
    adapter(s) of any geossl encoder (a geo encoder's stems); the same parts reach both
    fine-tuned rows and are recorded; a bad part or a flag without finetune is one ConfigError
    before any feature is extracted."""
    import geossl.eval.run as run
    from geossl.eval.finetune import parts
    from geossl.models import build_encoder

    assert parts(build_encoder("test_resnet", {"s1": 2, "s2": 3}), "adapters") == ["stems"]
    assert parts(build_encoder("test_resnet", 3), "none") == []
    seen: list[tuple[Any, Any, bool]] = []
    real = run.finetune

    def spy(encoder: nn.Module, *a: Any, **kw: Any) -> Any:
        seen.append((kw["freeze"], kw["reinit"], encoder.adapter.conv.weight.requires_grad))
        return real(encoder, *a, **kw)

    monkeypatch.setattr(run, "finetune", spy)
    torch.manual_seed(0)
    enc = build_encoder("test_resnet", 3, adapter="linear")
    meta = {"backbone": "test_resnet", "in_chans": 3, "method": "simclr", "sensors": None,
            "bands": ["B04", "B03", "B02"], "normalization": None}
    src = EncoderSource(enc, meta, "adapted")
    ds = FakeScenes(n=4)
    res = evaluate(src, ds, protocol="finetune", splits=_splits(ds), labels=6,
                   accelerator="cpu", finetune_steps=1, finetune_batch_size=4, no_plots=True,
                   freeze="adapters,backbone.conv1", reinit="adapters")
    assert [s[:2] for s in seen] == [(["adapter", "backbone.conv1"], ["adapter"])] * 2
    assert all(s[2] for s in seen)  # the caller's encoders are untouched (finetune copies)
    for r in res["runs"]:
        assert r["info"]["freeze"] == ["adapter", "backbone.conv1"]
        assert r["info"]["reinit"] == ["adapter"]
    extracted: list[int] = []
    monkeypatch.setattr(run, "cached_features", lambda *a, **k: extracted.append(1))
    with pytest.raises(ConfigError, match="add finetune to --protocol"):
        evaluate(src, ds, protocol="linear", splits=_splits(ds), accelerator="cpu", no_plots=True,
                 freeze="adapters")
    with pytest.raises(ConfigError, match=r"no encoder part 'layer9'.*adapter, backbone"):
        evaluate(src, ds, protocol="finetune", splits=_splits(ds), accelerator="cpu", no_plots=True,
                 reinit="layer9")
    assert not extracted


def test_evaluate_bad_input() -> None:
    ds = FakeScenes(n=4)
    with pytest.raises(ConfigError):
        parse_protocols("linear,svm")
    with pytest.raises(ConfigError):
        evaluate(_source(), ds, splits=None, accelerator="cpu")
    with pytest.raises(DataError):
        evaluate(_source(), ds, splits={"train": ["nope"], "test": ds.ids[:2]}, accelerator="cpu")
    with pytest.raises(ConfigError):  # leakage: the same chip on both sides
        evaluate(_source(), ds, splits={"train": ds.ids[:4], "test": ds.ids[3:]}, accelerator="cpu")


# --------------------------------------------------------------------------------------------
# registry datasets and the CLI
# --------------------------------------------------------------------------------------------
def _ucmerced(tmp_path: Path) -> Path:
    from tests.data.aid.data import generate_ucmerced

    return generate_ucmerced(tmp_path / "data", n_per_class=6, size=32)


def test_evaluate_registry_dataset_with_split_file(tmp_path: Path) -> None:
    from geossl.datasets.registry import get_dataset

    root = _ucmerced(tmp_path)
    ds = get_dataset("ucmerced", str(root), split="all", size=32)
    split = {"strategy": "random", "params": {},
             "splits": {"train": ds.ids[0::2], "test": ds.ids[1::2]}}
    (tmp_path / "split.json").write_text(json.dumps(split))
    src = EncoderSource(TinyEncoder(), {"backbone": "tiny", "in_chans": 3,
                                        "normalization": {"mean": [128] * 3,
                                                          "std": [40] * 3}}, "k")
    res = evaluate(src, "ucmerced", root, "linear,knn", splits=tmp_path / "split.json",
                   labels_per_class=2, out=tmp_path / "ev", accelerator="cpu", no_plots=True)
    assert res["meta"]["n_train"] == 9 and res["meta"]["n_test"] == 9
    assert len(list((tmp_path / "ev" / "cache").glob("features-*.pt"))) == 2


def test_cli_evaluate_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    assert main(["evaluate", "random", "--backbone", "resnet18", "--data", "ucmerced",
                 "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope.ckpt"), "--protocol", "svm", "--data",
                 "ucmerced", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geossl evaluate: error:") and "svm" in err and len(
        err.strip().splitlines()) == 1


def test_cli_evaluate_random_baseline(tmp_path: Path) -> None:
    from geossl.cli import main
    from tests.data.aid.data import generate_eurosat

    # EuroSAT's own deterministic split (64 px, 13 bands, 5 chips per class)
    root = generate_eurosat(tmp_path / "data", n_per_class=5, size=64)
    out = tmp_path / "ev"
    assert main(["evaluate", "random", "--backbone", "resnet18", "--protocol", "linear,cluster",
                 "--data", "eurosat", "--root", str(root), "--labels-per-class", "2",
                 "--seeds", "0,1", "--out", str(out), "--accelerator", "cpu",
                 "--batch-size", "8"]) == 0
    data = json.loads((out / "results.json").read_text())
    meta = data["meta"]
    assert meta["method"] == "random" and meta["n_test"] > 0
    assert meta["n_train"] + meta["n_test"] == 5 * meta["num_classes"]
    assert {r["protocol"] for r in data["runs"]} == {"linear", "cluster"}
    k = meta["num_classes"]
    assert all(r["n_labels"] == 2 * k for r in data["runs"] if r["protocol"] == "linear")
    assert sorted(r["seed"] for r in data["runs"] if r["protocol"] == "linear") == [0, 1]
    assert (out / "results.md").exists() and (out / "tsne.png").exists()


# --------------------------------------------------------------------------------------------
# datasets without a built-in split, and their labels
# --------------------------------------------------------------------------------------------
def _tiny_source(in_chans: int) -> EncoderSource:
    torch.manual_seed(0)
    return EncoderSource(TinyEncoder(in_chans), {"backbone": "tiny", "in_chans": in_chans},
                         f"tiny{in_chans}")


def _overlapping_pairs(gdf: Any, a: set[str], b: set[str]) -> list[tuple[str, str]]:
    """Pairs (one id of ``a``, one of ``b``) whose footprints share area, in their own CRS."""
    import shapely

    rows = gdf.set_index("chip_id")
    out = []
    for i in a:
        for j in b:
            ri, rj = rows.loc[i], rows.loc[j]
            if str(ri["crs"]) != str(rj["crs"]):
                continue
            bi = shapely.box(ri["minx"], ri["miny"], ri["maxx"], ri["maxy"])
            bj = shapely.box(rj["minx"], rj["miny"], rj["maxx"], rj["maxy"])
            if bi.intersection(bj).area > 1e-6:
                out.append((i, j))
    return out


def test_evaluate_sen12ms_without_splits_makes_an_overlap_aware_split(tmp_path: Path) -> None:
    from geossl.datasets.sen12ms import SEN12MSPatches
    from tests.data.sen12ms.data import generate

    root = tmp_path / "sen12ms"
    generate(root, patches=4, size=16)  # 6 scenes x 4 half-overlapping patches
    out = tmp_path / "ev"
    res = evaluate(_tiny_source(13), "sen12ms", root, "knn", sensor="s2", out=out,
                   accelerator="cpu", no_plots=True)
    meta = res["meta"]
    # the bug: train == test (24 and 24); now every patch is on exactly one side
    assert meta["split_source"] == "auto" and meta["n_train"] + meta["n_test"] == 24
    assert meta["n_test"] > 0 and meta["splits"] == str(out / "splits.json")
    doc = json.loads((out / "splits.json").read_text())
    train, test = set(doc["splits"]["train"]), set(doc["splits"]["test"])
    assert doc["strategy"] == "overlap" and not train & test and len(train | test) == 24
    gdf = SEN12MSPatches(root, sensors=("s2",)).footprints()
    assert len(_overlapping_pairs(gdf, set(gdf["chip_id"]), set(gdf["chip_id"]))) > 24
    assert _overlapping_pairs(gdf, train, test) == []  # no footprint shared across sides
    assert any("splits.json" in n for n in res["notes"])
    # the saved split repeats the run on the same sides
    again = evaluate(_tiny_source(13), "sen12ms", root, "knn", sensor="s2",
                     splits=out / "splits.json", accelerator="cpu", no_plots=True)
    assert (again["meta"]["n_train"], again["meta"]["n_test"]) == (meta["n_train"],
                                                                    meta["n_test"])
    assert again["meta"]["split_source"] == "file"


def test_resolve_bigearthnet_v1_without_splits(tmp_path: Path) -> None:
    from geossl.eval.data import resolve
    from tests.data.bigearthnet.data import generate_v1

    ids = generate_v1(tmp_path / "ben", n=6, s1=False)
    d = resolve("bigearthnet", tmp_path / "ben", None, out=tmp_path / "ev")
    tr, te = {d.ids[p] for p in d.train}, {d.ids[p] for p in d.test}
    assert d.split_source == "auto" and not tr & te and tr | te == set(ids)
    assert d.dataset.version == 1  # type: ignore[attr-defined]
    assert d.dataset[d.test[0]]["label"].shape == (19,)


def _polsar(tmp_path: Path) -> dict[str, Path]:
    from tests.data.polsar.data import generate

    # 48 x 64 px, class k in columns 4 + 20 k ... 24 + 20 k, column 0..3 unlabelled
    return generate(tmp_path / "sar", rows=48, cols=64, n_classes=3)


def test_evaluate_polsar_labels_by_majority_with_purity(tmp_path: Path) -> None:
    from geossl.datasets.polsar import PolSAR, patch_labels, read_labels

    paths = _polsar(tmp_path)
    res = evaluate(_tiny_source(9), "polsar", tmp_path / "sar", "linear,knn",
                   data_args={"patch_size": 8}, out=tmp_path / "ev", accelerator="cpu",
                   no_plots=True)
    meta = res["meta"]
    # 6 x 8 patches of 8 px; columns 0 (4 unlabelled px) and 5 (two classes) are impure
    assert meta["n_train"] + meta["n_test"] == 6 * 6 and meta["n_test"] > 0
    assert meta["data_args"]["label_path"] == str(paths["labels"])
    doc = json.loads((tmp_path / "ev" / "splits.json").read_text())
    train, test = doc["splits"]["train"], doc["splits"]["test"]
    assert not set(train) & set(test)
    ds = PolSAR(tmp_path / "sar", patch_size=8, label_path=paths["labels"], ids=test)
    expected = patch_labels(read_labels(paths["labels"], (48, 64)), ds.rows, ds.cols, 8, 0.8)
    assert set(expected.tolist()) <= {1, 2, 3} and 0 not in expected.tolist()
    assert [int(ds[i]["label"]) for i in range(len(ds))] == expected.tolist()
    assert res["runs"][0]["metrics"]["oa"] > 0.5
    # an explicit label raster, and a scene without one
    other = tmp_path / "elsewhere.png"
    other.write_bytes(paths["labels"].read_bytes())
    for f in paths["labels"].parent.iterdir():
        f.unlink()
    with pytest.raises(ConfigError, match="--label-path"):
        evaluate(_tiny_source(9), "polsar", tmp_path / "sar", "knn",
                 data_args={"patch_size": 8}, accelerator="cpu", no_plots=True)
    res = evaluate(_tiny_source(9), "polsar", tmp_path / "sar", "knn", label_path=other,
                   data_args={"patch_size": 8, "purity": 1.0}, accelerator="cpu", no_plots=True)
    assert res["meta"]["n_train"] + res["meta"]["n_test"] == 36


def _chips(tmp_path: Path, column: str | None) -> Path:
    from geossl.tiling import chip_index
    from tests.data.chips.data import generate_chips

    folder = tmp_path / "chips"
    generate_chips(folder, n=10, size=16, bands=3)
    gdf = chip_index.build_index(folder, progress=False)
    if column is not None:
        gdf[column] = [None if i == 3 else ("10" if i % 2 else "2") for i in range(len(gdf))]
    chip_index.write_index(gdf, folder)
    return folder


def test_evaluate_chips_label_column(tmp_path: Path) -> None:
    folder = _chips(tmp_path, "landcover")
    with pytest.raises(ConfigError, match="--label-column"):
        evaluate(_tiny_source(3), "chips", folder, "knn", accelerator="cpu", no_plots=True)
    with pytest.raises(ConfigError, match=r"no label column 'lc'.*landcover"):
        evaluate(_tiny_source(3), "chips", folder, "knn", label_column="lc", accelerator="cpu",
                 no_plots=True)
    with pytest.raises(ConfigError, match="chip index"):
        evaluate(_tiny_source(3), "ucmerced", folder, "knn", label_column="lc", accelerator="cpu")
    res = evaluate(_tiny_source(3), "chips", folder, "knn", label_column="landcover",
                   out=tmp_path / "ev", accelerator="cpu", no_plots=True)
    meta = res["meta"]
    assert meta["n_train"] + meta["n_test"] == 9  # the chip without a label is left out
    doc = json.loads((tmp_path / "ev" / "splits.json").read_text())
    ids = set(doc["splits"]["train"]) | set(doc["splits"]["test"])
    assert "scene_20200101/chip_003" not in {i.removesuffix(".tif") for i in ids}
    assert meta["num_classes"] == 2 and meta["data_args"] == {"label_column": "landcover"}


def test_evaluate_chips_label_column_defaults_to_label(tmp_path: Path) -> None:
    from geossl.datasets.chips import LabelledChips
    from geossl.eval.data import resolve

    d = resolve("chips", _chips(tmp_path, "label"), None)
    assert isinstance(d.dataset, LabelledChips)
    assert d.dataset.classes == ["2", "10"]  # numeric classes sort as numbers
    assert len(d.train) + len(d.test) == 9
    labels = {int(d.dataset[p]["label"]) for p in d.train + d.test}
    assert labels == {0, 1}


def test_cli_evaluate_polsar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main

    _polsar(tmp_path)
    out = tmp_path / "ev"
    assert main(["evaluate", "random", "--backbone", "resnet18", "--protocol", "knn",
                 "--data", "polsar", "--root", str(tmp_path / "sar"), "--data-args",
                 "{patch_size: 8}", "--out", str(out), "--accelerator", "cpu",
                 "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "made a split" in printed and f"wrote {out / 'splits.json'}" in printed
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["n_train"] + meta["n_test"] == 36 and meta["split_source"] == "auto"
    assert main(["evaluate", "random", "--data", "polsar", "--root", str(tmp_path / "sar"),
                 "--data-args", "[1, 2]"]) == 2
    assert "--data-args must be a mapping" in capsys.readouterr().err


def test_cli_boolean_flags_bare_or_with_a_value() -> None:
    from geossl.cli import build_parser

    parser, _ = build_parser()

    def parsed(*argv: str) -> Any:
        return getattr(parser.parse_args(list(argv)), argv[0])

    ev = ["evaluate", "random", "--data", "aid"]
    assert parsed(*ev).no_plots is False and parsed(*ev).bf16 is False
    assert parsed(*ev, "--no-plots").no_plots is True
    assert parsed(*ev, "--no-plots", "true", "--bf16").no_plots is True
    assert parsed(*ev, "--no-plots", "false").no_plots is False
    assert parsed(*ev, "--bf16", "--no-plots").bf16 is True
    assert parsed("embed", "a.ckpt", "s.tif", "--out", "o.zarr", "--bf16").bf16 is True
    assert parsed("embed", "a.ckpt", "s.tif", "--out", "o.zarr").bf16 is False
    keep = parsed("export", "a.ckpt", "--out", "w.ckpt", "--keep-adapter")
    assert keep.keep_adapter is True
    assert parsed("export", "a.ckpt", "--out", "w.ckpt", "--keep-adapter", "false") \
        .keep_adapter is False


def test_cli_evaluate_selects_bands_of_a_mixed_index(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from geossl.cli import main
    from geossl.tiling import chip_index
    from tests.data.chips.data import generate_chips

    folder = tmp_path / "chips"
    generate_chips(folder, n=6, size=16, bands=4, scene="full")  # B02,B03,B04,B08
    generate_chips(folder, n=6, size=16, bands=3, scene="short")  # no B08
    gdf = chip_index.build_index(folder, progress=False)
    gdf["label"] = ["a" if i % 2 else "b" for i in range(len(gdf))]
    chip_index.write_index(gdf, folder)
    args = ["evaluate", "random", "--backbone", "resnet18", "--protocol", "knn", "--data",
            "chips", "--root", str(folder), "--out", str(tmp_path / "ev"), "--accelerator",
            "cpu", "--no-plots"]
    assert main(args) == 2
    assert "--bands B02,B03,B04" in capsys.readouterr().err
    assert main([*args, "--bands", "B04,B03,B02"]) == 0
    meta = json.loads((tmp_path / "ev" / "results.json").read_text())["meta"]
    assert meta["n_train"] + meta["n_test"] == 12
    assert meta["data_args"]["bands"] == ["B04", "B03", "B02"]


def test_finetune_partial_freezing_and_adapter_reinit(monkeypatch: pytest.MonkeyPatch) -> None:
    """finetune(freeze=[...]) keeps those encoder parts fixed (only the rest reaches AdamW);
    reinit=[...] draws them afresh first; an unknown part is one clear ConfigError."""
    import geossl.eval.finetune as ft

    class Adapted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.adapter = nn.Conv2d(3, 3, 1)
            self.trunk = TinyEncoder()
            self.num_features = self.trunk.num_features

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.trunk(self.adapter(x))  # type: ignore[no-any-return]

    encoder = Adapted()
    seen: list[set[int]] = []
    real_adamw = torch.optim.AdamW

    def spy(params: Any, **kw: Any) -> Any:
        params = list(params)
        seen.append({id(p) for p in params})
        return real_adamw(params, **kw)

    monkeypatch.setattr(ft.torch.optim, "AdamW", spy)
    copied: list[nn.Module] = []
    real_fix = ft._reinit_and_freeze
    monkeypatch.setattr(ft, "_reinit_and_freeze",
                        lambda enc, r, f: (copied.append(enc), real_fix(enc, r, f))[1])
    ds = FakeScenes(n=4)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    out = ft.finetune(encoder, ds, list(range(0, 12, 2)), list(range(1, 12, 2)), K, steps=2,
                      batch_size=4, device="cpu", freeze=["adapter", "trunk.net.0"],
                      reinit=["adapter"])
    assert out["scores"].shape == (6, K)
    (enc,) = copied
    trainable = {id(p) for p in enc.parameters() if p.requires_grad}
    assert seen[0] - {id(p) for p in enc.parameters()} and not (
        {id(p) for p in enc.adapter.parameters()} | {id(p) for p in enc.trunk.net[0].parameters()}
    ) & seen[0]  # the head trains, the frozen parts never reach the optimiser
    assert trainable == set()  # TinyEncoder's only weights are in net.0: all frozen here
    assert not torch.equal(enc.adapter.weight, before["adapter.weight"])  # drawn afresh
    torch.testing.assert_close(enc.trunk.net[0].weight, before["trunk.net.0.weight"])  # fixed
    for key, value in encoder.state_dict().items():  # the caller's encoder is untouched
        torch.testing.assert_close(value, before[key])
    with pytest.raises(ConfigError, match=r"no encoder part 'stem'.*adapter, trunk"):
        ft.finetune(encoder, ds, [0, 2], [1, 3], K, steps=1, device="cpu", freeze=["stem"])


def test_geo_encoder_reads_s1_and_s2_side_by_side() -> None:
    """A geo encoder (one stem per sensor) asked for s1,s2: each sensor's bands through its own
    stem and the shared trunk, features concatenated; the checkpoint check allows it only for
    evaluation (side_by_side), and a band count that does not add up is an error."""
    from geossl.eval.features import encode
    from geossl.models.encoder import Encoder
    from geossl.pretrained.checkpoint import select_sensors

    torch.manual_seed(0)
    enc = Encoder("test_resnet", {"s1": 2, "s2": 10}, adapter="linear-frozen").eval()
    x = torch.randn(3, 12, 16, 16)
    with torch.no_grad():
        both = encode(enc, x, ["s1", "s2"])
        s1, s2 = encode(enc, x[:, :2], "s1"), encode(enc, x[:, 2:], "s2")
    torch.testing.assert_close(both, torch.cat([s1, s2], dim=1))
    meta = {"sensors": ["s1", "s2"], "pairing": "geo"}
    assert select_sensors(meta, "s1,s2", side_by_side=True) == ["s1", "s2"]
    with pytest.raises(ConfigError, match="one sensor at a time"):
        select_sensors(meta, "s1,s2")  # export / embed: still one sensor
    with pytest.raises(ValueError, match="13 bands"):
        encode(enc, torch.randn(1, 13, 16, 16), ["s1", "s2"])
