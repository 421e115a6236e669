"""Background cosmology and the shipped (camb / colossus generated) tables.

The simulator uses one flat ΛCDM cosmology, Planck 2018 (``H0 = 67.66``, ``Ωm = 0.3111``,
``Ωb = 0.0490``, ``σ8 = 0.8102``, ``ns = 0.9665``, ``T_CMB = 2.7255 K``) — colossus's
``planck18``. Distances come from :mod:`astropy.cosmology` (tabulated once on a fine redshift grid
so that thousands of halos cost one interpolation). The lensed CMB spectrum (camb) and the
Tinker et al. (2008) halo abundance (colossus) are read from ``clusterfw/sim/data/*.npz``;
``python -m clusterfw.sim.data.make_tables`` regenerates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

H0 = 67.66
OM0 = 0.3111
OB0 = 0.0490
SIGMA8 = 0.8102
NS = 0.9665
TCMB_K = 2.7255
H = H0 / 100.0
H70 = H0 / 70.0

_Z_GRID_MAX = 3.2
_Z_GRID_STEP = 0.002


@lru_cache(maxsize=1)
def astropy_cosmology():
    """The astropy ``FlatLambdaCDM`` matching colossus's ``planck18`` (massless neutrinos)."""
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=H0, Om0=OM0, Ob0=OB0, Tcmb0=TCMB_K, Neff=3.046, m_nu=0.0)


@dataclass(frozen=True)
class _Background:
    z: np.ndarray
    d_a_mpc: np.ndarray
    efunc: np.ndarray
    rho_crit: np.ndarray  # Msun / Mpc^3
    om_z: np.ndarray


@lru_cache(maxsize=1)
def _background() -> _Background:
    import astropy.units as u

    cosmo = astropy_cosmology()
    z = np.arange(0.0, _Z_GRID_MAX + _Z_GRID_STEP / 2, _Z_GRID_STEP)
    d_a = cosmo.angular_diameter_distance(z).to_value(u.Mpc)
    efunc = cosmo.efunc(z)
    rho_c = cosmo.critical_density(z).to_value(u.Msun / u.Mpc**3)
    om_z = cosmo.Om(z)
    return _Background(z, d_a, efunc, rho_c, om_z)


def angular_diameter_distance(z: np.ndarray) -> np.ndarray:
    """Angular-diameter distance in Mpc (no h) at redshifts ``z`` (0 ≤ z ≤ 3.2)."""
    bg = _background()
    return np.interp(z, bg.z, bg.d_a_mpc)


def efunc(z: np.ndarray) -> np.ndarray:
    """E(z) = H(z)/H0."""
    bg = _background()
    return np.interp(z, bg.z, bg.efunc)


def rho_crit(z: np.ndarray) -> np.ndarray:
    """Critical density in Msun / Mpc³ (no h)."""
    bg = _background()
    return np.interp(z, bg.z, bg.rho_crit)


def omega_m(z: np.ndarray) -> np.ndarray:
    """Matter density parameter Ωm(z)."""
    bg = _background()
    return np.interp(z, bg.z, bg.om_z)


def _load(name: str) -> dict[str, np.ndarray]:
    with resources.files("clusterfw.sim.data").joinpath(name).open("rb") as fh:
        with np.load(fh, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


@lru_cache(maxsize=1)
def halo_abundance_table() -> dict[str, np.ndarray]:
    """The shipped Tinker08 table: ``log10_m500c``, ``z``, ``dn_dlog10m_dz_dsr``, ``growth``."""
    return _load("halo_abundance_planck18.npz")


@lru_cache(maxsize=1)
def cmb_table() -> dict[str, np.ndarray]:
    """The shipped camb spectrum: ``ell`` and lensed ``cl_tt`` in µK² (ℓ = 0..10000)."""
    return _load("cmb_lensed_planck18.npz")


def growth_factor(z: np.ndarray) -> np.ndarray:
    """Linear growth factor D(z) normalised to D(0) = 1 (colossus, shipped table)."""
    tab = halo_abundance_table()
    return np.interp(z, tab["z"], tab["growth"])
