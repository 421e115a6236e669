"""The ``stack`` combiner: a logistic model on reference rank percentiles (issue 14).

Synthetic validation/test samples where the right answer is known, the fallback to the best
single finder, the plain-JSON model against scikit-learn, and ``combine`` on toy finders.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from clusterfw.core.errors import InputError
from clusterfw.core.evaluation.calibration import (
    Calibration,
    CalibrationWarning,
    ReferenceECDF,
    ValidationSet,
    calibrate,
    describe_calibration,
    load_calibration,
    percentiles_for,
)
from clusterfw.core.evaluation.matching import Truth
from clusterfw.core.evaluation.metrics import MatchedSample
from clusterfw.core.evaluation.synthetic import (
    PatchGeometry,
    ToyFinder,
    cnn_like_response,
    forced_scorer,
    mf_like_response,
    synthetic_truth,
)
from clusterfw.plugins.combiners import stack as stack_mod
from clusterfw.plugins.combiners.and_ import AndCombiner
from clusterfw.plugins.combiners.rankprod import RankProductCombiner, rank_product
from clusterfw.plugins.combiners.stack import (
    LogisticModel,
    StackCombiner,
    StackEntry,
    feature_names,
    fit_logistic,
    fit_sklearn,
    stack_features,
)


def synthetic(seed: int, n: int, strengths: dict[str, float], frac: float = 0.3):
    """Candidates with known labels: finder ``f``'s score is ``strengths[f] * y + N(0, 1)``.

    Every positive candidate is its own true cluster (plus 10 % missed clusters).
    """
    rng = np.random.default_rng(seed)
    y = rng.random(n) < frac
    qhalo = np.where(y, np.cumsum(y) - 1, -1)
    scores = {f: a * y + rng.normal(size=n) for f, a in strengths.items()}
    sample = MatchedSample(qhalo=qhalo, n_true=int(1.1 * y.sum()), scores=scores)
    vs = ValidationSet(
        finders=tuple(strengths), sample=sample, tables=(), sources=(f"sky{seed}",), producers=()
    )
    return vs


def reference_of(vs: ValidationSet) -> Calibration:
    """The per-finder part ``clusterfw calibrate`` would make (reference ECDFs, thresholds)."""
    cal = Calibration()
    for f in vs.finders:
        t, _ = vs.best_threshold(vs.scores(f))
        cal.finders[f] = {"threshold": t, "reference": ReferenceECDF.from_scores(vs.scores(f))}
    return cal


def stack_probability(entry: dict, vs: ValidationSet, cal: Calibration) -> np.ndarray:
    """The run-time score of ``stack`` for the candidates of ``vs`` under ``cal``."""
    cal = Calibration(finders=cal.finders, combiners={"stack": {"x": entry}})
    scores = {f: vs.scores(f) for f in vs.finders}
    pct, _ = percentiles_for(scores, cal)
    return StackCombiner().combined_score_of(pct, scores, _with_entry(cal, entry, vs.finders))


def _with_entry(cal: Calibration, entry: dict, finders) -> Calibration:
    from clusterfw.core.evaluation.calibration import finder_set_key

    return Calibration(finders=cal.finders, combiners={"stack": {finder_set_key(finders): entry}})


def test_noise_finder_gets_about_zero_weight():
    vs = synthetic(1, 6000, {"good": 2.0, "noise": 0.0})
    cal = reference_of(vs)
    entry = StackCombiner().calibrate_set(vs, cal)
    # whichever model was kept, the fitted stacked weights are in the entry
    fitted = entry.get("rejected_stacked_model", entry)
    w = dict(zip(fitted["feature_names"], fitted["coefficients"], strict=True))
    pct, _ = percentiles_for({f: vs.scores(f) for f in vs.finders}, cal)
    x = stack_features(
        pct,
        {f: vs.scores(f) for f in vs.finders},
        ["good", "noise"],
        {f: cal.reference(f).floor for f in vs.finders},
    )
    sd = dict(zip(feature_names(["good", "noise"]), x.std(axis=0), strict=True))
    influence = {k: abs(w[k]) * sd[k] for k in w}  # change of log-odds per standard deviation
    good = influence["good:log_p"] + influence["good:log_1mp"]
    noise = influence["noise:log_p"] + influence["noise:log_1mp"]
    assert good > 1.0
    assert noise < 0.05 * good
    assert w["good:uncovered"] == 0.0 and w["noise:uncovered"] == 0.0  # constant: no weight


def test_two_independent_informative_finders_beat_each_single_on_test():
    strengths = {"a": 1.5, "b": 1.5}
    val, test = synthetic(2, 6000, strengths), synthetic(3, 6000, strengths)
    cal = reference_of(val)
    entry = StackCombiner().calibrate_set(val, cal)
    assert entry["model"] == "stacked" and entry["fallback_finder"] is None
    # symmetric finders: nearly equal weights
    w = dict(zip(entry["feature_names"], entry["coefficients"], strict=True))
    assert w["a:log_p"] == pytest.approx(w["b:log_p"], rel=0.25)
    assert (
        entry["validation_f1"]["stacked"]
        > max(entry["validation_f1"]["single:a"], entry["validation_f1"]["single:b"]) + 0.03
    )
    prob = stack_probability(entry, test, cal)
    f1_stack = test.counts(prob >= entry["threshold"]).f1
    f1_single = {f: test.counts(test.scores(f) >= cal.threshold(f)).f1 for f in strengths}
    assert f1_stack > max(f1_single.values()) + 0.03, (f1_stack, f1_single)
    # and it is at least as good as the rank product thresholded on validation
    pct_v, _ = percentiles_for({f: val.scores(f) for f in strengths}, cal)
    t_rp, _ = val.best_threshold(rank_product(pct_v))
    pct_t, _ = percentiles_for({f: test.scores(f) for f in strengths}, cal)
    f1_rp = test.counts(rank_product(pct_t) >= t_rp).f1
    assert f1_stack >= f1_rp - 0.01


def test_never_below_best_single_on_validation():
    """The kept model is never below the best single finder: not in cross-validation (the
    choice) and not in sample (the stacked model's guard)."""
    for seed, strengths in enumerate(
        ({"a": 2.0, "b": 0.0}, {"a": 1.0, "b": 1.0}, {"a": 2.5, "b": 0.5}, {"a": 0.0, "b": 1.5})
    ):
        vs = synthetic(10 + seed, 800, strengths)
        entry = StackCombiner().calibrate_set(vs, reference_of(vs))
        cv = entry["cv_f1"]
        best_cv = max(cv[f"single:{f}"] for f in strengths)
        fallback = entry["validation_f1"]["fallback"]
        if entry["model"] == "stacked":
            assert cv["stacked"] > best_cv and entry["metrics"]["f1"] >= fallback
        else:
            best = max(strengths, key=lambda f: cv[f"single:{f}"])
            assert entry["fallback_finder"] == best
            assert entry["metrics"]["f1"] == pytest.approx(fallback, abs=1e-12)
            assert (
                "stacked" not in cv
                or cv["stacked"] <= best_cv
                or (entry["validation_f1"]["stacked"] < fallback)
            )


def test_fallback_when_stacking_hurts(monkeypatch):
    vs = synthetic(4, 3000, {"good": 2.0, "noise": 0.0})
    cal = reference_of(vs)
    real_fit = stack_mod.fit_logistic

    def bad_fit(x, y, names, **kw):
        model, info = real_fit(x, y, names, **kw)
        if len(names) == 1:  # the fallback's own one-feature fit stays real
            return model, info
        coef = np.zeros(len(names))
        coef[names.index("noise:log_p")] = 3.0  # a model that trusts the noise finder only
        return LogisticModel(tuple(names), coef, 0.0), info

    monkeypatch.setattr(stack_mod, "fit_logistic", bad_fit)
    entry = StackCombiner().calibrate_set(vs, cal)
    assert entry["model"] == "fallback" and entry["fallback_finder"] == "good"
    # the folds refit the stacked model for real (fit_logistic_c): its CV F1 is about good's, so
    # whichever check rejects it, the in-sample guard would (the stored model trusts noise)
    assert entry["validation_f1"]["stacked"] < entry["validation_f1"]["fallback"] - 0.2
    assert entry["note"].startswith("fallback: stacked ") and "good's" in entry["note"]
    w = dict(zip(entry["feature_names"], entry["coefficients"], strict=True))
    assert w["good:log_p"] > 0 and w["good:log_1mp"] == -w["good:log_p"]
    assert w["noise:log_p"] == w["noise:log_1mp"] == w["noise:uncovered"] == 0.0
    rejected = entry["rejected_stacked_model"]
    assert rejected["coefficients"][rejected["feature_names"].index("noise:log_p")] == 3.0
    # the fallback decides exactly as the good finder at its own F1-best threshold
    prob = stack_probability(entry, vs, cal)
    single_t, single_counts = vs.best_threshold(vs.scores("good"))
    np.testing.assert_array_equal(prob >= entry["threshold"], vs.scores("good") >= single_t)
    assert entry["metrics"]["f1"] == pytest.approx(single_counts.f1, abs=1e-12)
    assert entry["validation_f1"]["single:good"] == pytest.approx(single_counts.f1, abs=1e-12)


def test_fallback_is_the_best_own_catalogue_out_of_sample_and_keeps_only_own_detections(
    monkeypatch,
):
    """On the merged candidates (own detections and forced scores) ``a`` looks best, but
    ``b``'s own detections (its own catalogue, what the CV scores for a single finder) are
    better: the fallback is ``b``, and only ``b``'s own detections can pass."""
    import pyarrow as pa

    vs = synthetic(8, 3000, {"a": 2.0, "b": 1.0})
    rng = np.random.default_rng(9)
    # b detected every true cluster itself and a tenth of the rest: its forced scores at a's
    # other candidates only add noise peaks
    det_b = (vs.sample.qhalo >= 0) | (rng.random(len(vs.sample)) < 0.1)
    table = pa.table(
        {
            "a_ra": pa.array(np.ones(len(vs.sample)), pa.float64()),
            "b_ra": pa.array(np.ones(len(vs.sample)), pa.float64(), mask=~det_b),
        }
    )
    vs = ValidationSet(vs.finders, vs.sample, (table,), vs.sources, ("stack",))
    cal = reference_of(vs)
    real_fit = stack_mod.fit_logistic

    def bad_fit(x, y, names, **kw):
        model, info = real_fit(x, y, names, **kw)
        if len(names) == 1:
            return model, info
        return LogisticModel(tuple(names), np.zeros(len(names)), 0.0), info

    monkeypatch.setattr(stack_mod, "fit_logistic", bad_fit)
    entry = StackCombiner().calibrate_set(vs, cal)
    assert entry["validation_f1"]["single:a"] > entry["validation_f1"]["single:b"]
    cv = entry["cv_f1"]
    assert cv["single:b"] > cv["single:a"] + 0.05, cv
    assert entry["cv"]["scheme"] == "stratified-k-fold" and entry["cv"]["folds"] == 5
    assert entry["model"] == "fallback" and entry["fallback_finder"] == "b"
    w = dict(zip(entry["feature_names"], entry["coefficients"], strict=True))
    assert w["b:forced"] == -stack_mod.FORCED_PENALTY and w["a:forced"] == 0.0
    assert entry["fit"]["own_detections_only"] is True
    scores = {f: vs.scores(f) for f in vs.finders}
    pct, _ = percentiles_for(scores, cal)
    prob = StackCombiner().combined_score_of(
        pct, scores, _with_entry(cal, entry, vs.finders), detected={"a": np.ones_like(det_b),
                                                                     "b": det_b},
    )  # fmt: skip
    passed = prob >= entry["threshold"]
    assert passed.any() and not passed[~det_b].any()
    assert entry["validation_f1"]["fallback"] == pytest.approx(vs.counts(passed).f1, abs=1e-12)


def test_a_model_stored_with_three_features_per_finder_still_runs():
    names = feature_names(["a", "b"], stack_mod.LEGACY_FEATURE_KINDS)
    coef = [1.0, -1.0, 0.5, 2.0, -2.0, 0.0]
    entry = {"finders": ["a", "b"], "clip": {"a": 0.01, "b": 0.01}, "threshold": 0.5,
             "feature_names": names, "coefficients": coef, "intercept": 0.25}  # fmt: skip
    parsed = StackEntry.from_section(entry, "old.json", "a+b")
    assert parsed.feature_kinds == stack_mod.LEGACY_FEATURE_KINDS
    pct = {"a": np.array([0.9, 0.2]), "b": np.array([0.5, 0.99])}
    scores = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, np.nan])}
    cal = Calibration(combiners={"stack": {"a+b": entry}})
    got = StackCombiner().combined_score_of(pct, scores, cal)
    b_pct = np.array([0.5, 0.01])  # uncovered: the floor
    z = (np.log(pct["a"]) - np.log1p(-pct["a"]) + 2 * (np.log(b_pct) - np.log1p(-b_pct))
         + 0.5 * 0 + 0.25)  # fmt: skip
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=1e-12)


def test_runtime_sigmoid_equals_sklearn_and_json_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    x = np.c_[rng.normal(2, 3, 800), rng.normal(-1, 0.1, 800), rng.random(800) < 0.2]
    y = x[:, 0] + 10 * x[:, 1] + rng.normal(size=800) > -6
    names = ["f:log_p", "f:log_1mp", "f:uncovered"]
    est, mean, scale = fit_sklearn(x, y)
    model, info = fit_logistic(x, y, names)
    want = est.predict_proba((x - mean) / scale)[:, 1]
    np.testing.assert_allclose(model.predict(x), want, rtol=0, atol=1e-12)
    assert info["C"] in stack_mod.CS and info["folds"] == 5 and info["class_weight"] == "none"
    # plain JSON, through a calibration file
    cal = Calibration(
        combiners={
            "stack": {
                "f": {"finders": ["f"], "clip": {"f": 0.01}, "threshold": 0.5, **model.to_dict()}
            }
        }
    )
    path = cal.save(tmp_path / "cal.json")
    text = path.read_text()
    assert "pickle" not in text and json.loads(text)["combiners"]["stack"]["f"]["intercept"]
    back = StackEntry.from_section(
        load_calibration(path).combiner_entry("stack", ["f"]), str(path), "f"
    )
    np.testing.assert_array_equal(back.model.coefficients, model.coefficients)
    assert back.model.intercept == model.intercept
    np.testing.assert_allclose(back.model.predict(x), want, rtol=0, atol=1e-12)


def test_uncovered_finder_is_a_feature():
    vs = synthetic(6, 4000, {"a": 1.5, "b": 1.5})
    # finder b has no data for 30 % of the candidates (NaN forced scores), independent of y
    rng = np.random.default_rng(7)
    hole = rng.random(len(vs.sample)) < 0.3
    b = np.where(hole, np.nan, vs.scores("b"))
    sample = MatchedSample(
        qhalo=vs.sample.qhalo, n_true=vs.sample.n_true, scores={"a": vs.scores("a"), "b": b}
    )
    vs = ValidationSet(("a", "b"), sample, (), ("s",), ())
    cal = reference_of(vs)
    entry = StackCombiner().calibrate_set(vs, cal)
    assert entry["model"] == "stacked"
    w = dict(zip(entry["feature_names"], entry["coefficients"], strict=True))
    # not covered is not evidence against a cluster: the indicator cancels b's floor percentile
    floor = cal.reference("b").floor
    covered_median = np.log(0.5) * w["b:log_p"] + np.log(0.5) * w["b:log_1mp"]
    uncovered = np.log(floor) * w["b:log_p"] + np.log1p(-floor) * w["b:log_1mp"] + w["b:uncovered"]
    assert abs(uncovered - covered_median) < 1.0, (uncovered, covered_median)
    # the features of an uncovered candidate: floor percentile and indicator 1
    pct, _ = percentiles_for({"a": vs.scores("a"), "b": b}, cal)
    x = stack_features(
        pct, {"a": vs.scores("a"), "b": b}, ["a", "b"], {f: cal.reference(f).floor for f in "ab"}
    )
    col = {n: i for i, n in enumerate(feature_names(["a", "b"]))}
    np.testing.assert_array_equal(x[hole, col["b:uncovered"]], 1.0)
    np.testing.assert_allclose(x[hole, col["b:log_p"]], np.log(floor))
    np.testing.assert_array_equal(x[~hole, col["b:uncovered"]], 0.0)
    np.testing.assert_array_equal(x[:, col["b:forced"]], 0.0)  # no detection facts: 0


def test_malformed_model_is_one_line_input_error():
    cal = Calibration(
        source="cal.json",
        finders={},
        combiners={
            "stack": {
                "a+b": {
                    "finders": ["a", "b"],
                    "clip": {"a": 0.1, "b": 0.1},
                    "feature_names": ["a:log_p"],
                    "coefficients": [1.0],
                    "intercept": 0.0,
                }
            }
        },
    )
    pct = {"a": np.array([0.5]), "b": np.array([0.5])}
    with pytest.raises(
        InputError,
        match=r"^cal\.json: malformed 'stack' model for a\+b: "
        r"feature_names do not match finders \['a', 'b'\]$",
    ):
        StackCombiner().combined_score_of(pct, pct, cal)


# --- combine() on the toy finders of the rankprod/and tests ---------------------------------


class ToySky:
    """Truth plus the toy finders 'mf' (MF-like) and 'cnn' (CNN-like) on a 2x2 deg patch."""

    def __init__(self, seed: int) -> None:
        geom = PatchGeometry(ra0=10.0, dec0=-1.0, size_deg=2.0, pix_arcmin=0.5)
        cols = synthetic_truth(geom, seed)
        self.truth = Truth.from_table(cols)
        finders = {
            "mf": ToyFinder("mf", geom, cols, mf_like_response, seed * 10 + 1),
            "cnn": ToyFinder("cnn", geom, cols, cnn_like_response, seed * 10 + 2),
        }
        self.tables = {n: f.find() for n, f in finders.items()}
        self.forced = forced_scorer(finders)


@pytest.fixture(scope="module")
def toy():
    return ToySky(1), ToySky(2)


def _combine(sky, combiner, names, cal):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return combiner.combine({n: sky.tables[n] for n in names}, sky.forced, cal)


def test_combine_with_and_without_a_model(toy):
    val, test = toy
    names = ["mf", "cnn"]
    # no model: the equal-weight logistic form of the rank product, is_cluster null, a warning
    with pytest.warns(
        CalibrationWarning,
        match="stack: calibration .* has no model for finders cnn\\+mf: score is the equal-weight",
    ):
        plain = StackCombiner().combine(
            {n: val.tables[n] for n in names}, val.forced, Calibration(source="empty")
        )
    # in-sample percentiles (no reference) clipped to [c, 1 - c], c = 0.5 / N
    c = 0.5 / plain.num_rows
    rp = np.prod(
        [
            np.clip(plain.column(f"{n}_percentile").to_numpy().astype(float), c, 1 - c)
            for n in names
        ],
        axis=0,
    )
    np.testing.assert_allclose(plain.column("score").to_numpy(), rp / (1 + rp), rtol=1e-5)
    assert plain.column("is_cluster").null_count == plain.num_rows
    assert set(plain.column("score_kind").to_pylist()) == {"probability"}

    cal = calibrate(
        [(plain, val.truth)], combiners=[StackCombiner(), RankProductCombiner(), AndCombiner()]
    )
    entry = cal.combiner_entry("stack", names)
    out = _combine(test, StackCombiner(), names, cal)
    score = out.column("score").to_numpy()
    assert np.all((score > 0) & (score < 1)) and np.all(np.diff(score) <= 0)
    decided = out.column("is_cluster").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(decided, score >= np.float32(entry["threshold"]) - 1e-7)
    meta = json.loads(out.schema.metadata[b"clusterfw.combiner"])
    assert meta["model"] == entry["model"] and meta["threshold"] == entry["threshold"]
    assert set(meta["weights"]) == set(feature_names(["cnn", "mf"]))
    # finder order does not matter
    swapped = _combine(test, StackCombiner(), ["cnn", "mf"], cal)
    np.testing.assert_allclose(np.sort(swapped.column("score").to_numpy()), np.sort(score))
    lines = describe_calibration(cal)
    assert any(ln.startswith(f"stack[cnn+mf] model {entry['model']} threshold ") for ln in lines)
    assert any(ln.split()[0] == "mf:log_p" for ln in lines)


def test_a_finder_without_any_detection(toy):
    """A finder that detects nothing at all (forced scores only) is combined, not a crash."""
    val, _ = toy
    empty = val.tables["cnn"].slice(0, 0)
    for combiner in (StackCombiner(), RankProductCombiner()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            out = combiner.combine({"mf": val.tables["mf"], "cnn": empty}, val.forced, None)
        assert out.num_rows == val.tables["mf"].num_rows
        assert out.column("cnn_ra").null_count == out.num_rows
        assert out.column("cnn_score").null_count == 0  # forced everywhere
