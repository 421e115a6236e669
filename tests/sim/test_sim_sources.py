"""Point-source flux to µK_CMB conversion, tSZ spectrum, and source counts."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest

from clusterfw.sim import Components, PatchConfig, simulate_patch
from clusterfw.sim.config import dusty_population, radio_population
from clusterfw.sim.instrument import (
    ARCMIN,
    beam_solid_angle_sr,
    db_dt,
    jy_per_sr_to_uk,
    tsz_spectrum,
)
from clusterfw.sim.sources import number_above, poisson_cl_below


@pytest.mark.parametrize("freq", [95.0, 150.0, 220.0])
def test_jy_to_uk_matches_analytic_db_dt(freq):
    # analytic dB/dT written out independently, in SI then Jy
    h, k, c, t = 6.62607015e-34, 1.380649e-23, 299792458.0, 2.7255
    nu = freq * 1e9
    x = h * nu / (k * t)
    analytic = 2 * k * nu**2 / c**2 * x**2 * math.exp(x) / math.expm1(x) ** 2 / 1e-26
    assert db_dt(freq) == pytest.approx(analytic, rel=1e-10)
    # and astropy's thermodynamic_temperature equivalency
    equiv = u.thermodynamic_temperature(freq * u.GHz, T_cmb=t * u.K)
    uk_per_jysr = (1 * u.Jy / u.sr).to(u.uK, equivalencies=equiv).value
    assert jy_per_sr_to_uk(freq) == pytest.approx(uk_per_jysr, rel=1e-6)


def test_reference_conversion_values():
    # well-known numbers: 1 µK_CMB ≈ 397 Jy/sr at 150 GHz, ≈ 483 at 220 GHz, ≈ 221 at 95 GHz
    assert 1 / jy_per_sr_to_uk(150.0) == pytest.approx(397.0, rel=0.005)
    assert 1 / jy_per_sr_to_uk(220.0) == pytest.approx(482.6, rel=0.005)
    assert 1 / jy_per_sr_to_uk(95.0) == pytest.approx(220.8, rel=0.005)


def test_tsz_spectrum_values():
    assert tsz_spectrum(150.0) == pytest.approx(-0.954, abs=0.005)
    assert tsz_spectrum(95.0) == pytest.approx(-1.55, abs=0.01)
    assert abs(tsz_spectrum(217.5)) < 0.01


def test_source_in_map_has_right_flux_and_peak():
    comps = Components(**{name: False for name in Components.model_fields})
    comps.radio = True
    pop = radio_population().model_copy(update={"s_min_jy": 0.05})  # a few bright sources
    cfg = PatchConfig(size_deg=3.0, pixel_arcmin=0.25, components=comps, radio=pop)
    res = simulate_patch(cfg, 2)
    src = res.sources.to_pydict()
    assert len(src["source_id"]) >= 1
    pix_sr = (cfg.pixel_arcmin * ARCMIN) ** 2
    for b, band in enumerate(cfg.bands):
        m = res.sky.maps[b].astype(float)
        total_jy = m.sum() * pix_sr / jy_per_sr_to_uk(band.freq_ghz)
        # sources near the edge lose a little flux through the crop
        assert total_jy * 1e3 == pytest.approx(sum(src[f"flux_{band.name}"]), rel=0.02)
        i = int(np.argmax(src[f"flux_{band.name}"]))
        xs, ys = src["x_pix"][i], src["y_pix"][i]
        x, y = round(xs), round(ys)
        stamp = m[y - 3 : y + 4, x - 3 : x + 4]
        # the analytic beam-convolved source, sampled at the same pixel centres
        sigma_pix = band.beam_fwhm_arcmin / np.sqrt(8 * np.log(2)) / cfg.pixel_arcmin
        yy, xx = np.mgrid[y - 3 : y + 4, x - 3 : x + 4]
        model = (
            src[f"flux_{band.name}"][i]
            * 1e-3
            * jy_per_sr_to_uk(band.freq_ghz)
            / beam_solid_angle_sr(band.beam_fwhm_arcmin)
            * np.exp(-((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * sigma_pix**2))
        )
        peak, expect = stamp.max(), model.max()
        assert peak == pytest.approx(expect, rel=0.05)


def test_source_counts_match_population():
    comps = Components(**{name: False for name in Components.model_fields})
    comps.dusty = True
    cfg = PatchConfig(size_deg=2.0, pixel_arcmin=0.5, components=comps)
    res = simulate_patch(cfg, 8)
    area = (2.0 * math.pi / 180) ** 2
    pop = dusty_population()
    expected = number_above(pop, pop.s_min_jy) * area
    assert abs(res.sources.num_rows - expected) < 3 * math.sqrt(expected)


def test_poisson_power_levels_are_spt_like():
    radio, dusty = radio_population(), dusty_population()

    def d3000(cl_jy2, freq):
        return 3000 * 3001 / (2 * math.pi) * cl_jy2 * jy_per_sr_to_uk(freq) ** 2

    assert 0.8 < d3000(poisson_cl_below(radio, 6e-3), 150) < 2.5
    assert 40 < d3000(poisson_cl_below(dusty, 20e-3), 220) < 90
    assert 1.0 < number_above(radio, 6e-3) * (math.pi / 180) ** 2 < 3.0
