"""Bad input: one line naming the file and the problem, exit code 2, no output file."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from tests.core.test_cli_run import clusterfw


def _bad_cases(tmp_path, paths):
    good = [str(p) for p in paths]
    missing = str(tmp_path / "nope.fits")
    text = tmp_path / "notes.fits"
    text.write_text("this is not a FITS file\n")
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(
        np.zeros((10, 10), np.float32),
        header=fits.Header({"FREQ": 150.0, "BEAMFWHM": 1.2, "BUNIT": "uK_CMB"}),
    ).writeto(nowcs)
    with fits.open(paths[1]) as hdul:
        header = hdul[0].header.copy()
        small = fits.PrimaryHDU(np.zeros((50, 60), np.float32), header=header)
        small.writeto(tmp_path / "small.fits")
        header["BUNIT"] = "furlongs"
        fits.PrimaryHDU(hdul[0].data, header=header).writeto(tmp_path / "badunit.fits")
    return {
        "missing file": ([missing, *good[1:]], [missing, "file not found"]),
        "not FITS": ([str(text)], [str(text), "not a FITS file"]),
        "no WCS": ([str(nowcs)], [str(nowcs), "no celestial WCS"]),
        "shapes differ": (
            [good[0], str(tmp_path / "small.fits")],
            [str(tmp_path / "small.fits"), "shape (50, 60) differs"],
        ),
        "unknown BUNIT": (
            [good[0], str(tmp_path / "badunit.fits")],
            [str(tmp_path / "badunit.fits"), "unknown BUNIT 'furlongs'"],
        ),
    }


@pytest.mark.parametrize(
    "case", ["missing file", "not FITS", "no WCS", "shapes differ", "unknown BUNIT"]
)
def test_bad_input_files(case, blob_maps, tmp_path, example_plugin_installed):
    paths = blob_maps[0]
    inputs, expected = _bad_cases(tmp_path, paths)[case]
    out = tmp_path / "out.parquet"
    result = clusterfw("run", "--finder", "peak", *inputs, "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in errors[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--finder", "nosuchfinder"], "unknown finder 'nosuchfinder'"),
        (["--finder", "peak", "-o", "peak.colour=red"], "peak.colour: Extra inputs"),
        (["--finder", "peak", "-o", "peak.threshold=high"], "peak.threshold"),
        (["--finder", "peak", "-o", "mf.snr_min=4"], "option given for 'mf'"),
    ],
)
def test_bad_plugin_requests(args, expected, blob_maps, tmp_path, example_plugin_installed):
    out = tmp_path / "out.parquet"
    result = clusterfw("run", *args, *map(str, blob_maps[0]), "--out", str(out))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert not out.exists()


def test_debug_shows_traceback(tmp_path, example_plugin_installed):
    result = clusterfw(
        "--debug",
        "run",
        "--finder",
        "peak",
        str(tmp_path / "nope.fits"),
        "--out",
        str(tmp_path / "o.parquet"),
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "InputError" in result.stderr


def test_info_on_missing_catalogue(tmp_path):
    result = clusterfw("info", str(tmp_path / "none.parquet"))
    assert result.returncode == 2
    assert "none.parquet: file not found" in result.stderr
