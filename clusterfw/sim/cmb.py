"""The lensed CMB as a Gaussian random field (flat sky or spherical harmonics)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from clusterfw.sim.cosmology import cmb_table
from clusterfw.sim.instrument import ARCMIN, ell_grid


@lru_cache(maxsize=1)
def _extended_cl() -> tuple[np.ndarray, np.ndarray]:
    tab = cmb_table()
    ell = tab["ell"].astype(float)
    cl = tab["cl_tt"].astype(float).copy()
    cl[:2] = 0.0
    return ell, cl


def lensed_cl_tt(ell: np.ndarray | float) -> np.ndarray:
    """Lensed ΛCDM TT power spectrum C_ℓ in µK² (camb, Planck 2018), at any (real) ℓ.

    Tabulated to ℓ = 10000; beyond, D_ℓ is extended as the power law fitted over 8000–10000
    (the lensed damping tail, far below the noise after any arcminute beam).
    """
    ell_tab, cl_tab = _extended_cl()
    ell = np.asarray(ell, dtype=float)
    lmax = ell_tab[-1]
    out = np.interp(ell, ell_tab, cl_tab, left=0.0)
    high = ell > lmax
    if np.any(high):
        d = ell_tab * (ell_tab + 1) * cl_tab
        slope = np.log(d[-1] / d[8000]) / np.log(lmax / 8000.0)
        d_high = d[-1] * (ell[high] / lmax) ** slope
        out[high] = d_high / (ell[high] * (ell[high] + 1.0))
    return out


def gaussian_field_fourier(
    rng: np.random.Generator,
    ny: int,
    nx: int,
    pixel_arcmin: float,
    cl_func,
) -> np.ndarray:
    """rfft2 of a flat-sky Gaussian field with spectrum ``cl_func(ℓ)`` (µK² sr → µK maps).

    Unit white noise is drawn in pixel space and coloured by ``sqrt(C_ℓ / Ω_pix)``, so that
    ``Ω_pix |FFT|² / N`` of the field has expectation C_ℓ.
    """
    pix_sr = (pixel_arcmin * ARCMIN) ** 2
    ell, _, _ = ell_grid(ny, nx, pixel_arcmin)
    amp = np.sqrt(np.asarray(cl_func(ell), dtype=float) / pix_sr)
    amp[0, 0] = 0.0
    white = rng.standard_normal((ny, nx))
    return sfft.rfft2(white, workers=-1) * amp


def cmb_fourier(rng: np.random.Generator, ny: int, nx: int, pixel_arcmin: float) -> np.ndarray:
    """rfft2 of a lensed-CMB realisation on an ``(ny, nx)`` grid of ``pixel_arcmin`` pixels."""
    return gaussian_field_fourier(rng, ny, nx, pixel_arcmin, lensed_cl_tt)


def synthesize_alm(rng: np.random.Generator, cl: np.ndarray, lmax: int) -> np.ndarray:
    """Spherical-harmonic coefficients (healpy order) of a Gaussian field with spectrum ``cl``.

    Drawn from ``rng`` (``healpy.synalm`` would use NumPy's global random state).
    """
    import healpy as hp

    ell, m = hp.Alm.getlm(lmax)
    sig = np.sqrt(np.asarray(cl, dtype=float)[ell])
    re = rng.standard_normal(ell.size)
    im = rng.standard_normal(ell.size)
    alm = np.where(m == 0, sig * re, sig * (re + 1j * im) / np.sqrt(2.0))
    return alm.astype(np.complex128)
