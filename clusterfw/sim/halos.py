"""Halo catalogues: Poisson sampling of the Tinker et al. (2008) mass function, mass conversions.

The abundance ``d³N / (dlog10 M500c dz dΩ)`` is the shipped colossus table
(:func:`clusterfw.sim.cosmology.halo_abundance_table`), interpolated in log space onto a fine
grid. M200c and Mvir follow from M500c assuming an NFW profile with the Duffy et al. (2008)
concentration–mass relation (full sample, 200c) and the Bryan & Norman (1998) virial overdensity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from clusterfw.sim import cosmology as cosmo

_FINE_DLOGM = 0.005
_FINE_DZ = 0.01


@lru_cache(maxsize=1)
def _log_abundance() -> RegularGridInterpolator:
    tab = cosmo.halo_abundance_table()
    with np.errstate(divide="ignore"):
        log_t = np.log(np.maximum(tab["dn_dlog10m_dz_dsr"], 1e-300))
    return RegularGridInterpolator(
        (tab["log10_m500c"], tab["z"]), log_t, bounds_error=False, fill_value=None
    )


def abundance(m500c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Tinker08 ``d³N / (dlog10 M500c dz dΩ)`` (halos per steradian) at ``(m500c, z)``."""
    pts = np.stack(np.broadcast_arrays(np.log10(m500c), z), axis=-1)
    return np.exp(_log_abundance()(pts))


@dataclass(frozen=True)
class _CellGrid:
    log10_m_lo: np.ndarray
    z_lo: np.ndarray
    cum: np.ndarray  # cumulative expected counts per sr over the flattened cells
    total_per_sr: float


@lru_cache(maxsize=16)
def _cells(m_min: float, z_min: float, z_max: float, m_max: float = 10**16.3) -> _CellGrid:
    lm_edges = np.arange(np.log10(m_min), np.log10(m_max) + _FINE_DLOGM / 2, _FINE_DLOGM)
    nz = max(1, int(np.ceil((z_max - z_min) / _FINE_DZ)))
    z_edges = np.linspace(z_min, z_max, nz + 1)
    lm_c = 0.5 * (lm_edges[1:] + lm_edges[:-1])
    z_c = 0.5 * (z_edges[1:] + z_edges[:-1])
    dens = abundance(10 ** lm_c[:, None], z_c[None, :])
    counts = dens * np.diff(lm_edges)[:, None] * np.diff(z_edges)[None, :]
    cum = np.cumsum(counts.ravel())
    return _CellGrid(lm_edges[:-1], z_edges[:-1], cum, float(cum[-1]))


def expected_halo_count(
    area_sr: float, m500c_min: float, z_min: float = 0.0, z_max: float = 3.0
) -> float:
    """Mean number of halos with M500c > ``m500c_min`` and ``z_min < z < z_max`` in ``area_sr``."""
    return _cells(float(m500c_min), float(z_min), float(z_max)).total_per_sr * area_sr


def sample_m500c_z(
    rng: np.random.Generator,
    area_sr: float,
    m500c_min: float = 3e13,
    z_min: float = 0.0,
    z_max: float = 3.0,
    boost: float = 1.0,
    boost_m500c_min: float = 1e14,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson-sample halo masses (M500c, Msun) and redshifts over ``area_sr`` steradians.

    Parameters
    ----------
    rng : numpy.random.Generator
    area_sr : float
        Solid angle.
    m500c_min, z_min, z_max : float
        Mass floor and redshift range.
    boost : float
        Extra abundance factor for halos above ``boost_m500c_min`` (training sets only: the
        expected number of such halos is multiplied by ``boost``).

    Returns
    -------
    m500c, z : numpy.ndarray
    """
    grids = [(m500c_min, 1.0)]
    if boost > 1.0:
        grids = [(m500c_min, 1.0), (max(boost_m500c_min, m500c_min), boost - 1.0)]
    ms, zs = [], []
    for m_lo, factor in grids:
        cells = _cells(float(m_lo), float(z_min), float(z_max))
        n = rng.poisson(cells.total_per_sr * area_sr * factor)
        u = rng.random(n) * cells.cum[-1]
        idx = np.minimum(np.searchsorted(cells.cum, u, side="right"), cells.cum.size - 1)
        n_z = cells.z_lo.size
        i_m, i_z = np.divmod(idx, n_z)
        jitter = rng.random((2, n))
        ms.append(10 ** (cells.log10_m_lo[i_m] + jitter[0] * _FINE_DLOGM))
        dz = (z_max - z_min) / n_z
        zs.append(cells.z_lo[i_z] + jitter[1] * dz)
    return np.concatenate(ms), np.concatenate(zs)


# --- NFW mass conversions ---------------------------------------------------------------


def _mu(x: np.ndarray) -> np.ndarray:
    return np.log1p(x) - x / (1.0 + x)


@lru_cache(maxsize=1)
def _inverse_table() -> tuple[np.ndarray, np.ndarray]:
    log_x = np.linspace(-7.0, 7.0, 20001)
    x = np.exp(log_x)
    log_f = np.log(_mu(x) / x**3)  # strictly decreasing
    return log_f[::-1].copy(), log_x[::-1].copy()


def _solve_x(target: np.ndarray) -> np.ndarray:
    """Solve ``mu(x)/x³ = target`` (``mu(x)/x³`` decreases monotonically) by table inversion."""
    log_f, log_x = _inverse_table()
    return np.exp(np.interp(np.log(target), log_f, log_x))


def duffy08_c200c(m200c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Duffy et al. (2008) full-sample concentration ``c200c(M200c, z)`` (M in Msun)."""
    return 5.71 * (m200c / (2e12 / cosmo.H)) ** -0.084 * (1.0 + z) ** -0.47


def delta_vir_c(z: np.ndarray) -> np.ndarray:
    """Bryan & Norman (1998) virial overdensity relative to the critical density."""
    x = cosmo.omega_m(z) - 1.0
    return 18.0 * np.pi**2 + 82.0 * x - 39.0 * x**2


def convert_m500c(m500c: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    """M200c, Mvir and c200c from M500c (NFW + Duffy08), vectorised.

    Returns
    -------
    dict with ``m200c``, ``mvir``, ``c200c``
    """
    m500c = np.asarray(m500c, dtype=float)
    z = np.asarray(z, dtype=float)
    m200 = 1.4 * m500c
    for _ in range(12):
        c = duffy08_c200c(m200, z)
        x500 = _solve_x(500.0 / 200.0 * _mu(c) / c**3)
        m200 = m500c * _mu(c) / _mu(x500)
    c = duffy08_c200c(m200, z)
    xvir = _solve_x(delta_vir_c(z) / 200.0 * _mu(c) / c**3)
    mvir = m200 * _mu(xvir) / _mu(c)
    return {"m200c": m200, "mvir": mvir, "c200c": c}


def r500_mpc(m500c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """R500c in (physical) Mpc."""
    return (3.0 * np.asarray(m500c) / (4.0 * np.pi * 500.0 * cosmo.rho_crit(z))) ** (1.0 / 3.0)


def velocity_dispersion_kms(z: np.ndarray, v_rms_z0: float) -> np.ndarray:
    """Linear-theory 1-D halo velocity dispersion ``∝ a H(z) f(z) D(z)``, ``= v_rms_z0`` at z=0.

    Growth rate ``f = Ωm(z)^0.55``; growth factor from the shipped colossus table.
    """
    z = np.asarray(z, dtype=float)
    f = cosmo.omega_m(z) ** 0.55
    f0 = cosmo.OM0**0.55
    return v_rms_z0 * cosmo.efunc(z) * f * cosmo.growth_factor(z) / ((1.0 + z) * f0)
