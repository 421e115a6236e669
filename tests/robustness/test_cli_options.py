"""Options validated before any work: one line naming the option, exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterfw.core.catalog_io import write_catalogue
from clusterfw.core.fits_io import write_flat_sky_fits
from clusterfw.core.schema import candidate_table
from tests.conftest import make_blob_sky


def cfw(*args: object) -> tuple[int, str, str]:
    """The real command group, in-process (its error handling included)."""
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def one_error(rc: int, stderr: str) -> str:
    """The single stderr line of a user error (exit 2)."""
    assert rc == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("clusterfw: error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    d = tmp_path_factory.mktemp("maps")
    sky, _, _ = make_blob_sky(size=96)
    return write_flat_sky_fits(sky, d, prefix="m")


@pytest.fixture(scope="module")
def evalfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(30, 31, 20), rng.uniform(-21, -20, 20)
    cat = candidate_table(
        finder="mf", score_kind="snr", ra=ra, dec=dec, score=rng.uniform(4, 9, 20)
    )
    write_catalogue(cat, d / "cat.parquet")
    truth = {"ra": ra, "dec": dec, "z": np.full(20, 0.5), "mvir": np.full(20, 5e14)}
    pq.write_table(pa.table(truth), d / "truth.parquet")
    bad = dict(truth, ra=np.where(np.arange(20) == 7, np.nan, ra))
    pq.write_table(pa.table(bad), d / "nan_truth.parquet")
    pq.write_table(pa.table({k: v[:0] for k, v in truth.items()}), d / "empty_truth.parquet")
    sky = dict(truth, ra=np.linspace(0, 359, 20), dec=np.linspace(-89, 89, 20))
    pq.write_table(pa.table(sky), d / "allsky_truth.parquet")
    return d


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tile-size", "0"], "--tile-size: must be > 0, got 0"),
        (["--tile-size", "-5"], "--tile-size: must be > 0, got -5"),
        (["--tile-size", "nan"], "--tile-size: must be a finite number, got nan"),
        (["--tile-size", "inf"], "--tile-size: must be a finite number, got inf"),
        (["--tile-size", "big"], "--tile-size: 'big' is not a number"),
        (["--workers", "0"], "--workers: 0 is not in the range x>=1."),
        (["--workers", "-3"], "--workers: -3 is not in the range x>=1."),
    ],
)
def test_run_options(maps, tmp_path, args, message):
    out = tmp_path / "c.parquet"
    rc, _, err = cfw("run", *map(str, maps), "--out", out, "-q", *args)
    line = one_error(rc, err)
    assert message in line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_run_tile_count_limit(tmp_path):
    sky, _, _ = make_blob_sky(size=240)
    paths = write_flat_sky_fits(sky, tmp_path, prefix="m")
    out = tmp_path / "c.parquet"
    rc, _, err = cfw("run", *map(str, paths), "--out", out, "-q", "--tile-size", "1e-6")
    line = one_error(rc, err)
    assert line == (
        "clusterfw: error: --tile-size: 1e-06 arcmin cuts this sky into about 57600 tiles "
        "(at most 20000); use larger tiles"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--radius", "-1"], "--radius: must be > 0, got -1"),
        (["--radius", "nan"], "--radius: must be a finite number, got nan"),
        (["--threshold", "-2"], "--threshold: must be >= 0, got -2"),
        (["--threshold", "nan"], "--threshold: must be a finite number, got nan"),
        (["--cutout", "0.001"], "--cutout: must be >= 0.5, got 0.001"),
        (["--cutout", "-8"], "--cutout: must be >= 0.5, got -8"),
        (["--cutout", "nan"], "--cutout: must be a finite number, got nan"),
        (["--mass-min", "inf"], "--mass-min: must be a finite number, got inf"),
    ],
)
def test_evaluate_options(evalfiles, args, message):
    d = evalfiles
    rc, _, err = cfw(
        "evaluate", d / "cat.parquet", "--truth", d / "truth.parquet", "--json", d / "e.json", *args
    )
    assert message in one_error(rc, err)
    assert not (d / "e.json").exists()


def test_evaluate_nan_truth_and_cutout_count(evalfiles):
    d = evalfiles
    rc, _, err = cfw("evaluate", d / "cat.parquet", "--truth", d / "nan_truth.parquet")
    assert one_error(rc, err) == (
        f"clusterfw: error: {d / 'nan_truth.parquet'}: 1 halos with non-finite ra/dec "
        "(first at row 7)"
    )
    rc, _, err = cfw(
        "evaluate", d / "cat.parquet", "--truth", d / "allsky_truth.parquet", "--cutout", "0.5"
    )
    line = one_error(rc, err)
    assert line.startswith("clusterfw: error: --cutout: 0.5 arcmin cutouts over the truth")
    assert "(at most 50000000); use larger cutouts" in line
    rc, out, err = cfw("evaluate", d / "cat.parquet", "--truth", d / "truth.parquet")
    assert rc == 0, err


def test_calibrate_empty_truth(evalfiles):
    d = evalfiles
    rc, _, err = cfw(
        "calibrate", d / "cat.parquet", "--truth", d / "empty_truth.parquet", "--out", d / "c.json"
    )
    assert one_error(rc, err) == (
        f"clusterfw: error: {d / 'empty_truth.parquet'}: truth catalogue has no halos"
    )
    assert not (d / "c.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "1e6"], "--size: must be <= 180, got 1e6"),
        (["--size", "0"], "--size: must be > 0, got 0"),
        (["--pixel", "nan"], "--pixel: must be a finite number, got nan"),
        (
            ["--size", "100", "--pixel", "0.01"],
            "--size: a 100 x 100 deg patch at 0.01' is 600000 x 600000 pixels (at most 50000000)",
        ),
        (["--seed", "-1"], "--seed: -1 is not in the range x>=0."),
        (["--dec", "89"], "--dec: must be <= 80, got 89"),
        (
            ["--healpix-nside", "3000"],
            "--healpix-nside: must be a power of 2 between 16 and 4096, got 3000",
        ),
        (["--prefix", "../x"], "--prefix: must be a plain file-name prefix"),
    ],
)
def test_simulate_mm_options(tmp_path, args, message):
    out = tmp_path / "sim"
    rc, _, err = cfw("simulate", "mm", "--out", out, *args)
    assert message in one_error(rc, err)
    assert not out.exists()


def test_simulate_bad_config(tmp_path):
    out = tmp_path / "sim"
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"m500c_min": 1e14,,}')
    rc, _, err = cfw("simulate", "mm", "--out", out, "--config", cfg)
    assert one_error(rc, err) == (
        f"clusterfw: error: {cfg}: not valid JSON "
        "(Expecting property name enclosed in double quotes at line 1 column 20)"
    )
    cfg.write_text("[1, 2]")
    rc, _, err = cfw("simulate", "mm", "--out", out, "--config", cfg)
    assert one_error(rc, err).endswith("must hold a JSON object of simulation parameters")
    cfg.write_text(json.dumps({"m500c_min": 1.0}))
    rc, _, err = cfw("simulate", "mm", "--out", out, "--config", cfg)
    assert "bad simulation parameter m500c_min" in one_error(rc, err)
    cfg.write_text(json.dumps({"colour": "red"}))
    rc, _, err = cfw("simulate", "mm", "--out", out, "--config", cfg)
    assert "bad simulation parameter colour: Extra inputs" in one_error(rc, err)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "0"], "--n: 0 is not in the range 1<=x<=10000000."),
        (["-n", "-5"], "--n: -5 is not in the range 1<=x<=10000000."),
        (["-n", "4", "--size", "0"], "--size: 0 is not in the range 8<=x<=1024."),
        (["-n", "4", "--size", "-32"], "--size: -32 is not in the range 8<=x<=1024."),
        (["-n", "4", "--chunk", "0"], "--chunk: 0 is not in the range x>=1."),
        (["-n", "4", "--pixel", "-0.25"], "--pixel: must be > 0, got -0.25"),
        (["-n", "4", "--positive-fraction", "1.5"], "--positive-fraction: must be <= 1, got 1.5"),
        (
            ["-n", "100000", "--size", "1024"],
            "--chunk: shards of 4096 cutouts of 1024x1024 pixels",
        ),
    ],
)
def test_simulate_cutouts_options(tmp_path, args, message):
    out = tmp_path / "cut"
    rc, _, err = cfw("simulate", "cutouts", "--out", out, *args)
    assert message in one_error(rc, err)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--width", "0"], "--width: 0 is not in the range 1<=x<=1024."),
        (["--n-train", "0"], "--n-train: 0 is not in the range 2<=x<=10000000."),
        (["--lr", "-0.1"], "--lr: must be > 0, got -0.1"),
        (["--lr", "nan"], "--lr: must be a finite number, got nan"),
        (["--batch-size", "0"], "--batch-size: 0 is not in the range 1<=x<=65536."),
        (["--ratios", "1,x"], "--ratios: expected comma-separated integers, got '1,x'"),
        (["--ratios", "0,2"], "--ratios: expected integers from 1 to 1000, got '0,2'"),
        (["--seed", "-4"], "--seed: -4 is not in the range x>=0."),
    ],
)
def test_train_options_before_any_simulation(tmp_path, args, message):
    out = tmp_path / "model"
    rc, _, err = cfw("train", "resnet", "--out", out, "--quiet", *args)
    assert message in one_error(rc, err)
    assert not out.exists()
