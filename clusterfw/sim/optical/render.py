"""Pixel painting: Sérsic galaxies, a Moffat PSF, stars and background-limited sky noise.

Galaxies are painted as their intrinsic (pre-seeing) Sérsic profiles on ``s × s`` sub-pixels
(``s = 3`` for stamps up to 17 pixels across, else 1), with the radius softened by a third of a
sub-pixel so that the n = 4 cusp integrates sensibly. Profiles are truncated like the SDSS model
fits (Stoughton et al. 2002: exponential at 4 r_e, de Vaucouleurs at 8 r_e) and every stamp is
normalised to the galaxy's total flux. The galaxy image of each band is then convolved with the
band's pixel-integrated Moffat PSF (truncated at 4 FWHM, ≥ 99.6 % of the flux for β = 3) by
overlap-add FFT (:func:`scipy.signal.oaconvolve`). Stars are added afterwards as analytic
Moffat stamps at their sub-pixel positions, identical to the kernel for a centred star.

The sky noise is white and Gaussian (background-limited: the source photon noise, at most a few
per cent of the sky variance for the faint galaxies that matter, is left out). Its per-pixel
σ is set by the 10σ point-source depth ``MAGLIM`` for PSF-weighted (optimal) photometry,
``σ_pix = f_10 / (10 √N_eff)`` with ``f_10 = 10^{-0.4 (MAGLIM − 22.5)}`` nanomaggies and
``N_eff = 1 / Σ p_i²`` the effective number of pixels of the normalised PSF ``p``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

STAMP_SIZES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
CHUNK_ELEMENTS = 3_000_000
PSF_RADIUS_FWHM = 4.0


def moffat_alpha(fwhm: float, beta: float) -> float:
    """Moffat core radius ``α`` for a given FWHM: ``FWHM = 2 α √(2^{1/β} − 1)``."""
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _moffat(r2: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return (1.0 + r2 / alpha**2) ** (-beta)


def moffat_kernel(fwhm_pix: float, beta: float, oversample: int = 5) -> np.ndarray:
    """Pixel-integrated, normalised Moffat PSF image, truncated at 4 FWHM (odd side)."""
    half = max(2, int(math.ceil(PSF_RADIUS_FWHM * fwhm_pix)))
    s = oversample
    sub = (np.arange((2 * half + 1) * s) + 0.5) / s - (half + 0.5)
    r2 = sub[:, None] ** 2 + sub[None, :] ** 2
    prof = _moffat(r2, moffat_alpha(fwhm_pix, beta), beta)
    prof[r2 > (PSF_RADIUS_FWHM * fwhm_pix) ** 2] = 0.0
    k = prof.reshape(2 * half + 1, s, 2 * half + 1, s).sum(axis=(1, 3))
    return k / k.sum()


def effective_pixels(kernel: np.ndarray) -> float:
    """``N_eff = 1 / Σ p²`` of a normalised PSF image."""
    return float(1.0 / np.sum(kernel.astype(np.float64) ** 2))


def sigma_pixel(maglim: float, kernel: np.ndarray) -> float:
    """Per-pixel noise (nanomaggies) giving S/N = 10 for a point source of AB mag ``maglim``."""
    f10 = 10 ** (-0.4 * (maglim - 22.5))
    return f10 / (10.0 * math.sqrt(effective_pixels(kernel)))


def mag_to_nanomaggies(mag: np.ndarray) -> np.ndarray:
    """AB magnitude to nanomaggies (AB mag = 22.5 − 2.5 log10 f)."""
    return 10 ** (-0.4 * (np.asarray(mag, dtype=float) - 22.5))


def _stamp_half(extent_pix: np.ndarray) -> np.ndarray:
    sizes = np.asarray(STAMP_SIZES)
    idx = np.searchsorted(sizes, np.ceil(extent_pix), side="left")
    return sizes[np.minimum(idx, sizes.size - 1)]


def _deposit(
    images: np.ndarray,
    ix: np.ndarray,
    iy: np.ndarray,
    stamps: np.ndarray,
    fluxes: np.ndarray,
    half: int,
) -> None:
    """Add ``fluxes[b, g] * stamps[g]`` (stamps normalised) into ``images[b]`` around (ix, iy).

    One slice addition per stamp and band (cheaper than scattered ``np.add.at`` for stamps of
    more than a few pixels); stamps are clipped at the image edges.
    """
    _nb, ny, nx = images.shape
    x0, y0 = ix - half, iy - half
    x1, y1 = ix + half + 1, iy + half + 1
    cx0, cy0 = np.maximum(x0, 0), np.maximum(y0, 0)
    cx1, cy1 = np.minimum(x1, nx), np.minimum(y1, ny)
    keep = np.flatnonzero((cx1 > cx0) & (cy1 > cy0))
    scaled = stamps[None, keep] * fluxes[:, keep, None, None].astype(np.float32)
    for j, g in enumerate(keep):
        sy = slice(cy0[g] - y0[g], cy1[g] - y0[g])
        sx = slice(cx0[g] - x0[g], cx1[g] - x0[g])
        images[:, cy0[g] : cy1[g], cx0[g] : cx1[g]] += scaled[:, j, sy, sx]


def paint_sersic(
    images: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    fluxes: np.ndarray,
    r_e_pix: np.ndarray,
    n: np.ndarray,
    q: np.ndarray,
    pa_deg: np.ndarray,
    threshold: float = 0.0,
) -> None:
    """Paint intrinsic Sérsic profiles into ``images`` (``(n_band, ny, nx)``), in place.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n_band, ny, nx)`` float32 images.
    x, y : numpy.ndarray
        0-based pixel centres.
    fluxes : numpy.ndarray
        ``(n_band, n_gal)`` total fluxes.
    r_e_pix : numpy.ndarray
        Circularised half-light radii, pixels.
    n, q, pa_deg : numpy.ndarray
        Sérsic index (1 or 4 use the SDSS truncations, others 4 r_e), axis ratio, position angle
        (east of north; north is +y and east −x in the images).
    threshold : float
        Surface brightness (flux per pixel) below which a profile is cut: the stamp reaches the
        radius where the brightest band's profile falls to ``threshold`` (or the truncation
        radius, whichever is smaller). 0 keeps the full truncation radius.
    """
    from scipy.special import gamma

    from clusterfw.sim.optical.galaxies import sersic_bn

    if x.size == 0:
        return
    trunc = np.where(n >= 2.0, 8.0, 4.0)
    extent = trunc
    if threshold > 0:
        bn = sersic_bn(n)
        # I_e of the (area-preserving elliptical) Sérsic profile, flux per pixel
        i_e = fluxes.max(axis=0) / (
            2 * np.pi * n * r_e_pix**2 * np.exp(bn) * bn ** (-2 * n) * gamma(2 * n)
        )
        w = 1.0 + np.log(np.maximum(i_e / threshold, 1.0)) / bn
        extent = np.minimum(trunc, w**n)
    half_all = _stamp_half(extent * r_e_pix / np.sqrt(q) + 1.0)
    for half, nn_val in sorted(set(zip(half_all.tolist(), n.tolist(), strict=True))):
        sel = np.flatnonzero((half_all == half) & (n == nn_val))
        s = 3 if half <= 8 else 1
        side = 2 * half + 1
        per = side * side * s * s
        step = max(1, CHUNK_ELEMENTS // per)
        sub = (np.arange(side * s) + 0.5) / s - (half + 0.5)
        for start in range(0, sel.size, step):
            g = sel[start : start + step]
            ix = np.rint(x[g]).astype(np.int64)
            iy = np.rint(y[g]).astype(np.int64)
            u = sub[None, None, :] - (x[g] - ix)[:, None, None]
            v = sub[None, :, None] - (y[g] - iy)[:, None, None]
            pa = np.radians(pa_deg[g])[:, None, None]
            a = -u * np.sin(pa) + v * np.cos(pa)
            b = u * np.cos(pa) + v * np.sin(pa)
            qq = q[g][:, None, None]
            r = np.sqrt(qq * a * a + b * b / qq + (0.33 / s) ** 2)
            rr = r / r_e_pix[g][:, None, None]
            if nn_val == 1.0:
                w = rr
            elif nn_val == 4.0:
                w = np.sqrt(np.sqrt(rr))
            else:
                w = rr ** (1.0 / nn_val)
            prof = np.exp(-float(sersic_bn(nn_val)) * (w - 1.0))
            prof[rr > (8.0 if nn_val >= 2.0 else 4.0)] = 0.0
            pix = prof.reshape(g.size, side, s, side, s).sum(axis=(2, 4))
            tot = pix.sum(axis=(1, 2))
            pix /= np.where(tot > 0, tot, 1.0)[:, None, None]
            _deposit(images, ix, iy, pix.astype(np.float32), fluxes[:, g], int(half))


def paint_points(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, fwhm_pix: float, beta: float
) -> None:
    """Add PSF-shaped point sources (pixel-integrated Moffat, 3×3 sub-pixels) to ``image``."""
    if x.size == 0:
        return
    half = int(math.ceil(PSF_RADIUS_FWHM * fwhm_pix))
    s = 3
    side = 2 * half + 1
    sub = (np.arange(side * s) + 0.5) / s - (half + 0.5)
    alpha = moffat_alpha(fwhm_pix, beta)
    step = max(1, CHUNK_ELEMENTS // (side * side * s * s))
    rmax2 = (PSF_RADIUS_FWHM * fwhm_pix) ** 2
    for start in range(0, x.size, step):
        sl = slice(start, start + step)
        ix = np.rint(x[sl]).astype(np.int64)
        iy = np.rint(y[sl]).astype(np.int64)
        u = sub[None, None, :] - (x[sl] - ix)[:, None, None]
        v = sub[None, :, None] - (y[sl] - iy)[:, None, None]
        r2 = u * u + v * v
        prof = _moffat(r2, alpha, beta)
        prof[r2 > rmax2] = 0.0
        pix = prof.reshape(ix.size, side, s, side, s).sum(axis=(2, 4))
        pix /= pix.sum(axis=(1, 2))[:, None, None]
        _deposit(image[None], ix, iy, pix, flux[None, sl], half)


def convolve_psf(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image ⊛ kernel`` (same shape, float32) by overlap-add FFT."""
    out = signal.oaconvolve(image, kernel.astype(image.dtype), mode="same")
    return np.asarray(out, dtype=np.float32)
