"""Lazy reads: memory follows the tile, not the map; RICE, gzip, mosaics, X-ray planes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from astropy.io import fits

from clusterfw.core.layers import BoxCore, Mosaic, TileJob, sort_into_layers
from clusterfw.core.layers.cutout import read_cutout
from clusterfw.core.layers.footprint import BoxRegion, tan_wcs
from clusterfw.core.layers.pixelisation import wcs_to_header

from .conftest import smooth_field, tan_header, write_image

MM = {"FREQ": 150.0, "BEAMFWHM": 1.4, "BUNIT": "K_CMB"}


def _sparse_image(path, n):
    """An n x n float32 FITS image of zeros written as a sparse file (instant, no RAM)."""
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = n
    header["NAXIS2"] = n
    header.update(tan_header(30.0, -20.0, 2.0, n, n))
    header.update(MM)
    text = header.tostring().encode()
    size = len(text) + -(-n * n * 4 // 2880) * 2880
    with open(path, "wb") as fh:
        fh.write(text)
        fh.truncate(size)
    return path


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _job(layer, box, margin=1.0):
    core = BoxCore(layer.pixelisation.wcs_header, *box)
    return TileJob(0, core, (layer,), ((layer.name, margin),))


def test_tile_read_of_large_image_allocates_the_tile(tmp_path):
    big = sort_into_layers([_sparse_image(tmp_path / "big.fits", 8000)])["mm"]
    job = _job(big, (4000, 4200, 3000, 3200))
    cut = job.read("mm")
    assert cut.pixels.shape == (1, 260, 260)  # 1 arcmin margin = 30 px and np.all(cut.pixels == 0)
    tile_bytes = cut.pixels.nbytes
    peak = _peak_bytes(lambda: job.read("mm"))
    assert peak < 8 * tile_bytes  # ~0.27 MB tile; the map is 256 MB
    # the measurement can fail: a whole-map read of a smaller map is seen in full
    small = sort_into_layers([_sparse_image(tmp_path / "small.fits", 2000)])["mm"]
    whole = _job(small, (0, 2000, 0, 2000), margin=0.0)
    assert _peak_bytes(lambda: whole.read("mm")) > 2000 * 2000 * 4


def test_rice_tile_read_allocates_the_tile(tmp_path):
    n = 4000
    data = np.zeros((n, n), np.float32)
    data[2000:2100, 1000:1100] = 5.0
    path = tmp_path / "big.fits.fz"
    hdu = fits.CompImageHDU(
        data, tan_header(30.0, -20.0, 2.0, n, n), compression_type="RICE_1", tile_shape=(100, 100)
    )
    for key, value in MM.items():
        hdu.header[key] = value
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    del data, hdu
    layer = sort_into_layers([path])["mm"]
    file = layer.bands[0].files[0]
    assert (file.hdu, file.compression) == (1, "tile")
    job = _job(layer, (1950, 2150, 950, 1150))
    cut = job.read("mm")
    # K_CMB -> µK_CMB; RICE quantisation of a constant block is exact
    np.testing.assert_allclose(cut.pixels[0, 80:180, 80:180], 5.0e6)  # 30 px margin
    assert np.all(cut.pixels[0, :80] == 0) and cut.pixels.shape == (1, 260, 260)
    peak = _peak_bytes(lambda: job.read("mm"))
    assert peak < 16 * cut.pixels.nbytes  # a 64 MB map, ~0.16 MB tile


def test_gzip_read_through_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERFW_CACHE_DIR", str(tmp_path / "cache"))
    h = tan_header(30.0, -20.0, 30.0, 50, 60)
    data = np.arange(50 * 60, dtype=np.float32).reshape(50, 60)
    gz = write_image(tmp_path / "m.fits", data, h, {**MM, "BUNIT": "uK_CMB"}, compress="gzip")
    assert gz.name == "m.fits.gz"
    layer = sort_into_layers([gz])["mm"]
    assert layer.bands[0].files[0].compression == "gzip"
    cut = _job(layer, (10, 20, 5, 15), margin=0.0).read("mm")
    np.testing.assert_array_equal(cut.pixels[0], data[10:20, 5:15])
    cached = list((tmp_path / "cache" / "gunzip").glob("m-*.fits"))
    assert len(cached) == 1 and cached[0].stat().st_size % 2880 == 0


def _mosaic_pieces(tmp_path, data, header_fn, cards):
    """Four overlapping pieces of one image, each with its own CRPIX."""
    paths = []
    for k, (y0, x0) in enumerate([(0, 0), (0, 50), (45, 0), (45, 50)]):
        piece = data[y0 : y0 + 55, x0 : x0 + 60]
        header = header_fn(y0, x0)
        paths.append(write_image(tmp_path / f"tile{k}.fits", piece, header, cards))
    return paths


def test_mosaic_of_aligned_pieces_gives_the_same_pixels(tmp_path):
    full_header = tan_header(150.0, 2.0, 0.5, 100, 110)
    rng = np.random.default_rng(4)
    data = rng.normal(5, 1, (100, 110)).astype(np.float32)
    cards = {"FILTER": "r", "BUNIT": "nanomaggy", "PSFFWHM": 0.9}
    one = write_image(tmp_path / "one.fits", data, full_header, cards)

    def shifted(y0, x0):
        h = full_header.copy()
        h["CRPIX1"] -= x0
        h["CRPIX2"] -= y0
        return h

    pieces = _mosaic_pieces(tmp_path, data, shifted, cards)
    single = sort_into_layers([one])["optical"]
    mosaic = sort_into_layers(pieces)["optical"]
    assert isinstance(mosaic.pixelisation, Mosaic)
    assert mosaic.pixelisation.common_wcs_header is not None
    assert len(mosaic.band("r").files) == 4
    region = BoxRegion(single.pixelisation.wcs_header, 30, 70, 35, 80)
    a = read_cutout(single, region)
    b = read_cutout(mosaic, region)
    assert a.pixels.shape == b.pixels.shape == (1, 40, 45)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_allclose(
        a.wcs.pixel_to_world_values(3, 4), b.wcs.pixel_to_world_values(3, 4), atol=1e-12
    )


def test_mosaic_of_reprojected_pieces_within_interpolation_tolerance(tmp_path):
    ny, nx, pixel = 100, 110, 6.0  # arcsec
    full = tan_header(150.0, 2.0, pixel, ny, nx)
    full_wcs = tan_wcs(150.0, 2.0, pixel / 60.0, nx, ny)
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = full_wcs.pixel_to_world_values(xx, yy)
    one = write_image(
        tmp_path / "one.fits",
        smooth_field(ra, dec).astype(np.float32),
        full,
        {"FILTER": "g", "BUNIT": "nanomaggy"},
    )
    paths = []
    for k, (y0, x0) in enumerate([(0, 0), (0, 50), (45, 0), (45, 50)]):
        # each piece its own tangent point (like DES coadd tiles)
        cra, cdec = full_wcs.pixel_to_world_values(x0 + 29.5, y0 + 27.0)
        w = tan_wcs(float(cra), float(cdec), pixel / 60.0, 60, 55)
        py, px = np.mgrid[0:55, 0:60]
        pra, pdec = w.pixel_to_world_values(px, py)
        paths.append(
            write_image(
                tmp_path / f"p{k}.fits",
                smooth_field(pra, pdec).astype(np.float32),
                w.to_header(),
                {"FILTER": "g", "BUNIT": "nanomaggy"},
            )
        )
    single = sort_into_layers([one])["optical"]
    mosaic = sort_into_layers(paths)["optical"]
    assert mosaic.pixelisation.common_wcs_header is None
    region = BoxRegion(single.pixelisation.wcs_header, 20, 80, 20, 90)
    grid = (full_wcs.slice((slice(20, 80), slice(20, 90))), 60, 70)
    a = read_cutout(single, region)
    b = read_cutout(mosaic, region, grid=grid)
    assert a.pixels.shape == b.pixels.shape == (1, 60, 70)
    assert np.isfinite(b.pixels).all()
    # the field varies by ~0.08 per pixel; bilinear error is a small fraction of that
    assert np.max(np.abs(a.pixels - b.pixels)) < 0.02
    # the default grid is a TAN grid at the layer's own pixel scale covering the region
    c = read_cutout(mosaic, region)
    assert mosaic.pixelisation.pixel_arcmin == pytest.approx(0.1)
    assert c.pixels.shape[1] >= 60 and c.pixels.shape[2] >= 70


def test_xray_cutout_counts_exposure_background(tmp_path):
    h = tan_header(150.0, 2.0, 4.0, 30, 30)
    counts = np.random.default_rng(1).poisson(2.0, (30, 30)).astype(np.int16)
    exposure = np.full((30, 30), 1500.0, np.float32)
    background = np.full((30, 30), 0.25, np.float32)
    path = write_image(
        tmp_path / "x.fits",
        counts,
        h,
        {"BUNIT": "count", "E_MIN": 0.5, "E_MAX": 2.0, "PSFFWHM": 16.0},
        {"EXPOSURE": exposure, "BACKGROUND": background},
    )
    uniform = write_image(
        tmp_path / "u.fits",
        counts,
        tan_header(150.0, 2.0, 4.0, 30, 30),
        {"BUNIT": "count", "E_MIN": 2.0, "E_MAX": 7.0, "EXPOSURE": 800.0},
    )
    layer = sort_into_layers([path, uniform])["xray"]
    assert layer.band_names == ("0.5-2keV", "2-7keV")
    job = _job(layer, (5, 15, 10, 20), margin=0.0)
    cut = job.read("xray")
    np.testing.assert_array_equal(cut.pixels[0], counts[5:15, 10:20].astype(np.float32))
    assert np.all(cut.exposure[0] == 1500.0) and np.all(cut.exposure[1] == 800.0)
    assert np.all(cut.background[0] == 0.25) and np.all(np.isnan(cut.background[1]))
    assert cut.unit == "count"


def test_header_string_round_trip(tmp_path):
    w = tan_wcs(10.0, -5.0, 0.5, 20)
    from clusterfw.core.layers.pixelisation import wcs_from_header

    back = wcs_from_header(wcs_to_header(w))
    np.testing.assert_allclose(
        back.pixel_to_world_values(3.0, 7.0), w.pixel_to_world_values(3.0, 7.0), atol=1e-12
    )
