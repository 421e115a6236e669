"""``--workers 1`` and ``--workers 2`` give bit-identical catalogues (HEALPix and flat skies)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import healpy as hp
import numpy as np
import pyarrow.parquet as pq

from clusterfw.core.fits_io import write_healpix_sky_fits
from clusterfw.core.sky import Band, HealpixSky
from clusterfw.core.tiling import portable_wcs, tan_wcs
from tests.robustness.test_cli_options import cfw

COLUMNS = ["candidate_id", "ra", "dec", "score", "tile_id"]


def _healpix_files(directory):
    nside = 256
    rng = np.random.default_rng(2)
    maps = rng.normal(0, 5, (2, hp.nside2npix(nside))).astype(np.float32)
    theta, _ = hp.pix2ang(nside, np.arange(maps.shape[1]))
    maps[:, theta > np.radians(9)] = np.nan  # a polar cap
    for lon, lat in [(45, 84), (200, 86), (300, 83)]:
        disc = hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(0.3))
        maps[0, disc] -= 300
        maps[1, disc] -= 200
    bands = (Band("f095", 95.0, 1.6, 5.0), Band("f150", 150.0, 1.2, 5.0))
    return write_healpix_sky_fits(HealpixSky(maps, bands), directory, "hp")


def test_healpix_workers_1_and_2_identical(tmp_path):
    paths = _healpix_files(tmp_path)
    tables = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.parquet"
        rc, _, err = cfw("run", *paths, "--out", out, "-q", "--tile-size", "300",
                         "--workers", workers)  # fmt: skip
        assert rc == 0, err
        tables.append(pq.read_table(out).select(COLUMNS))
    one, two = tables
    assert one.num_rows >= 3
    assert one.equals(two)  # exact: not a tolerance
    np.testing.assert_array_equal(np.asarray(one["ra"]), np.asarray(two["ra"]))


def _world_in_worker(wcs, x):
    """Run in a worker process: the WCS's world coordinates after the trip there."""
    return np.array(wcs.pixel_to_world_values(x, x))


def test_tile_wcs_survives_pickling_exactly():
    """What made ``--workers`` differ: the WCS pickled through header text (~1e-12 deg)."""
    ra0, dec0 = hp.pix2ang(2, 7, nest=True, lonlat=True)
    raw = tan_wcs(float(ra0), float(dec0), hp.nside2resol(256, arcmin=True) / 2, 300)
    x = np.linspace(0, 299, 500)
    exact = np.array(raw.pixel_to_world_values(x, x))
    tile_wcs = portable_wcs(raw)
    here = np.array(tile_wcs.pixel_to_world_values(x, x))
    # the trip a --workers pool makes: sent to a worker process, used there
    with ProcessPoolExecutor(max_workers=1) as pool:
        sent = pool.submit(_world_in_worker, raw, x).result()
        there = pool.submit(_world_in_worker, tile_wcs, x).result()
    assert np.abs(exact - sent).max() > 0  # the raw WCS does not survive the trip
    assert np.array_equal(here, there)
    assert np.abs(here - exact).max() < 1e-10
