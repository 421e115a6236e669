"""``frcnn`` on optical mosaics: the layer reader resamples DES-like coadd tiles (one tangent
point each) quickly and in bounded memory, and matches exact per-pixel WCS transforms."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from clusterfw.core.layers import cutout as cutout_mod
from clusterfw.core.layers import sort_into_layers
from clusterfw.core.layers.cutout import read_cutout
from clusterfw.core.layers.footprint import TanRegion

PIX = 0.9  # arcsec


def _tan(ra0: float, dec0: float, n: int) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-PIX / 3600.0, PIX / 3600.0]
    return w


def _field(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth sky pattern (varies on ~1' scales), so resampled values can be checked."""
    return (
        1.0
        + np.sin(np.radians(ra) * 3000.0) * np.cos(np.radians(dec) * 2500.0)
        + 0.3 * np.cos(np.radians(ra + dec) * 4100.0)
    )


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """2 × 2 coadd tiles of 800² px (12') per band, each with its own tangent point."""
    d = tmp_path_factory.mktemp("mosaic")
    paths = []
    n = 800
    step = (n - 40) * PIX / 3600.0  # 40 px overlap
    yy, xx = np.mgrid[0:n, 0:n]
    for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        dec0 = -45.0 + (i - 0.5) * step
        ra0 = 60.0 + (j - 0.5) * step / np.cos(np.radians(dec0))
        w = _tan(ra0, dec0, n)
        ra, dec = w.pixel_to_world_values(xx, yy)
        data = _field(ra, dec).astype(np.float32)
        for band in "gri":
            h = w.to_header()
            h["FILTER"] = band
            h["BUNIT"] = "nanomaggy"
            h["PSFFWHM"] = 1.0
            p = d / f"optical_{band}_t{k}.fits"
            fits.PrimaryHDU(data, h).writeto(p)
            paths.append(p)
    return sort_into_layers(paths)["optical"]


def test_mosaic_cutout_matches_exact_transforms_and_truth(mosaic, monkeypatch):
    assert mosaic.pixelisation.common_wcs_header is None
    region = TanRegion(60.0, -45.0, 5.0)  # 10' across the four tiles' corner
    fast = read_cutout(mosaic, region)
    monkeypatch.setattr(cutout_mod, "MAP_MAX_ERROR_PIX", -1.0)  # exact transforms everywhere
    exact = read_cutout(mosaic, region)
    ny, nx = fast.shape
    assert fast.pixels.shape == exact.pixels.shape and 665 <= ny == nx <= 668
    assert np.isfinite(fast.pixels).all()
    np.testing.assert_array_equal(np.isfinite(fast.pixels), np.isfinite(exact.pixels))
    assert np.max(np.abs(fast.pixels - exact.pixels)) < 1e-4
    # and both follow the sky pattern (bilinear error only)
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = fast.wcs.pixel_to_world_values(xx, yy)
    assert np.max(np.abs(fast.pixels[1] - _field(ra, dec))) < 0.02


def test_mosaic_cutout_memory_follows_chunks_not_tile(mosaic, monkeypatch):
    region = TanRegion(60.0, -45.0, 8.0)  # 16' cutout: 1067² px, 3 bands
    monkeypatch.setattr(cutout_mod, "CHUNK_PIXELS", 1 << 16)
    tracemalloc.start()
    out = read_cutout(mosaic, region)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ny, nx = out.pixels.shape[1:]
    result = 3 * ny * nx * 4
    # the output, one band's working copy, the file sections: no per-pixel float64 coordinate
    # arrays over the whole cutout (those alone would be 4 × 8 bytes per pixel)
    assert peak < result + 2 * ny * nx * 4 + 4 * 800 * 800 * 8, (peak / 2**20, result / 2**20)
    assert np.isfinite(out.pixels).mean() > 0.6
