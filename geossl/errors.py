"""User-facing errors.

Every problem caused by the user's input (a corrupt GeoTIFF, a missing band, a CRS mismatch, an
empty split, ...) is raised as :class:`GeosslError`. The CLI prints it as a single line and exits
with status 2, without a traceback; library users can catch it like any exception.
"""

from __future__ import annotations

import os


class GeosslError(Exception):
    """An expected error caused by user input, reported as one line."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        """Create an error.

        Args:
            message: what is wrong, in one line.
            path: the file or folder concerned; prefixed to the message when given.
        """
        self.path = None if path is None else os.fspath(path)
        text = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {text}" if self.path else text)


class DataError(GeosslError):
    """A dataset, raster or index on disk is missing, corrupt or inconsistent."""


class ConfigError(GeosslError):
    """A configuration value or combination of options is invalid."""


class GeosslWarning(UserWarning):
    """Something the user should know about their data; the CLI prints it as one line."""
