from __future__ import annotations

import json
from pathlib import Path

import pytest

from geossl.cli import main
from geossl.splits import load_splits
from geossl.testing.footprints import make_footprints


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp") / "footprints.parquet"
    make_footprints(n_patches=2000, n_scenes=16, seed=2).to_parquet(path)
    return path


def test_split_overlap_report(index: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "splits.json"
    rc = main(["split", "--index", str(index), "--strategy", "overlap", "--fractions", "0.8,0.2",
               "--buffer", "0", "--seed", "0", "--out", str(out), "--report"])
    assert rc == 0  # a bare --report, as in the help examples
    text = capsys.readouterr().out
    assert "leaking_a" in text and "train" in text and "test" in text
    doc = json.loads(out.read_text())
    assert doc["strategy"] == "overlap" and set(doc["splits"]) == {"train", "test"}
    assert len(load_splits(out)) == 2000


def test_split_random_leaks_and_parquet(index: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "splits.parquet"
    rc = main(["split", "--index", str(index), "--strategy", "random", "--out", str(out),
               "--report", "true"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    leaking = int(lines[-1].split()[4])
    assert leaking > 0
    assert load_splits(out).isin(["train", "test"]).all()


def test_split_config_file(index: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "split.yaml"
    out = tmp_path / "s.json"
    cfg.write_text(f"strategy: block\nblock-size: 10240\nfractions: '0.7,0.3'\nout: {out}\n")
    assert main(["split", "--config", str(cfg), "--index", str(index)]) == 0
    assert json.loads(out.read_text())["params"]["block_size"] == 10240


@pytest.mark.parametrize("args,msg", [
    (["--strategy", "kfold"], "unknown split strategy"),
    (["--fractions", "0.5,0.2"], "fractions"),
    (["--fractions", "a,b"], "--fractions must be numbers"),
    (["--strategy", "scene", "--scenes", "nowhere_1"], "unknown scene id"),
    # one checkerboard block holds every chip: a side is left empty
    (["--strategy", "checkerboard", "--block-size", "1e9"], "is empty"),
])
def test_split_bad_input(index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         args: list[str], msg: str) -> None:
    rc = main(["split", "--index", str(index), "--out", str(tmp_path / "x.json"), *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("geossl split: error:") and msg in err
    assert len(err.strip().splitlines()) == 1


def test_split_missing_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["split", "--index", str(tmp_path / "none.parquet")]) == 2
    assert "none.parquet" in capsys.readouterr().err
    assert main(["split", "--out", str(tmp_path / "x.json")]) == 2
    assert "--index" in capsys.readouterr().err


def test_split_data_sen12ms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.data.sen12ms.data import generate

    generate(tmp_path / "sen12ms", patches=3, size=16)
    out = tmp_path / "s.json"
    rc = main(["split", "--data", "sen12ms", "--root", str(tmp_path / "sen12ms"), "--strategy",
               "scene", "--holdout", "sen12ms", "--out", str(out), "--report", "true"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert all(i.startswith(("ROIs1158_spring_63_", "ROIs1868_summer_43_",
                             "ROIs2017_winter_135_")) for i in doc["splits"]["test"])


# -- checkerboard, default block size, pixel grids, ssl4eo -----------------------------------
def test_split_checkerboard(index: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cb.json"
    rc = main(["split", "--index", str(index), "--strategy", "checkerboard", "--block-size",
               "10240", "--assign", "centroid", "--out", str(out), "--report", "true"])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "areas in km2, distances in m" in text
    last = text.strip().splitlines()[-1].split()
    assert last[:2] == ["train", "test"] and last[4:6] == ["0", "0"]  # no leaking chip
    doc = json.loads(out.read_text())
    assert doc["strategy"] == "checkerboard" and doc["params"]["fractions"] == [0.5, 0.5]
    assert doc["params"]["assign"] == "centroid" and doc["params"]["block_size"] == 10240
    # unequal fractions: a one-line error
    rc = main(["split", "--index", str(index), "--strategy", "checkerboard", "--fractions",
               "0.8,0.2", "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "fractions are equal" in err and len(err.strip().splitlines()) == 1


def test_split_default_block_size(index: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    assert main(["split", "--index", str(index), "--strategy", "block", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["params"]["block_size"] == 10240.0
    conf = Path(__file__).resolve().parents[1] / "conf" / "split.yaml"
    assert "block-size: 10240.0" in conf.read_text()
    # the shipped config: fractions follow the strategy (checkerboard: 0.5, 0.5)
    for strategy, fractions in (("overlap", [0.8, 0.2]), ("checkerboard", [0.5, 0.5])):
        out = tmp_path / f"{strategy}.json"
        assert main(["split", "--config", str(conf), "--index", str(index), "--strategy",
                     strategy, "--out", str(out)]) == 0
        assert json.loads(out.read_text())["params"]["fractions"] == fractions


@pytest.fixture(scope="module")
def polsar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.data.polsar.data import generate

    root = tmp_path_factory.mktemp("polsar")
    generate(root, rows=128, cols=256, c3=False)  # no map info: a pixel grid
    return root


def test_split_pixel_grid_polsar(polsar_root: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    rc = main(["split", "--data", "polsar", "--root", str(polsar_root), "--strategy",
               "checkerboard", "--block-size", "64", "--out", str(out), "--report", "true"])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "areas in px2, distances in px" in text and "overlap_px2" in text
    doc = json.loads(out.read_text())
    assert doc["params"]["unit"] == "px"
    # the random split of the same grid is reported in pixels too
    rc = main(["split", "--data", "polsar", "--root", str(polsar_root), "--strategy", "random",
               "--fractions", "0.5,0.5", "--buffer", "1", "--out", str(tmp_path / "r.json"),
               "--report", "true"])
    assert rc == 0 and "buffer_px" in capsys.readouterr().out
    # the saved ids are what `--splits` selects in later commands (same patch grid)
    from geossl.datasets.registry import pretraining_dataset
    from geossl.splits import load_split_ids

    train = load_split_ids(out, "train")
    ds = pretraining_dataset("polsar", polsar_root, ["polsar"], "aug", ids=train, patch_size=64)
    assert sorted(ds.ids) == sorted(train)


def test_split_data_ssl4eo_and_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    from geossl.core.errors import ConfigError
    from geossl.datasets.registry import DATASETS, get_dataset
    from geossl.datasets.ssl4eo import SSL4EOS12
    from tests.data.ssl4eo.data import generate

    root = generate(tmp_path / "ssl4eo", locations=("0000200", "0000201"),
                    products=("s1", "s2c"), size=264)  # stats reads 256 px windows
    assert DATASETS["ssl4eo"] == ("geossl.datasets.ssl4eo", "SSL4EOS12")
    ds = get_dataset("ssl4eo", root)
    assert isinstance(ds, SSL4EOS12) and ds.sensor == "s2c" and len(ds) == 4
    assert get_dataset("ssl4eo", root, sensors=["s1"]).sensor == "s1"
    assert get_dataset("ssl4eo", root, sensors="s1").sensor == "s1"
    with pytest.raises(ConfigError, match="one sensor at a time"):
        get_dataset("ssl4eo", root, sensors=["s1", "s2c"])
    with pytest.raises(ConfigError, match="cannot be restricted to the ids"):
        get_dataset("ssl4eo", root, ids=["a"])
    out = tmp_path / "s.json"
    rc = main(["split", "--data", "ssl4eo", "--root", str(root), "--strategy", "overlap",
               "--fractions", "0.5,0.5", "--out", str(out), "--report", "true"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert sum(len(v) for v in doc["splits"].values()) == 4  # 2 locations x 2 dates
    # both dates of a location stay on one side
    for side in doc["splits"].values():
        locations = {Path(p).parent.parent.name for p in side}
        assert len(side) == 2 and len(locations) == 1
    rc = main(["stats", "--data", "ssl4eo", "--root", str(root), "--max-samples", "2"])
    assert rc == 0, capsys.readouterr().err


# -- saved splits are what later commands read -----------------------------------------------
def test_saved_split_drives_pretrain_and_evaluate_data(tmp_path: Path) -> None:
    from geossl.data.datamodule import SSLDataModule
    from geossl.eval.run import resolve_data
    from tests.data.sen12ms.data import generate

    root = tmp_path / "sen12ms"
    generate(root, patches=3, size=16)
    out = tmp_path / "s.json"
    assert main(["split", "--data", "sen12ms", "--root", str(root), "--strategy", "scene",
                 "--fractions", "0.5,0.5", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    train, test = doc["splits"]["train"], doc["splits"]["test"]
    assert train and test and not set(train) & set(test)
    # `geossl pretrain --splits FILE --split train`
    dm = SSLDataModule("sen12ms", root, sensors=("s1", "s2"), pairing="geo", batch_size=2,
                       splits=str(out), split="train")
    dm.setup()
    assert dm.train_dataset is not None and len(dm.train_dataset) == len(train)
    # `geossl evaluate --splits FILE`: train and test positions are the file's two sides
    _ds, tr, te, ids, _ = resolve_data("sen12ms", root, out)
    assert sorted(ids[i] for i in tr) == sorted(train)
    assert sorted(ids[i] for i in te) == sorted(test)


@pytest.mark.slow
def test_split_then_pretrain_then_evaluate_cli(tmp_path: Path) -> None:
    from tests.data.sen12ms.data import generate

    root = tmp_path / "sen12ms"
    generate(root, patches=4, size=32)
    split = tmp_path / "s.json"
    assert main(["split", "--data", "sen12ms", "--root", str(root), "--strategy", "scene",
                 "--fractions", "0.5,0.5", "--out", str(split)]) == 0
    run = tmp_path / "run"
    assert main(["pretrain", "--data", "sen12ms", "--root", str(root), "--splits", str(split),
                 "--split", "train", "--sensors", "s1,s2", "--pairing", "geo", "--backbone",
                 "resnet18", "--batch-size", "4", "--workers", "0", "--accelerator", "cpu",
                 "--devices", "1", "--img-size", "32", "--max-steps", "2", "--out",
                 str(run)]) == 0
    ev = tmp_path / "ev"
    assert main(["evaluate", str(run / "checkpoints" / "last.ckpt"), "--data", "sen12ms",
                 "--root", str(root), "--splits", str(split), "--protocol", "knn", "--out",
                 str(ev), "--no-plots", "true"]) == 0
    meta = json.loads((ev / "results.json").read_text())["meta"]
    doc = json.loads(split.read_text())
    assert meta["n_train"] == len(doc["splits"]["train"])
    assert meta["n_test"] == len(doc["splits"]["test"])


# -- geossl bench data / splits / polsar ----------------------------------------------------------
@pytest.mark.parametrize("what,flag", [("splits", "--strategies"), ("data", "--n-files"),
                                       ("polsar", "--pretrain-steps"), ("train", "--backbone")])
def test_bench_help(what: str, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", what, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: geossl bench {what}") and flag in text


def test_bench_splits_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "splits", "--n", "600", "--scenes", "6", "--json", str(out)]) == 0
    assert "checkerboard" in capsys.readouterr().out
    records = {r["strategy"]: r for r in json.loads(out.read_text())}
    assert set(records) == {"overlap", "block", "scene", "random", "nonoverlapping",
                            "checkerboard"}
    for name, rec in records.items():
        assert rec["n"] == 600 and rec["train"] + rec["test"] + rec["drop"] == 600
        leaking = rec["leaking_train"] + rec["leaking_test"]
        assert (leaking > 0) if name == "random" else (leaking == 0), name
    assert main(["bench", "splits", "--strategies", "kfold"]) == 2
    assert "unknown strategy 'kfold'" in capsys.readouterr().err


def test_split_image_archive_without_footprints(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """AID (separate images, no footprints): --strategy random splits every image stratified by
    class, half of each class per side; a geometric strategy or --report is one error line."""
    from tests.data.aid.data import generate_aid

    root = generate_aid(tmp_path / "aid", n_per_class=4, size=32)
    out = tmp_path / "half.json"
    base = ["split", "--data", "aid", "--root", str(root), "--data-args", "{split: all}"]
    assert main([*base, "--strategy", "random", "--fractions", "0.5,0.5", "--out",
                 str(out)]) == 0
    sides = json.loads(out.read_text())["splits"]
    assert len(sides["train"]) == len(sides["test"]) == 6
    for cls in ("Airport", "BareLand", "Beach"):  # stratified: 2 of each class per side
        assert sum(i.startswith(cls + "/") for i in sides["train"]) == 2
    assert not set(sides["train"]) & set(sides["test"])
    capsys.readouterr()
    assert main([*base, "--strategy", "overlap", "--out", str(tmp_path / "o.json")]) == 2
    assert main([*base, "--strategy", "random", "--report", "--out",
                 str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--strategy random" in err[0] and "no leakage report" in err[1]
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "r.json").exists()
