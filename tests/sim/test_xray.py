"""X-ray layer: Poisson statistics, counts vs L_X / exposure / area, AGN counts, FITS keywords."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits

from clusterfw.sim.footprint import Footprint
from clusterfw.sim.observables import flux_500
from clusterfw.sim.xray import (
    XRAY_PRESETS,
    agn_cumulative_counts,
    beta_cylinder_to_sphere,
    exposure_maps,
    render_xray,
    sample_agn_fluxes,
    write_xray,
)

NO_AGN = {"agn_s_min": 1e-11, "agn_s_max": 1.000001e-11}  # expected number ~1e-7 per field


def _halo_table(n: int = 0, **cols: np.ndarray) -> pa.Table:
    base = {
        "ra": np.full(n, 60.0),
        "dec": np.full(n, -45.0),
        "z": np.full(n, 0.3),
        "theta500_arcmin": np.full(n, 3.0),
        "t_kev": np.full(n, 4.0),
        "fx500": np.full(n, 1e-13),
    }
    base.update(cols)
    return pa.table({k: pa.array(np.asarray(v, float)) for k, v in base.items()})


def test_blank_field_counts_are_poisson_with_the_background_rate():
    p = XRAY_PRESETS["erosita"].model_copy(update=NO_AGN)
    fp = Footprint(60.0, -45.0, 1.0, 1.0)
    field = render_xray(_halo_table(), fp, p, np.random.default_rng(7))
    pix_arcmin2 = (p.pixel_arcsec / 60.0) ** 2
    rate = (p.sky_bkg + p.particle_bkg) * p.exposure_s * pix_arcmin2
    assert field.agn.num_rows == 0
    np.testing.assert_allclose(field.background, rate, rtol=1e-6)
    # 10x10-pixel apertures: mean and variance both equal the expected counts
    c = field.counts[:900, :900].reshape(90, 10, 90, 10).sum(axis=(1, 3)).ravel()
    lam = rate * 100
    n = c.size
    assert c.mean() == pytest.approx(lam, abs=4 * math.sqrt(lam / n))
    # the variance of a Poisson sample variance is ≈ (λ + 2λ²/(n-1))/n ... ≈ 2λ²/n for big λ
    assert c.var(ddof=1) == pytest.approx(lam, abs=4 * math.sqrt((lam + 2 * lam**2) / n))
    assert field.counts.dtype == np.int32


def test_cluster_counts_scale_with_flux_exposure_and_match_lx():
    fp = Footprint(60.0, -45.0, 0.5, 0.5)
    lx, z, t = 2e44, 0.3, 4.0
    fx = float(flux_500(np.array([lx]), np.array([z]), np.array([t]))[0])
    totals = {}
    for expo in (2000.0, 4000.0):
        p = XRAY_PRESETS["erosita"].model_copy(update={**NO_AGN, "exposure_s": expo})
        halos = _halo_table(1, fx500=[fx])
        halos = halos.drop_columns(["fx500"]).append_column("lx500", pa.array([lx]))
        halos = halos.set_column(2, "z", pa.array([z])).set_column(4, "t_kev", pa.array([t]))
        field = render_xray(halos, fp, p, np.random.default_rng(11))
        src = field.counts.astype(float) - field.background
        expected = fx * beta_cylinder_to_sphere(p.beta, p.rc_r500, p.rmax_r500) * p.ecf * expo
        # all counts of the map minus the known background; Poisson error of everything
        total = src.sum()
        assert total == pytest.approx(expected, abs=4 * math.sqrt(field.counts.sum()))
        assert field.cluster_counts[0] == pytest.approx(expected)
        totals[expo] = total
    assert totals[4000.0] / totals[2000.0] == pytest.approx(2.0, rel=0.05)


def test_cluster_counts_scale_with_area_of_the_aperture():
    """The β-model puts the predicted fraction of the counts inside a given aperture."""
    p = XRAY_PRESETS["xmm"].model_copy(update={**NO_AGN, "exposure_mode": "uniform"})
    fp = Footprint(60.0, -45.0, 0.4, 0.4)
    field = render_xray(_halo_table(1, fx500=[3e-13]), fp, p, np.random.default_rng(12))
    ny, nx = field.counts.shape
    yy, xx = np.indices((ny, nx))
    r_arcmin = np.hypot(xx - (nx - 1) / 2, yy - (ny - 1) / 2) * p.pixel_arcsec / 60
    src = field.model - field.background  # expected source counts
    theta500 = 3.0
    inside = src[r_arcmin < theta500].sum() / src.sum()
    # projected beta=2/3: fraction inside X = 1 - (1+X^2)^(-1/2) over the same at 5 R500
    xc = 1 / p.rc_r500
    want = (1 - (1 + xc**2) ** -0.5) / (1 - (1 + (5 * xc) ** 2) ** -0.5)
    assert inside == pytest.approx(want, rel=0.01)


def test_agn_number_counts_follow_the_log_n_log_s():
    rng = np.random.default_rng(13)
    area = 50.0
    s = sample_agn_fluxes(rng, area, 1e-15, 1e-12)
    n_exp = (agn_cumulative_counts(1e-15) - agn_cumulative_counts(1e-12)) * area
    assert s.size == pytest.approx(n_exp, abs=4 * math.sqrt(n_exp))
    for cut in (3e-15, 1e-14, 5e-14):
        n_above = (agn_cumulative_counts(cut) - agn_cumulative_counts(1e-12)) * area
        assert (s > cut).sum() == pytest.approx(n_above, abs=4 * math.sqrt(n_above) + 1)
    # G08 normalisation: about 100 sources per deg2 above 1e-14 in 0.5-2 keV
    assert agn_cumulative_counts(1e-14) == pytest.approx(104.3, rel=0.01)


def test_xmm_exposure_map_has_vignetting_and_pointings():
    p = XRAY_PRESETS["xmm"]
    vig, flat = exposure_maps(p, (720, 720))  # 30' x 30' at 2.5"
    # at the central pointing's axis: the full exposure (neighbours are 25' away, FOV 15')
    assert vig[360, 360] == pytest.approx(p.exposure_s, rel=0.01)
    # 8' off-axis (17' from the next pointing): vignetted to 1 - 0.037 * 8
    r = (192 + 0.5) * 2.5 / 60
    assert vig[359, 359 + 192 + 1] == pytest.approx(p.exposure_s * (1 - 0.037 * r), rel=1e-3)
    assert flat[359, 359 + 192 + 1] == p.exposure_s
    assert flat.max() >= p.exposure_s
    assert (vig <= flat + 1e-9).all()
    assert vig.min() < 0.7 * vig.max()


def test_rerun_is_bit_identical_and_fits_keywords(tmp_path):
    fp = Footprint(60.0, -45.0, 0.3, 0.3)
    halos = _halo_table(2, ra=[60.0, 60.05], dec=[-45.0, -44.95])
    a = render_xray(halos, fp, "erosita", np.random.default_rng(5))
    b = render_xray(halos, fp, "erosita", np.random.default_rng(5))
    assert np.array_equal(a.counts, b.counts)
    assert a.agn.equals(b.agn)
    paths = write_xray(a, tmp_path)
    with fits.open(paths["image"]) as hdul:
        h = hdul[0].header
        assert h["BUNIT"] == "count"
        assert (h["E_MIN"], h["E_MAX"]) == (0.5, 2.0)
        assert h["PSFFWHM"] == 30.0
        assert hdul[0].data.dtype.kind == "i"
        assert np.array_equal(hdul[0].data, a.counts)
        assert hdul["EXPOSURE"].header["BUNIT"] == "s"
        assert float(hdul["EXPOSURE"].data.mean()) == pytest.approx(2000.0)
        assert hdul["BACKGROUND"].data.shape == a.counts.shape
        assert h["CTYPE1"].startswith("RA---")
