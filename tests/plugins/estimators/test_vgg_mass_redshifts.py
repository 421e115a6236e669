"""Redshift lookup order of vgg_mass and the refusal of bad redshift catalogues."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterfw.core.errors import InputError
from clusterfw.plugins.estimators.vgg_mass.redshifts import lookup_redshifts


def _table(**cols):
    base = {
        "ra": pa.array([10.0, 10.1, 10.2, 10.3]),
        "dec": pa.array([-5.0, -5.0, -5.0, -5.0]),
        "finder": pa.array(["mf", "frcnn", "mf", "mf"]),
    }
    base.update({k: pa.array(v) for k, v in cols.items()})
    return pa.table(base)


def _catalogue(path, ra, dec, z):
    pq.write_table(pa.table({"ra": ra, "dec": dec, "z": z}), path)
    return path


def test_order_z_then_finder_z_then_catalogue_then_none(tmp_path):
    # row 0: z column; row 1: its own finder's frcnn_z before mf_z; row 2: another finder's z;
    # row 3: only the catalogue (0.5' away) has it
    t = _table(
        z=[0.3, None, None, None],
        mf_z=[0.9, 0.8, 0.45, None],
        frcnn_z=[0.9, 0.25, None, None],
        vgg_mass_z=[0.7, 0.7, 0.7, 0.7],
    )
    cat = _catalogue(tmp_path / "z.parquet", [10.0, 10.3 + 0.5 / 60], [-5.0, -5.0], [0.11, 0.62])
    z, src = lookup_redshifts(t, cat)
    assert z.tolist() == [0.3, 0.25, 0.45, 0.62]
    assert src.tolist() == ["z", "frcnn_z", "mf_z", "catalogue"]
    z, src = lookup_redshifts(t.slice(3))
    assert np.isnan(z[0]) and src.tolist() == ["none"]


def test_catalogue_match_radius_is_one_arcmin(tmp_path):
    t = _table()
    cat = _catalogue(
        tmp_path / "z.parquet", [10.0 + 0.9 / 60 / np.cos(np.radians(5)), 10.1 + 1.2 / 60],
        [-5.0, -5.0], [0.2, 0.3],
    )  # fmt: skip
    z, src = lookup_redshifts(t, cat)
    assert z[0] == 0.2 and np.isnan(z[1]) and src.tolist()[:2] == ["catalogue", "none"]


def test_nan_in_the_table_falls_through(tmp_path):
    t = _table(z=[np.nan, 0.5, None, -1.0])
    z, src = lookup_redshifts(t)
    assert np.isnan(z[0]) and z[1] == 0.5 and np.isnan(z[3])
    assert src.tolist() == ["none", "z", "none", "none"]


def test_catalogue_without_z_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "noz.parquet"
    pq.write_table(pa.table({"ra": [1.0], "dec": [2.0], "redshift": [0.3]}), path)
    with pytest.raises(InputError) as exc:
        lookup_redshifts(_table(), path)
    assert str(exc.value) == f"{path}: redshift catalogue has no z column"


def test_catalogue_with_nan_z_is_one_line_naming_the_file(tmp_path):
    path = _catalogue(
        tmp_path / "nan.parquet", [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.3, np.nan, 0.2]
    )
    with pytest.raises(InputError) as exc:
        lookup_redshifts(_table(), path)
    assert str(exc.value) == f"{path}: 1 of 3 redshifts are NaN, infinite or negative"


def test_csv_and_unreadable_catalogues(tmp_path):
    good = tmp_path / "z.csv"
    good.write_text("ra,dec,z\n10.2,-5.0,0.33\n")
    z, src = lookup_redshifts(_table(), good)
    assert z[2] == 0.33 and src[2] == "catalogue"
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all")
    with pytest.raises(InputError, match=r"junk.fits: cannot read the redshift catalogue"):
        lookup_redshifts(_table(), junk)
    with pytest.raises(InputError, match=r"missing.parquet: no such redshift catalogue"):
        lookup_redshifts(_table(), tmp_path / "missing.parquet")


@pytest.mark.parametrize(
    ("columns", "problem"),
    [
        ({"ra": [1.0], "dec": [2.0]}, "redshift catalogue has no z column"),
        ({"ra": [1.0], "dec": [2.0], "z": [np.nan]}, "1 of 1 redshifts are NaN, infinite or"),
    ],
)
def test_clusterfw_run_refuses_a_bad_catalogue_before_any_work(tmp_path, columns, problem):
    """One line, exit 2, no output: the catalogue is read when the estimator is built."""
    import subprocess
    import sys

    cat = tmp_path / "z.parquet"
    pq.write_table(pa.table(columns), cat)
    out = tmp_path / "cat.parquet"
    cmd = [
        sys.executable, "-c", "from clusterfw.core.cli import main; main()",
        "run", str(tmp_path / "not_read.fits"),
        "-f", "mf", "-e", "vgg_mass", "-o", f"vgg_mass.redshifts={cat}", "--out", str(out),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"clusterfw: error: {cat}: {problem}")
    assert res.stdout == ""
    assert not out.exists()
