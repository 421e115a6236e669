"""Executors that map tile jobs: in-process by default, a process pool or a Dask cluster on request.

Anything with a ``concurrent.futures.Executor``-like ``map(fn, *iterables)`` that yields results
in order works. :class:`DaskExecutor` maps tile jobs over a ``distributed`` cluster: a
``LocalCluster`` it starts (``--dask``) or an existing scheduler (``--scheduler ADDRESS``, e.g.
one started by ``dask-jobqueue`` on Slurm). Arguments that are the same object in every call
(the finder list) are scattered once to every worker, so each worker deserialises the plugin
objects once and reuses them (models loaded once per worker), whatever the number of tiles.

The pool's worker processes ignore ``SIGINT`` and ``SIGTERM``: a Ctrl-C (sent by the terminal to
the whole process group) or a ``kill`` reaches the parent only, which then cancels the pool
(:meth:`TileProcessPool.cancel`) and exits with one line. Without that, each worker printed a
traceback and a worker's ``KeyboardInterrupt`` could come back as a tile result.
"""

from __future__ import annotations

import logging
import signal
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from clusterfw.core.errors import ClusterfwError


class TileExecutor(Protocol):
    """The one method the pipeline needs."""

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]: ...


class InProcessExecutor:
    """Runs jobs one after another in this process (the default; lets finders cache state)."""

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        """``map(fn, *iterables)``, lazily, in this process."""
        return map(fn, *iterables)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to release."""

    def cancel(self) -> None:
        """Nothing to cancel: an interrupt stops the running job itself."""


def _ignore_signals() -> None:
    """Worker initializer: leave SIGINT and SIGTERM to the parent process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class TileProcessPool(ProcessPoolExecutor):
    """A process pool whose workers ignore SIGINT/SIGTERM and that the parent can cancel.

    Parameters
    ----------
    workers : int
        Number of worker processes (at least 1).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        super().__init__(max_workers=workers, initializer=_ignore_signals)

    def cancel(self) -> None:
        """Drop the queued jobs and kill the workers now (after an interrupt or an error)."""
        processes = list((getattr(self, "_processes", None) or {}).values())
        self.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            try:
                proc.kill()
            except (OSError, ValueError, AttributeError):
                pass
        for proc in processes:
            try:
                proc.join(timeout=5)
            except (OSError, ValueError, AssertionError):
                pass


def _missing_extra(exc: ImportError) -> ClusterfwError:
    return ClusterfwError(
        f"--dask/--scheduler: needs the 'dask' extra (pip install 'clusterfw[dask]'): {exc}"
    )


@dataclass(frozen=True)
class RemoteFailure:
    """A user-facing error raised in a Dask worker, carried back as plain text.

    ``ClusterfwError`` subclasses with several constructor arguments (``InputError``) do not
    survive pickling, so the worker sends the class name and the one-line message instead.
    """

    kind: str
    message: str


@dataclass(frozen=True)
class RemoteResult:
    """A worker's result with the warnings it raised (re-issued in the parent, one line each)."""

    value: Any
    warnings: tuple[str, ...] = ()


def _remote_call(fn: Callable[..., Any], *args: Any) -> RemoteResult | RemoteFailure:
    """Run ``fn(*args)`` on a worker; a ``ClusterfwError`` comes back as :class:`RemoteFailure`.

    Warnings are recorded and sent back with the result, so that the parent shows them as the
    command line shows its own (``clusterfw: warning: ...``), not as worker log noise.
    """
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            value = fn(*args)
    except ClusterfwError as exc:
        return RemoteFailure(type(exc).__name__, " ".join(str(exc).split()))
    return RemoteResult(value, tuple(str(w.message) for w in caught))


def _connect_timeout_s() -> float:
    """Dask's ``distributed.comm.timeouts.connect`` in seconds (``DASK_DISTRIBUTED__COMM__...``)."""
    import dask.config
    from dask.utils import parse_timedelta

    value = dask.config.get("distributed.comm.timeouts.connect", "30s")
    return float(parse_timedelta(value, default="seconds") or 30.0)


#: Dask settings raised for a LocalCluster started by ``--dask`` (unless set by the user).
LOCAL_TIMEOUTS = {
    "distributed.comm.timeouts.tcp": "600s",
    "distributed.comm.timeouts.connect": "120s",
}


#: Housekeeping of a LocalCluster started by ``--dask``, quietened (key: (Dask's default, ours)).
#: With Dask's defaults an idle two-worker cluster spent 9 % of a core in the scheduler's
#: process (system monitor every 0.5 s, event-loop tick every 20 ms) and 6 % of a core in
#: every worker (the statistical profiler samples each thread every 10 ms): on a machine with
#: as many workers as cores, that CPU comes out of the tiles. Measured on an idle 2-worker
#: cluster over 20 s: 1.1 s of CPU in the parent and 1.2 s per worker with the defaults, 0.6 s
#: and 0.24 s with these. A value the user set (anything but Dask's default) is kept.
LOCAL_HOUSEKEEPING = {
    "distributed.worker.profile.enabled": (True, False),
    "distributed.admin.system-monitor.interval": ("500ms", "5s"),
    "distributed.admin.tick.interval": ("20ms", "1s"),
    "distributed.scheduler.work-stealing": (True, False),
}

#: glibc ``malloc`` settings for the workers of a LocalCluster started by ``--dask``: freed
#: memory stays in the heap (no ``mmap`` per large array, no trimming), so every tile reuses
#: the pages of the one before instead of mapping and faulting in fresh ones. Dask's own
#: default (``MALLOC_TRIM_THRESHOLD_=65536``) returns memory eagerly; on a Nside-4096 tile that
#: cost 2.0 s of system time (186 000 page faults) for 1.6 s of computing, and with these
#: settings 0.09 s (3 400 faults) at the same peak RSS (measured in one process, three bands).
LOCAL_WORKER_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "2147483647",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
}


def local_worker_environ() -> dict[str, str]:
    """Dask's ``distributed.nanny.pre-spawn-environ`` with :data:`LOCAL_WORKER_MALLOC`.

    A value the user chose (in this process's environment, or a Dask setting other than
    Dask's default trim threshold) is kept.
    """
    import os

    import dask.config

    try:  # registers the distributed defaults (Dask's own pre-spawn-environ) with dask.config
        import distributed  # noqa: F401
    except ImportError as exc:
        raise _missing_extra(exc) from None
    environ = {
        str(k): str(v)
        for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}).items()
    }
    for key, value in LOCAL_WORKER_MALLOC.items():
        if key in os.environ:
            continue
        if environ.get(key) in (None, "65536"):
            environ[key] = value
    return environ


class DaskExecutor:
    """Map tile jobs over a Dask ``distributed`` cluster, results back in submission order.

    Use :meth:`local` (``--dask``) or :meth:`connect` (``--scheduler``) rather than the
    constructor. A worker that dies mid-run (killed, out of memory) has its tiles rerun by the
    scheduler on another worker (up to ``distributed.scheduler.allowed-failures`` times); as
    every tile is a pure function of its job, the catalogue is unchanged.

    Parameters
    ----------
    client : distributed.Client
    cluster : distributed.LocalCluster, optional
        The cluster this executor started (closed by :meth:`shutdown` / :meth:`cancel`).
    """

    def __init__(self, client: Any, cluster: Any | None = None) -> None:
        self.client = client
        self.cluster = cluster
        self._futures: list[Any] = []

    @classmethod
    def local(cls, workers: int = 1, threads_per_worker: int = 1) -> DaskExecutor:
        """Start a ``LocalCluster`` of ``workers`` processes with ``threads_per_worker`` threads.

        Processes (not threads) because the finders hold the GIL in Python loops and numpy
        code paths that do not release it; one thread per worker because the FFT and torch
        libraries already use the cores they are given, and Dask sets ``OMP_NUM_THREADS=1`` in
        its workers. Worker processes start with SIGINT ignored (the disposition survives the
        spawn), so a Ctrl-C reaches this process only, which closes the cluster.
        """
        try:
            import dask.config
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise _missing_extra(exc) from None
        # on a loaded machine (more busy processes than cores) the default 30 s comm timeout
        # drops the client's connection to its own scheduler, which then forgets the workers
        for key, value in LOCAL_TIMEOUTS.items():
            if dask.config.get(key, None) in (None, "30s"):
                dask.config.set({key: value})
        for key, (default, quiet) in LOCAL_HOUSEKEEPING.items():
            if dask.config.get(key, default) == default:
                dask.config.set({key: quiet})
        dask.config.set({"distributed.nanny.pre-spawn-environ": local_worker_environ()})
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        logging.getLogger("distributed").setLevel(logging.ERROR)
        return cls(Client(cluster), cluster)

    @classmethod
    def connect(cls, address: str, timeout_s: float | None = None) -> DaskExecutor:
        """Connect to a running scheduler at ``address`` (``tcp://host:port``).

        Raises
        ------
        ClusterfwError
            ``--scheduler: cannot reach ADDRESS (...)`` when no scheduler answers within
            ``timeout_s`` (default: Dask's ``distributed.comm.timeouts.connect``).
        """
        try:
            from distributed import Client
        except ImportError as exc:
            raise _missing_extra(exc) from None
        timeout = _connect_timeout_s() if timeout_s is None else float(timeout_s)
        logging.getLogger("distributed").setLevel(logging.ERROR)
        try:
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ClusterfwError(
                f"--scheduler: cannot reach {address} within {timeout:g} s ({reason[:200]})"
            ) from None
        return cls(client, None)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, when the scheduler serves one."""
        try:
            if "dashboard" not in self.client.scheduler_info().get("services", {}):
                return None
            link = self.client.dashboard_link
        except (AttributeError, KeyError, ValueError, OSError):
            return None
        return str(link) if link else None

    @property
    def n_workers(self) -> int:
        """Workers known to the scheduler now."""
        return len(self.client.scheduler_info().get("workers", {}))

    def _submit(self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...]) -> list[Any]:
        columns = [list(it) for it in iterables]
        n = min((len(c) for c in columns), default=0)
        run = uuid.uuid4().hex[:12]
        args: list[list[Any] | Any] = []
        for col in columns:
            col = col[:n]
            if n > 1 and all(item is col[0] for item in col):
                # one copy per worker: plugin objects are deserialised once per worker
                args.append(self.client.scatter([col[0]], broadcast=True, hash=False)[0])
            else:
                args.append(col)
        futures = []
        for i in range(n):
            call = [a[i] if isinstance(a, list) else a for a in args]
            futures.append(
                self.client.submit(_remote_call, fn, *call, key=f"clusterfw-{run}-{i}", pure=False)
            )
        self._futures = futures
        return futures

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        """Submit ``fn(*args)`` for every tuple of ``iterables``; yield results in order.

        Raises
        ------
        ClusterfwError
            The one-line message of a user-facing error raised in a worker.
        """
        futures = self._submit(fn, iterables)
        return (value for _, value in self._results(futures, list(enumerate(futures))))

    def map_unordered(
        self, fn: Callable[..., Any], *iterables: Iterable[Any]
    ) -> Iterator[tuple[int, Any]]:
        """As :meth:`map`, but yield ``(position, result)`` as each tile finishes.

        The pipeline uses it to checkpoint every tile as soon as it is back (a slow first
        tile does not hold back the saving of the others).
        """
        from distributed import as_completed

        futures = self._submit(fn, iterables)
        position = {f.key: i for i, f in enumerate(futures)}
        done = as_completed(futures, loop=self.client.loop)
        return self._results(futures, ((position[f.key], f) for f in done))

    @staticmethod
    def _results(futures: list[Any], order: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        import warnings

        shown: set[str] = set()
        for index, future in order:
            try:
                result = future.result()
            except Exception as exc:
                if type(exc).__name__ == "KilledWorker":
                    raise ClusterfwError(
                        f"tile job {index}: the Dask workers running it died too often "
                        "(out of memory, or killed); see the workers' logs"
                    ) from None
                if "cancelled" in type(exc).__name__.lower():
                    reason = " ".join(str(exc).split())[:200]
                    raise ClusterfwError(
                        f"tile job {index}: cancelled by Dask ({reason}); run again, with "
                        "--checkpoint to keep the finished tiles"
                    ) from None
                raise
            if isinstance(result, RemoteFailure):
                raise ClusterfwError(result.message)
            for message in result.warnings:
                if message not in shown:
                    shown.add(message)
                    warnings.warn(message, UserWarning, stacklevel=2)
            yield index, result.value

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Close the client, and the cluster when this executor started it."""
        self._close()

    def cancel(self) -> None:
        """Cancel the queued tiles and close (after an interrupt or an error)."""
        try:
            if self._futures:
                self.client.cancel(self._futures, force=True)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self._close()

    def _close(self) -> None:
        for thing in (self.client, self.cluster):
            if thing is None:
                continue
            try:
                thing.close(timeout=10)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        self._futures = []


def get_executor(
    workers: int = 1, dask: bool = False, scheduler: str | None = None
) -> InProcessExecutor | TileProcessPool | DaskExecutor:
    """The executor a run asked for.

    ``scheduler`` (an address) connects to an existing Dask cluster; ``dask`` starts a
    ``LocalCluster`` of ``workers`` processes; otherwise in-process for ``workers == 1``,
    else a :class:`TileProcessPool` of ``workers``.

    Raises
    ------
    ValueError
        For ``workers < 1`` (the command line refuses it before this point).
    ClusterfwError
        The Dask extra is missing, or the scheduler cannot be reached.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if scheduler:
        return DaskExecutor.connect(scheduler)
    if dask:
        return DaskExecutor.local(workers)
    if workers == 1:
        return InProcessExecutor()
    return TileProcessPool(workers)
