"""The ``and`` combiner: a candidate is a cluster when every finder passes its own threshold
(DeepSZ EnsembleAND).

``is_cluster = all_f (s_f >= t_f)``, where ``s_f`` is finder ``f``'s score (its detection score,
or its forced score at the merged position; a missing score fails, unless ``t_f`` is ``-inf``,
the threshold "at its minimum") and ``t_f`` comes from the calibration: the jointly grid-searched
thresholds ``combiners.and["a+b"].thresholds`` when present, else each finder's own F1-best
threshold (:meth:`AndCombiner.calibrate_set` grid-searches the pair for F1 on the pooled
validation candidates, :func:`clusterfw.core.evaluation.metrics.and_grid_search`).
``score = min_f p_f``, the smallest reference rank percentile over finders, in
``(0, 1]`` (``score_kind`` ``min_percentile``): a candidate is only as strong as its weakest
finder. The decision is taken on the raw scores, not on ``score``.
See :mod:`clusterfw.plugins.combiners._base` for cross-matching, positions and forced scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterfw.core.hookspecs import hookimpl
from clusterfw.plugins.combiners._base import PercentileCombiner, warn_uncalibrated

if TYPE_CHECKING:
    from clusterfw.core.evaluation.calibration import Calibration, ValidationSet


def min_percentile(percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
    """Smallest rank percentile over finders (the AND combiner's score).

    NaN percentiles (finders that do not cover a candidate) are left out.
    """
    return np.fmin.reduce(
        np.vstack([np.asarray(a, dtype=np.float64) for a in percentiles.values()]), axis=0
    )


def and_thresholds(calibration: Calibration, finders: Sequence[str]) -> dict[str, float] | None:
    """Thresholds of the AND combiner for these finders.

    The jointly calibrated ones (``combiners.and[<finder set>].thresholds``) when the calibration
    has them, else each finder's own F1-best threshold; None if any is missing. ``-inf`` (stored
    as ``null``) means no cut.
    """
    entry = calibration.combiner_entry(AndCombiner.name, finders)
    if entry is not None and isinstance(entry.get("thresholds"), Mapping):
        th = entry["thresholds"]
        if all(f in th for f in finders):
            return {f: (-np.inf if th[f] is None else float(th[f])) for f in finders}
    out = {f: calibration.threshold(f) for f in finders}
    if any(v is None for v in out.values()):
        return None
    return {f: float(v) for f, v in out.items() if v is not None}


class AndCombiner(PercentileCombiner):
    """Positive when every finder passes its threshold; score = smallest percentile."""

    name = "and"
    version = "1.0"
    score_kind = "min_percentile"
    score_description = "minimum over finders of reference rank percentiles, in (0, 1]"
    uses_coverage = True

    def combined_score(self, percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
        """``min_f p_f``."""
        return min_percentile(percentiles)

    def calibrate_set(
        self, validation: ValidationSet, reference: Calibration
    ) -> dict[str, Any] | None:
        """Thresholds, one per finder, maximising F1 of the AND decision (grid search)."""
        from clusterfw.core.evaluation.metrics import and_grid_search

        thresholds, counts = and_grid_search(
            validation.sample,
            list(validation.finders),
            duplicates="ignore" if validation.duplicates == "ignore" else "false_positive",
        )
        return {
            "thresholds": {f: (None if not np.isfinite(t) else t) for f, t in thresholds.items()},
            "metrics": counts.to_dict(),
            "from": list(validation.sources),
        }

    def decide(
        self,
        scores: Mapping[str, np.ndarray],
        combined: np.ndarray,
        calibration: Calibration,
        in_sample: list[str],
        *,
        covered: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """``all_f (s_f >= t_f)`` over the finders that cover a candidate."""
        names = list(scores)
        thresholds = and_thresholds(calibration, names)
        if thresholds is None:
            warn_uncalibrated(
                self.name,
                f"calibration ({calibration.source}) lacks a threshold "
                f"for one of {', '.join(names)}",
            )
            return None, {"thresholds": None}
        return and_decision(scores, thresholds, covered), {"thresholds": thresholds}


def and_decision(
    scores: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    covered: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``all_f (s_f >= t_f)``; NaN fails except against ``-inf``.

    A finder that does not cover a candidate (``covered[f]`` False: no data there) has no say.
    """
    out = None
    for name, s in scores.items():
        t = float(thresholds[name])
        ok = (
            np.ones(np.shape(s), dtype=bool)
            if t == -np.inf
            else (np.nan_to_num(np.asarray(s, dtype=np.float64), nan=-np.inf) >= t)
        )
        if covered is not None and name in covered:
            ok = ok | ~np.asarray(covered[name], dtype=bool)
        out = ok if out is None else out & ok
    return np.asarray(out, dtype=bool)


@hookimpl(trylast=True)
def clusterfw_register_combiners(register: Any) -> None:
    """Register :class:`AndCombiner`."""
    register(AndCombiner)
