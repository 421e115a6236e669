"""The optical simulator's catalogues recover the relations put in (seeded, catalogue only)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clusterfw.sim import halos as halo_mod
from clusterfw.sim.optical import galaxies as gal
from clusterfw.sim.optical import members as mem
from clusterfw.sim.optical import stars as st


def _halos(n: int, rng: np.random.Generator, z_lo: float = 0.1, z_hi: float = 0.6) -> pa.Table:
    m500 = 10 ** rng.uniform(14.0, 15.0, n)
    z = rng.uniform(z_lo, z_hi, n)
    conv = halo_mod.convert_m500c(m500, z)
    return pa.table(
        {
            "halo_id": np.arange(n),
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-60, 60, n),
            "z": z,
            "m500c": m500,
            "m200c": conv["m200c"],
            "c200c": conv["c200c"],
        }
    )


def test_richness_relation_recovered_from_counted_members():
    rng = np.random.default_rng(11)
    halos = _halos(3000, rng)
    lam = mem.draw_richness(halos["m500c"].to_numpy(), halos["z"].to_numpy(), rng)
    halos = halos.append_column("richness", pa.array(lam))
    # r_faint = 10: only members above 0.2 L* are drawn (fast); the counts are what λ means
    _cols, counted = mem.sample_members(halos, np.random.default_rng(12), 10.0, ("r",))
    m = halos["m500c"].to_numpy() * mem.cosmo.H70 / 3e14
    zt = np.log((1 + halos["z"].to_numpy()) / 1.6)
    x = np.column_stack([np.ones_like(m), np.log(m), zt])
    coef, *_ = np.linalg.lstsq(x, np.log(counted), rcond=None)
    assert coef[1] == pytest.approx(mem.RICHNESS_B, abs=0.04)
    assert coef[2] == pytest.approx(mem.RICHNESS_C, abs=0.2)
    assert np.exp(coef[0]) == pytest.approx(mem.RICHNESS_A, rel=0.05)
    resid = np.log(counted) - x @ coef
    # Poisson adds ~1/λ to the variance of ln N; the rest is the intrinsic scatter put in
    lam_med = mem.richness_median(halos["m500c"].to_numpy(), halos["z"].to_numpy())
    sigma_int = np.sqrt(resid.var() - np.mean(1.0 / lam_med))
    assert sigma_int == pytest.approx(mem.SIGMA_LN_RICHNESS, abs=0.03)
    # and without the Poisson step the drawn λ follow the relation exactly in the mean
    lr = np.log(lam / lam_med)
    assert abs(lr.mean()) < 4 * 0.2 / np.sqrt(lam.size)
    assert lr.std() == pytest.approx(0.20, rel=0.05)


def test_red_sequence_colours_follow_the_template_with_redshift():
    rng = np.random.default_rng(5)
    halos = _halos(400, rng, 0.05, 0.7)
    halos = halos.append_column("richness", pa.array(np.full(400, 40.0)))
    cols, _ = mem.sample_members(halos, np.random.default_rng(6), 21.0, ("g", "r", "i"))
    red = cols["is_red"] & ~cols["is_bcg"]
    z = cols["z"][red]
    gr = (cols["mag_g"] - cols["mag_r"])[red]
    ri = (cols["mag_r"] - cols["mag_i"])[red]
    for lo in np.arange(0.05, 0.7, 0.1):
        sel = (z >= lo) & (z < lo + 0.1)
        dgr = gr[sel] - gal.template_colour("g", "r", z[sel])
        dri = ri[sel] - gal.template_colour("r", "i", z[sel])
        assert abs(np.median(dgr)) < 0.01 and abs(np.median(dri)) < 0.01
        assert dgr.std() == pytest.approx(gal.RED_SEQUENCE_SCATTER, rel=0.15)
    # the shipped E-template locus: the 4000 Å break crossing g→r (then r→i)
    z_ref = np.array([0.1, 0.2, 0.3, 0.4, 0.6])
    np.testing.assert_allclose(
        gal.template_colour("g", "r", z_ref), [0.91, 1.22, 1.51, 1.73, 1.57], atol=0.02
    )
    np.testing.assert_allclose(
        gal.template_colour("r", "i", z_ref), [0.42, 0.49, 0.58, 0.68, 1.23], atol=0.02
    )
    # blue members are bluer than the red sequence at every redshift
    blue = ~cols["is_red"]
    d = (cols["mag_g"] - cols["mag_r"])[blue] - gal.template_colour("g", "r", cols["z"][blue])
    assert np.median(d) < -0.3


def test_blue_fraction_rises_with_redshift():
    rng = np.random.default_rng(8)
    halos = _halos(600, rng, 0.1, 0.6)
    halos = halos.append_column("richness", pa.array(np.full(600, 30.0)))
    cols, _ = mem.sample_members(halos, np.random.default_rng(9), 10.0, ("r",))
    sat = ~cols["is_bcg"] & (cols["lum_lstar"] >= 0.2)
    for lo, hi in ((0.1, 0.2), (0.5, 0.6)):
        sel = sat & (cols["z"] >= lo) & (cols["z"] < hi)
        fb = 1 - cols["is_red"][sel].mean()
        expect = gal.blue_fraction(0.5 * (lo + hi))
        assert fb == pytest.approx(expect, abs=4 * np.sqrt(expect * (1 - expect) / sel.sum()))


def test_member_positions_follow_projected_nfw():
    rng = np.random.default_rng(3)
    x_max = 5.0
    r = mem.sample_nfw_radii(rng, 20000, x_max)
    assert r.max() <= x_max
    g = mem._nfw_g
    for q in (0.5, 1.0, 2.0):
        expect = (g(np.array([q])) - g(np.array([1e-4 * x_max]))) / (
            g(np.array([x_max])) - g(np.array([1e-4 * x_max]))
        )
        assert np.mean(r < q) == pytest.approx(float(expect[0]), abs=0.012)


def test_field_galaxy_counts_match_input_law():
    rng = np.random.default_rng(21)
    area = 2.0
    r = gal.sample_field_mags(rng, area, 16.0, 24.0)
    edges = np.arange(16.0, 24.01, 1.0)
    hist, _ = np.histogram(r, edges)
    expect = np.diff(gal.field_counts_cumulative(edges, 16.0)) * area
    pull = (hist - expect) / np.sqrt(expect)
    assert np.all(np.abs(pull) < 4)
    assert np.sum(pull**2) / pull.size < 2.5
    # the law itself: 900 per mag per deg² at r = 20, slope 0.36 beyond
    assert gal.field_counts_per_mag(20.0) == pytest.approx(900.0)
    assert gal.field_counts_per_mag(23.0) / gal.field_counts_per_mag(22.0) == pytest.approx(
        10**0.36
    )
    # redshifts: median of p(z|r) as put in
    z = gal.sample_field_redshifts(rng, np.full(20000, 22.0))
    assert np.median(z) == pytest.approx(0.53, rel=0.03)


def test_star_counts_match_input_law_and_latitude():
    rng = np.random.default_rng(4)
    s = st.sample_stars(rng, 5.0, 30.0, 15.0, 23.0)
    edges = np.arange(15.0, 23.01, 1.0)
    hist, _ = np.histogram(s["mag_r"], edges)
    expect = np.array(
        [
            st.star_counts_between(a, b, 30.0) * 5.0
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]
    )
    pull = (hist - expect) / np.sqrt(expect)
    assert np.all(np.abs(pull) < 4)
    assert st.star_counts_between(15, 23, 30.0) == pytest.approx(
        2 * st.star_counts_between(15, 23, 90.0)
    )
    gr = s["g_r"][s["g_r"] < 1.4]
    # flat main-sequence colours: each quarter of [0.2, 1.4] holds ~a quarter of them
    q, _ = np.histogram(gr, np.linspace(0.2, 1.4, 5))
    assert q.min() / q.max() > 0.9
