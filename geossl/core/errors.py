"""User-facing errors.

Every problem caused by the user's input (a corrupt GeoTIFF, a missing band, a CRS mismatch, an
empty split, ...) is raised as :class:`GeosslError`. The CLI prints it as a single line and exits
with status 2, without a traceback; library users can catch it like any exception.
"""

from __future__ import annotations

import os
import re


class GeosslError(Exception):
    """An expected error caused by user input, reported as one line."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        """Create an error.

        Args:
            message: what is wrong, in one line.
            path: the file or folder concerned; prefixed to the message when given.
        """
        self.path = None if path is None else os.fspath(path)
        original = _worker_original(str(message)) if path is None else None
        if original is not None:
            # re-raised by a DataLoader worker: keep the original line, not the traceback
            super().__init__(original)
            return
        text = one_line(message)  # always one line
        super().__init__(f"{self.path}: {text}" if self.path else text)


#: how ``torch.utils.data._utils.ExceptionWrapper.reraise`` builds the message of an exception
#: from a DataLoader worker: "Caught DataError in DataLoader worker process 0.\nOriginal
#: Traceback (most recent call last):\n ... \ngeossl.core.errors.DataError: <the original line>\n"
_WORKER_RE = re.compile(r"\ACaught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def _worker_original(message: str) -> str | None:
    """The original one-line message of an error re-raised from a DataLoader worker, or None.

    PyTorch only passes the formatted traceback text back from a worker (not the exception),
    and rebuilds the exception from it; its last line is ``module.Class: <original message>``.
    """
    if not _WORKER_RE.match(message):
        return None
    last = message.rstrip().rsplit("\n", 1)[-1]
    head, sep, text = last.partition(": ")
    if not sep or not re.fullmatch(r"[\w.]+", head):
        return None
    return text.strip()


def one_line(text: object) -> str:
    """``text`` (a message, an exception) with its line breaks and runs of spaces made one space."""
    return " ".join(str(text).split())


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty).

    The one helper that turns a library's exception (rasterio, pyarrow, YAML, ...) into the
    short reason quoted inside a one-line :class:`DataError` / :class:`ConfigError`.
    """
    text = str(err).strip().splitlines()
    return text[0].strip() if text else type(err).__name__


class DataError(GeosslError):
    """A dataset, raster or index on disk is missing, corrupt or inconsistent."""


class ConfigError(GeosslError):
    """A configuration value or combination of options is invalid."""


class GeosslWarning(UserWarning):
    """Something the user should know about their data; the CLI prints it as one line."""


class Terminated(KeyboardInterrupt):
    """A run stopped by SIGTERM (SLURM, Kubernetes) after saving; the CLI exits with 143.

    A :class:`KeyboardInterrupt` so that code cleaning up after Ctrl-C does the same here.
    """
