"""Spectral conversions, flat-sky Fourier grids, beams, noise and the scan filter.

Everything here is closed-form: the tSZ spectral function, the derivative of the CMB blackbody
(flux density to µK_CMB), Gaussian beam transfer functions, and noise realisations drawn from a
caller-supplied :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from astropy import constants as const

from clusterfw.sim.cosmology import TCMB_K

ARCMIN = math.pi / 180.0 / 60.0  # radians per arcmin
_H = const.h.si.value
_K = const.k_B.si.value
_C = const.c.si.value
JY = 1e-26  # W m^-2 Hz^-1


def x_nu(freq_ghz: float | np.ndarray) -> float | np.ndarray:
    """Dimensionless frequency ``x = h ν / (k T_CMB)``."""
    return _H * np.asarray(freq_ghz) * 1e9 / (_K * TCMB_K)


def tsz_spectrum(freq_ghz: float | np.ndarray) -> float | np.ndarray:
    """Non-relativistic tSZ spectral function ``f(x) = x coth(x/2) - 4`` (ΔT/T = f(x) y).

    Negative below the 217 GHz null, positive above.
    """
    x = x_nu(freq_ghz)
    return x / np.tanh(x / 2.0) - 4.0


def tsz_uk_per_y(freq_ghz: float | np.ndarray) -> float | np.ndarray:
    """µK_CMB per unit Compton-y at ``freq_ghz``: ``f(x) T_CMB``."""
    return tsz_spectrum(freq_ghz) * TCMB_K * 1e6


def db_dt(freq_ghz: float | np.ndarray) -> float | np.ndarray:
    """Derivative of the CMB blackbody, ``dB_ν/dT`` at T_CMB, in Jy sr⁻¹ K⁻¹.

    ``dB/dT = 2 k ν² / c² · x² eˣ / (eˣ − 1)²``.
    """
    nu = np.asarray(freq_ghz) * 1e9
    x = x_nu(freq_ghz)
    ex = np.exp(x)
    return 2.0 * _K * nu**2 / _C**2 * x**2 * ex / (ex - 1.0) ** 2 / JY


def jy_per_sr_to_uk(freq_ghz: float | np.ndarray) -> float | np.ndarray:
    """µK_CMB per Jy/sr at ``freq_ghz`` (inverse of :func:`db_dt`, scaled to µK)."""
    return 1e6 / db_dt(freq_ghz)


def modified_blackbody(freq_ghz: np.ndarray | float, beta: float, t_dust: float) -> np.ndarray:
    """Modified blackbody ``ν^β B_ν(T)`` (arbitrary normalisation) in intensity units."""
    nu = np.asarray(freq_ghz, dtype=float) * 1e9
    x = _H * nu / (_K * t_dust)
    return nu ** (3.0 + beta) / np.expm1(x)


@lru_cache(maxsize=4)
def ell_grid(ny: int, nx: int, pixel_arcmin: float, real: bool = True):
    """Multipoles of a flat-sky ``(ny, nx)`` grid, matching ``scipy.fft.rfft2`` (or ``fft2``).

    Cached (the arrays are read-only; copy before modifying).

    Returns
    -------
    ell, ell_x, ell_y : numpy.ndarray
        ``|ℓ|`` and its components; ``ell_x`` runs along the x (RA) axis.
    """
    d = pixel_arcmin * ARCMIN
    ly = 2.0 * np.pi * sfft.fftfreq(ny, d=d)
    lx = 2.0 * np.pi * (sfft.rfftfreq(nx, d=d) if real else sfft.fftfreq(nx, d=d))
    ell_y, ell_x = np.meshgrid(ly, lx, indexing="ij", sparse=True)
    ell = np.sqrt(ell_x**2 + ell_y**2)
    for arr in (ell, ell_x, ell_y):
        arr.flags.writeable = False
    return ell, ell_x, ell_y


def beam_transfer(ell: np.ndarray, fwhm_arcmin: float) -> np.ndarray:
    """Gaussian beam transfer function ``B_ℓ = exp(-ℓ(ℓ+1) σ² / 2)`` with ``σ = FWHM/√(8 ln 2)``."""
    sigma = fwhm_arcmin * ARCMIN / math.sqrt(8.0 * math.log(2.0))
    return np.exp(-0.5 * ell * (ell + 1.0) * sigma**2)


def beam_solid_angle_sr(fwhm_arcmin: float) -> float:
    """Solid angle of a Gaussian beam, ``2π σ²``, in steradians."""
    sigma = fwhm_arcmin * ARCMIN / math.sqrt(8.0 * math.log(2.0))
    return 2.0 * math.pi * sigma**2


def scan_filter(ell_x: np.ndarray, ell_cut: float) -> np.ndarray:
    """Anisotropic time-domain-filter stand-in: suppresses modes with small ``|ℓ_x|``.

    ``F = 1 − exp(−(ℓ_x/ℓ_cut)²)``: long wavelengths along the scan (RA) direction are removed,
    as the SPT/ACT map makers' TOD high-pass filters do.
    """
    return -np.expm1(-((ell_x / ell_cut) ** 2)) if ell_cut > 0 else np.ones_like(ell_x)


def white_noise(
    rng: np.random.Generator, shape: tuple[int, int], noise_uk_arcmin: float, pixel_arcmin: float
) -> np.ndarray:
    """White noise of depth ``noise_uk_arcmin`` (µK-arcmin) on pixels of ``pixel_arcmin``."""
    sigma = noise_uk_arcmin / pixel_arcmin
    return rng.standard_normal(shape, dtype=np.float64) * sigma


def one_over_f_noise_fourier(
    rng: np.random.Generator,
    ny: int,
    nx: int,
    pixel_arcmin: float,
    noise_uk_arcmin: float,
    ell_knee: float,
    alpha: float,
) -> np.ndarray:
    """rfft2 of the *extra* red noise, ``N_ℓ = N_white (ℓ_knee/ℓ)^α`` (white part excluded).

    Returned in the same Fourier convention as :func:`scipy.fft.rfft2` of a pixel map.
    """
    ell, _, _ = ell_grid(ny, nx, pixel_arcmin)
    white = rng.standard_normal((ny, nx))
    wk = sfft.rfft2(white, workers=-1)
    with np.errstate(divide="ignore"):
        ratio = np.where(ell > 0, (ell_knee / np.maximum(ell, 1.0)) ** alpha, 0.0)
    return wk * (noise_uk_arcmin / pixel_arcmin) * np.sqrt(ratio)
