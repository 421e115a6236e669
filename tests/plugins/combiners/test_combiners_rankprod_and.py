"""The rankprod and and combiners on toy finders (acceptance tests of issue 5)."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest

from clusterfw.core.evaluation.calibration import (
    Calibration,
    CalibrationWarning,
    ReferenceECDF,
    calibrate,
)
from clusterfw.core.evaluation.matching import Truth
from clusterfw.core.evaluation.metrics import evaluate
from clusterfw.core.evaluation.synthetic import (
    PatchGeometry,
    ToyFinder,
    cnn_like_response,
    forced_scorer,
    mf_like_response,
    no_response,
    synthetic_truth,
)
from clusterfw.core.schema import candidate_table, validate_candidates
from clusterfw.plugins.combiners.and_ import AndCombiner
from clusterfw.plugins.combiners.rankprod import RankProductCombiner

GEOM = PatchGeometry(ra0=10.0, dec0=-1.0, size_deg=2.0, pix_arcmin=0.5)


class Sky:
    """A toy sky: truth plus toy finders 'mf' (MF-like), 'cnn' (CNN-like), 'rnd' (noise)."""

    def __init__(self, seed: int) -> None:
        self.truth_cols = synthetic_truth(GEOM, seed)
        self.truth = Truth.from_table(self.truth_cols)
        self.finders = {
            "mf": ToyFinder("mf", GEOM, self.truth_cols, mf_like_response, seed * 10 + 1),
            "cnn": ToyFinder("cnn", GEOM, self.truth_cols, cnn_like_response, seed * 10 + 2),
            "rnd": ToyFinder("rnd", GEOM, self.truth_cols, no_response, seed * 10 + 3),
        }
        self.tables = {n: f.find() for n, f in self.finders.items()}
        self.forced = forced_scorer(self.finders)

    def combine(self, combiner, names, calibration, tables=None):
        tables = tables or {n: self.tables[n] for n in names}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            return combiner.combine(tables, self.forced, calibration)


@pytest.fixture(scope="module")
def val() -> Sky:
    return Sky(1)


@pytest.fixture(scope="module")
def test_sky() -> Sky:
    return Sky(2)


def relabel(table: pa.Table, name: str) -> pa.Table:
    """The same detections under another finder name."""
    c = {k: table.column(k).to_numpy(zero_copy_only=False) for k in ("ra", "dec", "score")}
    ids = [f"{name}-{i}" for i in range(table.num_rows)]
    return candidate_table(
        finder=name,
        score_kind="snr",
        ra=c["ra"],
        dec=c["dec"],
        score=c["score"],
        candidate_id=np.array(ids, dtype=object),
    )


def _calibrate(sky: Sky, names: list[str], extra_single=()):
    comb = sky.combine(RankProductCombiner(), names, None)
    inputs = [(sky.tables[n], sky.truth) for n in extra_single] + [(comb, sky.truth)]
    return calibrate(inputs)


def _f1_of_decisions(table: pa.Table, truth: Truth) -> float:
    return evaluate(table, truth).is_cluster.f1


def test_output_schema_positions_and_forced_scores(val):
    cal = _calibrate(val, ["mf", "cnn"])
    out = val.combine(RankProductCombiner(), ["mf", "cnn"], cal)
    validate_candidates(out, prefixes=("rankprod", "mf", "cnn"))
    for col in (
        "mf_score",
        "mf_ra",
        "mf_dec",
        "cnn_score",
        "cnn_ra",
        "cnn_dec",
        "mf_candidate_id",
        "mf_percentile",
        "rankprod_n_detected",
        "is_cluster",
    ):
        assert col in out.column_names
    assert set(out.column("finder").to_pylist()) == {"rankprod"}
    assert set(out.column("score_kind").to_pylist()) == {"rank_product"}
    n_det = out.column("rankprod_n_detected").to_numpy()
    mf_det = out.column("mf_ra").is_valid().to_numpy(zero_copy_only=False)
    cnn_det = out.column("cnn_ra").is_valid().to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(n_det, mf_det.astype(int) + cnn_det.astype(int))
    assert (n_det == 1).any() and (n_det == 2).any()
    # every candidate has both scores (forced where not detected); forced scores match score_at
    assert out.column("mf_score").null_count == 0 and out.column("cnn_score").null_count == 0
    only_cnn = ~mf_det & cnn_det
    ra, dec = out.column("ra").to_numpy()[only_cnn], out.column("dec").to_numpy()[only_cnn]
    np.testing.assert_allclose(
        out.column("mf_score").to_numpy()[only_cnn], val.finders["mf"].score_at(ra, dec), rtol=1e-6
    )
    # each finder keeps its own reported position
    np.testing.assert_allclose(out.column("cnn_ra").to_numpy(zero_copy_only=False)[only_cnn], ra)
    # the score is the product of the stored percentiles, sorted decreasing
    p = out.column("mf_percentile").to_numpy() * out.column("cnn_percentile").to_numpy()
    np.testing.assert_allclose(out.column("score").to_numpy(), p, rtol=1e-5)
    assert np.all(np.diff(out.column("score").to_numpy()) <= 0)
    # the number of merged candidates: union of detections minus cross-matched pairs
    assert out.num_rows == val.tables["mf"].num_rows + val.tables["cnn"].num_rows - np.sum(
        n_det == 2
    )
    assert out.column("is_cluster").null_count == 0


def test_without_forced_scoring_missing_scores_are_null(val):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        out = RankProductCombiner().combine({n: val.tables[n] for n in ("mf", "cnn")}, None, None)
    mf_det = out.column("mf_ra").is_valid().to_numpy(zero_copy_only=False)
    assert out.column("mf_score").null_count == np.sum(~mf_det)
    meta = out.schema.metadata[b"clusterfw.combiner"].decode()
    assert '"forced_scoring": false' in meta and "in-sample" in meta


def test_rankprod_with_itself_changes_nothing(val, test_sky):
    mf2_val = relabel(val.tables["mf"], "mf2")
    tabs = {"mf": val.tables["mf"], "mf2": mf2_val}
    comb = val.combine(RankProductCombiner(), None, None, tables=tabs)
    cal = calibrate([(val.tables["mf"], val.truth), (comb, val.truth)])
    tabs_t = {"mf": test_sky.tables["mf"], "mf2": relabel(test_sky.tables["mf"], "mf2")}
    # the forced scorer is never needed: every detection is matched by its twin
    out = RankProductCombiner().combine(tabs_t, None, cal)
    assert out.num_rows == test_sky.tables["mf"].num_rows
    assert (out.column("rankprod_n_detected").to_numpy() == 2).all()
    # same ranking as mf alone: the combined score is a non-decreasing function of mf's score
    order = np.argsort(out.column("mf_score").to_numpy(), kind="stable")
    assert np.all(np.diff(out.column("score").to_numpy()[order]) >= 0)
    # same decisions as mf alone at its calibrated threshold
    decided = out.column("is_cluster").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(decided, out.column("mf_score").to_numpy() >= cal.threshold("mf"))
    # AND of a finder with itself: the same decisions too
    out_and = AndCombiner().combine(tabs_t, None, cal)
    single = evaluate(test_sky.tables["mf"], test_sky.truth, threshold=cal.threshold("mf"))
    assert evaluate(out_and, test_sky.truth).is_cluster == single.at_threshold
    assert evaluate(out, test_sky.truth).is_cluster == single.at_threshold


def test_random_finder_does_not_help(val, test_sky):
    cal = _calibrate(val, ["mf", "rnd"], extra_single=["mf"])
    single = evaluate(test_sky.tables["mf"], test_sky.truth, threshold=cal.threshold("mf"))
    f1_mf = single.at_threshold.f1
    f1_prod = _f1_of_decisions(
        test_sky.combine(RankProductCombiner(), ["mf", "rnd"], cal), test_sky.truth
    )
    f1_and = _f1_of_decisions(test_sky.combine(AndCombiner(), ["mf", "rnd"], cal), test_sky.truth)
    assert f1_prod < f1_mf - 0.02  # a random factor scrambles the ranking
    assert f1_and <= f1_mf + 0.01  # the grid search learns to (nearly) ignore it


def test_complementary_finders_help(val, test_sky):
    cal = _calibrate(val, ["mf", "cnn"], extra_single=["mf", "cnn"])
    f1 = {
        n: evaluate(test_sky.tables[n], test_sky.truth, threshold=cal.threshold(n)).at_threshold.f1
        for n in ("mf", "cnn")
    }
    f1_prod = _f1_of_decisions(
        test_sky.combine(RankProductCombiner(), ["mf", "cnn"], cal), test_sky.truth
    )
    f1_and = _f1_of_decisions(test_sky.combine(AndCombiner(), ["mf", "cnn"], cal), test_sky.truth)
    assert f1_prod > max(f1.values()) + 0.01
    assert f1_and > max(f1.values()) + 0.01


def test_and_with_one_threshold_at_minimum_is_the_single_finder(val, test_sky):
    cal = _calibrate(val, ["mf", "cnn"], extra_single=["mf"])
    t_mf = cal.threshold("mf")
    cal.combiners["and"] = {"cnn+mf": {"thresholds": {"mf": t_mf, "cnn": -np.inf}}}
    out = test_sky.combine(AndCombiner(), ["mf", "cnn"], cal)
    positive = out.column("is_cluster").to_numpy(zero_copy_only=False)
    mf_score = out.column("mf_score").to_numpy()
    # the decision is exactly "mf passes its threshold" on every merged candidate ...
    np.testing.assert_array_equal(positive, mf_score >= t_mf)
    # ... so on mf's own detections it is mf's decision
    ids = out.column("mf_candidate_id").to_pylist()
    got = {i for i, p in zip(ids, positive, strict=True) if p and i is not None}
    mf = test_sky.tables["mf"]
    want = {
        i
        for i, s in zip(
            mf.column("candidate_id").to_pylist(), mf.column("score").to_numpy(), strict=True
        )
        if s >= t_mf
    }
    assert got == want
    # cnn-only candidates mf scores above its threshold (flank peaks of bright clusters, more
    # than the cross-match radius from mf's peak) are the only extra positives: a few percent
    extra = int(np.sum(positive & np.array([i is None for i in ids])))
    assert extra <= 0.1 * len(want)
    single = evaluate(mf, test_sky.truth, threshold=t_mf).at_threshold
    combo = evaluate(out, test_sky.truth).is_cluster
    assert combo.tp >= single.tp and combo.n_positive == single.n_positive + extra
    assert abs(combo.f1 - single.f1) <= 0.03


def test_and_exact_reduction_hand_built():
    a = candidate_table(
        finder="a", score_kind="snr", ra=[10.0, 10.1, 10.2], dec=[0, 0, 0], score=[5.0, 3.0, 7.0]
    )
    b = candidate_table(finder="b", score_kind="snr", ra=[10.1, 10.3], dec=[0, 0], score=[0.9, 0.2])
    forced = {
        "a": lambda ra, dec: np.full(ra.size, 1.0),
        "b": lambda ra, dec: np.full(ra.size, 0.1),
    }
    cal = Calibration(combiners={"and": {"a+b": {"thresholds": {"a": 4.0, "b": -np.inf}}}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        out = AndCombiner().combine({"a": a, "b": b}, lambda n, r, d: forced[n](r, d), cal)
    got = dict(
        zip(
            out.column("a_candidate_id").to_pylist(),
            out.column("is_cluster").to_pylist(),
            strict=True,
        )
    )
    assert got == {"a-t-1-00000": True, "a-t-1-00001": False, "a-t-1-00002": True, None: False}
    assert out.num_rows == 4  # b's second detection is its own candidate (a forced = 1.0 < 4)


def test_rank_percentiles_stable_one_patch_or_four(val, test_sky):
    cal = _calibrate(val, ["mf", "cnn"])
    names = ["mf", "cnn"]
    whole = test_sky.combine(RankProductCombiner(), names, cal)
    r0, r1, d0, d1 = GEOM.bounds()
    rm, dm = 0.5 * (r0 + r1), 0.5 * (d0 + d1)
    quads = [(r0, rm, d0, dm), (rm, r1, d0, dm), (r0, rm, dm, d1), (rm, r1, dm, d1)]
    parts, parts_insample = [], []
    for q in quads:
        tabs = {n: test_sky.finders[n].find(bounds=q) for n in names}
        parts.append(test_sky.combine(RankProductCombiner(), names, cal, tables=tabs))
        parts_insample.append(
            test_sky.combine(RankProductCombiner(), names, Calibration(source="empty"), tables=tabs)
        )

    def by_key(t: pa.Table, col="score") -> dict:
        keys = zip(
            t.column("mf_candidate_id").to_pylist(),
            t.column("cnn_candidate_id").to_pylist(),
            strict=True,
        )
        far = (np.abs(t.column("ra").to_numpy() - rm) > 3 / 60) & (
            np.abs(t.column("dec").to_numpy() - dm) > 3 / 60
        )
        return {k: v for k, v, f in zip(keys, t.column(col).to_pylist(), far, strict=True) if f}

    ref = by_key(whole)
    split = {}
    for p in parts:
        split.update(by_key(p))
    assert len(ref) > 200 and split.keys() == ref.keys()
    assert all(split[k] == ref[k] for k in ref)  # bit-identical combined scores
    ref_dec = by_key(whole, "is_cluster")
    split_dec = {}
    for p in parts:
        split_dec.update(by_key(p, "is_cluster"))
    assert split_dec == ref_dec
    # without reference distributions (percentiles within each table) they would differ
    insample = {}
    for p in parts_insample:
        insample.update(by_key(p))
    assert sum(insample[k] != ref[k] for k in ref) > 0.5 * len(ref)


def test_registered_through_plugin_manager():
    from clusterfw.core.plugins import Registry, get_plugin_manager
    from clusterfw.plugins.combiners import and_, rankprod

    reg = Registry(get_plugin_manager(load_entrypoints=False, extra_plugins=[rankprod, and_]))
    assert reg.get("combiner", "rankprod") is RankProductCombiner
    assert reg.get("combiner", "and") is AndCombiner
    assert RankProductCombiner(options={"radius_arcmin": 2.0}).options.radius_arcmin == 2.0


def test_reference_from_calibration_is_used(val):
    ref = ReferenceECDF.from_scores(np.linspace(3, 30, 1000))
    cal = Calibration(finders={"mf": {"reference": ref}, "cnn": {"reference": ref}})
    out = val.combine(RankProductCombiner(), ["mf", "cnn"], cal)
    np.testing.assert_allclose(
        out.column("mf_percentile").to_numpy(),
        ref.percentile(out.column("mf_score").to_numpy()),
        rtol=1e-4,
    )
    assert out.column("is_cluster").null_count == out.num_rows  # no threshold: null
