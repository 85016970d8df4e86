"""Shared fixtures.

``real`` points at the small REAL samples in ``../shared/data/real`` (beside the checkout). On a
user's machine that folder does not exist and every test using it is skipped with a reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Lightning adds a logging handler on sys.stderr when it is first imported; imported here, it
# holds the real stream rather than the captured one of whichever test imported it first (a
# closed capture makes every later Lightning log line a "--- Logging error ---" traceback)
import lightning.pytorch  # noqa: F401  isort: skip

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("GEOSSL_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real() -> Path:
    """Folder of real samples; skips the test when it is absent."""
    if not REAL.is_dir():
        pytest.skip(f"real samples not found at {REAL} (set GEOSSL_REAL_DATA)")
    return REAL


def real_path(*parts: str) -> Path:
    """A path under the real samples; skips the calling test when it does not exist."""
    path = REAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample {path} not found")
    return path


@pytest.fixture(autouse=True)
def _small_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep torch to few threads so parallel test workers do not oversubscribe the CPU.

    ``OMP_NUM_THREADS`` wins when set; under pytest-xdist the cores are shared by the workers.
    (Small models on more threads than free cores run many times slower, not faster.)
    """
    import torch

    given = os.environ.get("OMP_NUM_THREADS", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    threads = int(given) if given.isdigit() else (os.cpu_count() or 1) // max(1, workers)
    torch.set_num_threads(max(1, min(2, threads)))


@pytest.fixture
def one_torch_thread() -> None:
    """One torch thread (after :func:`_small_threads`), for modules whose budget is one core:
    small operations on several threads only wait for each other on a busy machine.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sen12ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake SEN12MS folder in the real layout (``tests/data/sen12ms``), one per test module."""
    from tests.data.sen12ms.data import generate

    root = tmp_path_factory.mktemp("sen12ms")
    generate(root)
    return root
