"""Helpers of ``benchmarks/resnet_vs_mf.py``: each finder's own validation catalogue (what
``clusterfw run --finder f`` writes) taken from the combined run and given to ``calibrate`` as a
user would, and the paired bootstrap of an F1 difference (issue 14)."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from clusterfw.core.evaluation.calibration import Calibration, CalibrationWarning, calibrate
from clusterfw.core.evaluation.matching import Truth
from clusterfw.core.evaluation.synthetic import (
    PatchGeometry,
    ToyFinder,
    cnn_like_response,
    forced_scorer,
    mf_like_response,
    synthetic_truth,
)
from clusterfw.plugins.combiners.rankprod import RankProductCombiner
from clusterfw.plugins.combiners.stack import StackCombiner


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "resnet_vs_mf.py"
    spec = importlib.util.spec_from_file_location("resnet_vs_mf_bench_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks the module up
    spec.loader.exec_module(mod)
    return mod


def test_paired_difference_counts_the_same_cells(bench):
    y = np.zeros(100, bool)
    y[:10] = True
    a = y.copy()  # perfect: F1 1
    b = y.copy()
    b[:5] = False  # 5 TP, 5 FN: F1 = 10 / 15
    diff, sd = bench.paired_difference(a, b, y, n_boot=500)
    assert diff == pytest.approx(1.0 - 10.0 / 15.0)
    assert 0.0 < sd < 0.2
    assert bench.paired_difference(b, b, y) == (0.0, 0.0)  # identical decisions: no spread
    diff_rev, sd_rev = bench.paired_difference(b, a, y, n_boot=500)
    assert diff_rev == pytest.approx(-diff) and sd_rev == pytest.approx(sd)


def test_own_catalogues_from_the_combined_run_reach_calibrate(bench):
    geom = PatchGeometry(ra0=10.0, dec0=-1.0, size_deg=1.5, pix_arcmin=0.5)
    cols = synthetic_truth(geom, 3)
    truth = Truth.from_table(cols)
    finders = {
        "mf": ToyFinder("mf", geom, cols, mf_like_response, 31),
        "cnn": ToyFinder("cnn", geom, cols, cnn_like_response, 32),
    }
    tables = {n: f.find() for n, f in finders.items()}
    forced = forced_scorer(finders)
    rec = bench.recording(RankProductCombiner())
    assert isinstance(rec, RankProductCombiner) and rec.name == "rankprod"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        combined = rec.combine(tables, forced, Calibration(source="empty"))
        plain = RankProductCombiner().combine(tables, forced, Calibration(source="empty"))
    assert combined.equals(plain)  # recording changes nothing in the combined catalogue
    own = {n: bench.single_catalogue(n, t) for n, t in rec.singles.items()}
    assert sorted(own) == ["cnn", "mf"]
    for n in own:
        assert own[n].equals(tables[n])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_own = calibrate(
            [(combined, truth)] + [(own[n], truth) for n in sorted(own)],
            combiners=[StackCombiner()],
        )
    entry = with_own.combiner_entry("stack", ["cnn", "mf"])
    for n in ("cnn", "mf"):
        own_f1 = with_own.finders[n]["metrics"]["f1"]
        # stack's fallback compares finders by their own catalogues' validation F1
        assert entry["validation_f1"][f"catalogue:{n}"] == pytest.approx(own_f1)
        # reference percentiles still come from the combined catalogue
        scores = combined.column(f"{n}_score").to_numpy(zero_copy_only=False)
        assert with_own.reference(n).n == np.isfinite(scores.astype(float)).sum()
    # the own catalogue is not the finder's score on the merged candidates
    assert any(
        entry["validation_f1"][f"catalogue:{n}"] != entry["validation_f1"][f"single:{n}"]
        for n in ("cnn", "mf")
    )
