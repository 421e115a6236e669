"""Held-out comparison with the matched filter (slow: runs ``benchmarks/resnet_vs_mf.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_resnet_comparable_to_mf_on_held_out_patches(tmp_path):
    out = tmp_path / "vs_mf.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "resnet_vs_mf.py"),
        "--val", "6", "--test", "6", "--size-deg", "3", "--json", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
    res = json.loads(out.read_text())
    f1 = res["test_f1"]
    assert f1["ResNet"] > 0.5 and f1["MF"] > 0.5
    assert abs(f1["ResNet"] - f1["MF"]) < 0.1
    for name in ("MF", "ResNet", "AND", "rankprod"):
        m = res["results"][name]["test"]
        assert m["tp"] + m["fn"] == res["cluster_cells"]["test"]
        assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == res["cells"]["test"]
