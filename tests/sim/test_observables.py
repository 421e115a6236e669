"""Correlated observables at fixed mass: relations and scatter put in are recovered."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from clusterfw.sim import cosmology as cosmo
from clusterfw.sim.observables import (
    ObservablesConfig,
    correlated_deviates,
    draw_observables,
    k_correction,
    lx500_median,
    richness_median,
)
from clusterfw.sim.sz import temperature_kev


def _halos(n: int, rng: np.random.Generator, sigma_y: float) -> dict[str, np.ndarray]:
    m = 10 ** rng.uniform(13.5, 15.0, n)
    z = rng.uniform(0.1, 1.0, n)
    y_med = 1e-4 * (m / 3e14) ** 1.78
    return {
        "m500c": m,
        "m200c": 1.4 * m,
        "z": z,
        "t_kev": temperature_kev(m, z),
        "y500_median": y_med,
        "y500": y_med * np.exp(sigma_y * rng.standard_normal(n)),
    }


def test_input_correlation_recovered_within_statistical_error():
    cfg = ObservablesConfig(corr_y_richness=-0.3, corr_y_lx=0.6, corr_richness_lx=0.2)
    n = 40000
    halos = _halos(n, np.random.default_rng(1), 0.2)
    obs = draw_observables(halos, 0.2, cfg, np.random.default_rng(2))
    dev = np.vstack([obs["dln_y"] / 0.2, obs["dln_richness"] / 0.202, obs["dln_lx"] / 0.396])
    measured = np.corrcoef(dev)
    want = cfg.correlation()
    for i, j in ((0, 1), (0, 2), (1, 2)):
        err = (1 - want[i, j] ** 2) / math.sqrt(n)  # standard error of Pearson's r
        assert abs(measured[i, j] - want[i, j]) < 4 * err, (i, j, measured[i, j])
    # scatters
    assert np.std(obs["dln_richness"]) == pytest.approx(0.202, rel=4 / math.sqrt(2 * n))
    assert np.std(obs["dln_lx"]) == pytest.approx(0.396, rel=4 / math.sqrt(2 * n))
    # the Y deviate is the one the halos were drawn with, exactly
    np.testing.assert_allclose(obs["dln_y"], np.log(halos["y500"] / halos["y500_median"]))


def test_first_deviate_is_kept_exactly():
    eps = np.random.default_rng(3).standard_normal(100)
    out = correlated_deviates(eps, np.random.default_rng(4), ObservablesConfig().correlation())
    assert np.array_equal(out[0], eps)


def test_mean_relations_are_the_published_ones():
    cfg = ObservablesConfig()
    # Saro+15: lambda = 76.9 at M500c = 3e14/h70 and z = 0.6, slope 1.02
    assert richness_median(3e14 / cosmo.H70, 0.6, cfg) == pytest.approx(76.9)
    assert richness_median(6e14 / cosmo.H70, 0.6, cfg) / 76.9 == pytest.approx(2**1.020)
    # Vikhlinin+09: ln L = 47.392 + 1.61 ln M + 1.85 ln E(z) - 0.39 ln(h/0.72)
    ln_l = 47.392 + 1.61 * math.log(5e14) + 1.85 * math.log(cosmo.efunc(0.5))
    ln_l -= 0.39 * math.log(cosmo.H / 0.72)
    assert math.log(lx500_median(5e14, 0.5, cfg)) == pytest.approx(ln_l)


def test_richness_slope_and_scatter_recovered_by_regression():
    cfg = ObservablesConfig()
    halos = _halos(20000, np.random.default_rng(5), 0.2)
    halos["z"] = np.full(halos["z"].size, 0.6)
    obs = draw_observables(halos, 0.2, cfg, np.random.default_rng(6))
    x = np.log(halos["m500c"] * cosmo.H70 / 3e14)
    slope, icpt = np.polyfit(x, np.log(obs["richness"]), 1)
    resid = np.log(obs["richness"]) - (slope * x + icpt)
    assert slope == pytest.approx(1.020, abs=0.01)
    assert math.exp(icpt) == pytest.approx(76.9, rel=0.01)
    assert resid.std() == pytest.approx(0.202, rel=0.03)


def test_k_correction_is_one_at_z0_and_falls_for_cool_gas():
    assert k_correction(0.0, 5.0) == pytest.approx(1.0)
    # the observed band collects rest 1-4 keV: wider, but up the exponential tail of cool gas
    k1 = (math.exp(-1.0) - math.exp(-4.0)) / (math.exp(-0.5) - math.exp(-2.0))
    assert k_correction(1.0, 1.0) == pytest.approx(k1) == pytest.approx(0.7419, abs=1e-4)
    assert k_correction(1.0, 1.0) < k_correction(1.0, 3.0) < k_correction(1.0, 10.0)
    # for hot gas the spectrum is nearly flat in 0.5-4 keV: K ~ (1+z) e^{-...}
    t = 20.0
    expected = (math.exp(-1 / t) - math.exp(-4 / t)) / (math.exp(-0.5 / t) - math.exp(-2 / t))
    assert k_correction(1.0, t) == pytest.approx(expected)


def test_non_positive_definite_correlation_is_rejected():
    with pytest.raises(ValidationError, match="positive definite"):
        ObservablesConfig(corr_y_richness=0.9, corr_y_lx=0.9, corr_richness_lx=-0.9)
