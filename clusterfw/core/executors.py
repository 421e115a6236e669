"""Executors that map tile jobs: in-process by default, a process pool on request.

Anything with a ``concurrent.futures.Executor``-like ``map(fn, *iterables)`` that yields results
works. (A Dask ``distributed.Client`` is not one - its ``map`` returns futures - but
``client.get_executor()`` is; Dask support is planned, not yet tested.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol


class TileExecutor(Protocol):
    """The one method the pipeline needs."""

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]: ...


class InProcessExecutor:
    """Runs jobs one after another in this process (the default; lets finders cache state)."""

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        return map(fn, *iterables)

    def shutdown(self) -> None:
        """Nothing to release."""


def get_executor(workers: int = 1) -> InProcessExecutor | ProcessPoolExecutor:
    """In-process for ``workers <= 1``, else a process pool of ``workers`` processes."""
    if workers <= 1:
        return InProcessExecutor()
    return ProcessPoolExecutor(max_workers=workers)
