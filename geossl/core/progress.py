"""Progress of long work, on a terminal and in a log file alike (one owner for every command).

:func:`progress` is a ``tqdm`` bar on standard error. On a terminal it is the usual bar. When
standard error is not a terminal (a batch job's log, ``2> run.log``, a pipe) a redrawn bar
would be one endless line, or, with tqdm's own default (``disable=None``), nothing at all: a
32-minute evaluation then looks exactly like a hang. So there the bar prints one plain line at
most every ``GEOSSL_PROGRESS_S`` seconds (default 10), the first one only once that much time
has passed, each with the count, the rate and tqdm's estimate of the time left::

    geossl SimCLR:  40%|####      | 4/10 [00:12<00:18,  3.01s/draw]

Work shorter than the interval prints nothing. ``GEOSSL_PROGRESS_S=0`` prints every update
(the tests use it), ``GEOSSL_PROGRESS=0`` turns every bar off.

:func:`phase` logs the start of one of the numbered phases of a long command (``[2/5] ...``)
and returns a callable that logs its end with the time it took.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from tqdm import tqdm

#: environment variable: seconds between progress lines when standard error is not a terminal
EVERY_ENV = "GEOSSL_PROGRESS_S"
#: environment variable: ``0`` turns every progress bar off
ENABLE_ENV = "GEOSSL_PROGRESS"
EVERY_S = 10.0


class _Lines:
    """A file for tqdm that turns each redraw (carriage return + status) into one line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


class _LogBar(tqdm):  # type: ignore[type-arg]
    """A bar for logs: even explicit redraws (``refresh()``) keep to the interval and delay."""

    _last_line = 0.0

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> Any:
        if self.disable:
            return None
        now = time.time()
        # tqdm may refresh from its own __init__, before it sets ``start_t``
        start = getattr(self, "start_t", now)
        if now < start + self.delay or now - self._last_line < self.mininterval:
            return None
        self._last_line = now
        return super().refresh(nolock=nolock, lock_args=lock_args)


def every_s() -> float:
    """Seconds between progress lines in a log (``$GEOSSL_PROGRESS_S``, default 10)."""
    text = os.environ.get(EVERY_ENV, "").strip()
    try:
        return max(0.0, float(text)) if text else EVERY_S
    except ValueError:
        return EVERY_S


def enabled() -> bool:
    """False when ``GEOSSL_PROGRESS=0``."""
    return os.environ.get(ENABLE_ENV, "1").strip() not in ("0", "false", "no", "off")


def progress(iterable: Iterable[Any] | None = None, *, desc: str = "", total: float | None = None,
             unit: str = "it", leave: bool = False, disable: bool = False,
             **kwargs: Any) -> Any:
    """A progress bar that reports on a terminal and in a log (see the module docstring).

    Args:
        iterable: what to iterate (or None and :meth:`update` calls).
        desc: what is being done.
        total: number of items (default ``len(iterable)`` when it has one).
        unit: name of one item.
        leave: keep the finished bar on a terminal.
        disable: no bar at all (a caller's ``progress=False``).
        **kwargs: other ``tqdm`` arguments.

    Returns:
        the ``tqdm`` bar.
    """
    stream = sys.stderr
    off = disable or not enabled()
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=off,
                    file=stream, **kwargs)
    wait = every_s()
    return _LogBar(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=off,
                file=_Lines(stream), mininterval=wait, maxinterval=max(wait, 1.0) * 6,
                delay=wait, ncols=80, ascii=True, dynamic_ncols=False, **kwargs)


def phase(log: Callable[[str], None], number: int, count: int, text: str) -> Callable[[], float]:
    """Log ``[number/count] text``; the returned callable logs its end and returns its seconds."""
    log(f"[{number}/{count}] {text}")
    start = time.perf_counter()

    def done() -> float:
        seconds = time.perf_counter() - start
        log(f"[{number}/{count}] done in {seconds:.0f} s")
        return seconds

    return done


__all__ = ["ENABLE_ENV", "EVERY_ENV", "EVERY_S", "enabled", "every_s", "phase", "progress"]
