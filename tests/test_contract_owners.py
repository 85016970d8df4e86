"""One owner per small contract (issue 22, "Structure"): architecture tests over the sources.

Each test reads ``geossl/`` and checks that a contract has no second implementation outside
its owner: the first line of an exception (``geossl.errors.first_line``), every PNG
(``geossl.plots``), chip-index rows (``geossl.tiling.chip_index.index_row``), normalisation
(``geossl.normalize``, below ``geossl.checkpoint``) and dataset construction (the registry).
"""

from __future__ import annotations

import re
from pathlib import Path

import geossl
from geossl.errors import first_line, one_line

PACKAGE = Path(geossl.__file__).parent


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "testing" not in p.parts)


def _hits(pattern: re.Pattern[str], allowed: set[str]) -> list[str]:
    out = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                out.append(f"{rel}:{n}: {line.strip()}")
    return out


def test_first_line_of_an_exception() -> None:
    assert first_line(ValueError("  bad header\nTraceback ...\n")) == "bad header"
    assert first_line(OSError()) == "OSError"
    assert one_line("a\n  b\tc ") == "a b c"


def test_one_first_line_helper() -> None:
    pattern = re.compile(r"str\((err|exc|e)\)[.\w()]*\.splitlines\(\)|def _first_line")
    assert _hits(pattern, {"errors.py"}) == []


def test_every_png_is_drawn_in_plots() -> None:
    """No module outside ``geossl.plots`` draws a figure, saves one or encodes a PNG.

    A dataset's ``plot()`` (TorchGeo's convention) returns a figure and saves nothing.
    """
    saving = re.compile(r"\.savefig\(|save_figure\(|format=[\"']png[\"']|[\"']PNG[\"']")
    assert _hits(saving, {"plots.py"}) == []
    drawing = re.compile(r"plt\.(subplots|figure|imshow|plot)\(")
    assert [h for h in _hits(drawing, {"plots.py"}) if not h.startswith("datasets/")] == []
