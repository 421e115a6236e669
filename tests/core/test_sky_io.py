"""Readers, units, tiling: flat FITS and HEALPix."""

from __future__ import annotations

import astropy.units as u
import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from clusterfw.core.errors import InputError
from clusterfw.core.fits_io import (
    read_flat_fits,
    read_healpix_fits,
    write_flat_sky_fits,
    write_healpix_sky_fits,
)
from clusterfw.core.sky import Band, HealpixSky
from clusterfw.core.units import to_uk_cmb_factor
from tests.conftest import make_blob_sky


def test_flat_roundtrip_keeps_values_bands_and_wcs(tmp_path):
    sky = make_blob_sky(seed=3)[0]
    paths = write_flat_sky_fits(sky, tmp_path, "rt")
    back = read_flat_fits(paths)
    np.testing.assert_array_equal(back.maps, sky.maps)
    assert back.bands == sky.bands
    pix = np.array([0.0, 17.3, 239.0])
    np.testing.assert_allclose(
        back.wcs.pixel_to_world_values(pix, pix[::-1]),
        sky.wcs.pixel_to_world_values(pix, pix[::-1]),
        atol=1e-10,
    )
    assert [i.band for i in back.inputs] == ["f095", "f150", "f220"]
    assert all(len(i.sha256) == 64 for i in back.inputs)


def test_units_converted_to_uk_cmb(tmp_path):
    sky = make_blob_sky(seed=4)[0]
    path = write_flat_sky_fits(sky, tmp_path, "k")[1]
    with fits.open(path) as hdul:
        hdu = hdul[0]
        hdu.header["BUNIT"] = "K_CMB"
        fits.PrimaryHDU(hdu.data * 1e-6, hdu.header).writeto(tmp_path / "kcmb.fits")
        hdu.header["BUNIT"] = "Jy/sr"
        factor = to_uk_cmb_factor("Jy/sr", 150.0)
        fits.PrimaryHDU(hdu.data / factor, hdu.header).writeto(tmp_path / "jy.fits")
    np.testing.assert_allclose(
        read_flat_fits([tmp_path / "kcmb.fits"]).maps[0], sky.maps[1], rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(
        read_flat_fits([tmp_path / "jy.fits"]).maps[0], sky.maps[1], rtol=1e-4, atol=1e-3
    )
    # dB/dT at 150 GHz: 1 uK_CMB is about 3.99e2 Jy/sr... check against the analytic formula
    x = (150e9 * 6.62607015e-34) / (1.380649e-23 * 2.7255)
    dbdt = (
        2 * 1.380649e-23 * (150e9 / 2.99792458e8) ** 2 * x**2 * np.exp(x) / np.expm1(x) ** 2
    ) / 1e-26  # Jy/sr per K
    assert factor == pytest.approx(1e6 / dbdt, rel=1e-4)


def test_header_overrides_and_errors(tmp_path):
    sky = make_blob_sky(seed=5)[0]
    path = write_flat_sky_fits(sky, tmp_path, "o")[0]
    with fits.open(path) as hdul:
        header = hdul[0].header
        del header["FREQ"]
        fits.PrimaryHDU(hdul[0].data, header).writeto(tmp_path / "nofreq.fits")
    with pytest.raises(InputError, match="nofreq.fits: missing FREQ header keyword"):
        read_flat_fits([tmp_path / "nofreq.fits"])
    band = read_flat_fits([tmp_path / "nofreq.fits"], {"freq": ["98"], "beam": ["2.0"]}).bands[0]
    assert band.freq_ghz == 98.0 and band.beam_fwhm_arcmin == 2.0
    with pytest.raises(InputError, match="gives 2 values for 1 files"):
        read_flat_fits([path], {"freq": ["90", "150"]})


def test_flat_tiles_have_disjoint_cores_covering_the_map():
    sky = make_blob_sky(seed=6, size=200)[0]
    tiles = sky.tiles(tile_size_arcmin=30.0, margin_arcmin=5.0)
    assert len(tiles) == 16
    yy, xx = np.mgrid[0:200, 0:200]
    ra, dec = sky.wcs.pixel_to_world_values(xx.ravel() + 0.3, yy.ravel() - 0.2)
    owners = np.sum([t.in_core(ra, dec) for t in tiles], axis=0)
    assert np.all(owners == 1)
    # the tile data with margin is the parent's data
    t = tiles[5]
    x0, y0 = t.world_to_pixel(*sky.wcs.pixel_to_world_values(100, 100))
    assert t.maps[0, int(round(float(y0))), int(round(float(x0)))] == sky.maps[0, 100, 100]


def test_healpix_roundtrip_and_tiles(tmp_path):
    nside = 256
    rng = np.random.default_rng(2)
    maps = rng.normal(0, 5, (2, hp.nside2npix(nside))).astype(np.float32)
    theta, phi = hp.pix2ang(nside, np.arange(maps.shape[1]))
    maps[:, theta > np.radians(40)] = np.nan  # observe a polar cap only
    src = hp.ang2pix(nside, 45.0, 70.0, lonlat=True)
    maps[:, src] = -500.0
    sky = HealpixSky(maps, (Band("f095", 95.0, 1.6), Band("f150", 150.0, 1.2)))
    paths = write_healpix_sky_fits(sky, tmp_path, "hp")
    back = read_healpix_fits(paths)
    np.testing.assert_allclose(back.maps, sky.maps, equal_nan=True)
    tiles = back.tiles(tile_size_arcmin=600.0, margin_arcmin=30.0)
    assert tiles and all(t.maps.shape[0] == 2 for t in tiles)
    # the injected pixel is owned by exactly one tile, which sees the decrement there
    owners = [t for t in tiles if t.in_core(np.array([45.0]), np.array([70.0]))[0]]
    assert len(owners) == 1
    x, y = owners[0].world_to_pixel(np.array([45.0]), np.array([70.0]))
    assert owners[0].maps[1, int(round(y[0])), int(round(x[0]))] < -100
    # cores tile the observed area exactly once
    ra, dec = hp.pix2ang(nside, np.flatnonzero(np.isfinite(maps[0]))[::97], lonlat=True)
    assert np.all(np.sum([t.in_core(ra, dec) for t in tiles], axis=0) == 1)


def test_healpix_nside_mismatch_names_file(tmp_path):
    a = HealpixSky(np.zeros((1, hp.nside2npix(16)), np.float32), (Band("a", 95.0, 1.6),))
    b = HealpixSky(np.zeros((1, hp.nside2npix(32)), np.float32), (Band("b", 150.0, 1.2),))
    pa_ = write_healpix_sky_fits(a, tmp_path, "a")[0]
    pb = write_healpix_sky_fits(b, tmp_path, "b")[0]
    with pytest.raises(InputError, match=r"b_b.fits: Nside 32 differs"):
        read_healpix_fits([pa_, pb])
    assert u.Unit("deg")
