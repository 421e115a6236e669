"""Shared fixtures: small seeded skies written as FITS, and a clean environment per test."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from clusterfw.core.fits_io import write_flat_sky_fits
from clusterfw.core.sky import Band, Sky


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the demo-sky cache and plugin blocking out of the user's environment."""
    monkeypatch.setenv("CLUSTERFW_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("CLUSTERFW_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("CLUSTERFW_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def car_wcs(ny: int, nx: int, pixel_arcmin: float, ra0: float = 30.0, dec0: float = -20.0) -> WCS:
    """A CAR WCS of ny x nx pixels centred on (ra0, dec0)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    w.wcs.crval = [ra0, 0.0]
    w.wcs.cdelt = [-pixel_arcmin / 60.0, pixel_arcmin / 60.0]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0 - dec0 / (pixel_arcmin / 60.0)]
    return w


def make_blob_sky(
    seed: int = 1,
    n_sources: int = 12,
    size: int = 240,
    pixel_arcmin: float = 0.5,
    amplitude: float = -60.0,
    noise: float = 10.0,
):
    """A 3-band sky with Gaussian decrements at integer pixels plus white noise.

    Returns the Sky and the true (x, y) pixel positions of the sources.
    """
    rng = np.random.default_rng(seed)
    wcs = car_wcs(size, size, pixel_arcmin)
    margin = 12
    xs, ys = [], []
    while len(xs) < n_sources:
        x, y = rng.integers(margin, size - margin, 2)
        if all((x - a) ** 2 + (y - b) ** 2 > 15**2 for a, b in zip(xs, ys, strict=True)):
            xs.append(int(x))
            ys.append(int(y))
    yy, xx = np.mgrid[0:size, 0:size]
    sigma = 2.0 / pixel_arcmin / 2.355
    signal = np.zeros((size, size))
    for x, y in zip(xs, ys, strict=True):
        signal += amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    bands = (
        Band("f095", 95.0, 1.6, noise * pixel_arcmin),
        Band("f150", 150.0, 1.2, noise * pixel_arcmin),
        Band("f220", 220.0, 1.0, noise * pixel_arcmin),
    )
    tsz = {"f095": 1.0, "f150": 0.7, "f220": -0.1}
    maps = np.stack([tsz[b.name] * signal + rng.normal(0, noise, (size, size)) for b in bands])
    return Sky(maps.astype(np.float32), wcs, bands), np.array(xs), np.array(ys)


@pytest.fixture
def blob_maps(tmp_path):
    """Three FITS files of a seeded sky with 12 injected decrements, and their truth."""
    sky, xs, ys = make_blob_sky()
    paths = write_flat_sky_fits(sky, tmp_path, prefix="map")
    return paths, sky, xs, ys
