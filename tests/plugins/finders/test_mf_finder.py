"""Tests of the ``mf`` matched-filter finder on small seeded skies (see mf_testsky.py)."""

from __future__ import annotations

import numpy as np
import pytest
from mf_testsky import BANDS, inject, make_tile, random_isolated

from clusterfw.core.errors import PluginError
from clusterfw.core.sky import Band
from clusterfw.plugins.finders.mf import MatchedFilterFinder
from clusterfw.plugins.finders.mf.finder import scale_tag
from clusterfw.plugins.finders.mf.templates import template_transform, tsz_uk_per_y


def test_tsz_law_and_template_normalisation():
    f = tsz_uk_per_y([90.0, 150.0, 217.0, 353.0])
    assert f[0] < f[1] < 0 and abs(f[2]) < 0.02 * abs(f[0]) and f[3] > 0
    # 2-D integral of the truncated beta model: pi theta_c^2 ln(1 + 5^2)
    assert template_transform("beta", 2.0, np.array([0.0]))[0] == pytest.approx(
        4.0 * np.pi * np.log(26.0), rel=1e-4
    )
    assert scale_tag(2.4) == "2p4" and scale_tag(0.25) == "0p25" and scale_tag(1.0) == "1p0"


def test_bad_input_is_a_plugin_error():
    tile = make_tile(n=64, seed=0)
    tile.bands = (Band("x", 150.0, 0.0), *tile.bands[1:])
    with pytest.raises(PluginError, match="beam"):
        MatchedFilterFinder().find(tile)
    tile = make_tile(n=64, seed=0)
    tile.maps = tile.maps[:0]
    tile.bands = ()
    with pytest.raises(PluginError, match="n_band>=1"):
        MatchedFilterFinder().find(tile)
    tile = make_tile(n=64, seed=0)
    with pytest.raises(PluginError, match="NOISE"):
        tile.bands = tuple(Band(b.name, b.freq_ghz, b.beam_fwhm_arcmin) for b in tile.bands)
        MatchedFilterFinder({"noise": "model"}).find(tile)


def _gaussian_peak_expectation(kvar: np.ndarray, area_arcmin2: float, nu: float) -> float:
    """Expected Euler characteristic above nu of unit-variance isotropic 2-D Gaussian fields."""
    lam = kvar / 2.0  # variance of one gradient component
    return float(np.sum(area_arcmin2 * lam / (2 * np.pi) ** 1.5 * nu * np.exp(-nu * nu / 2)))


def _null_counts() -> tuple[dict, dict]:
    """Peak counts above SNR 4 and 5 on null maps, and their Gaussian expectation."""
    from scipy import ndimage

    found = {4.0: 0.0, 5.0: 0.0}
    expected = {4.0: 0.0, 5.0: 0.0}
    for seed in range(6):
        tile = make_tile(n=1024, seed=100 + seed)
        finder = MatchedFilterFinder({"point_sources": "none"})
        res = finder.filter_tile(tile)
        interior = res.interior
        area = interior.sum() * tile.pixel_scale_arcmin**2
        for nu in found:
            for snr in res.snr:
                found[nu] += ndimage.label((snr > nu) & interior)[1]
            expected[nu] += _gaussian_peak_expectation(res.kvar, area, nu)
        assert np.all(np.abs(res.rms - 1.0) < 0.2)  # filter σ vs measured RMS
    return found, expected


def test_null_maps_snr_calibrated():
    """Noise + CMB, no clusters: counts above SNR 4 match the Gaussian expectation."""
    found, expected = _null_counts()
    assert expected[5.0] > 4
    assert 0.67 < found[4.0] / expected[4.0] < 1.5, (found, expected)


@pytest.mark.xfail(
    strict=True,
    reason="known gap: above SNR 5 the tail is lighter than Gaussian in the tile interior "
    "(far fewer peaks than expected on six seeded 73 deg² null maps) and heavier near the taper",
)
def test_null_maps_count_above_5():
    found, expected = _null_counts()
    assert 0.5 < found[5.0] / expected[5.0] < 2.0, (found, expected)


def test_isolated_clusters_position_and_yc():
    rng = np.random.default_rng(5)
    tile = make_tile(n=500, seed=6)
    pos = random_isolated(500, 25, 60, 30, rng)
    y_true = 1.0e-4
    inject(tile, pos, y_true, 1.0)
    finder = MatchedFilterFinder({"snr_min": 5.0, "ref_scale_arcmin": 1.0})
    tab = finder.find(tile)
    x, y = tile.world_to_pixel(tab["ra"].to_numpy(), tab["dec"].to_numpy())
    d = np.hypot(x[:, None] - pos[:, 0], y[:, None] - pos[:, 1]) * tile.pixel_scale_arcmin
    match = d.argmin(axis=0)
    ok = d.min(axis=0) < 2.0
    assert ok.mean() > 0.95
    assert np.median(d.min(axis=0)[ok]) < 0.3
    yc_ref = tab["mf_y_c_1p0"].to_numpy()[match[ok]]
    assert np.median(yc_ref) / y_true == pytest.approx(1.0, abs=0.10)
    # forced scoring agrees with the catalogue at the detected positions
    forced = finder.score_at(tile, tab["ra"].to_numpy(), tab["dec"].to_numpy())
    rel = np.abs(forced / tab["snr"].to_numpy() - 1.0)
    assert np.nanmedian(rel) < 0.05
    assert set(tab.column_names) >= {"snr", "filter_scale", "y_c", "y_c_err", "pos_err", "flags"}


def test_point_source_flagged_and_removed():
    tile = make_tile(n=300, seed=8)
    from mf_testsky import beam_smooth

    for i, b in enumerate(BANDS):
        spike = np.zeros(tile.maps.shape[1:])
        spike[150, 150] = 1.0
        amp = 3000.0 * (b.beam_fwhm_arcmin / 0.5) ** 2 * 2 * np.pi / (8 * np.log(2))
        tile.maps[i] += (beam_smooth(spike, b.beam_fwhm_arcmin, 0.5) * amp).astype(np.float32)
    with_ps = MatchedFilterFinder({"snr_min": 5.0})
    res = with_ps.filter_tile(tile)
    assert len(res.sources) >= 1
    assert np.min(np.hypot(res.sources.x - 150, res.sources.y - 150)) < 1.0
    assert abs(res.max_snr[140:160, 140:160]).max() < 6.0
