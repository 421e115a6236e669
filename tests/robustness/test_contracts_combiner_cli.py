"""Acceptance (issue 11): the third-party combiner of docs/writing-a-plugin.md, installed from an
entry point, is calibrated by the real ``clusterfw calibrate`` on a simulated validation sky and
its ``is_cluster`` is evaluated after ``clusterfw run --calibration``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "writing-a-plugin.md"


def _docs_combiner_source() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```$", GUIDE.read_text(), flags=re.S | re.M)
    (src,) = [b for b in blocks if b.startswith("# maxpct_combiner.py")]
    return src


def _install(site: Path, module: str, source: str | None, entry: str, target: str) -> None:
    if source is not None:
        (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[clusterfw]\n{entry} = {target}\n")


def test_docs_combiner_calibrated_and_evaluated_through_the_cli(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "maxpct_combiner", _docs_combiner_source(), "maxpct", "maxpct_combiner")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "examples/clusterfw-peakfinder/src")]),
    }
    # the example's peak finder, from its working copy, as a second finder
    _install(site, "cfw_docs_peak", None, "docs_peak", "clusterfw_peakfinder.plugin")

    def cli(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [sys.executable, "-m", "clusterfw", *map(str, args)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr
        return r

    for name, seed in (("val", 11), ("test", 12)):
        cli("simulate", "mm", "--out", name, "--size", 1, "--pixel", 0.5, "--seed", seed)
    maps = {n: sorted((tmp_path / n).glob("sim_f*.fits")) for n in ("val", "test")}
    assert len(maps["val"]) == 3
    finders = ["-f", "mf", "-f", "peak", "-o", "peak.threshold=3.5"]
    cli("run", *maps["val"], *finders, "-c", "maxpct", "--out", "val.parquet", "--quiet")
    val = pq.read_table(tmp_path / "val.parquet")
    assert {"mf_score", "mf_ra", "mf_dec", "peak_score", "mf_flags"} <= set(val.column_names)
    assert "is_cluster" not in val.column_names  # no default calibration

    r = cli("calibrate", "val.parquet", "--truth", "val/truth_halos.parquet", "--out", "cal.json")
    assert "maxpct: calibrated (dict section)" in r.stdout.splitlines(), r.stdout
    doc = json.loads((tmp_path / "cal.json").read_text())
    entry = doc["combiners"]["maxpct"]["mf+peak"]
    assert 0 < entry["threshold"] <= 1 and 0 < entry["f1"] <= 1
    assert {"rankprod", "and"} <= set(doc["combiners"])  # every installed combiner calibrated

    cli(
        "run",
        *maps["test"],
        *finders,
        "-c",
        "maxpct",
        "--calibration",
        "cal.json",
        "--out",
        "test.parquet",
        "--quiet",
    )
    test = pq.read_table(tmp_path / "test.parquet")
    decided = test.column("is_cluster").to_pylist()
    assert None not in decided and any(decided)
    score = test.column("score").to_numpy()
    assert [bool(s >= entry["threshold"]) for s in score] == decided

    r = cli("evaluate", "test.parquet", "--truth", "test/truth_halos.parquet")
    row = [ln for ln in r.stdout.splitlines() if ln.startswith("score [is_cluster]")]
    assert len(row) == 1, r.stdout
    tp, fp, fn = (int(v) for v in row[0].split()[3:6])
    assert tp + fp == sum(decided)  # duplicates count as false positives
    assert tp >= 1
