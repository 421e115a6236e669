"""Readers refuse bad input before any work: one line naming the file, exit 2, nothing written.

Every case runs the real command group (in-process, with its error handling); the cases where
something used to be printed first (astropy warnings, healpy's prints) or where the command used
to hang (a FIFO) run ``python -m clusterfw`` in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from clusterfw.core.fits_io import read_flat_fits, read_healpix_fits, write_flat_sky_fits
from tests.conftest import make_blob_sky


def _cli(*args: object) -> tuple[int, str, str]:
    """The real command group, in-process (its error handling included)."""
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def _cli_process(*args: object, timeout: float = 120) -> tuple[int, str, str]:
    """``python -m clusterfw`` in a subprocess."""
    r = subprocess.run(
        [sys.executable, "-m", "clusterfw", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return r.returncode, r.stdout, r.stderr


def _only_error(rc: int, stdout: str, stderr: str) -> str:
    """The single line of a user error: exit 2, nothing on stdout, one stderr line."""
    assert rc == 2, (rc, stderr)
    assert stdout == "", stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> list[Path]:
    """Three valid 96 x 96 maps at 0.5' (a 48' square)."""
    sky, _, _ = make_blob_sky(size=96)
    return write_flat_sky_fits(sky, tmp_path_factory.mktemp("good"), prefix="m")


def _variant(good: list[Path], path: Path, data=None, **cards) -> Path:
    """A copy of the 150 GHz map with other pixels or header cards (None deletes a card)."""
    with fits.open(good[1]) as hdul:
        header = hdul[0].header.copy()
        pixels = hdul[0].data.copy() if data is None else data
    for key, value in cards.items():
        if value is None:
            del header[key]
        else:
            header[key] = value
    fits.PrimaryHDU(pixels, header=header).writeto(path)
    return path


def _run(good: list[Path], bad: Path, out: Path, first: bool = False) -> str:
    inputs = [bad, good[1], good[2]] if first else [good[0], bad, good[2]]
    line = _only_error(*_cli("run", "-q", "--finder", "mf", *inputs, "--out", out))
    assert not out.exists()
    return line


# --------------------------------------------------------------------------- flat FITS
def test_truncated_file_no_warning_first(good, tmp_path):
    bad = tmp_path / "trunc.fits"
    raw = good[1].read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])  # header intact, half the pixels
    out = tmp_path / "o.parquet"
    line = _only_error(*_cli_process("run", "-q", good[0], bad, "--out", out))
    need, have = 2880 + 96 * 96 * 4, len(raw) // 2  # one header block + float32 pixels
    assert line == (
        f"clusterfw: error: {bad}: truncated file ({have} bytes, the header needs {need})"
    )
    assert not out.exists()


def test_truncated_header(good, tmp_path):
    bad = tmp_path / "trunc_header.fits"
    bad.write_bytes(good[1].read_bytes()[:1000])
    line = _run(good, bad, tmp_path / "o.parquet")
    assert line == f"clusterfw: error: {bad}: unreadable FITS (Empty or corrupt FITS file)"


@pytest.mark.parametrize(
    "cards, problem",
    [
        (
            {"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"},
            "invalid WCS: Unrecognized projection code (XYZ in CTYPE1)",
        ),
        ({"CDELT1": 0.0}, "invalid WCS: Linear transformation matrix is singular"),
        ({"CRVAL2": 95.0}, "invalid WCS: CRVAL2 95 is not a latitude"),
        ({"CRVAL2": -90.5, "CRPIX2": 48.5}, "invalid WCS: CRVAL2 -90.5 is not a latitude"),
        (
            {"CTYPE2": "RA---CAR"},
            "invalid WCS: Inconsistent projection types "
            "(expected DEC--CAR, got RA---CAR in CTYPE2)",
        ),
    ],
    ids=["unknown CTYPE", "CDELT 0", "CRVAL2 95", "CRVAL2 -90.5", "two longitudes"],
)
def test_wcs_wcslib_rejects(good, tmp_path, cards, problem):
    bad = _variant(good, tmp_path / "wcs.fits", **cards)
    assert _run(good, bad, tmp_path / "o.parquet") == f"clusterfw: error: {bad}: {problem}"


@pytest.mark.parametrize(
    "cards, problem",
    [
        ({"BEAMFWHM": 1e6}, "BEAMFWHM 1e+06 arcmin is outside (0, 600] arcmin"),
        ({"BEAMFWHM": 0.0}, "BEAMFWHM 0 arcmin is outside (0, 600] arcmin"),
        (
            {"BEAMFWHM": 50.0},
            "BEAMFWHM 50 arcmin is not smaller than the map (48 arcmin on its shorter side)",
        ),
        ({"FREQ": True}, "FREQ header keyword is a boolean (T), not a number"),
        ({"FREQ": "high"}, "FREQ header keyword 'high' is not a number"),
        ({"FREQ": 1e9}, "FREQ 1e+09 GHz is outside 1-5000 GHz"),
        ({"FREQ": 0.5}, "FREQ 0.5 GHz is outside 1-5000 GHz"),
        ({"NOISE": -3.0}, "NOISE -3 uK-arcmin is negative"),
        ({"BANDNAME": "f095"},
         "band 'f095' is also {good0}'s (two maps of one band; set BANDNAME)"),
    ],
    ids=["beam 1e6", "beam 0", "beam wider than map", "FREQ=T", "FREQ text", "FREQ 1e9",
         "FREQ 0.5", "NOISE negative", "band twice"],
)  # fmt: skip
def test_band_keywords(good, tmp_path, cards, problem):
    bad = _variant(good, tmp_path / "band.fits", **cards)
    expected = f"clusterfw: error: {bad}: " + problem.format(good0=good[0])
    assert _run(good, bad, tmp_path / "o.parquet") == expected


def test_override_nan_freq_names_option(good, tmp_path):
    out = tmp_path / "o.parquet"
    line = _only_error(*_cli("run", "-q", *good, "--freq", "95,nan,220", "--out", out))
    assert line == f"clusterfw: error: {good[1]}: --freq value 'nan' is not finite"
    assert not out.exists()


@pytest.mark.parametrize(
    "fill, problem",
    [
        (3.0, "constant map (every finite pixel is 3): no signal"),
        (np.nan, "no finite pixel values (all blank, NaN or infinite)"),
        (np.inf, "no finite pixel values (all blank, NaN or infinite)"),
        (-np.inf, "no finite pixel values (all blank, NaN or infinite)"),
    ],
    ids=["constant", "all NaN", "all +inf", "all -inf"],
)
def test_meaningless_maps(good, tmp_path, fill, problem):
    bad = _variant(good, tmp_path / "blank.fits", data=np.full((96, 96), fill, np.float32))
    assert _run(good, bad, tmp_path / "o.parquet") == f"clusterfw: error: {bad}: {problem}"


def test_infinite_pixels_are_masked(good, tmp_path):
    with fits.open(good[1]) as hdul:
        data = hdul[0].data.copy()
    data[10:13, 20:22] = np.inf
    data[40, 40] = -np.inf
    path = _variant(good, tmp_path / "inf.fits", data=data)
    sky = read_flat_fits([good[0], path])
    assert np.isnan(sky.maps[1]).sum() == 7
    assert np.isnan(sky.maps[1][10:13, 20:22]).all() and np.isnan(sky.maps[1][40, 40])
    assert np.isfinite(sky.maps[0]).all()
    assert np.array_equal(sky.maps[1][0], data[0])


@pytest.mark.parametrize("first", [True, False], ids=["FIFO first", "FIFO second"])
def test_fifo_refused_without_opening(good, tmp_path, first):
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)
    out = tmp_path / "o.parquet"
    inputs = [fifo, good[1]] if first else [good[0], fifo]
    line = _only_error(*_cli_process("run", "-q", *inputs, "--out", out, timeout=60))
    assert line == f"clusterfw: error: {fifo}: is a FIFO (named pipe), not a regular file"
    assert not out.exists()


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_same_file_twice(good, tmp_path, spelling):
    again = {
        "same": lambda: good[1],
        "dot": lambda: good[1].parent / "." / good[1].name,
        "symlink": lambda: (tmp_path / "link.fits").symlink_to(good[1]) or tmp_path / "link.fits",
        "hardlink": lambda: (tmp_path / "hard.fits").hardlink_to(good[1]) or tmp_path / "hard.fits",
    }[spelling]()
    out = tmp_path / "o.parquet"
    line = _only_error(*_cli("run", "-q", good[0], good[1], again, "--out", out))
    assert line == f"clusterfw: error: {Path(again)}: given twice (same file as {good[1]})"
    assert not out.exists()


# --------------------------------------------------------------------------- HEALPix
def _healpix(path: Path, npix: int, nside: int | None, **cards) -> Path:
    column = fits.Column(name="T", format="E", array=np.arange(npix, dtype=np.float32))
    table = fits.BinTableHDU.from_columns([column])
    header = {"PIXTYPE": "HEALPIX", "ORDERING": "RING", "INDXSCHM": "IMPLICIT"}
    header |= {"FREQ": 150.0, "BEAMFWHM": 5.0, "BUNIT": "uK_CMB"}
    if nside is not None:
        header["NSIDE"] = nside
    for key, value in (header | cards).items():
        table.header[key] = value
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


@pytest.mark.parametrize(
    "npix, nside, cards, problem",
    [
        (3072, 15, {}, "NSIDE 15 does not match the map length 3072 (Nside 16)"),
        (1000, 16, {}, "map length 1000 is not 12*Nside^2 for a power-of-2 Nside (1..2^29)"),
        (2700, None, {}, "map length 2700 is not 12*Nside^2 for a power-of-2 Nside (1..2^29)"),
        (3072, 16, {"ORDERING": "SPIRAL"}, "ORDERING 'SPIRAL' is not RING or NESTED"),
        (3072, 16, {"INDXSCHM": "EXPLICIT"},
         "INDXSCHM = 'EXPLICIT': only full-sky (IMPLICIT) maps"),
        (3072, 16, {"FREQ": False}, "FREQ header keyword is a boolean (F), not a number"),
    ],
    ids=["NSIDE mismatch", "bad length", "Nside 15 length", "ordering", "partial", "FREQ=F"],
)  # fmt: skip
def test_healpix_layout_nothing_printed_first(tmp_path, npix, nside, cards, problem):
    bad = _healpix(tmp_path / "hp.fits", npix, nside, **cards)
    out = tmp_path / "o.parquet"
    line = _only_error(*_cli_process("run", "-q", "--finder", "mf", bad, "--out", out))
    assert line == f"clusterfw: error: {bad}: {problem}"
    assert not out.exists()


def test_healpix_truncated(tmp_path):
    good = _healpix(tmp_path / "hp.fits", 12 * 64**2, 64)
    bad = tmp_path / "hp_trunc.fits"
    raw = good.read_bytes()
    bad.write_bytes(raw[: len(raw) - 20000])
    out = tmp_path / "o.parquet"
    line = _only_error(*_cli_process("run", "-q", "--finder", "mf", bad, "--out", out))
    have, need = len(raw) - 20000, 2880 * 2 + 4 * 12 * 64**2
    assert (
        line == f"clusterfw: error: {bad}: truncated file ({have} bytes, the header needs {need})"
    )


def test_healpix_infinite_and_unseen_masked(tmp_path):
    values = np.arange(12 * 16**2, dtype=np.float64)
    values[[3, 70]] = np.inf
    values[5] = hp.UNSEEN
    path = tmp_path / "hp.fits"
    hp.write_map(
        str(path),
        values,
        dtype=np.float64,
        extra_header=[("FREQ", 150.0), ("BEAMFWHM", 5.0), ("BUNIT", "uK_CMB")],
    )
    sky = read_healpix_fits([path])
    assert np.flatnonzero(np.isnan(sky.maps[0])).tolist() == [3, 5, 70]
    assert sky.maps[0][4] == 4.0
