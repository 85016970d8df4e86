"""Small I/O helpers shared by every module: atomic writes, JSON values, safe raster opening."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from geossl.errors import ConfigError, DataError

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


def check_writable(path: PathLike, folder: bool, flag: str = "--out") -> Path:
    """Check, before any work, that an output can be written; nothing is created.

    ``path`` must not name something of the other kind (a file for a folder output, a folder
    for a file output), and the folder that will hold it (its nearest existing ancestor when
    it does not exist yet) must be a folder in which a file can be created: this is probed
    with a temporary file, removed at once, so permissions, read-only file systems and ACLs
    all count as they will for the real write.

    Args:
        path: the output.
        folder: whether the output is a folder (``True``) or a file (``False``).
        flag: the option naming it, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: one line naming ``path`` and the problem.
    """
    p = Path(path).expanduser()
    if p.exists() or p.is_symlink():
        if folder and not p.is_dir():
            raise DataError(f"{flag} names an existing file; give a folder", p)
        if not folder and p.is_dir():
            raise DataError(f"{flag} names an existing folder; give a file name", p)
    parent = p if folder and p.is_dir() else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{flag} cannot be created: {parent} is a file, not a folder", p)
    try:
        fd, probe = tempfile.mkstemp(prefix=".geossl-write-test-", dir=parent)
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise DataError(f"{flag} is not writable ({why}: {parent})", p) from err
    os.close(fd)
    os.unlink(probe)
    return p


#: GDAL options for remote rasters (URLs, ``/vsi*/``), applied by :func:`remote_env`
REMOTE_GDAL_OPTIONS = {
    # opening /vsicurl/https://h/a/b.tif must not list https://h/a/ (one more request, often
    # forbidden on object stores)
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
    "CPL_VSIL_CURL_CACHE_SIZE": str(64 << 20),
}


def remote_env() -> rasterio.Env:
    """A GDAL environment for remote reads: :data:`REMOTE_GDAL_OPTIONS`, the environment's wins.

    Scoped (a context manager), never process-wide: local rasters that need their folder listed
    (ENVI ``.hdr`` sidecars) are read in the same processes.
    """
    return rasterio.Env(**{k: v for k, v in REMOTE_GDAL_OPTIONS.items() if k not in os.environ})


def jsonable(value: Any) -> Any:
    """``value`` in the plain types JSON holds, for results files, sidecars and split files.

    Mappings become dicts with string keys, lists and tuples become lists, numpy scalars and
    arrays (and anything else with ``tolist``, e.g. a tensor) become Python numbers and lists,
    ``None``, booleans, numbers and strings stay, and anything else (a path, a date, ...) becomes
    its ``str``. Not-a-number floats stay floats (``json`` writes them as ``NaN``).
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    return str(value)


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
    remote = is_url(path)
    if not remote and not os.path.exists(path):
        raise DataError("file not found", path)
    try:
        if remote:
            with remote_env():
                return rasterio.open(path, **kwargs)
        return rasterio.open(path, **kwargs)
    except RasterioError as err:
        raise DataError(f"not a readable raster ({_first_line(err)})", path) from err


def is_url(path: PathLike) -> bool:
    """True for ``scheme://...`` URLs (``https``, ``s3``, ``gs``, ...) and GDAL ``/vsi*/`` paths.

    Such paths are opened by GDAL (HTTP range requests through ``/vsicurl/``, ``/vsis3/``, ...)
    without checking the local file system first.
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        return False
    return bool(_URL_RE.match(text)) or text.startswith("/vsi")


_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------------------------
# torch files: data only, never code
# --------------------------------------------------------------------------------------------
def safe_globals() -> list[Any]:
    """Python objects a geossl checkpoint may hold besides what ``weights_only`` always allows.

    ``torch.load(weights_only=True)`` already accepts tensors, storages, ``OrderedDict``,
    dtypes, ``torch.Size`` and plain Python containers and scalars; checkpoints written by
    ``geossl pretrain`` (every method, 32-bit and mixed precision, measured with
    ``pickletools``) hold nothing else. This allow-list adds only value types that reach a
    checkpoint when a library user passes them as hyper-parameters: NumPy scalars, dtypes and
    arrays, and ``pathlib`` paths. None of them runs code when rebuilt.
    """
    import pathlib

    import numpy as np

    core = getattr(np, "_core", None) or np.core  # NumPy 2 / NumPy 1
    items: list[Any] = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray,
                        np.dtype, pathlib.PosixPath, pathlib.PurePosixPath,
                        pathlib.PureWindowsPath]
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64", "complex64", "complex128"):
        items.append(type(np.dtype(name)))  # numpy.dtypes.Float64DType, ...
    return items


_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")

#: environment variable: how many times its own size a torch file may inflate to when read
INFLATE_ENV = "GEOSSL_CKPT_MAX_INFLATE"
#: default of :data:`INFLATE_ENV`. ``torch.save`` stores records uncompressed (ratio 1, a few
#: kB of headers aside); an archive re-packed with deflate shrinks float weights by well under
#: 2x. Only crafted records (zeros, repeated bytes) reach this: 8 MB asking for 8 GiB is 1000x.
MAX_INFLATE = 20.0


def _size(n: float) -> str:
    """``n`` bytes for people: ``61 kB``, ``16.0 MB``, ``8.00 GB``."""
    if n < 1e6:
        return f"{n / 1e3:.0f} kB"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def check_inflation(path: PathLike, what: str = "checkpoint") -> None:
    """Refuse a torch zip archive whose records would inflate far beyond the file's size.

    Reads only the zip central directory (the uncompressed size of every record), before
    ``torch.load`` allocates anything: the total may be at most ``GEOSSL_CKPT_MAX_INFLATE``
    (default :data:`MAX_INFLATE`) times the file's size, plus 1 MiB for tiny files. A file that
    is not a zip archive (legacy format) is left to ``torch.load``.

    Raises:
        DataError: the archive would inflate beyond the cap.
        ConfigError: ``GEOSSL_CKPT_MAX_INFLATE`` is not a positive number.
    """
    import zipfile


    p = Path(path)
    text = os.environ.get(INFLATE_ENV, "").strip()
    try:
        ratio = float(text) if text else MAX_INFLATE
    except ValueError:
        ratio = -1.0
    if not ratio > 0:
        raise ConfigError(f"{INFLATE_ENV}={text!r} should be a positive number "
                          f"(default {MAX_INFLATE:g})")
    if not zipfile.is_zipfile(p):
        return
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load says what is wrong with it
    size = p.stat().st_size
    total = sum(max(0, i.file_size) for i in infos)
    cap = ratio * size + 2**20
    if total > cap:
        worst = max(infos, key=lambda i: i.file_size / max(1, i.compress_size))
        raise DataError(
            f"refused: the {what} ({_size(size)}) would inflate to "
            f"{_size(total)} when read ({worst.filename}: "
            f"{worst.file_size / max(1, worst.compress_size):.0f}x compressed), over the cap "
            f"of {ratio:g}x its size (set {INFLATE_ENV} to allow more)", p)


def load_torch_file(path: PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` a file as data only: tensors, plain values and :func:`safe_globals`.

    Never falls back to a full unpickle: a file whose pickle names any other Python object
    (a function such as ``os.system``, a class) is refused before anything is called, whoever
    wrote it. Checkpoints are shared between people; loading one must not run code.

    Args:
        path: the file (a torch zip archive, or the legacy format).
        what: what the file is, for the error message (``checkpoint``, ``weights file``).

    Returns:
        the loaded object, on the CPU.

    Raises:
        DataError: missing or unreadable file, one holding objects outside the allow-list, or
            one that would inflate far beyond its size (:func:`check_inflation`).
    """
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found", p)
    check_inflation(p, what)  # before torch.load allocates what the records ask for
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = _GLOBAL.search(text)
        if not found and "nsupported" not in text:  # not a refusal: damaged pickle data
            raise DataError(f"not a readable {what} (damaged pickle data)", p) from err
        name = f" ({found.group(1)})" if found else ""
        raise DataError(
            f"refused: the {what} holds pickled Python objects other than tensors and plain "
            f"values{name}; geossl loads {what}s as data only and never runs code from them",
            p,
        ) from err
    except Exception as err:
        raise DataError(f"not a readable {what} ({type(err).__name__}: "
                        f"{_first_line(err)})", p) from err
