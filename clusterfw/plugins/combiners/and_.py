"""The ``and`` combiner: a candidate is a cluster when every finder passes its own threshold
(DeepSZ EnsembleAND).

``is_cluster = all_f (s_f >= t_f)``, where ``s_f`` is finder ``f``'s score (its detection score,
or its forced score at the merged position; a missing score fails, unless ``t_f`` is ``-inf``,
the threshold "at its minimum") and ``t_f`` comes from the calibration: the jointly grid-searched
thresholds ``combiners.and["a+b"].thresholds`` when present, else each finder's own F1-best
threshold. ``score = min_f p_f``, the smallest reference rank percentile over finders, in
``(0, 1]`` (``score_kind`` ``min_percentile``): a candidate is only as strong as its weakest
finder. The decision is taken on the raw scores, not on ``score``.
See :mod:`clusterfw.plugins.combiners._base` for cross-matching, positions and forced scoring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from clusterfw.core.hookspecs import hookimpl
from clusterfw.plugins.combiners._base import PercentileCombiner, warn_uncalibrated


class AndCombiner(PercentileCombiner):
    """Positive when every finder passes its threshold; score = smallest percentile."""

    name = "and"
    version = "1.0"
    score_kind = "min_percentile"
    score_description = "minimum over finders of reference rank percentiles, in (0, 1]"

    def combined_score(self, percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
        """``min_f p_f``."""
        from clusterfw.core.evaluation.calibration import min_percentile

        return min_percentile(percentiles)

    def decide(
        self,
        scores: Mapping[str, np.ndarray],
        combined: np.ndarray,
        calibration: Any,
        in_sample: list[str],
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """``all_f (s_f >= t_f)`` with the calibrated thresholds."""
        names = list(scores)
        thresholds = calibration.and_thresholds(names)
        if thresholds is None:
            warn_uncalibrated(self.name, f"calibration ({calibration.source}) lacks a threshold "
                              f"for one of {', '.join(names)}")
            return None, {"thresholds": None}
        return and_decision(scores, thresholds), {"thresholds": thresholds}


def and_decision(scores: Mapping[str, np.ndarray], thresholds: Mapping[str, float]) -> np.ndarray:
    """``all_f (s_f >= t_f)``; NaN fails except against ``-inf``."""
    out = None
    for name, s in scores.items():
        t = float(thresholds[name])
        ok = np.ones(np.shape(s), dtype=bool) if t == -np.inf else (
            np.nan_to_num(np.asarray(s, dtype=np.float64), nan=-np.inf) >= t)
        out = ok if out is None else out & ok
    return np.asarray(out, dtype=bool)


@hookimpl(trylast=True)
def clusterfw_register_combiners(register: Any) -> None:
    """Register :class:`AndCombiner`."""
    register(AndCombiner)
