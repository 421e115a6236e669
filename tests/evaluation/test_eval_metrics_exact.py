"""Matching and metrics on hand-built catalogues with exactly known answers."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.core.evaluation.matching import Truth, match_to_truth, separation_arcmin
from clusterfw.core.evaluation.metrics import (
    MatchedSample,
    and_grid_search,
    counts_from_mask,
    cutout_confusion,
    evaluate,
    qualifying_halo,
    threshold_curve,
)

AM = 1.0 / 60.0  # one arcmin in degrees (at dec = 0 also in RA)


def _truth() -> Truth:
    #           H0     H1     H2     H3     H4     H5     H6             H7     H8
    ra = [10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.5 + 0.5 * AM, 10.6, 10.6 + 0.6 * AM]
    mass = [5e14, 3e14, 1e14, 4e14, 3e14, 1e14, 2.5e14, 2.2e14, 9e14]
    z = [0.5, 0.5, 0.5, 0.1, 0.6, 0.5, 0.5, 0.5, 0.1]
    return Truth.from_table({"ra": ra, "dec": np.zeros(9), "mvir": mass, "z": z})


def _candidates() -> dict[str, np.ndarray]:
    ra = [
        10.0 + 0.2 * AM,  # c0 -> H0 (TP)
        10.0 - 0.5 * AM,  # c1 -> H0 (duplicate)
        10.1,  # c2 -> H1 (TP)
        10.2,  # c3 -> H2, too light (FP)
        10.3,  # c4 -> H3, too low z (FP)
        11.0,  # c5 -> nothing (FP)
        10.5,  # c6 -> H6: largest within 1' (H5 lighter) (TP)
        10.6,  # c7 -> H8: largest within 1' fails the z cut, although H7 qualifies (FP)
        10.4 + 1.01 * AM,  # c8 -> just outside 1' of H4 (FP)
    ]
    score = [10, 6, 8, 9, 7, 5, 4, 3, 2]
    return {"ra": np.array(ra), "dec": np.zeros(9), "score": np.array(score, dtype=float)}


def test_match_rule_largest_halo_within_radius():
    t, c = _truth(), _candidates()
    m = match_to_truth(c["ra"], c["dec"], t, radius_arcmin=1.0)
    assert m.halo.tolist() == [0, 0, 1, 2, 3, -1, 6, 8, -1]
    assert m.n_within.tolist() == [1, 1, 1, 1, 1, 0, 2, 2, 0]
    assert m.separation_arcmin[1] == pytest.approx(0.5, abs=1e-6)
    # a separation equal to the radius matches
    m2 = match_to_truth(np.array([10.4 + 1.0 * AM]), np.zeros(1), t, radius_arcmin=1.0)
    assert m2.halo.tolist() == [4]


def test_counts_all_candidates_exact():
    t, c = _truth(), _candidates()
    m = match_to_truth(c["ra"], c["dec"], t)
    q = qualifying_halo(m, t.qualifies(2e14, 0.25))
    n_true = int(t.qualifies(2e14, 0.25).sum())
    assert n_true == 5  # H0 H1 H4 H6 H7
    cnt = counts_from_mask(np.ones(9, bool), q, n_true)
    assert (cnt.tp, cnt.fp, cnt.fn) == (3, 6, 2)
    assert cnt.purity == pytest.approx(3 / 9)
    assert cnt.completeness == pytest.approx(3 / 5)
    assert cnt.f1 == pytest.approx(3 / 7)
    ign = counts_from_mask(np.ones(9, bool), q, n_true, duplicates="ignore")
    assert (ign.tp, ign.fp, ign.fn) == (3, 5, 2)
    assert ign.f1 == pytest.approx(6 / 13)


def test_threshold_curve_and_f1_best_exact():
    t, c = _truth(), _candidates()
    ev = evaluate(c, t, mass_min=2e14, z_min=0.25, radius_arcmin=1.0)
    curve = ev.curve
    assert curve.threshold.tolist() == [10, 9, 8, 7, 6, 5, 4, 3, 2]
    assert curve.tp.tolist() == [1, 1, 2, 2, 2, 2, 3, 3, 3]
    assert curve.n_positive.tolist() == list(range(1, 10))
    expected_f1 = [2 * tp / (p + 5) for tp, p in zip(curve.tp, curve.n_positive, strict=True)]
    np.testing.assert_allclose(curve.f1, expected_f1)
    # F1 = 0.5 at thresholds 8 and 4: the higher one is chosen
    assert ev.best_threshold == 8
    assert (ev.best.tp, ev.best.fp, ev.best.fn) == (2, 1, 3)
    assert ev.best.purity == pytest.approx(2 / 3)
    assert ev.best.completeness == pytest.approx(2 / 5)
    assert ev.best.f1 == pytest.approx(0.5)
    at = curve.counts_at(6.5)  # between scores: same as threshold 7
    assert (at.tp, at.fp, at.fn) == (2, 2, 3)
    assert curve.counts_at(100).tp == 0 and curve.counts_at(100).fn == 5
    assert ev.all_candidates.f1 == pytest.approx(3 / 7)


def test_completeness_bins_and_purity_vs_score():
    t, c = _truth(), _candidates()
    ev = evaluate(c, t, threshold=1.0, mass_edges=np.array([1e14, 2e14, 1e15]),
                  z_edges=np.array([0.0, 0.25, 1.0]), score_edges=np.array([0, 5, 11]))
    # z >= 0.25 halos: H0 H1 H2 H4 H5 H6 H7; detected (any candidate matched): H0 H1 H2 H6
    assert ev.completeness_vs_mass.n.tolist() == [2, 5]  # [1e14,2e14): H2 H5; rest: H0 H1 H4 H6 H7
    assert ev.completeness_vs_mass.k.tolist() == [1, 3]
    # mass >= 2e14 halos by z: low z H3 H8 (both detected: H3 by c4, H8 by c7), high z 5 with 3
    assert ev.completeness_vs_z.n.tolist() == [2, 5]
    assert ev.completeness_vs_z.k.tolist() == [2, 3]
    # purity per score bin: [0,5): c6 c7 c8 -> c6 TP; [5,11]: c0..c5 -> c0 c2 TP
    assert ev.purity_vs_score.n.tolist() == [3, 6]
    assert ev.purity_vs_score.k.tolist() == [1, 2]


def test_is_cluster_column_is_evaluated():
    t, c = _truth(), _candidates()
    c = dict(c, is_cluster=np.array([1, 1, 0, 0, 0, 0, 1, 0, 0], bool))
    ev = evaluate(c, t)
    assert (ev.is_cluster.tp, ev.is_cluster.fp, ev.is_cluster.fn) == (2, 1, 3)


def test_nan_scores_are_never_positive():
    t, c = _truth(), _candidates()
    c["score"][0] = np.nan
    ev = evaluate(c, t)
    assert ev.curve.threshold.size == 8
    assert ev.all_candidates.n_positive == 8
    # H0 is now found by c1 (score 6) only
    assert ev.curve.counts_at(6).tp == 2


def test_cutout_confusion_follows_deepsz_assignment():
    truth = Truth.from_table({"ra": [10.05, 10.199], "dec": [0.05, 0.05],
                              "mvir": [3e14, 3e14], "z": [0.5, 0.5]})
    ra = np.array([10.05, 10.25, 10.2005])  # the last lies in cutout 2 but matches B in cutout 1
    dec = np.full(3, 0.05)
    scores = np.array([5.0, 4.0, 3.0])
    m = match_to_truth(ra, dec, truth)
    q = qualifying_halo(m, truth.qualifies())
    out = cutout_confusion(ra, dec, scores, q, truth, truth.qualifies(), 6.0, threshold=3.0,
                           bounds=(10.0, 10.3, 0.0, 0.1))
    assert out["n_cutouts"] == 3
    assert out["at_threshold"]["matrix"] == {"tp": 2, "fp": 1, "fn": 0, "tn": 0}
    out = cutout_confusion(ra, dec, scores, q, truth, truth.qualifies(), 6.0, threshold=4.5,
                           bounds=(10.0, 10.3, 0.0, 0.1))
    assert out["at_threshold"]["matrix"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 1}
    assert out["best_f1"]["f1"] == pytest.approx(0.8)  # threshold 3: 2 TP, 1 FP


def test_pooled_samples_and_and_grid():
    t, c = _truth(), _candidates()
    s1 = MatchedSample.from_catalogue(dict(c, other=c["score"][::-1].copy()), t,
                                      ["score", "other"])
    pooled = MatchedSample.concat([s1, s1])
    assert pooled.n_true == 10
    single = s1.curve("score")
    both = pooled.curve("score")
    np.testing.assert_array_equal(both.tp, 2 * single.tp)
    np.testing.assert_allclose(both.f1, single.f1)
    # AND with the second threshold at its minimum can reproduce the single-score optimum
    th, cnt = and_grid_search(s1, ["score", "other"], n_grid=20)
    assert cnt.f1 >= single.f1.max() - 1e-12


def test_separation():
    assert separation_arcmin(np.array([0.0]), np.array([0.0]), np.array([0.0]),
                             np.array([1.0]))[0] == pytest.approx(60.0)
    assert threshold_curve(np.zeros(0), np.zeros(0, int), 3).best_threshold() == np.inf
