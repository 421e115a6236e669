"""Compton-y from the millimetre bands by a constrained internal linear combination (CILC).

When a run has no ``ymap`` layer but an ``mm`` layer of at least two bands, ``vgg_mass`` makes
its own y map around each candidate (Remazeilles, Delabrouille & Cardoso 2011, the "constrained
ILC" that the Planck MILCA/NILC and ACT y maps build on):

1. **region** — the mm bands are read on a TAN grid centred on the candidate, of the network's
   raw pixel and :data:`REGION_ARCMIN` (60') on a side: the candidate's own tile, large enough
   for a stable 3×3 (n×n) band covariance and small enough to follow the local noise and
   foregrounds;
2. **common beam** — every band is brought to the largest beam of the bands (Gaussian beams:
   multiplied in Fourier space by ``B_target(ℓ) / B_band(ℓ)``, which only smooths — no band is
   deconvolved), so that the CMB, the same sky in every band in µK_CMB, has the same shape in
   every band;
3. **responses** — tSZ: ``a_i = T_CMB f(x_i)`` µK per unit y with
   ``f(x) = x coth(x/2) − 4``, ``x = hν/kT_CMB`` (non-relativistic); CMB: ``b_i = 1``
   (µK_CMB);
4. **weights** — with the band covariance ``C`` of the region's pixels (mean removed) and
   ``A = [a, b]``, ``w = C⁻¹ A (Aᵀ C⁻¹ A)⁻¹ e`` with ``e = (1, 0)``: the combination of least
   variance with **tSZ response exactly 1 and CMB response exactly 0** (``wᵀa = 1``,
   ``wᵀb = 0``), so the CMB is nulled whatever its amplitude and the y amplitude is unbiased;
   the remaining variance (noise, point sources, CIB, kSZ) is minimised;
5. ``y = Σ w_i T_i`` on the region; the network's cutout is its centre.

The y map has the common beam (reported as the cutout's beam, used by the Y–M baseline) and the
noise of the combination. Relativistic corrections, dust/CIB constraints (a third constraint
would cost noise) and harmonic-space or needlet weights are not made. What the network sees then
differs from its training y maps (ACT-like white noise, beam 1.6' ×[0.85, 1.15]) in noise level
and beam when the mm bands' largest beam differs: the docs page measures it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Side of the region (arcmin) whose band covariance gives the weights.
REGION_ARCMIN = 60.0
#: Fewest finite pixels (in every band) for a covariance.
MIN_PIXELS = 200


def tsz_uk_per_y(freq_ghz: float | np.ndarray) -> np.ndarray:
    """µK_CMB per unit Compton-y: ``T_CMB (x coth(x/2) − 4)``, ``x = hν / k T_CMB``."""
    from astropy import constants as const

    from clusterfw.core.units import T_CMB

    t = T_CMB.to_value("K")
    x = const.h.value * np.asarray(freq_ghz, dtype=np.float64) * 1e9 / (const.k_B.value * t)
    return t * 1e6 * (x / np.tanh(x / 2.0) - 4.0)


def cilc_weights(
    cov: np.ndarray, responses: np.ndarray, target: Sequence[float] = (1.0, 0.0)
) -> np.ndarray:
    """Constrained-ILC weights ``w = C⁻¹ A (Aᵀ C⁻¹ A)⁻¹ e``.

    Parameters
    ----------
    cov : numpy.ndarray
        ``(n_band, n_band)`` band covariance.
    responses : numpy.ndarray
        ``(n_band, n_constraint)``: the column of the wanted component first (tSZ), then the
        components to null (CMB).
    target : sequence of float
        The wanted responses ``e`` (default: 1 to the first column, 0 to the others).

    Returns
    -------
    numpy.ndarray
        ``(n_band,)`` weights with ``wᵀ A = e``.

    Raises
    ------
    ValueError
        Fewer bands than constraints, or responses that are not independent.
    """
    c = np.asarray(cov, dtype=np.float64)
    a = np.asarray(responses, dtype=np.float64)
    n_band, n_con = a.shape
    if n_band < n_con:
        raise ValueError(f"{n_band} bands cannot meet {n_con} constraints")
    # columns and bands brought to unit scale first (µK per y is ~1e6, µK per µK is 1)
    col = np.linalg.norm(a, axis=0)
    band = np.sqrt(np.abs(np.diag(c)))
    if not (np.all(col > 0) and np.all(band > 0)):
        raise ValueError("a band without variance or a component without response")
    a_n = a / col / band[:, None]
    c_n = c / np.outer(band, band)
    ci_a = np.linalg.solve(c_n, a_n) if np.linalg.cond(c_n) < 1e12 else np.linalg.pinv(c_n) @ a_n
    m = a_n.T @ ci_a
    if np.linalg.cond(m) > 1e10:
        raise ValueError("the component responses are not independent across the bands")
    w_n = ci_a @ np.linalg.solve(m, np.asarray(target, dtype=np.float64) / col)
    return w_n / band


def smooth_to_beam(
    image: np.ndarray, beam_arcmin: float, target_arcmin: float, pixel_arcmin: float
) -> np.ndarray:
    """Convolve ``image`` (Gaussian beam ``beam_arcmin``) to ``target_arcmin`` ≥ it (FFT).

    Non-finite pixels are set to 0 for the convolution (and stay non-finite in the output).
    """
    img = np.asarray(image, dtype=np.float64)
    if target_arcmin <= beam_arcmin + 1e-9:
        return img.copy()
    bad = ~np.isfinite(img)
    filled = np.where(bad, 0.0, img)
    sigma_pix = math.sqrt(target_arcmin**2 - beam_arcmin**2) / math.sqrt(8 * math.log(2))
    sigma_pix /= pixel_arcmin
    ny, nx = img.shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    kernel = np.exp(-2.0 * math.pi**2 * sigma_pix**2 * (kx**2 + ky**2))
    out = np.fft.irfft2(np.fft.rfft2(filled) * kernel, s=(ny, nx))
    out[bad] = np.nan
    return out


def ilc_y(
    bands: np.ndarray,
    freq_ghz: Sequence[float],
    beam_fwhm_arcmin: Sequence[float],
    pixel_arcmin: float,
    target_beam_arcmin: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Compton-y of a region from its mm bands (see the module docstring).

    Parameters
    ----------
    bands : numpy.ndarray
        ``(n_band, ny, nx)`` µK_CMB, NaN where there are no data.
    freq_ghz, beam_fwhm_arcmin : sequence of float
        Per band.
    pixel_arcmin : float
    target_beam_arcmin : float, optional
        Common beam (default and minimum: the largest of the bands').

    Returns
    -------
    y : numpy.ndarray
        ``(ny, nx)`` Compton-y at the common beam; NaN where any band has no data.
    weights : numpy.ndarray
        ``(n_band,)`` µK⁻¹ (``Σ w_i a_i = 1``, ``Σ w_i = 0``).
    beam : float
        The common beam FWHM (arcmin).

    Raises
    ------
    ValueError
        Fewer than two bands, bands of (nearly) the same frequency, or fewer than
        :data:`MIN_PIXELS` pixels with data in every band.
    """
    maps = np.asarray(bands, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[0] < 2:
        raise ValueError("a constrained ILC needs at least two mm bands")
    beams = [float(b) for b in beam_fwhm_arcmin]
    target = max(beams) if target_beam_arcmin is None else max(max(beams), target_beam_arcmin)
    smooth = np.stack(
        [smooth_to_beam(m, b, target, pixel_arcmin) for m, b in zip(maps, beams, strict=True)]
    )
    ok = np.all(np.isfinite(smooth), axis=0)
    if int(ok.sum()) < MIN_PIXELS:
        raise ValueError(f"only {int(ok.sum())} pixels with data in every band")
    pix = smooth[:, ok]
    pix = pix - pix.mean(axis=1, keepdims=True)
    cov = pix @ pix.T / (pix.shape[1] - 1)
    resp = np.stack([tsz_uk_per_y(np.asarray(freq_ghz)), np.ones(len(beams))], axis=1)
    w = cilc_weights(cov, resp)
    y = np.tensordot(w, np.where(np.isfinite(smooth), smooth, 0.0), axes=1)
    y[~ok] = np.nan
    return y, w, target
