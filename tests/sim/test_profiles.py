"""Pressure-profile families: projections, Y500 normalisation, family shapes, painted maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from clusterfw.sim import PatchConfig, simulate_patch, sz
from clusterfw.sim import profiles as P
from clusterfw.sim.config import HealpixConfig, ProfileSpec
from clusterfw.sim.instrument import ARCMIN

FAMILY_SHAPES = {
    "a10": P.A10_SHAPE,
    "planck13": P.GNFWShape(*P.GNFW_PARAMS["planck13"]),
    "mcdonald14_lowz": P.GNFWShape(*P.GNFW_PARAMS["mcdonald14_lowz"]),
    "mcdonald14_highz": P.GNFWShape(*P.GNFW_PARAMS["mcdonald14_highz"]),
    "battaglia12": P.battaglia12_shape(3e14, 0.5, 0.66),
    "beta": P.GNFWShape(1.0 / 0.2, 0.0, 2.0, 2.0),
}


def _quad_projection(shape: P.GNFWShape, big_x: float, rmax: float) -> float:
    lmax = math.sqrt(rmax**2 - big_x**2)
    val, _ = integrate.quad(
        lambda ll: float(shape.pressure(math.hypot(big_x, ll))), 0.0, lmax, limit=400
    )
    return 2.0 * val


@pytest.mark.parametrize("name", sorted(FAMILY_SHAPES))
def test_projection_matches_quad_and_integrates_to_sphere(name: str) -> None:
    shape = FAMILY_SHAPES[name]
    rmax = 5.0
    table = P.projected_table(shape, rmax)
    scale = 1.0 if name != "a10" else sz.A10["P0"]  # the A10 table carries P0
    for big_x in (0.01, 0.1, 0.5, 1.0, 3.0):
        expect = _quad_projection(shape, big_x, rmax) * scale
        assert float(table(np.array([big_x]))[0]) == pytest.approx(expect, rel=2e-3)
    # the projected cylinder out to rmax holds the whole sphere: 2π ∫ g X dX = 4π/3 I(rmax)
    xs = np.concatenate([[0.0], np.geomspace(1e-7, 1e-2, 4000), np.linspace(1e-2, rmax, 200_000)])
    cyl = np.trapezoid(2 * math.pi * xs * table(xs), xs)
    assert cyl == pytest.approx(4 * math.pi / 3 * table.i_rmax, rel=0.01)


def test_beta_model_sphere_integral_is_analytic() -> None:
    # β = 2/3: I(x) = 3 ∫ u² / (1 + (u/rc)²) du = 3 rc³ (x/rc − atan(x/rc))
    rc = 0.2
    table = P.projected_table(P.GNFWShape(1.0 / rc, 0.0, 2.0, 2.0), 5.0)
    for x, got in ((1.0, table.i1), (5.0, table.i_rmax)):
        assert got == pytest.approx(3 * rc**3 * (x / rc - math.atan(x / rc)), rel=1e-6)


def test_battaglia_shape_in_r500_units_matches_the_r200_formula() -> None:
    # P ∝ (x200/xc)^-0.3 (1 + x200/xc)^-β, integrated independently in R200 units
    m200, z, m500 = 4e14, 0.7, 2.8e14
    ratio = (m500 * 200.0 / (m200 * 500.0)) ** (1 / 3)  # R500 / R200
    xc = 0.497 * (m200 / 1e14) ** -0.00865 * (1 + z) ** 0.731
    beta = 4.35 * (m200 / 1e14) ** 0.0393 * (1 + z) ** 0.415
    shape = P.battaglia12_shape(m200, z, ratio)

    def p200(x200: float) -> float:
        return (x200 / xc) ** -0.3 * (1 + x200 / xc) ** -beta

    for x500 in (0.05, 0.3, 1.0, 2.5):
        # shapes agree up to one constant: compare ratios to x500 = 1
        got = float(shape.pressure(x500) / shape.pressure(1.0))
        assert got == pytest.approx(p200(x500 * ratio) / p200(ratio), rel=1e-10)
    i_r200, _ = integrate.quad(lambda u: 3 * p200(u) * u * u, 0, ratio)
    assert shape.sphere_integral(1.0) * float(shape.pressure(1.0)) / p200(ratio) == pytest.approx(
        i_r200 / ratio**3, rel=1e-6
    )


def test_central_y_per_y500_orders_the_families() -> None:
    # y0 θ500² / Y500 = g(0) / (4π/3 I(1)): cuspy A10 highest; Battaglia (larger core radius in
    # R500 units, 1/c ≈ 1.0 vs 0.85) lower and falling with z (x_c ∝ (1+z)^0.73); the cored
    # β-model lowest
    def ratio(shape: P.GNFWShape) -> float:
        return float(P.y0_over_y500(P.projected_table(shape, 5.0), 1.0))

    a10 = ratio(P.A10_SHAPE)
    assert a10 == pytest.approx(2.849, rel=2e-3)
    batt_lo = ratio(P.battaglia12_shape(3e14, 0.2, 0.66))
    batt_hi = ratio(P.battaglia12_shape(3e14, 1.0, 0.66))
    beta = ratio(FAMILY_SHAPES["beta"])
    assert a10 > batt_lo > batt_hi > beta
    assert batt_hi < 0.93 * a10
    assert beta < 0.65 * a10


def test_a10_table_is_the_default_table() -> None:
    table, ref = P.projected_table(P.A10_SHAPE, 5.0), sz.projected_profile(5.0)
    assert np.array_equal(table.g, ref.g) and table.i1 == ref.i1 == pytest.approx(0.6145, rel=1e-3)


def test_halo_shapes_quantise_and_group() -> None:
    rng = np.random.default_rng(1)
    m500 = 10 ** rng.uniform(13.5, 15, 300)
    z = rng.uniform(0.05, 1.5, 300)
    m200 = 1.4 * m500
    spec = ProfileSpec(family="a10", c500_scale=1.2, c500_scatter_ln=0.2)
    factor = np.exp(0.2 * rng.standard_normal(300))
    group, shapes = P.halo_shapes(spec, m500, z, m200, factor)
    assert group.shape == (300,) and group.max() == len(shapes) - 1
    c_true = 1.177 * 1.2 * factor
    c_used = np.array([shapes[g].c500 for g in group])
    assert np.all(np.abs(np.log(c_used / c_true)) <= 0.02 + 1e-9)  # half the 4 % ln-c step
    assert len(shapes) < 60
    g_b, s_b = P.halo_shapes(ProfileSpec(family="battaglia12"), m500, z, m200)
    betas = np.array([s_b[g].beta for g in g_b])
    # outer slope grows with redshift (β ∝ (1+z)^0.415)
    assert np.corrcoef(betas, z)[0, 1] > 0.9
    g_m, s_m = P.halo_shapes(ProfileSpec(family="mcdonald14"), m500, z, m200)
    assert {s.gamma for s in s_m} == {0.26, 0.15}
    assert np.all((np.array([s_m[g].gamma for g in g_m]) == 0.26) == (z < 0.6))


@pytest.mark.parametrize("family", ["planck13", "battaglia12", "beta", "mcdonald14"])
def test_painted_map_holds_y500_of_every_family(family: str) -> None:
    cfg = PatchConfig(
        size_deg=0.6,
        pixel_arcmin=0.25,
        profile=ProfileSpec(family=family, c500_scatter_ln=0.1),
        profile_rmax_r500=3.0,
        m500c_min=1e14,
        pad_fraction=1.0,
    )
    res = simulate_patch(cfg, 4)
    h = res.halos.to_pydict()
    assert len(h["y500"]) > 0
    assert {"profile_c500", "profile_gamma", "profile_alpha", "profile_beta"} <= set(h)
    # expected total: Y500 × I(rmax)/I(1) of each halo's own shape, painted on the padded grid
    expect = 0.0
    for i in range(len(h["y500"])):
        shape = P.GNFWShape(
            h["profile_c500"][i], h["profile_gamma"][i], h["profile_alpha"][i], h["profile_beta"][i]
        )
        table = P.projected_table(shape, 3.0)
        expect += h["y500"][i] * table.i_rmax / table.i1
        # y0 column = Y500 g(0) / (θ500² 4π/3 I(1))
        th = h["theta500_arcmin"][i] * ARCMIN
        assert h["y0"][i] == pytest.approx(
            h["y500"][i] * ARCMIN**2 * P.y0_over_y500(table, th), rel=1e-9
        )
    # the maps carry them (a halo's stamp can leave the crop, so at most the total)
    assert 0.3 * expect < res.ymap.astype(float).sum() * 0.25**2 <= expect * 1.001


def _y_cyl_over_y500(shape: P.GNFWShape, rmax: float) -> float:
    """Y inside the cylinder of radius R500 / Y500 from the 3-D shape (shells, independently)."""

    def shell(r: float) -> float:
        frac = 1.0 if r <= 1.0 else 1.0 - math.sqrt(1.0 - 1.0 / (r * r))
        return 3.0 * float(shape.pressure(r)) * r * r * frac

    val = sum(integrate.quad(shell, a, b, limit=400)[0] for a, b in ((0, 1), (1, 2), (2, rmax)))
    return val / shape.sphere_integral(1.0)


@pytest.mark.parametrize("name", sorted(FAMILY_SHAPES))
def test_painted_stamp_holds_y500_in_the_sphere(name: str) -> None:
    # paint one halo with θ500 = 30 px and measure Y inside the R500 cylinder from the pixels
    shape, rmax, th_pix = FAMILY_SHAPES[name], 3.0, 30.0
    table = P.projected_table(shape, rmax)
    n = int(2 * rmax * th_pix) + 20
    ymap = np.zeros((n, n))
    pix_sr, y500 = 1e-8, 5e-9
    c = (n - 1) / 2.0
    sz.paint_halos(
        ymap,
        None,
        np.array([c]),
        np.array([c]),
        np.array([th_pix]),
        np.array([y500]),
        None,
        pix_sr,
        table,
    )
    yy, xx = np.mgrid[:n, :n]
    inside = np.hypot(xx - c, yy - c) <= th_pix
    y_cyl = ymap[inside].sum() * pix_sr
    assert y_cyl / y500 == pytest.approx(_y_cyl_over_y500(shape, rmax), rel=0.01)
    assert ymap.sum() * pix_sr == pytest.approx(y500 * table.i_rmax / table.i1, rel=1e-9)


def test_profiles_default_keeps_truth_columns() -> None:
    res = simulate_patch(PatchConfig(size_deg=0.3), 2)
    assert "profile_c500" not in res.halos.column_names
    res2 = simulate_patch(PatchConfig(size_deg=0.3, profile=ProfileSpec(family="beta")), 2)
    # the same halos, the same Y500, another shape
    assert res2.halos.column("y500").to_pylist() == res.halos.column("y500").to_pylist()
    assert res2.halos.column("profile_gamma").to_pylist() == [0.0] * res2.halos.num_rows


def test_healpix_refuses_other_families() -> None:
    with pytest.raises(ValueError, match="flat-patch only"):
        HealpixConfig(profile=ProfileSpec(family="planck13"))


def test_per_halo_mix_of_families() -> None:
    spec = ProfileSpec(mix=("a10", "planck13", "beta"), rc_r500=0.25, beta=0.8)
    assert not spec.is_default
    res = simulate_patch(PatchConfig(size_deg=0.5, profile=spec, profile_rmax_r500=3.0), 6)
    h = res.halos.to_pydict()
    pairs = set(zip(h["profile_gamma"], h["profile_alpha"], strict=True))
    # every family is present: A10 (0.3081, 1.051), Planck13 (0.31, 1.33), β-model (0, 2)
    assert pairs == {(0.3081, 1.051), (0.31, 1.33), (0.0, 2.0)}
    beta_rows = [i for i, g in enumerate(h["profile_gamma"]) if g == 0.0]
    assert all(h["profile_beta"][i] == pytest.approx(2.4) for i in beta_rows)
    assert all(h["profile_c500"][i] == pytest.approx(4.0, rel=0.02) for i in beta_rows)
    # the mix only adds draws after the default ones: halos and Y500 unchanged
    plain = simulate_patch(PatchConfig(size_deg=0.5, profile_rmax_r500=3.0), 6)
    assert res.halos.column("y500").equals(plain.halos.column("y500"))
    with pytest.raises(ValueError, match="one family index per halo"):
        P.halo_shapes(spec, np.ones(3) * 1e14, np.ones(3), np.ones(3) * 1.4e14)
