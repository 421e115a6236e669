"""Galaxy populations: templates, k-corrections, luminosity functions, sizes, field counts.

Colours and k-corrections
    Every galaxy has a continuous spectral type ``t`` in [0, 3] between the four Coleman, Wu &
    Weedman (1980) templates E (0), Sbc (1), Scd (2), Im (3) (as extended by Bolzonella et al.
    2000). Its observed magnitude in band b is ``m_b = M_r + DM(z) + K_{br}(z, t) − Q z``, with
    ``K_{br}`` the cross-band k-correction of Hogg et al. (2002) computed by synthetic photometry
    through the LSST throughputs (``make_tables.py``, table shipped), interpolated linearly in
    ``t``, and ``Q = 1.5`` mag per unit redshift of passive luminosity brightening (the colours
    themselves do not evolve: a z = 0 E spectrum is a good match to the observed red sequence to
    z ≈ 0.7, e.g. g−r = 0.91, 1.22, 1.51, 1.73 at z = 0.1, 0.2, 0.3, 0.4).
Luminosity function of cluster galaxies
    Schechter with ``α = −1.0`` (Hansen et al. 2009, ApJ 699, 1333, red satellites of maxBCG
    clusters) and ``M*_r = −20.44 + 5 log10 h`` (Blanton et al. 2003, ApJ 592, 819).
Sizes
    Half-light radii from the SDSS size–luminosity relations of Shen et al. (2003, MNRAS 343, 978,
    eqs. 14–15 with their Table 1 r-band values, h = 0.7) with log-normal scatter
    (σ_lnR = 0.35 early, 0.45 late) and the size evolution of van der Wel et al. (2014, ApJ 788,
    28): ``R ∝ (1+z)^-1.48`` (early) and ``(1+z)^-0.75`` (late). Early types are de Vaucouleurs
    (Sérsic n = 4), late types exponential (n = 1).
Field galaxy counts
    r-band differential counts as a broken power law, ``dN/dm = N20 10^{γ (r − 20)}`` per mag per
    deg² with ``N20 = 900``, ``γ = 0.48`` for r < 20 and ``γ = 0.36`` for r ≥ 20, representative of
    SDSS (Yasuda et al. 2001, AJ 122, 1104) and deep R-band counts (Metcalfe et al. 2001, MNRAS
    323, 795) at the ~20 % level. Redshifts given r follow ``p(z) ∝ z² exp[−(z/z0)^1.5]``
    (Baugh & Efstathiou 1993; Smail et al. 1995) with median ``1.412 z0`` interpolated from
    :data:`Z_MEDIAN_R` (SDSS main sample median z = 0.1 at r ≈ 17.7, Strauss et al. 2002; ≈ 0.9 at
    r ≈ 24, DEEP2/VVDS). The type mix is drawn with an E fraction falling with redshift.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from scipy import special

from clusterfw.sim import cosmology as cosmo

TEMPLATES = ("E", "Sbc", "Scd", "Im")
MSTAR_R = -20.44 + 5.0 * np.log10(cosmo.H)  # Blanton+03 (0.1r), no h
ALPHA_CLUSTER = -1.0
Q_EVOL = 1.5
RED_SEQUENCE_SCATTER = 0.05  # mag, per colour (Rykoff et al. 2014 find ~0.05)
BLUE_COLOUR_SCATTER = 0.10

COUNTS_N20 = 900.0
COUNTS_SLOPE_BRIGHT = 0.48
COUNTS_SLOPE_FAINT = 0.36
# (r, median redshift) of field galaxies at that magnitude
Z_MEDIAN_R = np.array(
    [(14.0, 0.04), (16.0, 0.07), (17.7, 0.10), (19.0, 0.20), (20.0, 0.29), (21.0, 0.40),
     (22.0, 0.53), (23.0, 0.68), (24.0, 0.85), (25.0, 1.00), (26.0, 1.10)]
)  # fmt: skip


@lru_cache(maxsize=1)
def kcorr_table() -> dict[str, np.ndarray]:
    """The shipped ``K_{br}(z)`` table (see :mod:`clusterfw.sim.optical.make_tables`)."""
    ref = resources.files("clusterfw.sim.optical").joinpath("data/kcorr_cww_lsst.npz")
    with resources.as_file(ref) as p, np.load(p, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def kcorrection(band: str, z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``K_{br}`` from rest-frame r to observed ``band`` at redshift ``z`` for spectral type ``t``.

    ``t`` is continuous in [0, 3] (E, Sbc, Scd, Im); the table is interpolated linearly in z and t.
    """
    tab = kcorr_table()
    bands = [str(b) for b in tab["bands"]]
    k = tab["kcorr"][:, bands.index(band), :].astype(np.float64)
    zg = tab["z"]
    z = np.clip(np.asarray(z, dtype=float), zg[0], zg[-1])
    t = np.clip(np.asarray(t, dtype=float), 0.0, len(TEMPLATES) - 1.0)
    fz = (z - zg[0]) / (zg[1] - zg[0])
    iz = np.minimum(fz.astype(int), zg.size - 2)
    wz = fz - iz
    it = np.minimum(t.astype(int), len(TEMPLATES) - 2)
    wt = t - it
    k_lo = k[it, iz] * (1 - wz) + k[it, iz + 1] * wz
    k_hi = k[it + 1, iz] * (1 - wz) + k[it + 1, iz + 1] * wz
    return k_lo * (1 - wt) + k_hi * wt


def distance_modulus(z: np.ndarray) -> np.ndarray:
    """``5 log10(D_L / 10 pc)`` with ``D_L = (1+z)² D_A`` (Planck 2018 cosmology)."""
    z = np.maximum(np.asarray(z, dtype=float), 1e-4)
    d_l = cosmo.angular_diameter_distance(z) * (1.0 + z) ** 2
    return 5.0 * np.log10(d_l * 1e5)


def apparent_mag(
    abs_mag_r: np.ndarray, z: np.ndarray, t: np.ndarray, band: str, evolve: bool = True
) -> np.ndarray:
    """Observed AB magnitude in ``band`` of a galaxy of rest-frame ``M_r`` at z (type t)."""
    z = np.asarray(z, dtype=float)
    q = Q_EVOL * z if evolve else 0.0
    return abs_mag_r + distance_modulus(z) + kcorrection(band, z, t) - q


def template_colour(b1: str, b2: str, z: np.ndarray, t: np.ndarray | float = 0.0) -> np.ndarray:
    """Observed colour ``m_b1 − m_b2`` of spectral type ``t`` at z (E = 0: the red sequence)."""
    t_arr = np.broadcast_to(np.asarray(t, dtype=float), np.shape(z))
    return kcorrection(b1, z, t_arr) - kcorrection(b2, z, t_arr)


def mstar_apparent(z: np.ndarray, band: str = "r") -> np.ndarray:
    """Apparent magnitude of an L* red-sequence (E) galaxy at z, with passive evolution."""
    return apparent_mag(MSTAR_R, z, np.zeros(np.shape(z)), band)


# --- Schechter luminosity function --------------------------------------------------------


def schechter_tail(alpha: float, x: np.ndarray) -> np.ndarray:
    """``∫_x^∞ u^α e^{-u} du`` (x = L/L* > 0), the number above x per unit φ*."""
    x = np.asarray(x, dtype=float)
    a = alpha + 1.0
    if abs(a) < 1e-12:
        return special.exp1(x)
    if a > 0:
        return special.gamma(a) * special.gammaincc(a, x)
    # recurrence Γ(a, x) = (Γ(a+1, x) − x^a e^{-x}) / a for a < 0
    return (schechter_tail(alpha + 1.0, x) - x**a * np.exp(-x)) / a


# --- sizes ---------------------------------------------------------------------------------


def half_light_radius_kpc(
    abs_mag_r: np.ndarray, z: np.ndarray, early: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Physical half-light radius (kpc): Shen+03 relations, scatter, van der Wel+14 evolution."""
    m = np.asarray(abs_mag_r, dtype=float) + 5.0 * np.log10(cosmo.H / 0.7)  # to h = 0.7 mags
    log_early = -0.4 * 0.65 * m - 5.06
    log_late = -0.4 * 0.21 * m + (0.53 - 0.21) * np.log10(1.0 + 10 ** (-0.4 * (m + 20.52))) - 1.31
    early = np.asarray(early, dtype=bool)
    log_r = np.where(early, log_early, log_late)
    sig = np.where(early, 0.35, 0.45)
    evo = np.where(early, -1.48, -0.75) * np.log10(1.0 + np.asarray(z))
    return 10 ** (log_r + evo) * np.exp(sig * rng.standard_normal(m.shape))


def arcsec_per_kpc(z: np.ndarray) -> np.ndarray:
    """Angular scale at redshift z."""
    return 206264.806 / (cosmo.angular_diameter_distance(np.maximum(z, 1e-3)) * 1e3)


def sersic_bn(n: np.ndarray) -> np.ndarray:
    """``b_n`` of the Sérsic profile (Ciotti & Bertin 1999 asymptotic expansion)."""
    n = np.asarray(n, dtype=float)
    return 2 * n - 1.0 / 3 + 4.0 / (405 * n) + 46.0 / (25515 * n**2)


# --- field galaxies ------------------------------------------------------------------------


def field_counts_per_mag(r: np.ndarray) -> np.ndarray:
    """Input r-band differential counts, galaxies per mag per deg²."""
    r = np.asarray(r, dtype=float)
    slope = np.where(r < 20.0, COUNTS_SLOPE_BRIGHT, COUNTS_SLOPE_FAINT)
    return COUNTS_N20 * 10 ** (slope * (r - 20.0))


def field_counts_cumulative(r: np.ndarray, r_bright: float) -> np.ndarray:
    """Galaxies per deg² with ``r_bright ≤ r' < r`` (the integral of the broken power law)."""

    def prim(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=float)
        lo = np.minimum(m, 20.0)
        hi = np.maximum(m, 20.0)
        kb, kf = COUNTS_SLOPE_BRIGHT * np.log(10), COUNTS_SLOPE_FAINT * np.log(10)
        return COUNTS_N20 * (
            (np.exp(kb * (lo - 20.0)) - 1.0) / kb + (np.exp(kf * (hi - 20)) - 1) / kf
        )

    return prim(r) - prim(np.asarray(r_bright))


def sample_field_mags(
    rng: np.random.Generator, area_deg2: float, r_bright: float, r_faint: float
) -> np.ndarray:
    """Poisson-sample the r magnitudes of field galaxies on ``area_deg2``."""
    grid = np.linspace(r_bright, r_faint, 2001)
    cum = field_counts_cumulative(grid, r_bright)
    n = rng.poisson(cum[-1] * area_deg2)
    return np.interp(rng.random(n) * cum[-1], cum, grid)


def sample_field_redshifts(rng: np.random.Generator, r: np.ndarray) -> np.ndarray:
    """Redshifts given r: ``p(z) ∝ z² exp[−(z/z0)^1.5]`` with the median of :data:`Z_MEDIAN_R`."""
    z_med = np.interp(r, Z_MEDIAN_R[:, 0], Z_MEDIAN_R[:, 1])
    z0 = z_med / 1.412
    # (z/z0)^1.5 = g with g ~ Gamma(2, 1): p(z) dz ∝ z² e^{-(z/z0)^1.5} dz ⇒ g^{1} e^{-g} dg
    g = rng.gamma(2.0, 1.0, size=np.shape(r))
    return np.clip(z0 * g ** (1.0 / 1.5), 0.005, 1.99)


def sample_field_types(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """Continuous spectral types: an E-like fraction ``0.3 (1 − z/2)`` (t near 0), else Sbc–Im."""
    f_early = np.clip(0.3 * (1.0 - np.asarray(z) / 2.0), 0.05, 0.3)
    early = rng.random(np.shape(z)) < f_early
    t_early = np.abs(rng.normal(0.0, 0.15, np.shape(z)))
    t_late = rng.uniform(1.0, 3.0, np.shape(z))
    return np.where(early, t_early, t_late)


def blue_fraction(z: np.ndarray) -> np.ndarray:
    """Butcher–Oemler blue fraction of cluster members within R_λ: ``0.15 + 0.5 z`` (≤ 0.8)."""
    return np.clip(0.15 + 0.5 * np.asarray(z, dtype=float), 0.0, 0.8)
