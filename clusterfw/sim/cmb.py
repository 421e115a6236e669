"""The lensed CMB as a Gaussian random field (flat sky or spherical harmonics)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

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
    ell = np.asarray(ell, dtype=float)
    ell_tab, cl_tab = _cl_to(int(np.max(ell, initial=0.0)) + 2)
    return np.interp(ell, ell_tab, cl_tab, left=0.0)


@lru_cache(maxsize=4)
def _cl_to(lmax_needed: int) -> tuple[np.ndarray, np.ndarray]:
    ell_tab, cl_tab = _extended_cl()
    lmax = int(ell_tab[-1])
    if lmax_needed <= lmax:
        return ell_tab, cl_tab
    d = ell_tab * (ell_tab + 1) * cl_tab
    slope = np.log(d[-1] / d[8000]) / np.log(lmax / 8000.0)
    ell_high = np.arange(lmax + 1, lmax_needed + 1, dtype=float)
    cl_high = d[-1] * (ell_high / lmax) ** slope / (ell_high * (ell_high + 1.0))
    return np.concatenate([ell_tab, ell_high]), np.concatenate([cl_tab, cl_high])


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
    out = white_noise_fourier(rng, ny, nx)
    out *= amp
    return out


def white_noise_fourier(rng: np.random.Generator, ny: int, nx: int) -> np.ndarray:
    """rfft2 of unit white noise on an ``(ny, nx)`` grid, drawn directly in Fourier space.

    Same distribution as ``scipy.fft.rfft2(rng.standard_normal((ny, nx)))`` without the FFT:
    independent complex Gaussians of variance ``ny·nx``, made Hermitian in the ``k_x = 0``
    (and Nyquist) columns so the inverse transform is real.
    """
    nxr = nx // 2 + 1
    scale = np.sqrt(ny * nx / 2.0)
    out = rng.standard_normal((ny, 2 * nxr)).view(np.complex128)  # (re, im) pairs
    out *= scale
    cols = [0] + ([nx // 2] if nx % 2 == 0 else [])
    neg = (-np.arange(ny)) % ny
    for c in cols:
        v = out[:, c].copy()
        out[:, c] = (v + np.conj(v[neg])) / np.sqrt(2.0)
    return out


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
