"""Evaluation against truth: matching, metrics, threshold calibration, cross-matching, plots.

- :mod:`.matching` — candidate-to-halo matching (largest halo within 1 arcmin, as DeepSZ);
- :mod:`.metrics` — purity, completeness, F1, F1-best threshold, binned curves, the cutout-level
  confusion matrix of DeepSZ Table 1;
- :mod:`.calibration` — calibration files (thresholds, reference score distributions);
- :mod:`.crossmatch` — grouping the detections of several finders by position;
- :mod:`.plots` — PNG figures (matplotlib, Agg);
- :mod:`.cli` — the ``clusterfw evaluate`` and ``clusterfw calibrate`` commands.
"""

from clusterfw.core.evaluation.calibration import (
    Calibration,
    ReferenceECDF,
    calibrate,
    default_calibration,
    load_calibration,
)
from clusterfw.core.evaluation.crossmatch import crossmatch
from clusterfw.core.evaluation.matching import Truth, match_to_truth, read_truth
from clusterfw.core.evaluation.metrics import Counts, evaluate, threshold_curve

__all__ = [
    "Calibration",
    "Counts",
    "ReferenceECDF",
    "Truth",
    "calibrate",
    "crossmatch",
    "default_calibration",
    "evaluate",
    "load_calibration",
    "match_to_truth",
    "read_truth",
    "threshold_curve",
]
