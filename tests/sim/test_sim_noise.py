"""White and 1/f noise levels of simulated maps."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.sim import Components, PatchConfig, simulate_patch
from clusterfw.sim.instrument import ARCMIN
from clusterfw.sim.spectra import binned_theory, power_spectrum


def noise_only(**extra: bool) -> Components:
    comps = Components(**{name: False for name in Components.model_fields})
    comps.noise = True
    for k, v in extra.items():
        setattr(comps, k, v)
    return comps


def test_white_noise_level_within_3_percent():
    cfg = PatchConfig(size_deg=1.0, components=noise_only())
    res = simulate_patch(cfg, 5)
    for band, m in zip(cfg.bands, res.sky.maps, strict=True):
        depth = float(np.std(m.astype(float))) * cfg.pixel_arcmin
        assert depth == pytest.approx(band.noise_uk_arcmin, rel=0.03)
        # flat power spectrum at (depth in µK·rad)^2
        _, cl = power_spectrum(m.astype(float), cfg.pixel_arcmin, np.array([1000, 20000, 40000]))
        expect = (band.noise_uk_arcmin * ARCMIN) ** 2
        assert np.allclose(cl / expect, 1.0, atol=0.03)
        assert res.sky.bands[cfg.bands.index(band)].noise_uk_arcmin == band.noise_uk_arcmin


def test_one_over_f_noise_follows_knee():
    cfg = PatchConfig(size_deg=3.0, pixel_arcmin=1.0, components=noise_only(one_over_f=True))
    res = simulate_patch(cfg, 6)
    m = res.sky.maps[1].astype(float)
    edges = np.array([200, 300, 500, 700, 5000, 10000])
    _, cl = power_spectrum(m, 1.0, edges, apodize=0.0)  # periodic noise map
    white = (cfg.bands[1].noise_uk_arcmin * ARCMIN) ** 2
    expect = binned_theory(
        lambda ell: white * (1 + (cfg.ell_knee / ell) ** cfg.alpha_knee), m.shape, 1.0, edges
    )
    assert np.allclose(cl / expect, 1.0, atol=0.15), cl / expect


def test_scan_filter_removes_low_ell_x_modes():
    cfg = PatchConfig(size_deg=2.0, pixel_arcmin=1.0, components=noise_only(scan_filter=True))
    m = simulate_patch(cfg, 7).sky.maps[0].astype(float)
    fk = np.abs(np.fft.rfft2(m)) ** 2
    # column 0/1 of rfft2 = smallest |l_x|: suppressed relative to the rest
    assert fk[:, :2].mean() < 0.05 * fk[:, 20:].mean()
