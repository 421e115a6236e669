"""``clusterfw evaluate`` and ``clusterfw calibrate`` end to end on toy finders (in-process)."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterfw.core.evaluation.calibration import CalibrationWarning, load_calibration
from clusterfw.core.evaluation.synthetic import (
    PatchGeometry,
    ToyFinder,
    cnn_like_response,
    forced_scorer,
    mf_like_response,
    synthetic_truth,
)
from clusterfw.plugins.combiners.rankprod import RankProductCombiner


def clusterfw(*args: str) -> SimpleNamespace:
    """Run the real command group in-process (its error handling included)."""
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcli")
    geom = PatchGeometry(size_deg=1.5)
    truth = synthetic_truth(geom, 5)
    pq.write_table(pa.table(truth), d / "truth.parquet")
    finders = {"mf": ToyFinder("mf", geom, truth, mf_like_response, 51),
               "cnn": ToyFinder("cnn", geom, truth, cnn_like_response, 52)}
    tables = {n: f.find() for n, f in finders.items()}
    for n, t in tables.items():
        pq.write_table(t, d / f"{n}.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        comb = RankProductCombiner().combine(tables, forced_scorer(finders), None)
    pq.write_table(comb, d / "combined.parquet")
    return d


def test_calibrate_then_evaluate(files):
    d = files
    r = clusterfw("calibrate", "--truth", d / "truth.parquet", d / "mf.parquet",
                  d / "cnn.parquet", d / "combined.parquet", "--out", d / "cal.json")
    assert r.returncode == 0, r.stderr
    assert "rankprod[cnn+mf]" in r.stdout and "and[cnn+mf]" in r.stdout
    cal = load_calibration(d / "cal.json")
    assert set(cal.finders) == {"mf", "cnn"}
    assert cal.reference("mf") is not None and cal.threshold("mf") is not None
    assert cal.meta["command"].startswith("clusterfw calibrate --truth")

    r = clusterfw("evaluate", d / "combined.parquet", "--truth", d / "truth.parquet",
                  "--json", d / "ev.json", "--plots", d / "plots", "--cutout", 6)
    assert r.returncode == 0, r.stderr
    doc = json.loads((d / "ev.json").read_text())
    assert set(doc["results"]) == {"score", "mf_score", "cnn_score"}
    res = doc["results"]["mf_score"]
    assert 0 < res["best_f1"]["f1"] <= 1
    assert res["best_f1"]["threshold"] == pytest.approx(
        max(zip(res["curve"]["f1"], res["curve"]["threshold"], strict=True),
            key=lambda x: (x[0], x[1]))[1])
    assert res["cutouts"]["n_cutouts"] == 225
    assert doc["selection"]["mass_min"] == 2e14
    for name in ("eval_f1", "eval_completeness", "eval_purity", "eval_mass_z"):
        assert (d / "plots" / f"{name}.png").stat().st_size > 5000
    assert "score [F1-best]" in r.stdout


def test_evaluate_bad_inputs_exit_2(files, tmp_path):
    d = files
    r = clusterfw("evaluate", tmp_path / "nope.parquet", "--truth", d / "truth.parquet")
    assert r.returncode == 2 and "nope.parquet" in r.stderr and "Traceback" not in r.stderr
    r = clusterfw("evaluate", d / "mf.parquet", "--truth", d / "truth.parquet",
                  "--mass-col", "m_vir")
    assert r.returncode == 2 and "no column 'm_vir'" in r.stderr
    r = clusterfw("evaluate", d / "mf.parquet", "--truth", d / "truth.parquet",
                  "--score", "nonesuch")
    assert r.returncode == 2 and "nonesuch" in r.stderr
