"""Small I/O helpers shared by every module: atomic writes and safe raster opening."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from geossl.errors import DataError

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and move it into place on success.

    The temporary file lives in the same folder, so the final :func:`os.replace` is atomic: a
    reader (or a rerun after a kill) sees either the old file or the complete new one, never a
    half-written file. On error the temporary file is removed.

    Args:
        path: final destination.

    Yields:
        the temporary path to write to.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    # mkstemp creates 0600 files; give outputs the usual permissions (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def open_raster(path: PathLike, **kwargs: Any) -> rasterio.io.DatasetReader:
    """Open a raster for reading, turning GDAL errors into a one-line :class:`DataError`.

    Args:
        path: raster file (GeoTIFF, JP2, ENVI, ...).
        **kwargs: passed to :func:`rasterio.open`.

    Returns:
        the open dataset.

    Raises:
        DataError: if the file is missing or cannot be read as a raster.
    """
    if not os.path.exists(path):
        raise DataError("file not found", path)
    try:
        return rasterio.open(path, **kwargs)
    except RasterioError as err:
        raise DataError(f"not a readable raster ({_first_line(err)})", path) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
