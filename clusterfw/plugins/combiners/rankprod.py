"""The ``rankprod`` combiner: product of per-finder rank percentiles (DeepSZ EnsemblePROD).

``score = prod_f p_f`` where ``p_f`` is the rank percentile of finder ``f``'s score (its detection
score, or its forced score at the merged position) under the reference distribution stored in the
calibration (the ECDF of ``f``'s scores on a validation sky). ``score`` lies in ``(0, 1]``;
higher is more cluster-like; ``score_kind`` is ``rank_product``. Because the percentiles come from
the calibration and not from the table being combined, a candidate's score is the same whether
the run covers one patch or many.

``is_cluster`` is ``score >= threshold`` with the threshold calibrated for this finder set
(``combiners.rankprod["a+b"].threshold`` of the calibration); null when there is none.
:meth:`RankProductCombiner.calibrate_set` picks it: the F1-best threshold of the rank product
(under the calibration's reference percentiles) over the pooled validation candidates.
See :mod:`clusterfw.plugins.combiners._base` for cross-matching, positions and forced scoring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterfw.core.hookspecs import hookimpl
from clusterfw.plugins.combiners._base import PercentileCombiner, warn_uncalibrated

if TYPE_CHECKING:
    from clusterfw.core.evaluation.calibration import Calibration, ValidationSet


def rank_product(percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
    """Product of rank percentiles over finders (DeepSZ EnsemblePROD), in ``(0, 1]``.

    NaN percentiles (finders that do not cover a candidate) are left out: the product of the
    ``k`` covering finders is raised to ``n / k``, the power that puts it on the scale of an
    ``n``-finder product with the covering finders' geometric mean standing in for the others.
    Where all ``n`` cover a candidate this is the plain product.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in percentiles.values()]
    out = np.ones_like(arrays[0])
    n_covering = np.zeros(arrays[0].shape, dtype=np.int64)
    for a in arrays:
        ok = ~np.isnan(a)
        out = np.where(ok, out * a, out)
        n_covering += ok
    partial = (n_covering < len(arrays)) & (n_covering > 0)
    if partial.any():
        out[partial] = out[partial] ** (len(arrays) / n_covering[partial])
    return out


class RankProductCombiner(PercentileCombiner):
    """Product of reference rank percentiles over finders."""

    name = "rankprod"
    version = "1.0"
    score_kind = "rank_product"
    score_description = "product over finders of reference rank percentiles, in (0, 1]"
    uses_coverage = True

    def combined_score(self, percentiles: Mapping[str, np.ndarray]) -> np.ndarray:
        """``prod_f p_f``."""
        return rank_product(percentiles)

    def calibrate_set(
        self, validation: ValidationSet, reference: Calibration
    ) -> dict[str, Any] | None:
        """F1-best threshold of the rank product over the pooled validation candidates."""
        import warnings

        from clusterfw.core.evaluation.calibration import CalibrationWarning, percentiles_for

        with warnings.catch_warnings():  # in-sample fallback: reported with the entry instead
            warnings.simplefilter("ignore", CalibrationWarning)
            pct, in_sample = percentiles_for(
                {f: validation.scores(f) for f in validation.finders}, reference
            )
        product = rank_product(pct)
        t, counts = validation.best_threshold(product)
        entry: dict[str, Any] = {
            "threshold": t,
            "metrics": counts.to_dict(),
            "from": list(validation.sources),
            "rank_percentile_of_threshold": float(np.mean(product < t)),
        }
        if in_sample:
            entry["in_sample_percentiles"] = in_sample
        return entry

    def decide(
        self,
        scores: Mapping[str, np.ndarray],
        combined: np.ndarray,
        calibration: Calibration,
        in_sample: list[str],
        *,
        covered: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """``combined >= threshold`` when the calibration has a threshold for these finders."""
        names = list(scores)
        entry = calibration.combiner_entry(self.name, names)
        if entry is None or entry.get("threshold") is None:
            warn_uncalibrated(
                self.name,
                f"calibration ({calibration.source}) has no threshold "
                f"for finders {'+'.join(sorted(names))}",
            )
            return None, {"threshold": None}
        if in_sample:
            warn_uncalibrated(
                self.name,
                "the threshold needs reference percentiles for every "
                f"finder, missing for {', '.join(in_sample)}",
            )
            return None, {"threshold": None}
        t = float(entry["threshold"])
        return combined >= t, {"threshold": t}


@hookimpl(trylast=True)
def clusterfw_register_combiners(register: Any) -> None:
    """Register :class:`RankProductCombiner`."""
    register(RankProductCombiner)
