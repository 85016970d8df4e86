"""Small I/O helpers shared by every module: atomic writes, JSON values, safe raster opening."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from geossl.core.errors import ConfigError, DataError, first_line

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and move it into place on success.

    The temporary file lives in the same folder, so the final :func:`os.replace` is atomic: a
    reader (or a rerun after a kill) sees either the old file or the complete new one, never a
    half-written file. On error the temporary file is removed.

    An object-store URL (``s3://...``) is written to a local temporary file first and
    uploaded in one PUT on success: an object appears whole or not at all.

    Args:
        path: final destination (a local path or an fsspec URL).

    Yields:
        the temporary path to write to.
    """
    if is_url(path):  # an object store: whole-object PUTs are atomic already
        with _remote_atomic_path(os.fspath(path)) as tmp_remote:
            yield tmp_remote
        return
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
    """Write ``text`` to ``path`` (local or URL) atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (local or URL) atomically."""
    with atomic_path(path) as tmp:
        _write_file_bytes(tmp, data)


def _write_file_bytes(path: Path, data: bytes) -> None:
    """Write a file with Python's own I/O: a full disk raises ``OSError(ENOSPC)`` here.

    (GDAL, by contrast, may report a failed write only as a log message and close a truncated
    file; chips are therefore encoded in memory and written with this.)
    """
    with open(path, "wb") as f:
        f.write(data)


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


# --------------------------------------------------------------------------------------------
# outputs: which folder a command may write into, one run at a time, full disks, object stores
# --------------------------------------------------------------------------------------------
#: written by every command into its output folder, before anything else: whose output it is
OUTPUT_MARKER = ".geossl-output.json"
#: held (``fcntl.flock``) by the run writing into an output folder; records its pid
LOCK_NAME = ".geossl.lock"
#: commands that write to object-store URLs (``s3://``, ``gs://``, ...); others refuse them
URL_COMMANDS = ("tile", "embed")


def check_output(
    path: PathLike,
    command: str,
    *,
    folder: bool = True,
    flag: str = "--out",
    own: tuple[str, ...] = (),
    inputs: tuple[Any, ...] = (),
) -> Any:
    """Check, before any work, that ``geossl COMMAND`` may write ``path``; nothing is written.

    The one owner of "is this folder mine": a folder output must be absent, empty, or an
    earlier output of the same command, recognised by :data:`OUTPUT_MARKER` (written by
    :func:`mark_output`) or, for outputs of geossl versions before the marker, by one of the
    ``own`` glob patterns (``index.parquet``, ``*/.tiling.json``, ...). Any other non-empty
    folder is refused, so a run never empties or mixes into a user's folder. Also refused:
    ``path`` being a symbolic link (or, in an earlier output, holding one at its top level:
    writes would land elsewhere), ``path`` being one of ``inputs`` (``export CKPT --out CKPT``)
    or holding one of them, and URLs for commands that cannot write to object stores (instead
    of creating a local folder named ``s3:``).

    Args:
        path: the output (local path, or an fsspec URL for :data:`URL_COMMANDS`).
        command: the command's name (``tile``, ``embed``, ``pretrain``, ...).
        folder: whether the output is a folder (else a file).
        flag: the option naming it, for messages.
        own: glob patterns, relative to the folder, that mark an earlier output of ``command``
            written before :data:`OUTPUT_MARKER` existed.
        inputs: the command's input files and folders (``None`` entries are ignored).

    Returns:
        the output: a :class:`~pathlib.Path`, or the URL string.

    Raises:
        DataError: one line naming ``path`` and the problem.
    """
    text = os.fspath(path)
    if is_url(text):
        if command not in URL_COMMANDS:
            raise DataError(f"{flag} is a URL; geossl {command} writes only to local paths "
                            f"(geossl {' and '.join(URL_COMMANDS)} write to object stores)", text)
        if not folder:
            raise DataError(f"{flag} is a URL; give a local file", text)
        _check_remote_output(text, command, flag, own)
        return text
    p = Path(text).expanduser()
    if p.is_symlink():
        raise DataError(f"{flag} is a symbolic link (to {os.readlink(p)}); give the folder or "
                        "file it points to, so that writes go where they are seen", p)
    check_writable(p, folder=folder, flag=flag)
    target = p.absolute()
    for item in inputs:
        if not isinstance(item, str | os.PathLike) or is_url(item):
            continue  # None, an in-memory value (a dict of splits), or a remote input
        src = Path(item).expanduser().absolute()
        if target == src or (src.exists() and p.exists() and os.path.samefile(src, p)):
            raise DataError(f"{flag} is an input of this command ({item}); writing it would "
                            "overwrite it: give another path", p)
        if folder and target in src.parents:
            raise DataError(f"{flag} holds an input of this command ({item}); give another "
                            "folder", p)
    if folder and p.is_dir():
        entries = [e for e in os.listdir(p) if e != LOCK_NAME]
        if entries:
            _check_owner(p, command, flag, own, entries)
    return p


def _owner(marker: dict[str, Any] | None) -> str | None:
    return str(marker.get("command")) if isinstance(marker, dict) else None


def _check_owner(p: Path, command: str, flag: str, own: tuple[str, ...],
                 entries: list[str]) -> None:
    marker = p / OUTPUT_MARKER
    mine = False
    if marker.is_file():
        try:
            owner = _owner(json.loads(marker.read_text()))
        except (OSError, ValueError):
            owner = None
        if owner is not None and owner != command:
            raise DataError(f"{flag} holds the output of geossl {owner}, not of geossl "
                            f"{command}; give an empty or new folder", p)
        mine = owner == command
    if not mine and not any(any(p.glob(pattern)) for pattern in own):
        raise DataError(f"{flag} is a folder that is neither empty nor an earlier output of "
                        f"geossl {command} ({len(entries)} entries); nothing was written: give "
                        "an empty or new folder", p)
    links = sorted(e for e in entries if (p / e).is_symlink())
    if links:
        raise DataError(f"{flag} holds a symbolic link ({links[0]}); geossl writes only into "
                        "folders it made: remove the link or give another folder", p)


def _check_remote_output(url: str, command: str, flag: str, own: tuple[str, ...]) -> None:
    fs, root = remote_fs(url)
    bucket = root.split("/", 1)[0]
    try:
        if not fs.exists(bucket):
            raise DataError(f"{flag}: bucket {bucket!r} does not exist (or is not visible with "
                            "these credentials)", url)
        entries = fs.ls(root, detail=False, refresh=True) if fs.isdir(root) else []
    except FileNotFoundError:
        entries = []
    except DataError:
        raise
    except Exception as err:  # credentials, unknown bucket, endpoint down: one line
        raise DataError(f"{flag} cannot be listed ({type(err).__name__}: "
                        f"{first_line(err)})", url) from err
    if not entries:
        return
    owner = None
    marker = f"{root.rstrip('/')}/{OUTPUT_MARKER}"
    if fs.isfile(marker):
        try:
            owner = _owner(json.loads(fs.cat_file(marker)))
        except (OSError, ValueError):
            owner = None
    if owner is not None and owner != command:
        raise DataError(f"{flag} holds the output of geossl {owner}, not of geossl {command}; "
                        "give an empty or new prefix", url)
    if owner is None and not any(fs.glob(f"{root.rstrip('/')}/{pattern}") for pattern in own):
        raise DataError(f"{flag} is a prefix that is neither empty nor an earlier output of "
                        f"geossl {command}; nothing was written: give an empty or new prefix",
                        url)


def mark_output(path: PathLike, command: str) -> None:
    """Create the output folder (if needed) and record it as ``command``'s output.

    Call after :func:`check_output` accepted ``path``, before writing anything else into it.
    """
    from geossl import __version__

    text = os.fspath(path)
    record = json.dumps({"command": command, "geossl": __version__}) + "\n"
    if is_url(text):
        fs, root = remote_fs(text)
        marker = f"{root.rstrip('/')}/{OUTPUT_MARKER}"
        if not fs.exists(marker):
            fs.pipe_file(marker, record.encode())
        return
    p = Path(text).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    if not (p / OUTPUT_MARKER).is_file():
        atomic_write_text(p / OUTPUT_MARKER, record)


@contextlib.contextmanager
def output_lock(path: PathLike, command: str, flag: str = "--out") -> Iterator[None]:
    """Hold the output folder ``path`` for this run: a second run into it is refused at once.

    A lock file :data:`LOCK_NAME` in the folder, locked with ``fcntl.flock`` and holding this
    process's id. The kernel releases the lock when its process ends, however it ends, so a
    lock file left by a killed run is stale and taken over without asking. Object-store
    prefixes have no such lock (see docs/scale.md); for them this does nothing.

    Raises:
        DataError: another process holds the folder (the message names its pid).
    """
    import fcntl

    text = os.fspath(path)
    if is_url(text):
        yield
        return
    folder = Path(text).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            try:
                holder = lock.read_text().split()[0]
            except (OSError, IndexError):
                holder = "?"
            raise DataError(f"is in use by another geossl run (pid {holder}); wait for it to "
                            f"end or give another {flag}", folder) from None
        # the holder before us may have removed the file after we opened it: lock the file
        # that is at the path now, not an orphan
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def disk_full_as_error(where: PathLike, partial: Callable[[], Any] | None = None
                       ) -> Iterator[None]:
    """Turn "no space left on device" (``ENOSPC``, also from GDAL or a Dask worker) into one line.

    Whatever was being written when the disk filled up is a temporary file (atomic writes),
    removed on the way out; what is finished stays valid for a rerun.

    Args:
        where: the output, for the message.
        partial: removes what a library wrote in place and left half-written (called once
            the disk is known to be full).

    Raises:
        DataError: ``no space left on WHERE``.
    """
    try:
        yield
    except Exception as err:
        if not (is_disk_full(err) or _write_failed_on_full_disk(err, where)):
            raise
        if partial is not None:
            partial()
        raise DataError(f"no space left on {os.fspath(where)}; free some space and run the "
                        "command again: finished parts are kept") from err


def _write_failed_on_full_disk(err: BaseException, where: PathLike) -> bool:
    """A write error that names no cause (torch's "file write failed") on a full disk."""
    if "write failed" not in str(err).lower() or is_url(where):
        return False
    import shutil

    folder = Path(where)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) says the disk or quota is full.

    ``OSError(ENOSPC/EDQUOT)`` from Python; from C libraries (GDAL, Arrow, a Dask worker's
    pickled error) only the message may tell.
    """
    seen = 0
    current: BaseException | None = err
    while current is not None and seen < 8:
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


@contextlib.contextmanager
def remote_write_errors(where: PathLike) -> Iterator[None]:
    """Turn a failed write to an object store (access denied, endpoint gone) into one line.

    Everything already written is whole objects (one PUT each), so a rerun continues.
    Does nothing for a local ``where``.

    Raises:
        DataError: ``WHERE: cannot write to the object store (...)``.
    """
    if not is_url(where):
        yield
        return
    try:
        yield
    except DataError:
        raise
    except Exception as err:
        module = type(err).__module__.split(".")[0]
        if not isinstance(err, OSError) and module not in ("botocore", "aiobotocore",
                                                           "aiohttp", "s3fs", "gcsfs", "adlfs"):
            raise
        raise DataError(f"cannot write to the object store ({type(err).__name__}: "
                        f"{first_line(err)}); objects written so far are whole: rerun to "
                        "continue", where) from err


def remote_fs(url: str) -> tuple[Any, str]:
    """The fsspec file system of an object-store URL and the path in it.

    Credentials and endpoints come from the environment as for any fsspec/boto client
    (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``, ``~/.aws``, ...).
    """
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def out_join(base: PathLike, *parts: str) -> Any:
    """``base / parts``: a :class:`~pathlib.Path`, or a URL string for an object store."""
    text = os.fspath(base)
    if is_url(text):
        return "/".join([text.rstrip("/"), *parts])
    return Path(text).joinpath(*parts)


def read_text_or_none(path: PathLike) -> str | None:
    """The text of ``path`` (local or URL), or ``None`` when it does not exist."""
    text = os.fspath(path)
    try:
        if is_url(text):
            fs, p = remote_fs(text)
            return bytes(fs.cat_file(p)).decode()
        return Path(text).read_text()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


@contextlib.contextmanager
def _remote_atomic_path(url: str) -> Iterator[Path]:
    suffix = os.path.splitext(url)[1]
    fd, tmp = tempfile.mkstemp(prefix=".geossl-upload-", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fs, p = remote_fs(url)
        fs.put_file(tmp, p)
    finally:
        tmp_path.unlink(missing_ok=True)


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
        raise DataError(f"not a readable raster ({first_line(err)})", path) from err


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
                        f"{first_line(err)})", p) from err


def set_default_mode(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the permissions of a normally created file.

    :func:`geossl.core.io.atomic_path` creates its temporary file with :func:`tempfile.mkstemp`,
    i.e. mode 0600; chips and indexes are meant to be shared, so they get ``0666 & ~umask``.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
