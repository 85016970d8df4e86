"""Run small CPU workloads on one thread.

The linear probe (L-BFGS on a label budget's features), k-means and t-SNE on a few hundred
points are sequences of tiny operations: on more than one thread their cost is dominated by
thread synchronisation, and on a busy machine (threads spinning while waiting for a core) they
run tens of times slower than on one thread. :func:`few_threads` limits torch's intra-op pool and
the native OpenMP/BLAS pools (via ``threadpoolctl``, a scikit-learn dependency) for the duration
of such a workload and restores them afterwards; large workloads keep every thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: below this many scalar operations (roughly), a workload runs on one thread
SMALL_WORK = 5e7


@contextlib.contextmanager
def few_threads(work: float, threshold: float = SMALL_WORK) -> Iterator[None]:
    """Limit torch and native thread pools to one thread while ``work`` is small.

    Args:
        work: a rough operation count of the workload (e.g. ``N * D * K``).
        threshold: the limit applies when ``work < threshold``.

    Yields:
        nothing; the previous thread counts are restored on exit.
    """
    if work >= threshold:
        yield
        return
    before = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=1))
        except ImportError:  # pragma: no cover - shipped with scikit-learn
            pass
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)
