from __future__ import annotations

import json
from pathlib import Path

import pytest

from geossl.cli import main
from geossl.data.splits import load_splits
from tests.data.footprints import make_footprints


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp") / "footprints.parquet"
    make_footprints(n_patches=2000, n_scenes=16, seed=2).to_parquet(path)
    return path


def test_split_overlap_report(index: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "splits.json"
    rc = main(["split", "--index", str(index), "--strategy", "overlap", "--fractions", "0.8,0.2",
               "--buffer", "0", "--seed", "0", "--out", str(out), "--report", "true"])
    assert rc == 0
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
