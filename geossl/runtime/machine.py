"""What this machine offers the process: CPU cores, and the worker counts that fit them."""

from __future__ import annotations

import os

#: loader workers beyond this rarely speed up chip reading and cost memory per worker
MAX_DEFAULT_WORKERS = 4


def available_cores() -> int:
    """CPU cores this process may run on, at least 1.

    The process's CPU affinity (``os.process_cpu_count`` on Python 3.13+,
    ``os.sched_getaffinity`` on Linux), so a ``taskset``, cgroup cpuset or batch-scheduler limit
    counts; ``os.cpu_count`` where neither exists (macOS, Windows before 3.13).
    """
    counter = getattr(os, "process_cpu_count", None)
    if counter is not None:
        return max(1, counter() or 1)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Default number of data-loader worker processes: ``min(4, available cores)``."""
    return min(MAX_DEFAULT_WORKERS, available_cores())
