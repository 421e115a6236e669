"""Fuzz: random FITS headers, HEALPix files, ``-o`` values and CLI numbers against the readers
and commands. Fails on an internal error, a traceback, a hang, an exit code other than 0/2, a
file left behind in the output folder, or an input modified. Bounded: small ``max_examples``.
"""

from __future__ import annotations

import hashlib
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterfw.core.catalog_io import write_catalogue
from clusterfw.core.errors import ClusterfwError
from clusterfw.core.fits_io import write_flat_sky_fits
from clusterfw.core.schema import candidate_table
from tests.conftest import make_blob_sky
from tests.robustness.test_cli_options import cfw

FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Hang(BaseException):
    """Raised by the alarm: a reader or command ran past its time limit."""


@contextmanager
def time_limit(seconds: int):
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_command(rc: int, out: str, err: str) -> None:
    assert rc in (0, 2), err
    assert "internal error" not in err and "Traceback" not in err, err
    if rc == 2:
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("clusterfw: warning")]
        assert len(lines) == 1 and lines[0].startswith("clusterfw: error: "), err


def read_with_registry(paths: list[Path]) -> None:
    """The reader stage of ``run``: success or a ClusterfwError, nothing else."""
    from clusterfw.core.plugins import Registry
    from clusterfw.core.runner import read_sky

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read_sky(Registry(), paths, {})
        except ClusterfwError:
            pass


CTYPES = st.sampled_from(
    ["RA---CAR", "DEC--CAR", "RA---TAN", "DEC--TAN", "GLON-CAR", "GLAT-CAR", "XXXX-YYY", "", "FREQ"]
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, 95.0, -95.0, 1e6]),
)
VALUES = st.one_of(NUMBERS, st.booleans(), st.text(max_size=12), st.integers(-(2**40), 2**40))


@st.composite
def headers(draw):
    h = {}
    h["CTYPE1"] = draw(st.one_of(CTYPES, st.just("RA---CAR")))
    h["CTYPE2"] = draw(st.one_of(CTYPES, st.just("DEC--CAR")))
    for key in ("CDELT1", "CDELT2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
        h[key] = draw(st.one_of(NUMBERS, st.just(1.0 / 120)))
    for key in ("BUNIT", "FREQ", "BEAMFWHM", "NOISE"):
        if draw(st.booleans()):
            h[key] = draw(VALUES if key != "BUNIT" else st.sampled_from(
                ["uK_CMB", "K_CMB", "Jy/sr", "MJy/sr", "furlongs", "", "uK"]))  # fmt: skip
    shape = draw(st.sampled_from([(24, 24), (1, 24, 24), (3, 8, 8), (24,), (0, 5)]))
    return h, shape


def _fits_value(v: object) -> object:
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)  # FITS cannot store NaN/inf cards: the text a user would type
    if isinstance(v, str):
        return "".join(c for c in v if 32 <= ord(c) < 127)
    return v


@FUZZ
@given(case=headers())
def test_fits_headers_against_reader(tmp_path_factory, case):
    header, shape = case
    d = tmp_path_factory.mktemp("fz")
    hdr = fits.Header()
    for k, v in header.items():
        try:
            hdr[k] = _fits_value(v)
        except (ValueError, TypeError):
            continue
    path = d / "map.fits"
    data = np.random.default_rng(0).normal(0, 10, shape).astype(np.float32)
    fits.PrimaryHDU(data, header=hdr).writeto(path, output_verify="silentfix")
    before = sha(path)
    with time_limit(20):
        read_with_registry([path])
    assert sha(path) == before


@FUZZ
@given(
    n=st.sampled_from([0, 1, 11, 12, 48, 3072, 3073, 12 * 64**2]),
    nside_card=st.one_of(st.none(), st.integers(-4, 5000)),
    ordering=st.sampled_from(["RING", "NESTED", "SPIRAL", None]),
    fill=st.sampled_from([0.0, np.nan, np.inf, -1.6375e30]),
)
def test_healpix_files_against_reader(tmp_path_factory, n, nside_card, ordering, fill):
    d = tmp_path_factory.mktemp("hpz")
    col = fits.Column(name="T", format="E", array=np.full(n, fill, np.float32))
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["PIXTYPE"] = "HEALPIX"
    if nside_card is not None:
        hdu.header["NSIDE"] = nside_card
    if ordering:
        hdu.header["ORDERING"] = ordering
    for k, v in {"FREQ": 150.0, "BEAMFWHM": 1.2, "BUNIT": "uK_CMB"}.items():
        hdu.header[k] = v
    path = d / "hp.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    before = sha(path)
    with time_limit(20):
        read_with_registry([path])
    assert sha(path) == before


@pytest.fixture(scope="module")
def small_maps(tmp_path_factory):
    d = tmp_path_factory.mktemp("maps")
    sky, _, _ = make_blob_sky(size=96)
    paths = write_flat_sky_fits(sky, d, prefix="m")
    return paths, {p: sha(p) for p in paths}


MF_KEYS = ["snr_min", "scales_arcmin", "profile", "noise", "apod_arcmin", "position",
           "ps_snr_min", "merge_radius_arcmin", "workers", "nope", ""]  # fmt: skip
OPTION_VALUES = st.one_of(
    st.sampled_from(
        [
            "-1",
            "nan",
            "inf",
            "0",
            "1e308",
            "[]",
            "[0]",
            "[-1, 2]",
            "null",
            "{}",
            '"x"',
            "true",
            "4.5",
            "[1e9]",
        ]
    ),  # fmt: skip
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
)


@settings(FUZZ, max_examples=8)
@given(key=st.sampled_from(MF_KEYS), value=OPTION_VALUES,
       plugin=st.sampled_from(["mf", "mf", "resnet", "x"]))  # fmt: skip
def test_option_values_against_run(tmp_path_factory, small_maps, plugin, key, value):
    paths, before = small_maps
    d = tmp_path_factory.mktemp("runz")
    with time_limit(60):
        finder = plugin if plugin != "x" else "mf"
        option = f"{plugin}.{key}={value}"
        rc, out, err = cfw(
            "run", *paths, "--finder", finder, "-o", option, "--out", d / "c.parquet", "-q"
        )
    check_command(rc, out, err)
    assert {p.name for p in d.iterdir()} <= {"c.parquet"}
    assert {p: sha(p) for p in paths} == before


NUMBER_TEXT = st.one_of(
    st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e-300", "1e300", "0.001", "", "x"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10, 10**6).map(str),
)


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("evz")
    rng = np.random.default_rng(5)
    ra, dec = rng.uniform(30, 31, 15), rng.uniform(-21, -20, 15)
    write_catalogue(candidate_table(finder="mf", score_kind="snr", ra=ra, dec=dec,
                                    score=rng.uniform(4, 9, 15)), d / "cat.parquet")  # fmt: skip
    truth = {"ra": ra, "dec": dec, "z": np.full(15, 0.5), "mvir": np.full(15, 5e14)}
    pq.write_table(pa.table(truth), d / "truth.parquet")
    return d


@settings(FUZZ, max_examples=20)
@given(
    option=st.sampled_from(["--radius", "--threshold", "--cutout", "--mass-min", "--z-min"]),
    value=NUMBER_TEXT,
)
def test_numbers_against_evaluate(tmp_path_factory, eval_files, option, value):
    d = eval_files
    out = tmp_path_factory.mktemp("evo")
    before = sha(d / "cat.parquet"), sha(d / "truth.parquet")
    with time_limit(30):
        rc, o, err = cfw("evaluate", d / "cat.parquet", "--truth", d / "truth.parquet",
                         "--json", out / "e.json", option, value)  # fmt: skip
    check_command(rc, o, err)
    assert {p.name for p in out.iterdir()} <= {"e.json"}
    assert (sha(d / "cat.parquet"), sha(d / "truth.parquet")) == before


@settings(FUZZ, max_examples=20)
@given(
    command=st.sampled_from(
        [
            ("run", "--tile-size"),
            ("run", "--workers"),
            ("simulate", "mm", "--size"),
            ("simulate", "mm", "--pixel"),
            ("simulate", "mm", "--seed"),
            ("simulate", "mm", "--healpix-nside"),
            ("simulate", "cutouts", "-n", "0", "--size"),
            ("train", "resnet", "--quiet", "--n-train", "0", "--lr"),
        ]
    ),
    value=NUMBER_TEXT,
)
def test_numbers_refused_or_accepted_before_work(tmp_path_factory, small_maps, command, value):
    """Each example ends before any heavy work: a sibling option is always invalid, or the
    number under test is refused; the run command gets an invalid output suffix last."""
    paths, before = small_maps
    d = tmp_path_factory.mktemp("numz")
    args: list[object] = [*command, value]
    if command[0] == "run":
        args = ["run", *paths, "--out", d / "c.badsuffix", "-q", *command[1:], value]
    elif command[:2] == ("simulate", "mm"):
        args += ["--out", d / "s", "--dec", "95"]  # always invalid: nothing is simulated
    else:
        args += ["--out", d / "s"]
    with time_limit(30):
        rc, o, err = cfw(*args)
    check_command(rc, o, err)
    assert rc == 2  # a sibling option is always bad
    assert list(d.iterdir()) == []
    assert {p: sha(p) for p in paths} == before
