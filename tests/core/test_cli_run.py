"""Acceptance of the core issue: the example plugin end to end through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

from clusterfw.core.catalog_io import read_catalogue
from clusterfw.core.schema import validate_candidates

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "clusterfw-peakfinder"


def clusterfw(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "clusterfw", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_plugins_json_lists_builtins_and_example(example_plugin_installed):
    result = clusterfw("plugins", "--json")
    assert result.returncode == 0, result.stderr
    entries = {(e["kind"], e["name"]): e for e in json.loads(result.stdout)}
    peak = entries[("finder", "peak")]
    assert peak["distribution"] == "clusterfw-peakfinder"
    assert peak["options"]["threshold"]["default"] == 5.0
    assert entries[("reader", "fits")]["distribution"] == "clusterfw"
    assert entries[("reader", "healpix")]["distribution"] == "clusterfw"


def test_run_peak_recovers_injected_sources(example_plugin_installed, blob_maps, tmp_path):
    paths, sky, xs, ys = blob_maps
    out = tmp_path / "c.parquet"
    result = clusterfw(
        "run",
        "--finder",
        "peak",
        *map(str, paths),
        "--out",
        str(out),
        "-o",
        "peak.threshold=5",
        "-o",
        "peak.band=f095",
    )
    assert result.returncode == 0, result.stderr
    table = read_catalogue(out)
    validate_candidates(table)
    assert table.num_rows == len(xs)
    # every injected source recovered within one pixel, no spurious detections
    cx, cy = sky.wcs.world_to_pixel_values(table["ra"].to_numpy(), table["dec"].to_numpy())
    dist = np.hypot(cx[:, None] - xs[None, :], cy[:, None] - ys[None, :])
    assert np.all(dist.min(axis=1) < 1.0)
    assert np.all(dist.min(axis=0) < 1.0)

    info = clusterfw("info", str(out))
    assert info.returncode == 0, info.stderr
    assert "[deg]" in info.stdout
    assert "clusterfw.inputs" in info.stdout and "clusterfw.plugins" in info.stdout
    prov = json.loads(clusterfw("info", "--json", str(out)).stdout)["provenance"]
    assert [p["name"] for p in prov["clusterfw.plugins"]] == ["peak"]
    assert prov["clusterfw.plugins"][0]["options"]["band"] == "f095"
    assert len(prov["clusterfw.inputs"][0]["sha256"]) == 64

    qt = QTable.read(out)
    assert qt["ra"].unit == u.deg and qt["dec"].unit == u.deg
    assert len(qt) == len(xs)


def test_export_formats_keep_units(example_plugin_installed, blob_maps, tmp_path):
    paths = blob_maps[0]
    out = tmp_path / "c.parquet"
    assert (
        clusterfw("run", "-q", "--finder", "peak", *map(str, paths), "--out", str(out)).returncode
        == 0
    )
    for suffix in (".fits", ".ecsv"):
        target = tmp_path / f"c{suffix}"
        assert clusterfw("export", str(out), str(target)).returncode == 0
        qt = QTable.read(target)
        assert qt["dec"].unit == u.deg
        assert len(qt) == read_catalogue(out).num_rows
    csv = tmp_path / "c.csv"
    assert clusterfw("export", str(out), str(csv)).returncode == 0
    assert csv.read_text().splitlines()[0].startswith('"candidate_id"')
