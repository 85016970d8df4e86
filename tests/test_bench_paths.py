"""``geossl/bench`` is a client of the library: no repository paths (issue 22, "Structure").

Its data comes from flags or ``$GEOSSL_REAL_DATA/<sample>``; with neither, one line and exit 2,
nothing written. An architecture test reads the sources for the paths of a source checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import geossl.bench
from geossl.cli import main

BENCH = Path(geossl.bench.__file__).parent
#: what a repository path looks like in a module: the checkout above the package
#: (``parents[2]``, ``.parent.parent``), the ``shared`` folder beside it, a ``REPO`` constant
FORBIDDEN = {
    "parents[N] of __file__": re.compile(r"parents\[\d+\]"),
    ".parent.parent": re.compile(r"\.parent\.parent"),
    '"shared" path literal': re.compile(r"""["']shared["']|["'][^"'\n]*/shared/[^"'\n]*["']"""),
    "REPO": re.compile(r"\bREPO\b"),
    "DEFAULT_DOC": re.compile(r"\bDEFAULT_DOC\b"),
}


def test_bench_modules_hold_no_repository_path() -> None:
    sources = sorted(BENCH.glob("*.py"))
    assert len(sources) >= 8
    found = [f"{path.name}:{n}: {what}" for path in sources
             for n, line in enumerate(path.read_text().splitlines(), 1)
             for what, pattern in FORBIDDEN.items() if pattern.search(line)]
    assert found == []


@pytest.mark.parametrize("what,flag", [("data", "--data"), ("scale", "--data"),
                                       ("polsar", "--root")])
def test_data_default_needs_the_environment_variable(
        what: str, flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GEOSSL_REAL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    out = ["--out", "o"] if what == "polsar" else ["--cache", "c"]
    assert main(["bench", what, *out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "GEOSSL_REAL_DATA" in err[0] and f"{flag} not given" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bench_data_reads_the_sample_under_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEOSSL_REAL_DATA", str(tmp_path / "real"))
    (tmp_path / "real" / "major_tom_s2l2a").mkdir(parents=True)
    assert main(["bench", "data", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Major-TOM cell" in err[0]
    assert str(tmp_path / "real" / "major_tom_s2l2a") in err[0]
    assert not (tmp_path / "c").exists()


def test_polsar_from_results_needs_a_doc(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    results.write_text("{}")
    assert main(["bench", "polsar", "--from-results", str(results)]) == 2
    assert "--doc" in capsys.readouterr().err


def test_polsar_root_defaults_to_the_sample_under_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEOSSL_REAL_DATA", str(tmp_path / "real"))
    assert main(["bench", "polsar", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "real" / "polsar_sf_airsar") in err[0], err
    assert not (tmp_path / "o").exists()
