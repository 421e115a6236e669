"""Halo abundance, mass conversions and the tSZ Y500 scaling of simulated skies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clusterfw.sim import Components, PatchConfig, simulate_patch
from clusterfw.sim import cosmology as cosmo
from clusterfw.sim.halos import convert_m500c, expected_halo_count, sample_m500c_z
from clusterfw.sim.instrument import ARCMIN
from clusterfw.sim.patch import sample_halo_catalogue, spawn_streams
from clusterfw.sim.sz import projected_profile, sphere_integral


def colossus_count(area_sr: float, m_min: float, z_max: float = 3.0) -> float:
    """Independent mass-function integral straight from colossus."""
    colossus = pytest.importorskip("colossus")
    del colossus
    from colossus.cosmology import cosmology
    from colossus.lss import mass_function
    from scipy.integrate import simpson

    c = cosmology.setCosmology("planck18")
    h = c.H0 / 100
    z = np.linspace(1e-3, z_max, 151)
    lnm = np.linspace(np.log(m_min), np.log(5e16), 200)
    inner = []
    for zz in z:
        dn = mass_function.massFunction(
            np.exp(lnm) * h, zz, mdef="500c", model="tinker08", q_out="dndlnM"
        )
        dv = 299792.458 / (c.Hz(zz) / h) * c.comovingDistance(z_max=zz) ** 2
        inner.append(simpson(dn, x=lnm) * dv)
    return float(simpson(np.array(inner), x=z) * area_sr)


def test_counts_above_2e14_match_mass_function_integral():
    area_sr = 400.0 * (math.pi / 180) ** 2  # 400 deg^2, ~600 halos above 2e14
    expected = colossus_count(area_sr, 2e14)
    assert expected_halo_count(area_sr, 2e14) == pytest.approx(expected, rel=0.02)
    rng = np.random.default_rng(123)
    m, z = sample_m500c_z(rng, area_sr, m500c_min=3e13)
    n = int(np.sum(m > 2e14))
    assert abs(n - expected) < 3 * math.sqrt(expected), (n, expected)
    assert np.all((z > 0) & (z < 3)) and m.min() >= 3e13


def test_patch_halo_counts_and_distribution():
    area_sr = 100.0 * (math.pi / 180) ** 2
    rng = np.random.default_rng(9)
    m, z = sample_m500c_z(rng, area_sr, m500c_min=1e14)
    expected = expected_halo_count(area_sr, 1e14)
    assert abs(m.size - expected) < 3 * math.sqrt(expected)
    # the mass distribution: fraction above 3e14 agrees with the integral ratio
    frac = expected_halo_count(area_sr, 3e14) / expected
    assert np.mean(m > 3e14) == pytest.approx(frac, abs=3 * math.sqrt(frac / m.size))


def test_mass_conversions_agree_with_colossus():
    pytest.importorskip("colossus")
    from colossus.cosmology import cosmology
    from colossus.halo import mass_defs

    cosmology.setCosmology("planck18")
    h = cosmo.H
    m500 = np.array([5e13, 2e14, 8e14])
    for z in (0.1, 0.6, 1.2):
        conv = convert_m500c(m500, np.full(3, z))
        for i in range(3):
            m_out, _, _ = mass_defs.changeMassDefinition(
                conv["m200c"][i] * h, conv["c200c"][i], z, "200c", "500c"
            )
            assert m_out / h == pytest.approx(m500[i], rel=0.005)
            m_vir, _, _ = mass_defs.changeMassDefinition(
                conv["m200c"][i] * h, conv["c200c"][i], z, "200c", "vir"
            )
            assert m_vir / h == pytest.approx(conv["mvir"][i], rel=0.01)


def test_gnfw_sphere_integrals_match_arnaud2010():
    assert sphere_integral(1.0) == pytest.approx(0.6145, rel=0.003)
    assert sphere_integral(5.0) == pytest.approx(1.1037, rel=0.003)


def test_y500_follows_scaling_relation_with_requested_scatter():
    cfg = PatchConfig(m500c_min=5e13, y500_scatter_ln=0.2)
    streams = spawn_streams(np.random.default_rng(4))
    area_sr = 200.0 * (math.pi / 180) ** 2
    h = sample_halo_catalogue(cfg, streams, area_sr, 100, 100, 0.25)
    n = h["m500c"].size
    assert n > 3000
    # independent re-evaluation of E(z)^-2/3 D_A^2 Y500 = A (M h70/3e14)^B h70^-1 with astropy
    import astropy.units as u

    ac = cosmo.astropy_cosmology()
    d_a = ac.angular_diameter_distance(h["z"]).to_value(u.Mpc)
    y_mpc2 = h["y500"] * ARCMIN**2 * d_a**2 * ac.efunc(h["z"]) ** (-2 / 3)
    h70 = ac.H0.value / 70
    model = 10**cfg.y500_log10_norm / h70 * (h["m500c"] * h70 / 3e14) ** cfg.y500_slope
    resid = np.log(y_mpc2 / model)
    assert abs(resid.mean()) < 4 * 0.2 / math.sqrt(n)
    assert resid.std() == pytest.approx(0.2, rel=0.05)
    # the log-log slope recovered by least squares
    slope = np.polyfit(np.log(h["m500c"]), np.log(y_mpc2), 1)[0]
    assert slope == pytest.approx(cfg.y500_slope, abs=0.05)


def test_painted_y_integrates_to_truth():
    comps = Components(**{name: False for name in Components.model_fields})
    comps.tsz = True
    cfg = PatchConfig(size_deg=2.0, m500c_min=2e14, components=comps, z_min=0.3)
    res = simulate_patch(cfg, 21)
    h = res.halos.to_pydict()
    assert len(h["halo_id"]) >= 1
    i = int(np.argmax(h["m500c"]))
    x, y, th = h["x_pix"][i], h["y_pix"][i], h["theta500_arcmin"][i]
    prof = projected_profile(cfg.profile_rmax_r500)
    r = 5 * th / cfg.pixel_arcmin
    ny, nx = res.ymap.shape
    if not (r < x < nx - r and r < y < ny - r):
        pytest.skip("halo too close to the edge for an aperture sum")
    yy, xx = np.mgrid[0:ny, 0:nx]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= (r + 1) ** 2
    y_sum = float(res.ymap[inside].astype(float).sum()) * cfg.pixel_arcmin**2  # arcmin^2
    # other halos in the aperture are tiny at this mass floor; allow 1 %
    assert y_sum == pytest.approx(h["y500"][i] * prof.i_rmax / prof.i1, rel=0.01)
    assert float(res.ymap.max()) == pytest.approx(h["y0"][i], rel=0.25)
