"""``stack``'s cross-validated choice between its stacked model and the single-finder fallback
(:mod:`clusterfw.plugins.combiners.stack_cv`): folds grouped by validation catalogue, the
out-of-fold F1 against a by-hand leave-one-sky-out, a noise finder (the fallback must win) and
two finders with independent signal (the stack must win, on validation and on test skies)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clusterfw.core.evaluation.calibration import (
    Calibration,
    ReferenceECDF,
    ValidationSet,
    percentiles_for,
)
from clusterfw.core.evaluation.metrics import MatchedSample, threshold_curve
from clusterfw.plugins.combiners.stack import StackCombiner
from clusterfw.plugins.combiners.stack_cv import RULE, make_folds


def skies(seed: int, n_skies: int, n: int, strengths: dict[str, float], frac: float = 0.3):
    """``n_skies`` validation catalogues of ``n`` candidates: finder ``f``'s score is
    ``strengths[f] * y + N(0, 1)``; each sky has 10 % more true clusters than matched ones."""
    rng = np.random.default_rng(seed)
    samples, tables = [], []
    for _ in range(n_skies):
        y = rng.random(n) < frac
        qhalo = np.where(y, np.cumsum(y) - 1, -1)
        scores = {f: a * y + rng.normal(size=n) for f, a in strengths.items()}
        samples.append(MatchedSample(qhalo=qhalo, n_true=round(1.1 * y.sum()), scores=scores))
        tables.append(pa.table({"row": np.arange(n)}))
    return ValidationSet(
        finders=tuple(strengths),
        sample=MatchedSample.concat(samples),
        tables=tuple(tables),
        sources=tuple(f"sky{k}.parquet" for k in range(n_skies)),
        producers=("stack",) * n_skies,
        n_true_per_table=tuple(s.n_true for s in samples),
    )


def reference_of(vs: ValidationSet) -> Calibration:
    """Per-finder thresholds and reference ECDFs, as ``clusterfw calibrate`` makes them."""
    cal = Calibration()
    for f in vs.finders:
        t, counts = vs.best_threshold(vs.scores(f))
        cal.finders[f] = {
            "threshold": t,
            "metrics": counts.to_dict(),
            "reference": ReferenceECDF.from_scores(vs.scores(f)),
        }
    return cal


def test_folds_leave_one_catalogue_out_from_three_catalogues_else_stratified():
    vs = skies(1, 3, 50, {"a": 1.0})
    y = vs.sample.qhalo >= 0
    folds = make_folds(vs, y)
    assert folds.scheme == "leave-one-catalogue-out" and folds.n_folds == 3
    np.testing.assert_array_equal(folds.fold, np.repeat([0, 1, 2], 50))
    np.testing.assert_array_equal(folds.n_true_out, vs.n_true_per_table)

    two = skies(2, 2, 200, {"a": 1.0})
    y = two.sample.qhalo >= 0
    folds = make_folds(two, y)
    assert folds.scheme == "stratified-k-fold" and folds.n_folds == 5
    assert folds.n_true_out is None
    per_fold = np.bincount(folds.fold[y], minlength=5)
    assert per_fold.max() - per_fold.min() <= 1  # positives spread evenly over the folds
    assert sorted(np.bincount(folds.fold)) == [80] * 5


def test_single_finder_cv_f1_is_leave_one_sky_out_by_hand():
    vs = skies(3, 4, 150, {"good": 1.5, "noise": 0.0})
    entry = StackCombiner().calibrate_set(vs, reference_of(vs))
    assert entry["cv"]["scheme"] == "leave-one-catalogue-out" and entry["cv"]["folds"] == 4
    assert entry["cv"]["rule"] == RULE
    q, s = vs.sample.qhalo, vs.scores("good")
    sky = np.repeat(np.arange(4), 150)
    positive = np.zeros(q.size, dtype=bool)
    for k in range(4):
        train = sky != k
        n_true = vs.sample.n_true - vs.n_true_per_table[k]
        t = threshold_curve(s[train], q[train], n_true).best_threshold()
        positive[~train] = s[~train] >= t
    by_hand = vs.counts(positive)
    # the CV scores each finder by its percentile's logit: the same order as its score
    assert entry["cv_f1"]["single:good"] == pytest.approx(by_hand.f1, abs=1e-12)
    assert entry["cv"]["counts"]["single:good"]["tp"] == by_hand.tp
    assert entry["cv"]["counts"]["single:good"]["n_true"] == vs.sample.n_true


@pytest.mark.parametrize("seed", [5, 6])
def test_a_noise_second_finder_gives_the_fallback(seed):
    """In sample the stacked model (more freedom) beats the good finder alone, so comparing
    in-sample F1s would keep it; out of sample it does not, and the fallback is chosen."""
    vs = skies(100 + seed, 3, 100, {"good": 1.5, "noise": 0.0})
    entry = StackCombiner().calibrate_set(vs, reference_of(vs))
    vf1, cv = entry["validation_f1"], entry["cv_f1"]
    assert vf1["stacked"] > vf1["single:good"]  # the optimistic in-sample comparison
    assert cv["stacked"] <= cv["single:good"], cv
    assert entry["model"] == "fallback" and entry["fallback_finder"] == "good"
    assert entry["note"].startswith("fallback: stacked CV F1 ")
    assert entry["rejected_stacked_model"]["feature_names"][0] == "good:log_p"
    w = dict(zip(entry["feature_names"], entry["coefficients"], strict=True))
    assert w["noise:log_p"] == w["noise:log_1mp"] == 0.0


@pytest.mark.slow
def test_a_noise_second_finder_gives_the_fallback_on_every_seed():
    for seed in range(8):
        vs = skies(100 + seed, 3, 100, {"good": 1.5, "noise": 0.0})
        entry = StackCombiner().calibrate_set(vs, reference_of(vs))
        assert entry["model"] == "fallback" and entry["fallback_finder"] == "good", seed


def test_independent_signal_keeps_the_stack_and_it_beats_each_single_on_test():
    strengths = {"a": 1.5, "b": 1.5}
    val, test = skies(21, 3, 500, strengths), skies(22, 3, 500, strengths)
    cal = reference_of(val)
    entry = StackCombiner().calibrate_set(val, cal)
    cv = entry["cv_f1"]
    assert entry["model"] == "stacked", entry["note"]
    assert entry["note"].startswith("stacked: CV F1 ")
    assert cv["stacked"] > max(cv["single:a"], cv["single:b"]) + 0.05, cv
    # on independent test skies, with the validation thresholds
    combined = Calibration(finders=cal.finders, combiners={"stack": {"a+b": entry}})
    scores = {f: test.scores(f) for f in strengths}
    pct, _ = percentiles_for(scores, combined)
    prob = StackCombiner().combined_score_of(pct, scores, combined)
    f1_stack = test.counts(prob >= entry["threshold"]).f1
    f1_single = {f: test.counts(test.scores(f) >= cal.threshold(f)).f1 for f in strengths}
    assert f1_stack > max(f1_single.values()) + 0.05, (f1_stack, f1_single)


def test_info_prints_the_cross_validated_f1s_and_the_rule():
    vs = skies(31, 3, 120, {"a": 1.5, "b": 1.5})
    entry = StackCombiner().calibrate_set(vs, reference_of(vs))
    lines = StackCombiner.describe_section({"a+b": entry})
    cv = entry["cv_f1"]
    want = (
        "  cross-validated F1 (leave-one-catalogue-out, 3 folds): "
        f"stacked {cv['stacked']:.3f}, single:a {cv['single:a']:.3f}, single:b {cv['single:b']:.3f}"
    )
    assert want in lines
    assert f"  rule: {RULE}" in lines
