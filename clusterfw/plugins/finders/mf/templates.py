"""Cluster profiles and their Fourier transforms, and the tSZ spectral law.

All angles are in arcmin and angular wavenumbers ``k`` in radians per arcmin (multipole
``ell = k * 10800 / pi``). A template is a radial profile normalised to 1 at its centre, so the
amplitude the matched filter estimates is the central Compton ``y_c``.

Both profile families are self-similar: the 2-D Fourier transform of a profile of scale ``s`` is
``s**2 * g(k * s)`` where ``g`` is the transform of the unit-scale profile. ``g`` is tabulated
once per family (a 1-D Hankel transform) and cached, so a new tile or a new scale costs nothing.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special

T_CMB_UK = 2.7255e6
"""CMB monopole temperature in µK."""

_H_OVER_K_GHZ = 0.0479924307  # h / k_B in K per GHz

#: Truncation radius of the projected beta model, in units of its core radius.
BETA_TRUNCATION = 5.0
#: Truncation radius of the GNFW pressure profile, in units of R500.
GNFW_TRUNCATION = 5.0
#: Arnaud et al. (2010) universal pressure profile shape (c500, gamma, alpha, beta).
ARNAUD_PARAMS = (1.177, 0.3081, 1.0510, 5.4905)

_Q_MAX = 80.0  # table range of k * scale; beyond it the transforms are negligible (beams)
_N_Q = 4001


def tsz_uk_per_y(freq_ghz: float | np.ndarray) -> np.ndarray:
    """Non-relativistic tSZ spectral factor: µK_CMB per unit Compton-y.

    ``ΔT = T_CMB * (x coth(x/2) - 4) * y`` with ``x = h nu / k T_CMB``: negative below
    ~217 GHz, positive above.

    Parameters
    ----------
    freq_ghz : float or array_like
        Observing frequency in GHz.

    Returns
    -------
    numpy.ndarray
        Temperature change in µK_CMB for ``y = 1``.
    """
    x = _H_OVER_K_GHZ * np.asarray(freq_ghz, dtype=np.float64) / (T_CMB_UK * 1e-6)
    return T_CMB_UK * (x / np.tanh(x / 2.0) - 4.0)


def beta_profile(u: np.ndarray) -> np.ndarray:
    """Projected beta model with beta = 1, ``1 / (1 + u**2)``, truncated at ``BETA_TRUNCATION``.

    Parameters
    ----------
    u : array_like
        Radius in units of the core radius.
    """
    u = np.asarray(u, dtype=np.float64)
    return np.where(u <= BETA_TRUNCATION, 1.0 / (1.0 + u * u), 0.0)


@lru_cache(maxsize=1)
def _gnfw_projected_table() -> tuple[np.ndarray, np.ndarray]:
    """Projected Arnaud GNFW profile on a radius grid (units of R500), normalised at centre."""
    c500, gamma, alpha, beta = ARNAUD_PARAMS
    u = np.concatenate([[0.0], np.geomspace(1e-4, GNFW_TRUNCATION, 600)])
    # line-of-sight coordinate on a log grid, truncated at the 5 R500 sphere
    t = np.geomspace(1e-6, 1.0, 400)
    lmax = np.sqrt(np.maximum(GNFW_TRUNCATION**2 - u**2, 0.0))
    ll = lmax[:, None] * t[None, :]
    x = np.sqrt(u[:, None] ** 2 + ll**2)
    x = np.maximum(x, 1e-8)
    cx = c500 * x
    p = 1.0 / (cx**gamma * (1.0 + cx**alpha) ** ((beta - gamma) / alpha))
    prof = 2.0 * np.trapezoid(p, ll, axis=1)
    prof[-1] = 0.0
    return u, prof / prof[0]


def gnfw_profile(u: np.ndarray) -> np.ndarray:
    """Projected Arnaud (2010) GNFW profile, normalised to 1 at the centre.

    Parameters
    ----------
    u : array_like
        Radius in units of theta500; zero beyond ``GNFW_TRUNCATION``.
    """
    grid, prof = _gnfw_projected_table()
    u = np.asarray(u, dtype=np.float64)
    return np.interp(u, grid, prof, right=0.0)


def _hankel(profile: np.ndarray, u: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``2 pi int u J0(q u) p(u) du`` for each ``q`` (trapezoid rule, blocks of q)."""
    out = np.empty_like(q)
    w = u * profile
    for start in range(0, q.size, 500):
        qq = q[start : start + 500]
        out[start : start + 500] = (
            2.0 * np.pi * np.trapezoid(special.j0(qq[:, None] * u[None, :]) * w[None, :], u, axis=1)
        )
    return out


@lru_cache(maxsize=4)
def unit_transform(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Tabulated 2-D Fourier transform of the unit-scale profile of ``kind``.

    Parameters
    ----------
    kind : {"beta", "arnaud"}

    Returns
    -------
    q, g : numpy.ndarray
        ``g(q)``, in units of scale**2, on a uniform grid ``q = k * scale`` in ``[0, 80]``.
    """
    q = np.linspace(0.0, _Q_MAX, _N_Q)
    if kind == "beta":
        u = np.linspace(0.0, BETA_TRUNCATION, 2501)
        prof = beta_profile(u)
    elif kind == "arnaud":
        u = np.linspace(0.0, GNFW_TRUNCATION, 2501)
        prof = gnfw_profile(u)
    else:
        raise ValueError(f"unknown profile {kind!r}")
    return q, _hankel(prof, u, q)


def profile_function(kind: str):
    """The real-space unit profile function of ``kind`` (for painting test clusters)."""
    return {"beta": beta_profile, "arnaud": gnfw_profile}[kind]


def template_transform(kind: str, scale_arcmin: float, k: np.ndarray) -> np.ndarray:
    """Continuous 2-D Fourier transform of a unit-amplitude profile of scale ``scale_arcmin``.

    Parameters
    ----------
    kind : {"beta", "arnaud"}
    scale_arcmin : float
        Core radius (beta) or theta500 (arnaud) in arcmin.
    k : array_like
        Angular wavenumber in rad / arcmin.

    Returns
    -------
    numpy.ndarray
        Transform in arcmin**2 (divide by the pixel area for DFT units).
    """
    q, g = unit_transform(kind)
    return scale_arcmin**2 * np.interp(np.asarray(k) * scale_arcmin, q, g, right=0.0)


def gaussian_beam_transform(fwhm_arcmin: float, k: np.ndarray) -> np.ndarray:
    """Fourier transform of a unit-peak-normalised-in-Fourier Gaussian beam, ``B(k=0) = 1``."""
    sigma = fwhm_arcmin / np.sqrt(8.0 * np.log(2.0))
    return np.exp(-0.5 * (np.asarray(k) * sigma) ** 2)
