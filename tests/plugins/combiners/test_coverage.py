"""Combiners tell "not covered" (no data there) apart from "not detected" (issue 12)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from clusterfw.core.evaluation.calibration import Calibration, CalibrationWarning, ReferenceECDF
from clusterfw.core.schema import candidate_table
from clusterfw.plugins.combiners.and_ import AndCombiner, and_decision, min_percentile
from clusterfw.plugins.combiners.rankprod import RankProductCombiner, rank_product


def test_rank_product_leaves_out_uncovered_finders():
    p = {"a": np.array([0.9, 0.9, 0.5]), "b": np.array([0.4, np.nan, np.nan])}
    out = rank_product(p)
    assert out[0] == 0.9 * 0.4  # both cover: the plain product
    assert out[1] == pytest.approx(0.81)  # b has no data: 0.9 ** (2 / 1)
    assert out[2] == pytest.approx(0.25)
    # all covered: bit-identical to the plain product
    q = {"a": np.array([0.3, 0.7]), "b": np.array([0.2, 0.9])}
    assert np.array_equal(rank_product(q), q["a"] * q["b"])


def test_min_percentile_and_decision_skip_uncovered():
    p = {"a": np.array([0.9, 0.9]), "b": np.array([0.1, np.nan])}
    assert min_percentile(p).tolist() == [0.1, 0.9]
    scores = {"a": np.array([6.0, 6.0]), "b": np.array([np.nan, np.nan])}
    th = {"a": 5.0, "b": 0.5}
    assert and_decision(scores, th).tolist() == [False, False]  # NaN fails a cut
    covered = {"a": np.array([True, True]), "b": np.array([True, False])}
    assert and_decision(scores, th, covered).tolist() == [False, True]


class _ForcedWithCoverage:
    """A forced scorer whose finder 'b' has data only at dec > 0."""

    def __call__(self, name, ra, dec):
        dec = np.asarray(dec, dtype=float)
        return np.where(dec > 0, 0.1, np.nan) if name == "b" else np.full(dec.size, 0.1)

    def coverage(self, name, ra, dec):
        dec = np.asarray(dec, dtype=float)
        return dec > 0 if name == "b" else np.ones(dec.size, dtype=bool)


def _tables():
    a = candidate_table(
        finder="a",
        score_kind="snr",
        ra=np.array([10.0, 10.5]),
        dec=np.array([1.0, -1.0]),
        score=np.array([8.0, 8.0]),
        candidate_id=np.array(["a-0", "a-1"], dtype=object),
    )
    b = candidate_table(
        finder="b",
        score_kind="snr",
        ra=np.zeros(0),
        dec=np.zeros(0),
        score=np.zeros(0),
        candidate_id=np.array([], dtype=object),
    )
    return {"a": a, "b": b}


def _calibration():
    ref = ReferenceECDF(
        values=np.array([0.0, 1.0, 5.0, 9.0]), cdf=np.array([0.25, 0.5, 0.75, 1.0]), n=4
    )
    return Calibration(
        finders={
            "a": {"threshold": 5.0, "reference": ref},
            "b": {"threshold": 0.5, "reference": ref},
        }
    )


@pytest.mark.parametrize("combiner", [RankProductCombiner(), AndCombiner()])
def test_combined_scores_do_not_count_no_data_as_a_non_detection(combiner):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        out = combiner.combine(_tables(), _ForcedWithCoverage(), _calibration())
    rows = {round(r["dec"]): r for r in out.to_pylist()}
    covered, uncovered = rows[1], rows[-1]
    # same detection by 'a'; 'b' scored low where it has data and has no data at dec -1
    assert uncovered["score"] > covered["score"]
    assert uncovered["b_score"] is None
    if combiner.name == "and":
        assert uncovered["is_cluster"] is True and covered["is_cluster"] is False


def test_evaluate_reports_coverage_per_finder():
    import pyarrow as pa

    from clusterfw.core.evaluation.cli import candidate_coverage

    table = pa.table(
        {
            "score": [1.0, 2.0, 3.0, 4.0],
            "a_covered": [True, True, True, True],
            "b_covered": pa.array([True, False, None, False], pa.bool_()),
        }
    )
    assert candidate_coverage(table) == {"a": 1.0, "b": 0.25}
