"""Issue 16 acceptance: bad X-ray input gives one line naming the file, exit 2, no output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

N = 40


def _header(pixel_arcsec: float = 4.0, crval=(150.0, 2.0)) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [(N + 1) / 2.0, (N + 1) / 2.0]
    w.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0]
    return w.to_header()


def write_xray(
    path: Path,
    counts: np.ndarray,
    exposure: np.ndarray | None = None,
    exposure_header: fits.Header | None = None,
) -> Path:
    """An INPUTS.md X-ray file: counts, E_MIN/E_MAX, PSFFWHM, an EXPOSURE extension."""
    h = _header()
    h["BUNIT"] = "count"
    h["E_MIN"], h["E_MAX"], h["PSFFWHM"] = 0.5, 2.0, 30.0
    hdus = [fits.PrimaryHDU(counts, h)]
    if exposure is None:
        exposure = np.full((N, N), 2000.0, np.float32)
    hdus.append(fits.ImageHDU(exposure, exposure_header or _header(), name="EXPOSURE"))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def cli(capsys):
    from clusterfw.core import cli as cli_mod

    def call(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            cli_mod.cli.main([str(a) for a in args])
            rc = 0
        except SystemExit as exc:
            rc = int(exc.code or 0)
        out, err = capsys.readouterr()
        return rc, out, err

    return call


def _refused(cli, tmp_path: Path, path: Path, problem: str) -> None:
    out = tmp_path / "cat.parquet"
    before = path.read_bytes()
    rc, stdout, err = cli("run", path, "--finder", "xray", "--out", out)
    assert (rc, stdout) == (2, ""), err
    assert err.strip().splitlines() == [f"clusterfw: error: {path}: {problem}"]
    assert not out.exists()
    assert path.read_bytes() == before  # the input is untouched


def good_counts(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(0.2, (N, N)).astype(np.int32)


def test_fractional_counts_refused(cli, tmp_path):
    counts = good_counts().astype(np.float32)
    counts[7, 9] = 2.5
    path = write_xray(tmp_path / "frac.fits", counts)
    _refused(cli, tmp_path, path, "counts are not integers (a pixel holds 2.5)")


def test_negative_counts_refused(cli, tmp_path):
    counts = good_counts()
    counts[3, 4] = -3
    path = write_xray(tmp_path / "neg.fits", counts)
    _refused(cli, tmp_path, path, "counts are negative (minimum -3)")


def test_negative_float_counts_refused(cli, tmp_path):
    counts = good_counts().astype(np.float32)
    counts[0, 0] = -1.0
    path = write_xray(tmp_path / "negf.fits", counts)
    _refused(cli, tmp_path, path, "counts are negative (minimum -1)")


def test_exposure_of_another_shape_refused(cli, tmp_path):
    expo = np.full((N, N + 5), 2000.0, np.float32)
    path = write_xray(tmp_path / "shape.fits", good_counts(), expo)
    _refused(
        cli,
        tmp_path,
        path,
        f"EXPOSURE extension shape {(N, N + 5)} differs from the image {(N, N)}",
    )


def test_exposure_on_another_wcs_refused(cli, tmp_path):
    path = write_xray(
        tmp_path / "wcs.fits", good_counts(), exposure_header=_header(crval=(150.5, 2.0))
    )
    _refused(
        cli,
        tmp_path,
        path,
        "EXPOSURE extension WCS differs from the image: CRVAL1 150.5 (the image has 150.0)",
    )


def test_exposure_of_another_pixel_scale_refused(cli, tmp_path):
    path = write_xray(tmp_path / "pix.fits", good_counts(), exposure_header=_header(8.0))
    _refused(
        cli,
        tmp_path,
        path,
        "EXPOSURE extension WCS differs from the image: pixel scale or rotation differs from "
        "the image's",
    )


def test_zero_exposure_everywhere_refused(cli, tmp_path):
    path = write_xray(tmp_path / "zero.fits", good_counts(), np.zeros((N, N), np.float32))
    _refused(cli, tmp_path, path, "EXPOSURE is zero everywhere (no exposed pixel)")


def test_integer_counts_with_nan_free_float_and_partial_exposure_accepted(tmp_path):
    """The checks pass a good file: float counts holding integers, exposure zero in places."""
    from clusterfw.core.layers.readers import XrayLayerReader
    from clusterfw.core.layers.sorting import inspect_file

    expo = np.full((N, N), 2000.0, np.float32)
    expo[:, :10] = 0.0
    path = write_xray(tmp_path / "ok.fits", good_counts().astype(np.float32), expo)
    info = inspect_file(path)
    band, facts, _ = XrayLayerReader().file_facts(info)
    assert band == "0.5-2keV"
    assert facts["exposure_mode"] == "map"
