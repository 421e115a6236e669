"""Stars: number counts against galactic latitude and main-sequence colours.

Counts
    ``dN/dr = S0 10^{γ (r − 20)} / sin|b|`` stars per mag per deg² with ``S0 = 250`` and
    ``γ = 0.13``: a power law with the shallow faint-end slope of halo-dominated counts at high
    latitude (Bahcall & Soneira 1980, ApJS 44, 73; SDSS: Jurić et al. 2008, ApJ 673, 864) and the
    cosecant law of a plane-parallel disc; ``|b|`` is floored at 10°. Normalised so that ≈ 1200
    stars per deg² are brighter than r = 21.5 at the galactic pole (the order of the SDSS
    high-latitude counts), good to a factor of ~1.5, not a Galaxy model.
Colours
    90 % main-sequence stars with g−r uniform in [0.2, 1.4] (a flat colour distribution) and r−i,
    i−z on a piecewise-linear approximation of the SDSS stellar locus (Covey et al. 2007, AJ 134,
    2398); 10 % M dwarfs at g−r = 1.45 ± 0.05 with r−i uniform in [0.8, 2.0].
"""

from __future__ import annotations

import numpy as np
from astropy.coordinates import SkyCoord

STAR_S0 = 250.0
STAR_SLOPE = 0.13
MIN_ABS_B_DEG = 10.0
# (g−r, r−i, i−z) along the main-sequence stellar locus
LOCUS = np.array([(0.2, 0.05, 0.0), (0.6, 0.18, 0.08), (1.0, 0.38, 0.18), (1.3, 0.60, 0.30),
                  (1.4, 0.75, 0.38)])  # fmt: skip
M_DWARF_FRACTION = 0.1


def galactic_latitude(ra_deg: float, dec_deg: float) -> float:
    """Galactic latitude (deg) of an ICRS position."""
    return float(SkyCoord(ra_deg, dec_deg, unit="deg", frame="icrs").galactic.b.deg)


def latitude_factor(b_deg: float) -> float:
    """``1 / sin|b|`` with |b| floored at 10°."""
    return 1.0 / np.sin(np.radians(max(abs(b_deg), MIN_ABS_B_DEG)))


def star_counts_per_mag(r: np.ndarray, b_deg: float) -> np.ndarray:
    """Input counts, stars per mag per deg², at galactic latitude ``b_deg``."""
    return (
        STAR_S0 * 10 ** (STAR_SLOPE * (np.asarray(r, dtype=float) - 20.0)) * latitude_factor(b_deg)
    )


def star_counts_between(r_bright: float, r_faint: float, b_deg: float) -> float:
    """Stars per deg² with ``r_bright ≤ r < r_faint``."""
    k = STAR_SLOPE * np.log(10.0)
    s = STAR_S0 * latitude_factor(b_deg) / k
    return float(s * (np.exp(k * (r_faint - 20.0)) - np.exp(k * (r_bright - 20.0))))


def sample_stars(
    rng: np.random.Generator, area_deg2: float, b_deg: float, r_bright: float, r_faint: float
) -> dict[str, np.ndarray]:
    """Poisson-sample star magnitudes and colours: ``mag_r``, ``g_r``, ``r_i``, ``i_z``."""
    n = rng.poisson(star_counts_between(r_bright, r_faint, b_deg) * area_deg2)
    k = STAR_SLOPE * np.log(10.0)
    u = rng.random(n)
    lo, hi = np.exp(k * r_bright), np.exp(k * r_faint)
    mag_r = np.log(lo + u * (hi - lo)) / k
    dwarf = rng.random(n) < M_DWARF_FRACTION
    g_r = np.where(dwarf, rng.normal(1.45, 0.05, n), rng.uniform(0.2, 1.4, n))
    r_i = np.interp(g_r, LOCUS[:, 0], LOCUS[:, 1])
    r_i = np.where(dwarf, rng.uniform(0.8, 2.0, n), r_i)
    i_z = np.where(dwarf, 0.5 * r_i, np.interp(g_r, LOCUS[:, 0], LOCUS[:, 2]))
    return {"mag_r": mag_r, "g_r": g_r, "r_i": r_i, "i_z": i_z}


def star_mags(stars: dict[str, np.ndarray], band: str) -> np.ndarray:
    """Magnitude of every star in ``band`` (g, r, i or z)."""
    r = stars["mag_r"]
    if band == "r":
        return r
    if band == "g":
        return r + stars["g_r"]
    if band == "i":
        return r - stars["r_i"]
    if band == "z":
        return r - stars["r_i"] - stars["i_z"]
    raise ValueError(f"unknown band {band!r}")
