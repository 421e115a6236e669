"""Reference ECDFs and calibration files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterfw.core.errors import InputError
from clusterfw.core.evaluation.calibration import (
    Calibration,
    ReferenceECDF,
    default_calibration,
    in_sample_percentile,
    load_calibration,
    percentile,
)
from clusterfw.plugins.combiners.and_ import AndCombiner, and_thresholds
from clusterfw.plugins.combiners.rankprod import RankProductCombiner


def test_reference_is_exact_ecdf_for_small_samples():
    s = np.array([1.0, 2.0, 2.0, 5.0, np.nan])
    ref = ReferenceECDF.from_scores(s)
    assert ref.n == 4
    np.testing.assert_allclose(ref.percentile([1.0, 2.0, 5.0]), [0.25, 0.75, 1.0])
    assert ref.percentile([0.0])[0] == pytest.approx(0.5 / 4)  # floor
    assert ref.percentile([np.nan])[0] == pytest.approx(0.5 / 4)
    assert ref.percentile([9.0])[0] == 1.0
    # in-sample percentile of the same scores is the same (DeepSZ definition)
    np.testing.assert_allclose(in_sample_percentile(s[:4]), ref.percentile(s[:4]))


def test_reference_compaction_is_accurate():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(200_000)
    ref = ReferenceECDF.from_scores(s)
    assert ref.values.size <= 2048
    x = np.r_[rng.standard_normal(2000), np.linspace(2.5, 4.2, 50)]
    exact = np.searchsorted(np.sort(s), x, side="right") / s.size
    got = ref.percentile(x)
    assert np.max(np.abs(got - exact)) < 1e-3
    tail = x > 2.5  # the top tail is resolved much better than 1 / 2048
    assert np.max(np.abs(got[tail] - exact[tail])) < 2e-5
    assert np.all(np.diff(ref.percentile(np.sort(x))) >= 0)


def test_calibration_roundtrip(tmp_path):
    ref = ReferenceECDF.from_scores(np.arange(10.0))
    cal = Calibration(
        finders={
            "mf": {"threshold": 4.5, "reference": ref, "reference_info": {"from": ["v"]}},
            "cnn": {"threshold": 0.3},
        },
        combiners={
            "and": {"cnn+mf": {"thresholds": {"mf": 3.0, "cnn": -np.inf}}},
            "rankprod": {"cnn+mf": {"threshold": 0.8}},
        },
        meta={"command": "clusterfw calibrate ..."},
    )
    path = cal.save(tmp_path / "c.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "clusterfw.calibration"
    assert doc["combiners"]["and"]["cnn+mf"]["thresholds"]["cnn"] is None  # -inf: no cut
    back = load_calibration(path)
    assert back.threshold("mf") == 4.5
    np.testing.assert_allclose(back.reference("mf").percentile([3.0]), ref.percentile([3.0]))
    assert back.reference("cnn") is None
    assert and_thresholds(back, ["mf", "cnn"]) == {"mf": 3.0, "cnn": -np.inf}
    assert back.combiner_entry("rankprod", ["mf", "cnn"])["threshold"] == 0.8
    assert back.section("rankprod") == {"cnn+mf": {"threshold": 0.8}}
    # no jointly calibrated pair: fall back to each finder's own threshold
    assert and_thresholds(back, ["mf"]) == {"mf": 4.5}
    assert and_thresholds(back, ["mf", "other"]) is None
    np.testing.assert_array_equal(
        back.apply_threshold("mf", np.array([4.0, 5.0, np.nan])), [False, True, False]
    )
    assert Calibration.coerce(str(path)).source == str(path)


def test_bad_calibration_files(tmp_path):
    with pytest.raises(InputError, match="no such calibration file"):
        load_calibration(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_calibration(bad)
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not a clusterfw calibration"):
        load_calibration(bad)
    bad.write_text(
        '{"format": "clusterfw.calibration", "version": 1, '
        '"finders": {"mf": {"reference": {"n": 3, "values": [2, 1], "cdf": [0.5, 1]}}}}'
    )
    with pytest.raises(InputError, match="malformed"):
        load_calibration(bad)


def test_default_calibration_is_the_combiners():
    # the core ships none: its default is a placeholder each combiner replaces by its own
    placeholder = default_calibration()
    assert placeholder.is_default_placeholder and placeholder.finders == {}
    assert Calibration.coerce(None).is_default_placeholder
    for cls in (RankProductCombiner, AndCombiner):
        cal = default_calibration(cls)
        assert cal.source == "default:default_calibration.json"
        assert set(cal.finders) == {"mf", "resnet"}
        assert cal.reference("mf").n == 724  # merged candidates of the four validation skies
        resolved = cls().resolve_calibration(None)
        assert resolved.source == cal.source
    # the shipped file (version 1, made before sections were opaque) reads as before
    assert default_calibration(RankProductCombiner).combiner_entry("rankprod", ["resnet", "mf"])[
        "threshold"
    ] == pytest.approx(0.698, abs=5e-4)
    assert and_thresholds(default_calibration(AndCombiner), ["mf", "resnet"]) == pytest.approx(
        {"mf": -np.inf, "resnet": 0.4600}, abs=5e-4
    )


def test_opaque_sections_roundtrip(tmp_path):
    cal = Calibration(combiners={"vote": [1, 2.5, float("nan")], "x": {"k": {"t": -np.inf}}})
    back = load_calibration(cal.save(tmp_path / "c.json"))
    assert back.section("vote") == [1, 2.5, None]  # non-finite numbers are written as null
    assert back.section("x") == {"k": {"t": None}}
    assert back.combiner_entry("vote", ["a"]) is None  # not keyed by finder set
    assert back.section("missing") is None


def test_percentile_helper():
    s = np.array([3.0, 1.0, 2.0, np.nan])
    np.testing.assert_allclose(percentile(s), [1.0, 1 / 3, 2 / 3, 0.5 / 3])
    ref = ReferenceECDF.from_scores(np.arange(1.0, 11.0))
    np.testing.assert_allclose(percentile(s, ref), [0.3, 0.1, 0.2, 0.05])
