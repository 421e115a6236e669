"""Registers the built-in ``mf`` finder (entry point ``mf`` in the ``clusterfw`` group)."""

from __future__ import annotations

from clusterfw.core.hookspecs import hookimpl
from clusterfw.plugins.finders.mf.finder import MatchedFilterFinder


@hookimpl(trylast=True)
def clusterfw_register_finders(register) -> None:
    """Register :class:`MatchedFilterFinder`."""
    register(MatchedFilterFinder)
