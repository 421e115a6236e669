"""CMB power spectrum and beam transfer of simulated patches."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.sim import Components, PatchConfig, simulate_patch
from clusterfw.sim.cmb import lensed_cl_tt
from clusterfw.sim.instrument import beam_transfer
from clusterfw.sim.spectra import binned_theory, power_spectrum

EDGES = np.arange(500, 3001, 250)


def only(**on: bool) -> Components:
    comps = Components(**{name: False for name in Components.model_fields})
    for name, value in on.items():
        setattr(comps, name, value)
    return comps


@pytest.fixture(scope="module")
def cmb_patch():
    # 24 deg x 24 deg at 2' (720 x 720 pixels): ~1000 modes in the lowest bin
    cfg = PatchConfig(size_deg=24.0, pixel_arcmin=2.0, dec_deg=0.0, components=only(cmb=True))
    return simulate_patch(cfg, 11, keep_components=True)


def test_cmb_spectrum_matches_camb_within_10_percent(cmb_patch):
    cmb = cmb_patch.components["cmb"].astype(float)
    _, cl = power_spectrum(cmb, 2.0, EDGES)
    theory = binned_theory(lensed_cl_tt, cmb.shape, 2.0, EDGES)
    ratio = cl / theory
    assert np.all(np.abs(ratio - 1) < 0.10), ratio
    assert abs(np.mean(ratio) - 1) < 0.03


@pytest.mark.parametrize("band_index", [0, 1, 2])
def test_band_map_is_cmb_times_beam(cmb_patch, band_index):
    band = cmb_patch.sky.bands[band_index]
    sky = cmb_patch.sky.maps[band_index].astype(float)
    cmb = cmb_patch.components["cmb"].astype(float)
    edges = np.arange(300, 5001, 250)
    # same realisation: cross/auto ratio is B_l, free of cosmic variance
    ell, cross = power_spectrum(sky, 2.0, edges, map2=cmb)
    _, auto = power_spectrum(cmb, 2.0, edges)
    b_meas = cross / auto
    b_true = beam_transfer(ell, band.beam_fwhm_arcmin)
    assert np.all(np.abs(b_meas / b_true - 1) < 0.01), b_meas / b_true
    # and the beamed band map against camb x B^2 within 10 %
    _, cl = power_spectrum(sky, 2.0, EDGES)
    theory = binned_theory(
        lambda x: lensed_cl_tt(x) * beam_transfer(x, band.beam_fwhm_arcmin) ** 2,
        sky.shape,
        2.0,
        EDGES,
    )
    assert np.all(np.abs(cl / theory - 1) < 0.10)


def test_point_source_has_the_band_beam_fwhm():
    from clusterfw.sim.sources import deposit_cic

    cfg = PatchConfig(size_deg=0.5, pixel_arcmin=0.1, dec_deg=0.0, components=only())
    res = simulate_patch(cfg, 0)
    # paint one source by hand through the same beam path: CIC deposit then beam in Fourier
    import scipy.fft as sfft

    from clusterfw.sim.instrument import ell_grid

    ny, nx = cfg.shape
    for band in cfg.bands:
        delta = deposit_cic((ny, nx), np.array([150.0]), np.array([150.0]), np.array([1.0]))[0]
        ell, _, _ = ell_grid(ny, nx, 0.1)
        img = sfft.irfft2(sfft.rfft2(delta) * beam_transfer(ell, band.beam_fwhm_arcmin), s=(ny, nx))
        yy, xx = np.mgrid[0:ny, 0:nx]
        w = img / img.sum()
        var = np.sum(w * ((xx - 150.0) ** 2 + (yy - 150.0) ** 2)) / 2.0
        fwhm = np.sqrt(8 * np.log(2) * var) * 0.1
        assert fwhm == pytest.approx(band.beam_fwhm_arcmin, rel=0.01)
    assert np.all(res.sky.maps == 0)
