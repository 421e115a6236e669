"""Multi-frequency, multi-scale matched-filter cluster finder (``mf``).

See ``docs/finders/mf.md``. The public entry points are :class:`MatchedFilterFinder` and, for
custom pipelines, :func:`~clusterfw.plugins.finders.mf.filters.run_filter`.
"""

from clusterfw.plugins.finders.mf.finder import MatchedFilterFinder

__all__ = ["MatchedFilterFinder"]
