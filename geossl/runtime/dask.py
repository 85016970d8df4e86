"""Where the data jobs run: in this process, on a local Dask cluster, or on an existing one.

``geossl tile``, ``index``, ``stats`` and ``embed`` cut their work into independent, idempotent
tasks (a block of chip rows of a scene, a chunk of chip headers, a chunk of samples, a block
of embedding rows) and hand them to a :class:`Runner`:

* ``--scheduler tcp://HOST:PORT`` (or the ``DASK_SCHEDULER_ADDRESS`` environment variable, or
  ``--scheduler-file PATH``: the JSON ``dask scheduler --scheduler-file PATH`` writes): the
  tasks run on that existing ``dask.distributed`` cluster (SLURM through ``dask-jobqueue``,
  Kubernetes, ``dask scheduler`` + ``dask worker`` by hand; see ``docs/scale.md``). The paths
  given (scenes, output folder, checkpoint) must be the same on the workers as here: a shared
  file system, or URLs;
* ``--workers N`` (N > 1): a :class:`distributed.LocalCluster` of N single-threaded worker
  processes on this machine;
* otherwise (the default): the same tasks run one after another in this process, without a
  scheduler. This keeps small jobs as fast as a plain loop: importing and starting
  ``distributed`` costs about a second, more than tiling a small scene.

On a cluster the dashboard address is printed, a task lost with its worker (killed, out of
memory, node gone) is run again on another worker by the scheduler, and a task that raised is
retried ``retries`` times. Every task writes its outputs atomically (temporary file + rename;
zarr chunks are written the same way) and reruns skip what is complete, so a task run twice or
cut short leaves no half-written file. Progress bars count finished tasks out of those
submitted so far: they follow the task graph as it grows (a scene's blocks are submitted once
its header has been read).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from typing import Any

from geossl.core.errors import ConfigError, GeosslError, first_line
from geossl.core.progress import progress

#: environment variable naming the scheduler to use when ``--scheduler`` is not given (the
#: variable dask itself reads for ``distributed.Client()``)
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


#: dask settings of the local clusters started by :class:`Runner` (passed to their workers)
LOCAL_WORKER_CONFIG = {
    "distributed.worker.profile.interval": "100ms",
    "distributed.worker.profile.cycle": "5s",
    "distributed.worker.memory.monitor-interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}


#: estimated CPU seconds under which ``--workers N`` runs a job in this process: starting N
#: worker processes (each importing dask, rasterio and geossl) costs a few CPU seconds each
#: (measured: about 6 CPU-s for 2 workers on the development VM)
LOCAL_MIN_WORK_S = 15.0


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to connect to: ``scheduler``, else ``$DASK_SCHEDULER_ADDRESS``, else None.

    Raises:
        ConfigError: an address without a ``protocol://`` prefix (``tcp://HOST:PORT``).
    """
    addr = (scheduler or os.environ.get(SCHEDULER_ENV) or "").strip()
    if not addr:
        return None
    if "://" not in addr:
        raise ConfigError(f"scheduler address {addr!r} should look like tcp://HOST:PORT")
    return addr


#: seconds ``--scheduler-file`` waits for the file to appear (the scheduler may still start)
SCHEDULER_FILE_WAIT_S = 60.0


def scheduler_from_file(path: str | os.PathLike[str], wait_s: float | None = None) -> str:
    """The address in a scheduler file (``dask scheduler --scheduler-file PATH`` writes it).

    Waits up to ``wait_s`` (default :data:`SCHEDULER_FILE_WAIT_S`) for the file to appear,
    saying so once, as ``distributed.Client(scheduler_file=...)`` does; a batch job may start
    the scheduler and the command at the same time.

    Raises:
        ConfigError: the file does not appear in time, or holds no scheduler address.
    """
    import json
    import time
    from pathlib import Path

    p = Path(path)
    limit = SCHEDULER_FILE_WAIT_S if wait_s is None else wait_s
    deadline = time.monotonic() + limit
    if not p.is_file():
        print(f"waiting up to {limit:g} s for the dask scheduler file {p}", file=sys.stderr,
              flush=True)
        while not p.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
    where = os.fspath(p)
    if not p.is_file():
        raise ConfigError(f"{where}: not found after waiting {limit:g} s (start the scheduler "
                          "with `dask scheduler --scheduler-file PATH`, on a path this "
                          "machine sees)")
    try:
        address = json.loads(p.read_text())["address"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{where}: not a dask scheduler file ({type(err).__name__}; "
                          "expected the JSON `dask scheduler --scheduler-file` writes)") from err
    if not isinstance(address, str) or "://" not in address:
        raise ConfigError(f"{where}: not a dask scheduler file (address {address!r})")
    return address


#: environment variable of dask's connect timeout (``distributed.comm.timeouts.connect``)
CONNECT_TIMEOUT_ENV = "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"

#: the largest first message a dask scheduler's handshake may announce (it is ~100 bytes)
HANDSHAKE_MAX_BYTES = 1 << 20


def connect_timeout() -> float:
    """Seconds to wait for a scheduler: dask's ``distributed.comm.timeouts.connect`` (30 s)."""
    import dask
    import distributed  # noqa: F401  (registers the distributed.* settings)
    from dask.utils import parse_timedelta

    value = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect", 30), "s")
    return float(value if value is not None else 30)


def probe_scheduler(address: str, timeout: float) -> None:
    """Check that a ``tcp://`` address answers as a dask scheduler, within ``timeout``.

    Own code because dask does not bound this case: a server that accepts the connection but
    never answers (any other service) left ``Client`` waiting 5 minutes and more, past its
    own timeout, and one that answers something else (an HTTP server) made it read the first
    8 bytes as a message length and allocate exabytes. A dask scheduler writes its handshake
    first, as soon as a connection opens: an 8-byte little-endian length, then the message.
    Other protocols (``tls://``, ``ucx://``, ...) are left to dask.

    Raises:
        ConfigError: nothing listens there, it did not answer within ``timeout``, or it
            answered as something else.
    """
    import socket
    import struct
    from urllib.parse import urlsplit

    if not address.startswith("tcp://"):
        return
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError as err:
        raise ConfigError(f"scheduler address {address!r}: {err}") from err
    if not host or port is None:
        raise ConfigError(f"scheduler address {address!r} should look like tcp://HOST:PORT")
    import time

    deadline = time.monotonic() + timeout
    try:
        while True:  # as dask does, retry a refused connection (a scheduler still starting)
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
                break
            except ConnectionRefusedError:
                if time.monotonic() + 0.5 > deadline:
                    raise
                time.sleep(0.5)
        with sock:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        raise ConfigError(f"{address} accepted the connection but sent no dask handshake "
                          f"within {timeout:g} s: not a dask scheduler (wrong port?)") from None
    except OSError as err:
        raise ConfigError(f"cannot reach the dask scheduler at {address} "
                          f"({first_line(err)})") from err
    size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    if not 0 < size <= HANDSHAKE_MAX_BYTES:
        raise ConfigError(f"{address} answered, but is not a dask scheduler (wrong port, or "
                          "another service)")


def on_worker() -> bool:
    """True when called inside a task running on a ``dask.distributed`` worker."""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def worker_threads() -> int:
    """Threads of the ``dask.distributed`` worker running this task (1 outside a worker)."""
    if not on_worker():
        return 1
    from distributed import get_worker

    return max(1, int(get_worker().state.nthreads))


class Runner:
    """Runs a job's tasks in this process, on a local cluster or on an existing cluster.

    Use as a context manager; the cluster it starts (if any) is closed on exit, a cluster it
    connects to is left running.

    Example::

        with Runner(scheduler, workers) as runner:
            tasks = runner.tasks("tile", "block")
            for scene in scenes:
                tasks.submit(plan, scene, tag=scene)
            for tag, result in tasks:          # as tasks finish
                ...                            # may submit more tasks
    """

    def __init__(self, scheduler: str | None = None, workers: int = 0, *,
                 threads_per_worker: int = 1, retries: int = 1, progress: bool = True,
                 quiet: bool = False, work_s: float | None = None) -> None:
        """Choose where tasks run (nothing is started before ``__enter__``).

        Args:
            scheduler: address of an existing scheduler (``tcp://HOST:PORT``); default
                ``$DASK_SCHEDULER_ADDRESS``.
            workers: worker processes of a local cluster when no scheduler is given (0 or 1:
                run the tasks in this process).
            threads_per_worker: threads of each local worker process.
            retries: times a task that raised is run again on a cluster (a task whose worker
                died is always run again, up to dask's ``allowed-failures``).
            progress: show progress bars.
            quiet: do not print the cluster and dashboard addresses.
            work_s: the job's estimated CPU seconds, when the caller can tell: a job under
                :data:`LOCAL_MIN_WORK_S` runs in this process even with ``workers`` > 1
                (starting a local cluster costs more than it saves).
        """
        if workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {workers}")
        self.address = scheduler_address(scheduler)
        self.workers = workers
        self.threads_per_worker = max(1, threads_per_worker)
        self.retries = retries
        self.progress = progress
        self.quiet = quiet
        self.work_s = work_s
        self.client: Any = None
        self._cluster: Any = None

    @property
    def mode(self) -> str:
        """``remote`` (existing scheduler), ``local`` (local cluster) or ``inline``."""
        if self.address:
            return "remote"
        if self.workers > 1 and not self.too_small:
            return "local"
        return "inline"

    @property
    def too_small(self) -> bool:
        """True when the job is estimated too small to gain from a local cluster."""
        return self.work_s is not None and self.work_s < LOCAL_MIN_WORK_S

    @property
    def distributed(self) -> bool:
        """True when tasks run on ``dask.distributed`` workers (other processes)."""
        return self.mode != "inline"

    def __enter__(self) -> Runner:
        mode = self.mode
        if mode == "inline":
            if self.workers > 1 and not self.quiet:
                print(f"about {self.work_s:.0f} CPU-s of work: run in this process (a local "
                      f"cluster of {self.workers} workers takes longer to start)",
                      file=sys.stderr, flush=True)
            return self
        from distributed import Client, LocalCluster

        if mode == "remote":
            timeout = connect_timeout()
            if not self.quiet:
                print(f"connecting to the dask scheduler at {self.address}: waiting up to "
                      f"{timeout:g} s for its handshake (dask setting "
                      f"distributed.comm.timeouts.connect, e.g. environment variable "
                      f"{CONNECT_TIMEOUT_ENV}=60s)", file=sys.stderr, flush=True)
            probe_scheduler(str(self.address), timeout)
            try:
                self.client = Client(self.address, timeout=timeout)
            except (OSError, TimeoutError) as err:
                raise ConfigError(f"cannot reach the dask scheduler at {self.address} "
                                  f"({first_line(err)})") from err
        else:
            import dask

            dashboard = "127.0.0.1:0" if _has_bokeh() else None
            # lighter worker housekeeping than dask's defaults (stack sampling every 10 ms,
            # system monitor every 0.5 s): on a machine with few cores these background threads
            # take CPU from the tasks; the dashboard's profile stays available, coarser
            with dask.config.set(LOCAL_WORKER_CONFIG):
                self._cluster = LocalCluster(
                    n_workers=self.workers, threads_per_worker=self.threads_per_worker,
                    processes=True, dashboard_address=dashboard, silence_logs=logging.ERROR,
                )
            self.client = Client(self._cluster)
        if not self.quiet:
            print(self.describe(), file=sys.stderr, flush=True)
        return self

    def describe(self) -> str:
        """One line: where tasks run and the dashboard address."""
        if self.client is None:
            return "tasks run in this process"
        info = self.client.scheduler_info()
        n = self.n_workers()
        kind = "local cluster" if self.mode == "local" else "dask scheduler"
        link = self.client.dashboard_link if _dashboard_port(info) else None
        return (f"{kind} {self.client.scheduler.address} ({n} worker(s)); dashboard: "
                f"{link or 'none (pip install bokeh to get one)'}")

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and the local cluster this runner started."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None

    def n_workers(self) -> int:
        """Workers of the cluster now (1 when tasks run in this process)."""
        if self.client is None:
            return 1
        return max(1, len(self.client.nthreads()))

    def tasks(self, desc: str, unit: str = "task") -> TaskSet:
        """A new set of tasks, iterated as they finish, with a progress bar ``desc``."""
        return TaskSet(self, desc, unit)

    def map(self, fn: Callable[..., Any], items: list[Any], desc: str,
            unit: str = "task") -> list[Any]:
        """``[fn(item) for item in items]``, as tasks, results in the order of ``items``."""
        ts = self.tasks(desc, unit)
        for i, item in enumerate(items):
            ts.submit(fn, item, tag=i)
        out: list[Any] = [None] * len(items)
        for i, result in ts:
            out[i] = result
        return out


class TaskSet:
    """Tasks submitted to a :class:`Runner`, yielded as ``(tag, result)`` as they finish.

    More tasks may be submitted while iterating (they join the progress bar's total). The first
    task that fails cancels the others and its exception is raised.
    """

    def __init__(self, runner: Runner, desc: str, unit: str) -> None:
        self.runner = runner
        self.bar = progress(total=0, desc=desc, unit=unit, disable=not runner.progress,
                        leave=False)
        self._inline: deque[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._pending: dict[Any, tuple[Any, Any]] = {}  # key -> (future, tag)
        self._ac: Any = None

    def submit(self, fn: Callable[..., Any], *args: Any, tag: Any = None) -> None:
        """Add the task ``fn(*args)``; ``tag`` is yielded with its result."""
        self.bar.total += 1
        self.bar.refresh()
        client = self.runner.client
        if client is None:
            self._inline.append((tag, fn, args))
            return
        # the key names the function: the dashboard groups tasks by the prefix before the '-'
        key = f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}"
        fut = client.submit(_call, fn, *args, key=key, retries=self.runner.retries)
        self._pending[fut.key] = (fut, tag)
        if self._ac is not None:
            self._ac.add(fut)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        try:
            if self.runner.client is None:
                while self._inline:
                    tag, fn, args = self._inline.popleft()
                    result = fn(*args)
                    self.bar.update(1)
                    yield tag, result
                return
            from distributed import as_completed

            self._ac = as_completed([f for f, _ in self._pending.values()], with_results=False)
            for fut in self._ac:
                try:
                    result = fut.result()
                except GeosslError:
                    raise
                except (CancelledError, OSError) as err:
                    # FutureCancelledError "scheduler-connection-lost", CommClosedError
                    where = self.runner.address or "of the local cluster"
                    raise GeosslError(f"lost the dask scheduler {where} "
                                      f"({first_line(err)}); rerun the command once it is "
                                      "back (outputs already written are kept)") from err
                except Exception as err:
                    if type(err).__name__ == "KilledWorker":
                        raise GeosslError(f"dask gave up on a task whose workers kept dying "
                                          f"(out of memory?): {first_line(err)}") from err
                    raise
                self.bar.update(1)
                _, tag = self._pending.pop(fut.key)
                fut.release()  # the result is here: let the cluster forget it
                yield tag, result
        finally:
            self.bar.close()
            for fut, _ in self._pending.values():  # after an error: stop the rest
                fut.cancel()
            self._pending.clear()


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a task on a worker; a user-input error travels back to the client as itself.

    Dask pickles a task's exception with its chain of causes; a GDAL error in that chain does
    not unpickle, and the client would get a bare ``Exception(repr)`` instead of the one-line
    :class:`GeosslError`. So the error is raised again without its cause.
    """
    try:
        return fn(*args)
    except GeosslError as err:
        failure = err
    clean = type(failure)(str(failure))  # the text already names the file
    clean.path = failure.path
    raise clean


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _dashboard_port(info: dict[str, Any]) -> int | None:
    services = info.get("services", {}) or {}
    port = services.get("dashboard")
    return int(port) if port else None



__all__ = ["LOCAL_MIN_WORK_S", "LOCAL_WORKER_CONFIG", "SCHEDULER_ENV", "Runner", "TaskSet",
           "on_worker", "scheduler_address", "scheduler_from_file", "worker_threads"]


#: help of the ``--scheduler`` flag of every data job (``tile``, ``index``, ``stats``, ``embed``)
SCHEDULER_HELP = ("address of a Dask scheduler to run the tasks on (tcp://HOST:PORT; default: "
                  "$DASK_SCHEDULER_ADDRESS, else --workers N > 1 local processes, else no "
                  "cluster: in this process)")
#: help of their ``--scheduler-file``
SCHEDULER_FILE_HELP = ("scheduler file written by `dask scheduler --scheduler-file PATH` "
                       "(instead of --scheduler; waited for up to 60 s)")


def check_scheduler_flags(address: str | None, path: str | os.PathLike[str] | None) -> None:
    """Refuse ``--scheduler`` and ``--scheduler-file`` given together.

    Raises:
        ConfigError: both given.
    """
    if address is not None and path is not None:
        raise ConfigError("give --scheduler or --scheduler-file, not both")


def scheduler_of(address: str | None, path: str | os.PathLike[str] | None) -> str | None:
    """The scheduler address of ``--scheduler`` or ``--scheduler-file`` (None: neither).

    Raises:
        ConfigError: both given, or a scheduler file that is missing or damaged.
    """
    check_scheduler_flags(address, path)
    return address if path is None else scheduler_from_file(path)
