"""Executors that map tile jobs: in-process by default, a process pool on request.

Anything with a ``concurrent.futures.Executor``-like ``map(fn, *iterables)`` that yields results
works. (A Dask ``distributed.Client`` is not one - its ``map`` returns futures - but
``client.get_executor()`` is; Dask support is planned, not yet tested.)

The pool's worker processes ignore ``SIGINT`` and ``SIGTERM``: a Ctrl-C (sent by the terminal to
the whole process group) or a ``kill`` reaches the parent only, which then cancels the pool
(:meth:`TileProcessPool.cancel`) and exits with one line. Without that, each worker printed a
traceback and a worker's ``KeyboardInterrupt`` could come back as a tile result.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol


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


def get_executor(workers: int = 1) -> InProcessExecutor | TileProcessPool:
    """In-process for ``workers == 1``, else a :class:`TileProcessPool` of ``workers``.

    Raises
    ------
    ValueError
        For ``workers < 1`` (the command line refuses it before this point).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return InProcessExecutor()
    return TileProcessPool(workers)
