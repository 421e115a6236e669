"""Cluster members: richness, NFW positions, a BCG, red-sequence and blue galaxies.

Richness
    When the halo table has no ``richness`` column it is drawn from the λ–M500c relation of
    Saro et al. (2015, MNRAS 454, 2305), ``λ = A (M500c h70 / 3e14 Msun)^B ((1+z)/1.6)^C`` with
    ``A = 76.9, B = 1.020, C = 0.29`` and ``σ_lnλ = 0.20`` — the same defaults as
    :mod:`clusterfw.sim.observables`, so one universe has one relation.
Members
    λ is the expected number of red-sequence members brighter than 0.2 L* inside
    ``R_λ = 1.0 (λ/100)^0.2 h⁻¹ Mpc`` (physical; Rykoff et al. 2014, ApJ 785, 104). Each halo has
    a BCG plus ``Poisson((λ−1) S(x_f)/S(0.2))`` red satellites with ``L/L* ≥ x_f`` (the
    luminosity of the faintest simulated magnitude; ``S`` is the Schechter tail) and
    ``Poisson(λ f_b/(1−f_b) S(x_f)/S(0.2))`` blue ones, ``f_b`` the Butcher–Oemler fraction of
    :func:`~clusterfw.sim.optical.galaxies.blue_fraction`. Satellites follow the projected NFW
    profile (Bartelmann 1996) of the halo (``r_s = R200c / c200c``) truncated at R_λ, with uniform
    position angles. Red members have type t ≈ 0 (E) and a 0.05 mag colour scatter; blue members
    t uniform in [1, 3].
BCG
    ``log10(L_BCG/L*) = 0.55 + 0.3 log10(M200c / 1e14 Msun)`` with 0.15 dex scatter (the
    L_BCG ∝ M^0.3 slope of Hansen et al. 2009); the BCG is miscentred with probability 0.17 by a
    Rayleigh offset of scale 0.17 R_λ (Zhang et al. 2019, MNRAS 487, 2578, DES redMaPPer);
    its size is 1.5× the early-type relation.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.sim import cosmology as cosmo
from clusterfw.sim.observables import ObservablesConfig
from clusterfw.sim.observables import richness_median as observables_richness_median
from clusterfw.sim.optical import galaxies as gal

# The λ–M relation lives in one place, clusterfw.sim.observables (its defaults).
_RICHNESS_DEFAULTS = ObservablesConfig()
RICHNESS_A = _RICHNESS_DEFAULTS.richness_norm
RICHNESS_B = _RICHNESS_DEFAULTS.richness_slope
RICHNESS_C = _RICHNESS_DEFAULTS.richness_z_slope
SIGMA_LN_RICHNESS = _RICHNESS_DEFAULTS.sigma_ln_richness
LAMBDA_XMIN = 0.2
P_MISCENTRED = 0.17
MISCENTRE_TAU = 0.17
BCG_LOG_NORM = 0.55
BCG_SLOPE = 0.3
BCG_SCATTER_DEX = 0.15


def richness_median(m500c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Saro+15 mean richness at (M500c, z) (:func:`clusterfw.sim.observables.richness_median`)."""
    return observables_richness_median(m500c, np.asarray(z, dtype=float), _RICHNESS_DEFAULTS)


def draw_richness(
    m500c: np.ndarray, z: np.ndarray, rng: np.random.Generator, sigma_ln: float = SIGMA_LN_RICHNESS
) -> np.ndarray:
    """Log-normal richness at fixed mass (mean of ln λ on the relation)."""
    med = richness_median(m500c, z)
    return med * np.exp(sigma_ln * rng.standard_normal(med.shape))


def r_lambda_mpc(richness: np.ndarray) -> np.ndarray:
    """Physical R_λ in Mpc (Rykoff+14, ``1.0 (λ/100)^0.2 h⁻¹ Mpc``)."""
    return (np.maximum(richness, 1e-3) / 100.0) ** 0.2 / cosmo.H


def _nfw_g(x: np.ndarray) -> np.ndarray:
    """Projected NFW mass within ``X = R/r_s``, up to a constant (Bartelmann 1996)."""
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    lo, hi = x < 1.0, x > 1.0
    out[lo] = np.arccosh(1.0 / x[lo]) / np.sqrt(1.0 - x[lo] ** 2)
    out[hi] = np.arccos(1.0 / x[hi]) / np.sqrt(x[hi] ** 2 - 1.0)
    out[~(lo | hi)] = 1.0
    return np.log(x / 2.0) + out


@lru_cache(maxsize=1)
def _nfw_table() -> tuple[np.ndarray, np.ndarray]:
    log_x = np.linspace(np.log(1e-5), np.log(1e3), 8192)
    g = _nfw_g(np.exp(log_x))
    return log_x, g - g[0]


def sample_nfw_radii(rng: np.random.Generator, n: int, x_max: Any) -> np.ndarray:
    """``n`` projected radii in units of ``r_s``, NFW truncated at ``x_max`` (scalar or per
    radius), by inverting the projected mass profile on a fixed grid."""
    if n == 0:
        return np.zeros(0)
    log_x, g = _nfw_table()
    g_max = np.interp(np.log(np.broadcast_to(np.asarray(x_max, dtype=float), (n,))), log_x, g)
    return np.exp(np.interp(rng.random(n) * g_max, g, log_x))


def _luminosity_floor(z: np.ndarray, r_faint: float) -> np.ndarray:
    """``L/L*`` of a red galaxy at z with apparent r = ``r_faint`` (at most 0.2)."""
    m_star = gal.mstar_apparent(np.asarray(z, dtype=float), "r")
    return np.minimum(LAMBDA_XMIN, 10 ** (-0.4 * (r_faint - m_star)))


def _sample_lum(rng: np.random.Generator, x_min: np.ndarray, x_max: float = 30.0) -> np.ndarray:
    """Schechter luminosities ``L/L*`` above a per-galaxy floor (inverse of the tail integral)."""
    grid = np.geomspace(1e-4, x_max, 4096)
    tail = gal.schechter_tail(gal.ALPHA_CLUSTER, grid) - gal.schechter_tail(
        gal.ALPHA_CLUSTER, np.array(x_max)
    )
    t_lo = np.interp(np.log(x_min), np.log(grid), tail)
    target = rng.random(x_min.size) * t_lo
    # tail decreases with x: interpolate on the reversed arrays
    return np.exp(np.interp(target, tail[::-1], np.log(grid)[::-1]))


def sample_members(
    halos: pa.Table, rng: np.random.Generator, r_faint: float, bands: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Member galaxies of every halo in ``halos`` (which must carry ``richness``).

    Parameters
    ----------
    halos : pyarrow.Table
        Columns ``halo_id`` (optional), ``ra``, ``dec``, ``z``, ``m200c``, ``c200c``,
        ``richness``.
    rng : numpy.random.Generator
    r_faint : float
        Faintest r magnitude simulated (members below are not drawn).
    bands : tuple of str
        Filters to compute magnitudes in.

    Returns
    -------
    columns : dict
        Galaxy columns (see :func:`clusterfw.sim.optical.field.GALAXY_COLUMNS`).
    n_bright_red : numpy.ndarray
        Per halo, the red members (BCG included) with L ≥ 0.2 L* inside R_λ — the richness
        counted in the truth.
    """
    nh = halos.num_rows
    hid = (
        halos["halo_id"].to_numpy()
        if "halo_id" in halos.column_names
        else np.arange(nh, dtype=np.int64)
    )
    ra0 = halos["ra"].to_numpy().astype(float)
    dec0 = halos["dec"].to_numpy().astype(float)
    z_h = halos["z"].to_numpy().astype(float)
    m200 = halos["m200c"].to_numpy().astype(float)
    c200 = halos["c200c"].to_numpy().astype(float)
    lam = halos["richness"].to_numpy().astype(float)
    r200 = (3.0 * m200 / (4.0 * math.pi * 200.0 * cosmo.rho_crit(z_h))) ** (1.0 / 3.0)
    r_lam = r_lambda_mpc(lam)
    d_a = cosmo.angular_diameter_distance(z_h)
    f_b = gal.blue_fraction(z_h)
    s_ref = gal.schechter_tail(gal.ALPHA_CLUSTER, np.array(LAMBDA_XMIN))

    x_f = _luminosity_floor(z_h, r_faint)
    ratio = gal.schechter_tail(gal.ALPHA_CLUSTER, x_f) / s_ref
    n_red = rng.poisson(np.maximum(lam - 1.0, 0.0) * ratio)
    n_blue = rng.poisson(lam * f_b / (1.0 - f_b) * ratio)
    n_sat = n_red + n_blue
    if nh == 0:
        return _empty(bands), np.zeros(0, dtype=np.int64)
    # satellites, halo by halo in order: red ones first
    hs = np.repeat(np.arange(nh), n_sat)
    first = np.concatenate([[0], np.cumsum(n_sat)[:-1]])
    rank = np.arange(hs.size) - first[hs]
    red_s = rank < n_red[hs]
    lum_s = _sample_lum(rng, x_f[hs])
    rs = r200[hs] / c200[hs]
    r_s = sample_nfw_radii(rng, hs.size, r_lam[hs] / rs) * rs
    n_bright_red = 1 + np.bincount(hs[red_s & (lum_s >= LAMBDA_XMIN)], minlength=nh)
    # BCGs
    lum_b = 10 ** (
        BCG_LOG_NORM + BCG_SLOPE * np.log10(m200 / 1e14) + BCG_SCATTER_DEX * rng.standard_normal(nh)
    )
    mis = rng.random(nh) < P_MISCENTRED
    r_b = np.where(mis, MISCENTRE_TAU * r_lam * np.sqrt(-2.0 * np.log1p(-rng.random(nh))), 0.0)
    h = np.concatenate([np.arange(nh), hs])
    lum = np.concatenate([lum_b, lum_s])
    red = np.concatenate([np.ones(nh, bool), red_s])
    bcg = np.concatenate([np.ones(nh, bool), np.zeros(hs.size, bool)])
    r_mpc = np.concatenate([r_b, r_s])
    order = np.argsort(h, kind="stable")
    h, lum, red, bcg, r_mpc = h[order], lum[order], red[order], bcg[order], r_mpc[order]
    n = h.size
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    theta_deg = np.degrees(r_mpc / d_a[h])
    dec = dec0[h] + theta_deg * np.sin(phi)
    ra = (ra0[h] + theta_deg * np.cos(phi) / np.cos(np.radians(dec0[h]))) % 360.0
    z = z_h[h]
    t = np.where(red, 0.0, rng.uniform(1.0, 3.0, n))
    abs_r = gal.MSTAR_R - 2.5 * np.log10(lum)
    r_e = gal.half_light_radius_kpc(abs_r, z, red, rng) * np.where(bcg, 1.5, 1.0)
    scatter = np.where(red, gal.RED_SEQUENCE_SCATTER, gal.BLUE_COLOUR_SCATTER)
    out = {
        "halo_id": hid[h],
        "ra": ra,
        "dec": dec,
        "z": z,
        "is_member": np.ones(n, bool),
        "is_bcg": bcg,
        "is_red": red,
        "spectral_type": t,
        "lum_lstar": lum,
        "abs_mag_r": abs_r,
        "r_proj_mpc": r_mpc,
        "r_lambda_mpc": r_lam[h],
        "r_e_arcsec": r_e * gal.arcsec_per_kpc(z),
        "sersic_n": np.where(red, 4.0, 1.0),
        "axis_ratio": np.where(red, rng.uniform(0.5, 1.0, n), rng.uniform(0.2, 1.0, n)),
        "position_angle": rng.uniform(0.0, 180.0, n),
    }
    m_r = gal.apparent_mag(abs_r, z, t, "r")
    for b in bands:
        col = 0.0 if b == "r" else scatter * rng.standard_normal(n)
        out[f"mag_{b}"] = gal.apparent_mag(abs_r, z, t, b) + col if b != "r" else m_r
    return out, n_bright_red


def _empty(bands: tuple[str, ...]) -> dict[str, np.ndarray]:
    from clusterfw.sim.optical.field import GALAXY_COLUMNS

    out = {name: np.zeros(0, dtype=dtype) for name, (dtype, _u, _d) in GALAXY_COLUMNS.items()}
    for b in bands:
        out[f"mag_{b}"] = np.zeros(0)
    return out
