"""``clusterfw evaluate --footprint``: only where the finder's files have data."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterfw.core.fits_io import write_flat_sky_fits
from clusterfw.core.sky import Sky
from tests.conftest import make_blob_sky


def _run(*args):
    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def half_blank(tmp_path_factory):
    """Three flat maps whose right half (x >= 120 of 240) is blank, a truth and a catalogue
    with halos on the seen half, on the blank half and off the map."""
    d = tmp_path_factory.mktemp("footprint")
    sky, _, _ = make_blob_sky(n_sources=2)
    maps = sky.maps.copy()
    maps[:, :, 120:] = np.nan
    paths = write_flat_sky_fits(Sky(maps, sky.wcs, sky.bands), d, prefix="half")
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.uniform(5, 115, 30), rng.uniform(125, 235, 20), [400.0] * 10])
    ys = rng.uniform(5, 235, xs.size)
    ra, dec = sky.wcs.pixel_to_world_values(xs, ys)
    truth = {"ra": ra, "dec": dec, "z": np.full(xs.size, 0.3), "m500c": np.full(xs.size, 3e14)}
    pq.write_table(pa.table(truth), d / "truth.parquet")
    # candidates: every seen-half halo found, 5 blank-half halos "found", 4 false positives
    pick = np.r_[0:30, 30:35]
    cra = np.concatenate([ra[pick], ra[:4] + 0.02])
    cdec = np.concatenate([dec[pick], dec[:4]])
    score = np.concatenate([np.full(pick.size, 9.0), np.full(4, 6.0)])
    pq.write_table(pa.table({"ra": cra, "dec": cdec, "score": score}), d / "cat.parquet")
    return d, paths


def test_footprint_keeps_only_halos_and_candidates_where_the_maps_have_data(half_blank):
    d, paths = half_blank
    common = ["evaluate", d / "cat.parquet", "--truth", d / "truth.parquet", "--mass-min", "1e14",
              "--mass-col", "m500c"]  # fmt: skip
    whole = _run(*common, "--json", d / "whole.json")
    assert whole.exit_code == 0, whole.output
    args = [a for p in paths for a in ("--footprint", p)]
    inside = _run(*common, *args, "--json", d / "inside.json")
    assert inside.exit_code == 0, inside.output
    assert "30 of 60 truth halos and 34 of 39 candidates inside" in inside.output
    a = json.loads((d / "whole.json").read_text())["results"]["score"]["best_f1"]
    b = json.loads((d / "inside.json").read_text())
    assert b["footprint"]["truth_inside"] == 30 and b["footprint"]["candidates_inside"] == 34
    best = b["results"]["score"]["best_f1"]
    assert (a["tp"], a["fn"]) == (35, 25)  # halos the finder could not see count as missed
    assert (best["tp"], best["fn"]) == (30, 0)  # ... and do not, inside its footprint


def test_footprint_of_one_band_file_is_enough(half_blank):
    d, paths = half_blank
    got = _run("evaluate", d / "cat.parquet", "--truth", d / "truth.parquet", "--mass-col",
               "m500c", "--footprint", paths[1])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert "30 of 60 truth halos" in got.output


def test_footprint_errors_are_one_line(half_blank, tmp_path):
    d, _ = half_blank
    bad = tmp_path / "notfits.fits"
    bad.write_text("hello")
    got = _run("evaluate", d / "cat.parquet", "--truth", d / "truth.parquet", "--mass-col",
               "m500c", "--footprint", bad)  # fmt: skip
    assert got.exit_code == 2
    lines = [ln for ln in got.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "notfits.fits" in lines[0]


def test_healpix_footprint_is_the_seen_pixels(tmp_path):
    import healpy as hp

    from clusterfw.core.evaluation.footprint import healpix_has_data
    from clusterfw.core.layers.pixelisation import HealpixFile

    nside = 64
    m = np.full(hp.nside2npix(nside), hp.UNSEEN, dtype=np.float32)
    disc = hp.query_disc(nside, hp.ang2vec(30.0, -30.0, lonlat=True), np.radians(5.0))
    m[disc] = 1.0
    path = tmp_path / "map.fits"
    hp.write_map(str(path), m, dtype=np.float32)
    file = HealpixFile(str(path), 1, nside, False, 1.0)
    ra = np.array([30.0, 30.0, 120.0])
    dec = np.array([-30.0, -37.0, 10.0])
    assert healpix_has_data(file, ra, dec).tolist() == [True, False, False]
