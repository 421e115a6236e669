"""``stack`` through the real command line: ``clusterfw run --combine stack`` on a simulated
validation sky (no model yet: warning, null ``is_cluster``), ``clusterfw calibrate`` writes the
``stack`` section, ``clusterfw info`` prints its weights, and ``clusterfw run --combine stack
--calibration`` applies them on a test sky."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def test_stack_calibrated_and_used_through_the_cli(tmp_path: Path) -> None:
    def cli(*args: object, ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [sys.executable, "-m", "clusterfw", *map(str, args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if ok:
            assert r.returncode == 0, r.stderr
        return r

    for name, seed in (("val", 11), ("test", 12)):
        cli("simulate", "mm", "--out", name, "--size", 1, "--pixel", 0.5, "--seed", seed)
    maps = {n: sorted((tmp_path / n).glob("sim_f*.fits")) for n in ("val", "test")}
    finders = ["-f", "mf", "-f", "peak", "-o", "peak.threshold=3.5"]

    r = cli("run", *maps["val"], *finders, "-c", "stack", "--out", "val.parquet")
    assert "stack: calibration" in r.stderr and "has no model for finders mf+peak" in r.stderr
    val = pq.read_table(tmp_path / "val.parquet")
    assert set(val.column("score_kind").to_pylist()) == {"probability"}
    assert val.column("is_cluster").null_count == val.num_rows

    r = cli("calibrate", "val.parquet", "--truth", "val/truth_halos.parquet", "--out", "cal.json")
    doc = json.loads((tmp_path / "cal.json").read_text())
    entry = doc["combiners"]["stack"]["mf+peak"]
    assert entry["finders"] == ["mf", "peak"]
    assert entry["feature_names"] == [
        "mf:log_p", "mf:log_1mp", "mf:uncovered", "mf:forced",
        "peak:log_p", "peak:log_1mp", "peak:uncovered", "peak:forced",
    ]  # fmt: skip
    assert len(entry["coefficients"]) == 8 and math.isfinite(entry["intercept"])
    assert entry["model"] in ("stacked", "fallback") and 0 < entry["threshold"] < 1
    f1 = entry["metrics"]["f1"]
    assert f1 >= entry["validation_f1"]["fallback"] - 1e-12
    assert any(ln.startswith("stack[mf+peak] threshold ") for ln in r.stdout.splitlines())

    r = cli("info", "cal.json")
    lines = r.stdout.splitlines()
    assert any(ln.startswith(f"stack[mf+peak] model {entry['model']} threshold ") for ln in lines)
    # one validation sky: the choice is cross-validated on stratified folds of its candidates
    cv = entry["cv"]
    assert cv["scheme"] == "stratified-k-fold" and set(cv["f1"]) >= {"single:mf", "single:peak"}
    assert any(ln.startswith("  cross-validated F1 (stratified-k-fold, ") for ln in lines)
    printed = {ln.split()[0]: float(ln.split()[1]) for ln in lines if ln.startswith("  mf:")}
    assert set(printed) == {"mf:log_p", "mf:log_1mp", "mf:uncovered", "mf:forced"}
    assert math.isclose(printed["mf:log_p"], entry["coefficients"][0], abs_tol=6e-5)
    r = cli("info", "cal.json", "--json")
    assert (
        json.loads(r.stdout)["combiners"]["stack"]["mf+peak"]["coefficients"]
        == entry["coefficients"]
    )

    cli(
        "run", *maps["test"], *finders, "-c", "stack", "--calibration", "cal.json",
        "--out", "test.parquet", "--quiet",
    )  # fmt: skip
    test = pq.read_table(tmp_path / "test.parquet")
    decided = test.column("is_cluster").to_pylist()
    assert None not in decided
    score = test.column("score").to_numpy().astype(np.float64)
    # the run-time sigmoid of the stored weights on the stored percentiles and coverage
    w = dict(zip(entry["feature_names"], entry["coefficients"], strict=True))
    logit = np.full(test.num_rows, entry["intercept"])
    for f in ("mf", "peak"):
        c = entry["clip"][f]
        covered = test.column(f"{f}_score").is_valid().to_numpy(zero_copy_only=False)
        p = np.clip(test.column(f"{f}_percentile").to_numpy().astype(np.float64), c, 1 - c)
        p = np.where(covered, p, c)
        logit += w[f"{f}:log_p"] * np.log(p) + w[f"{f}:log_1mp"] * np.log1p(-p)
        logit += w[f"{f}:uncovered"] * ~covered
        forced = test.column(f"{f}_ra").is_null().to_numpy(zero_copy_only=False)
        logit += w[f"{f}:forced"] * forced
    np.testing.assert_allclose(score, 1 / (1 + np.exp(-logit)), rtol=2e-5, atol=1e-6)
    near = np.abs(score - entry["threshold"]) < 1e-6
    np.testing.assert_array_equal(np.asarray(decided)[~near], (score >= entry["threshold"])[~near])

    # a malformed model: one line, exit 2, no output
    doc["combiners"]["stack"]["mf+peak"]["coefficients"] = [1.0]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    r = cli(
        "run", *maps["test"], *finders, "-c", "stack", "--calibration", "bad.json",
        "--out", "bad.parquet", ok=False,
    )  # fmt: skip
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("clusterfw: error:")]
    assert err == [
        "clusterfw: error: bad.json: malformed 'stack' model for mf+peak: "
        "1 coefficients for 8 features"
    ]
    assert not (tmp_path / "bad.parquet").exists()
