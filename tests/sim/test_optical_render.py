"""Optical images: PSF, noise against the preset depth, flux, FITS files, reproducibility."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from clusterfw.core.errors import ClusterfwError
from clusterfw.sim import halos as halo_mod
from clusterfw.sim.optical import OpticalFootprint, get_preset, render_optical, write_optical
from clusterfw.sim.optical import render as rnd
from clusterfw.sim.optical.io import mosaic_tiles, pointed_fields


def _halos() -> pa.Table:
    m500 = np.array([4e14, 1.5e14])
    z = np.array([0.25, 0.45])
    conv = halo_mod.convert_m500c(m500, z)
    return pa.table(
        {
            "halo_id": [7, 9],
            "ra": [150.0, 150.03],
            "dec": [2.0, 1.98],
            "z": z,
            "m500c": m500,
            "m200c": conv["m200c"],
            "c200c": conv["c200c"],
        }
    )


def test_moffat_kernel_fwhm_and_normalisation():
    k = rnd.moffat_kernel(8.0, 3.0, oversample=9)
    assert k.sum() == pytest.approx(1.0)
    c = k.shape[0] // 2
    row = k[c]
    half = row.max() / 2
    # linear interpolation of the half-maximum crossing on the central row
    i = np.flatnonzero(row[c:] < half)[0] + c
    x = (i - 1) + (row[i - 1] - half) / (row[i - 1] - row[i])
    assert 2 * (x - c) == pytest.approx(8.0, rel=0.03)


def test_blank_sky_noise_matches_preset_depth():
    p = get_preset("des")
    fp = OpticalFootprint.from_center(30.0, -20.0, 0.05, p.pixel_arcsec)
    f = render_optical(_halos(), fp, p, 3, bands=("r",), populations=())
    img = f.images["r"]
    sigma = f.sigma_pixel("r")
    assert img.std() == pytest.approx(sigma, rel=0.01)
    # sigma encodes MAGLIM: PSF-weighted flux of blank positions scatters by f10 / 10
    k = f.kernel("r")
    h = k.shape[0] // 2
    w = k / np.sum(k**2)  # optimal (matched-filter) flux estimator weights
    ys, xs = np.mgrid[
        h + 1 : img.shape[0] - h - 1 : k.shape[0], h + 1 : img.shape[1] - h - 1 : k.shape[0]
    ]
    est = [
        np.sum(img[y - h : y + h + 1, x - h : x + h + 1] * w)
        for y, x in zip(ys.ravel(), xs.ravel(), strict=True)
    ]
    f10 = 10 ** (-0.4 * (p.band("r").maglim - 22.5))
    assert np.std(est) == pytest.approx(f10 / 10, rel=4 / np.sqrt(len(est)))
    assert sigma == pytest.approx(f10 / (10 * np.sqrt(1 / np.sum(k**2))))


def test_painted_flux_and_half_light_radius():
    img = np.zeros((1, 201, 201), np.float32)
    rnd.paint_sersic(
        img, np.array([100.3]), np.array([99.8]), np.array([[50.0]]), np.array([6.0]),
        np.array([1.0]), np.array([1.0]), np.array([0.0]),
    )  # fmt: skip
    assert img.sum() == pytest.approx(50.0, rel=1e-5)
    yy, xx = np.mgrid[:201, :201]
    r = np.hypot(xx - 100.3, yy - 99.8).ravel()
    order = np.argsort(r)
    cum = np.cumsum(img.ravel()[order]) / img.sum()
    # the 4 r_e truncation moves ~1 % of the light inside: r_half shrinks by ~2 %
    assert r[order][np.searchsorted(cum, 0.5)] == pytest.approx(6.0, rel=0.05)
    star = np.zeros((60, 60), np.float32)
    rnd.paint_points(star, np.array([30.4]), np.array([29.6]), np.array([7.0]), 4.0, 3.0)
    assert star.sum() == pytest.approx(7.0, rel=1e-5)
    cy, cx = np.unravel_index(np.argmax(star), star.shape)
    assert (cy, cx) == (30, 30)


def test_rendered_field_photometry_and_members():
    p = get_preset("sdss")
    fp = OpticalFootprint.from_center(150.0, 2.0, 0.08, p.pixel_arcsec)
    f = render_optical(_halos(), fp, p, 5, noise=False)
    g = f.galaxies
    assert set(f.halos["halo_id"].to_pylist()) == {7, 9}
    assert "richness" in f.halos.column_names and "richness_members" in f.halos.column_names
    assert int(np.sum(g["is_bcg"])) == 2
    members = g.filter(g["is_member"])
    assert set(members["halo_id"].to_pylist()) == {7, 9}
    total = 0.0
    for tab in (g, f.stars):
        ra, dec = tab["ra"].to_numpy(), tab["dec"].to_numpy()
        x, y = fp.to_pixel(ra, dec)
        ny, nx = fp.shape
        inner = (x > 40) & (x < nx - 40) & (y > 40) & (y < ny - 40)
        total += rnd.mag_to_nanomaggies(tab["mag_r"].to_numpy()[inner]).sum()
    img = f.images["r"]
    inner_sum = img[40:-40, 40:-40].sum()
    # sources near the inner border spill both ways; the budget closes to a few per cent
    assert inner_sum == pytest.approx(total, rel=0.05)


def test_reruns_are_bit_identical_and_bands_independent():
    p = get_preset("des")
    fp = OpticalFootprint.from_center(150.0, 2.0, 0.03, p.pixel_arcsec)
    a = render_optical(_halos(), fp, p, 42, bands=("g", "r"))
    b = render_optical(_halos(), fp, p, 42, bands=("g", "r"))
    c = render_optical(_halos(), fp, p, 42, bands=("r",))
    d = render_optical(_halos(), fp, p, 43, bands=("r",))
    assert np.array_equal(a.images["r"], b.images["r"])
    assert np.array_equal(a.images["g"], b.images["g"])
    assert a.galaxies.to_pandas().equals(b.galaxies.to_pandas())  # NaN-aware
    assert a.stars.equals(b.stars)
    assert np.array_equal(a.images["r"], c.images["r"])
    assert not np.array_equal(a.images["r"], d.images["r"])


def test_fits_files_carry_the_optical_keywords(tmp_path):
    p = get_preset("sdss")
    fp = OpticalFootprint.from_center(150.0, 2.0, 0.04, p.pixel_arcsec)
    f = render_optical(_halos(), fp, p, 1, vary_seeing=True)
    paths = write_optical(f, tmp_path, "sim")
    names = sorted(x.name for x in paths)
    assert names[:3] == ["sim_g.fits", "sim_i.fits", "sim_r.fits"]
    for band in ("g", "r", "i"):
        with fits.open(tmp_path / f"sim_{band}.fits") as hdul:
            h = hdul[0].header
            assert h["FILTER"] == band and h["BUNIT"] == "nanomaggy"
            assert h["PSFFWHM"] == pytest.approx(f.psf_fwhm_arcsec[band], abs=1e-4)
            assert h["PSFFWHM"] != p.band(band).psf_fwhm_arcsec  # drawn per field
            assert h["MAGLIM"] == p.band(band).maglim
            w = WCS(h)
            assert w.has_celestial and w.naxis == 2
            assert np.array_equal(hdul[0].data, f.images[band])
    halos = pq.read_table(tmp_path / "sim_truth_halos.parquet")
    assert halos["richness"].to_numpy().min() > 0
    gals = pq.read_table(tmp_path / "sim_truth_galaxies.parquet")
    assert {"mag_g", "mag_r", "mag_i", "halo_id", "is_red"} <= set(gals.column_names)


def test_mosaic_tiles_cover_the_field_with_overlap(tmp_path):
    p = get_preset("sdss")
    fp = OpticalFootprint.from_center(150.0, 2.0, 0.2, p.pixel_arcsec, height_deg=0.1)
    tiles = mosaic_tiles(fp, 0.1, 0.5)
    assert len(tiles) == 2
    f = render_optical(_halos(), fp, p, 2, bands=("r",), render=False)
    paths = write_optical(f, tmp_path, "m", mosaic_tile_deg=0.1, truth=False)
    assert [x.name for x in paths] == ["m_r_t000.fits", "m_r_t001.fits"]
    with fits.open(paths[0]) as h0, fits.open(paths[1]) as h1:
        w0, w1 = WCS(h0[0].header), WCS(h1[0].header)
        assert h0[0].header["TILE"] == 0 and h1[0].header["TILE"] == 1
        # the two tiles overlap by 2 × 0.5' around their shared edge
        ra_e, _ = w0.pixel_to_world_values(h0[0].data.shape[1] - 1, 0)
        ra_w, _ = w1.pixel_to_world_values(0, 0)
        assert (ra_w - ra_e) * np.cos(np.radians(2.0)) * 60 == pytest.approx(1.0, abs=0.05)


def test_large_fields_become_a_mosaic_of_the_preset_tiles(tmp_path):
    p = get_preset("sdss").model_copy(update={"tile_deg": 0.05})
    fp = OpticalFootprint.from_center(150.0, 2.0, 0.12, p.pixel_arcsec)
    f = render_optical(_halos(), fp, p, 2, bands=("r",))
    assert f.images == {}  # 0.12° > one tile: nothing painted yet
    paths = write_optical(f, tmp_path, "big", truth=False)
    assert [x.name for x in paths] == [f"big_r_t{t:03d}.fits" for t in range(9)]
    with fits.open(paths[0]) as h:  # 0.12° / 3 tiles + 2 × 0.5' overlap
        assert h[0].data.shape[0] * 0.396 / 3600 == pytest.approx(0.04 + 1 / 60, abs=2e-4)
    small = render_optical(_halos(), OpticalFootprint.from_center(150, 2, 0.06, 0.396), p, 2)
    assert set(small.images) == {"g", "r", "i"}


def test_pointed_fields_and_bad_input():
    fps = pointed_fields(_halos(), "sdss", size_pix=500, rng=1)
    assert len(fps) == 2 and fps[0].shape == (500, 500)
    x, y = fps[0].to_pixel(np.array([150.0]), np.array([2.0]))
    assert abs(x[0] - 249.5) <= 270 / 0.396 + 1e-6 and abs(y[0] - 249.5) <= 270 / 0.396 + 1e-6
    with pytest.raises(ClusterfwError, match="unknown optical preset 'hsc'"):
        get_preset("hsc")
    with pytest.raises(ClusterfwError, match="has no filter 'u'"):
        render_optical(_halos(), fps[0], "sdss", 1, bands=("u",))
    with pytest.raises(ClusterfwError, match="missing column"):
        render_optical(_halos().drop_columns(["c200c"]), fps[0], "sdss", 1)


def test_speed_per_square_degree(capsys):
    """Seconds per deg² per band at the default (DES-like) preset; printed, not asserted."""
    p = get_preset("des")
    fp = OpticalFootprint.from_center(150.0, 2.0, 0.1, p.pixel_arcsec)
    t0 = time.perf_counter()
    f = render_optical(_halos(), fp, p, 7, bands=("r",), render=False)
    t1 = time.perf_counter()
    f.render("r")
    t2 = time.perf_counter()
    with capsys.disabled():
        print(
            f"\noptical des: catalogue {(t1 - t0) / fp.area_deg2:.1f} s/deg², "
            f"render {(t2 - t1) / fp.area_deg2:.1f} s/deg²/band ({f.galaxies.num_rows} galaxies)"
        )
