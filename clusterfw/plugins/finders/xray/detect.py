"""Extended X-ray sources on a counts image: Poisson multi-scale detection, then a β-model vs
PSF maximum-likelihood fit of every source (Cash statistic).

1. **Background** (counts per pixel): the layer's ``BACKGROUND`` map where given; otherwise
   ``rate × exposure`` with the rate estimated from the counts themselves — counts and exposure
   summed in ``bkg_box`` × ``bkg_box`` blocks with the pixels near sources masked (two passes:
   the first mask comes from a detection against the global rate), as eSASS's ``erbackmap``
   does with its source-masked, smoothed count and exposure maps.
2. **Multi-scale Poisson detection**: for each scale ``r_k`` (a top-hat of radius ``r_k``:
   1, 2, 4 and 8 PSF σ, at least 1.5 pixels) the aperture counts ``N`` and expected background
   ``μ`` give the Poisson tail probability ``P(≥ N | μ)`` (exact, ``scipy.special.gammainc``),
   written as a Gaussian-equivalent significance ``ν = Φ⁻¹(1 − P)``. Peaks of the best
   significance over scales (local maxima in a window of the PSF FWHM) above ``nu_min`` are
   the seeds — a wavelet detection à la XAMIN/eSASS, with exact Poisson thresholds at a few
   counts.
3. **Maximum-likelihood fit** of each seed on a stamp of radius ``fit_radius`` pixels, with
   the background fixed: the Cash statistic ``C = 2 Σ (m − n ln m)`` of the background alone,
   of a point source (the PSF, a Gaussian of the layer's ``PSFFWHM``) and of an extended
   source (a β = 2/3 model of core radius ``r_c`` convolved with the PSF), free position,
   amplitude (and ``r_c``), by ``scipy.optimize.minimize``. Detection likelihood
   ``det_like = (C_bkg − C_best) / 2``, extent likelihood ``ext_like = (C_point − C_ext) / 2``
   (eSASS's ``DET_LIKE`` / ``EXT_LIKE``); the extent is the fitted ``r_c`` (arcsec); counts are
   the fitted source counts of the better model. Seeds are fitted brightest first, each fitted
   source joining the fixed background of the later fits (so wings are not sources).

Source models scale with the exposure relative to the source centre's (vignetting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage, optimize, special, stats

BETA = 2.0 / 3.0
RC_MIN_ARCSEC, RC_MAX_ARCSEC = 4.0, 120.0


@dataclass(frozen=True)
class DetectSettings:
    """Settings of :func:`detect_sources` (see the module docstring)."""

    nu_min: float = 4.0
    scales_psf_sigma: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    fit_radius_psf_fwhm: float = 4.0
    bkg_box: int = 64
    max_seeds: int = 5000


@dataclass
class Sources:
    """Fitted sources (pixel coordinates of the input image)."""

    x: np.ndarray
    y: np.ndarray
    nu: np.ndarray
    det_like: np.ndarray
    ext_like: np.ndarray
    extent_arcsec: np.ndarray
    counts: np.ndarray
    counts_err: np.ndarray
    rate: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)


def _disk(radius: float) -> np.ndarray:
    r = int(math.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= radius * radius).astype(np.float64)


def poisson_significance(n: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Gaussian-equivalent significance of ``n`` counts over an expected ``mu`` (one-sided).

    ``P(X ≥ n | μ) = gammainc(n, μ)`` (regularised lower incomplete gamma) for ``n ≥ 1`` and
    ``ν = Φ⁻¹(1 − P)``; where ``P`` underflows (``ν`` beyond ≈ 35) the likelihood-ratio
    significance ``√(2 (n ln(n/μ) − n + μ))`` takes over, so bright sources keep a monotonic
    significance instead of a plateau.
    """
    n = np.asarray(n, float)
    mu = np.maximum(np.asarray(mu, float), 1e-12)
    p = np.where(n >= 1, special.gammainc(np.maximum(n, 1.0), mu), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = stats.norm.isf(np.clip(p, 1e-300, 1.0))
        lr = np.sqrt(np.maximum(2.0 * (n * np.log(np.maximum(n, 1e-30) / mu) - n + mu), 0.0))
    nu = np.where(p < 1e-250, np.maximum(nu, lr), nu)
    return np.where(n >= 1, nu, -np.inf)


def aperture_sums(image: np.ndarray, radius: float) -> np.ndarray:
    """Sum of ``image`` within ``radius`` pixels of every pixel (zero outside the image)."""
    from scipy.signal import fftconvolve

    return np.maximum(fftconvolve(image, _disk(radius), mode="same"), 0.0)


def estimate_background(
    counts: np.ndarray, exposure: np.ndarray, mask: np.ndarray | None, box: int
) -> np.ndarray:
    """Background counts per pixel: source-masked counts / exposure in blocks, smoothed.

    Parameters
    ----------
    counts, exposure : numpy.ndarray
    mask : numpy.ndarray or None
        True where sources are (left out of the rate).
    box : int
        Block side in pixels.
    """
    use = (exposure > 0) & np.isfinite(counts)
    if mask is not None:
        use &= ~mask
    c = np.where(use, counts, 0.0)
    e = np.where(use, exposure, 0.0)
    total_rate = c.sum() / max(e.sum(), 1e-30)
    cs = ndimage.uniform_filter(c, box, mode="nearest")
    es = ndimage.uniform_filter(e, box, mode="nearest")
    # blocks with little exposure left fall back to the global rate
    full = ndimage.uniform_filter(np.where(exposure > 0, exposure, 0.0), box, mode="nearest")
    w = np.clip(es / np.maximum(full, 1e-30), 0.0, 1.0)
    rate = np.where(es > 0, cs / np.maximum(es, 1e-30), total_rate)
    rate = w * rate + (1 - w) * total_rate
    return rate * np.maximum(exposure, 0.0)


def source_masked_background(
    counts: np.ndarray, exposure: np.ndarray, radii: list[float], box: int = 64
) -> np.ndarray:
    """Background counts per pixel estimated in two passes: a first estimate, then again with
    the pixels near > 3σ excesses (at any of the ``radii``) left out."""
    valid = exposure > 0
    bkg = estimate_background(counts, exposure, None, box)
    nu, _ = significance_map(counts, np.where(valid, bkg, 0.0), radii)
    mask = ndimage.binary_dilation(nu > 3.0, iterations=int(math.ceil(2 * radii[-1])))
    return estimate_background(counts, exposure, mask, box)


def psf_radii(psf_fwhm_arcsec: float, pix_arcsec: float, scales: tuple[float, ...]) -> list[float]:
    """Top-hat radii (pixels) of the detection scales: ``k`` PSF σ, at least 1.5 pixels."""
    sigma = psf_fwhm_arcsec / pix_arcsec / math.sqrt(8 * math.log(2))
    return [max(1.5, k * sigma) for k in scales]


def significance_map(
    counts: np.ndarray, background: np.ndarray, radii: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Best Poisson significance over the top-hat scales, and the index of the best scale.

    At each scale the expected counts in the aperture are the background's, raised by the
    excess seen in the surrounding annulus (``r`` to ``2r``) when there is one: the wings of a
    brighter, larger source are then part of the local level, as a wavelet's negative ring
    makes them, and do not seed sources of their own.
    """
    best = np.full(counts.shape, -np.inf)
    which = np.zeros(counts.shape, dtype=np.int16)
    for k, r in enumerate(radii):
        n_in = aperture_sums(counts, r)
        b_in = aperture_sums(background, r)
        n_ann = aperture_sums(counts, 2 * r) - n_in
        b_ann = aperture_sums(background, 2 * r) - b_in
        excess = np.clip(n_ann / np.maximum(b_ann, 1e-12), 1.0, None)
        nu = poisson_significance(np.rint(n_in), b_in * excess)
        better = nu > best
        best = np.where(better, nu, best)
        which = np.where(better, k, which)
    return best, which


def find_seeds(
    nu: np.ndarray, window: int, nu_min: float, valid: np.ndarray, max_seeds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of ``nu`` above ``nu_min`` (brightest first)."""
    finite = np.where(np.isfinite(nu), nu, -1e9)
    peak = (finite == ndimage.maximum_filter(finite, size=window, mode="nearest")) & (
        finite >= nu_min
    )
    peak &= valid
    # one seed per connected plateau of equal maxima
    labels, n_lab = ndimage.label(peak)
    if n_lab == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    centres = ndimage.center_of_mass(peak, labels, np.arange(1, n_lab + 1))
    yy = np.array([int(round(c[0])) for c in centres], dtype=np.int64)
    xx = np.array([int(round(c[1])) for c in centres], dtype=np.int64)
    order = np.argsort(-finite[yy, xx], kind="stable")[:max_seeds]
    return yy[order], xx[order]


class ProfileTable:
    """Unit-sum pixel images of PSF ⊗ β-model on a grid of core radii, interpolated in r.

    Radial profiles (per pixel, normalised over the plane) are tabulated at ``r`` steps of a
    quarter pixel for ``n_rc`` core radii (log-spaced), so a model evaluation is one
    interpolation.
    """

    def __init__(self, psf_sigma_pix: float, pix_arcsec: float, rmax_pix: float, n_rc: int = 24):
        self.psf_sigma = psf_sigma_pix
        self.pix_arcsec = pix_arcsec
        self.rc_arcsec = np.geomspace(RC_MIN_ARCSEC, RC_MAX_ARCSEC, n_rc)
        half = int(math.ceil(rmax_pix + 4 * psf_sigma_pix)) + 2
        over = 3
        n = (2 * half + 1) * over
        coords = (np.arange(n) + 0.5) / over - (half + 0.5)
        r2 = coords[:, None] ** 2 + coords[None, :] ** 2
        self.r = np.arange(0.0, rmax_pix + 1.0, 0.25)
        rows = []
        for rc in self.rc_arcsec / pix_arcsec:
            img = (1.0 + r2 / rc**2) ** (-3 * BETA + 0.5)
            img[r2 > (5 * rc + 10 * psf_sigma_pix) ** 2 + (rmax_pix * 4) ** 2] = 0.0
            img = ndimage.gaussian_filter(img, psf_sigma_pix * over, mode="constant")
            img = img.reshape(2 * half + 1, over, 2 * half + 1, over).sum(axis=(1, 3))
            img /= img.sum()
            rows.append(ndimage.map_coordinates(img, [half + self.r * 0, half + self.r], order=1))
        self.table = np.log(np.maximum(np.asarray(rows), 1e-300))
        self.log_rc = np.log(self.rc_arcsec)

    def __call__(self, r: np.ndarray, rc_arcsec: float) -> np.ndarray:
        """Per-pixel fraction of the source's counts at radius ``r`` pixels."""
        t = (math.log(rc_arcsec) - self.log_rc[0]) / (self.log_rc[1] - self.log_rc[0])
        t = min(max(t, 0.0), len(self.log_rc) - 1.000001)
        i = int(t)
        f = t - i
        prof = (1 - f) * self.table[i] + f * self.table[i + 1]
        return np.exp(np.interp(r, self.r, prof, right=-700.0))


@lru_cache(maxsize=8)
def _profile_table(psf_sigma: float, pix_arcsec: float, rmax_pix: float) -> ProfileTable:
    """The profile table of a PSF and pixel size, built once per process."""
    return ProfileTable(psf_sigma, pix_arcsec, rmax_pix)


def _cash(model: np.ndarray, n: np.ndarray) -> float:
    m = np.maximum(model, 1e-30)
    return float(2.0 * np.sum(m - n * np.log(m)))


def fit_source(
    counts: np.ndarray,
    background: np.ndarray,
    expo_rel: np.ndarray,
    x0: float,
    y0: float,
    psf_sigma: float,
    table: ProfileTable,
    reach: float = 3.0,
) -> dict[str, Any]:
    """Cash fits of background, point and extended models to a stamp (pixel coordinates).

    The position is free within ``reach`` pixels of ``(x0, y0)``.

    Returns
    -------
    dict
        ``model`` (the fitted source's counts on the stamp), ``x``, ``y``, ``det_like``,
        ``ext_like``, ``extent_arcsec``, ``counts``, ``counts_err`` (from the curvature of
        C in the amplitude) and ``extended`` (0/1).
    """
    ny, nx = counts.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    n = counts.astype(np.float64)
    b = np.maximum(background.astype(np.float64), 1e-6)
    c_bkg = _cash(b, n)
    excess = max(float(n.sum() - b.sum()), 1.0)

    def point(p: np.ndarray) -> np.ndarray:
        x, y, lnn = p
        r2 = (xx - x) ** 2 + (yy - y) ** 2
        psf = np.exp(-0.5 * r2 / psf_sigma**2) / (2 * math.pi * psf_sigma**2)
        return b + math.exp(lnn) * expo_rel * psf

    def ext(p: np.ndarray) -> np.ndarray:
        x, y, lnn, lnrc = p
        r = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
        return b + math.exp(lnn) * expo_rel * table(r, math.exp(lnrc))

    box = [(x0 - reach, x0 + reach), (y0 - reach, y0 + reach), (-3.0, 15.0)]
    fp = optimize.minimize(
        lambda p: _cash(point(p), n),
        np.array([x0, y0, math.log(excess)]),
        method="L-BFGS-B",
        bounds=box,
    )
    best_ext = None
    for rc0 in (15.0, 50.0):
        fe = optimize.minimize(
            lambda p: _cash(ext(p), n),
            np.array([x0, y0, math.log(excess), math.log(rc0)]),
            method="L-BFGS-B",
            bounds=[*box, (math.log(RC_MIN_ARCSEC), math.log(RC_MAX_ARCSEC))],
        )
        if best_ext is None or fe.fun < best_ext.fun:
            best_ext = fe
    assert best_ext is not None
    c_point, c_ext = float(fp.fun), float(best_ext.fun)
    extended = c_ext < c_point
    p = best_ext.x if extended else fp.x
    c_best = min(c_point, c_ext)
    # amplitude error from the Poisson curvature: var(N) ≈ 1 / Σ (s_i² / m_i) with s = dm/dN
    model = ext(p) if extended else point(p)
    shape = (model - b) / max(math.exp(p[2]), 1e-30)
    info = float(np.sum(shape**2 / np.maximum(model, 1e-30)))
    return {
        "model": model - b,
        "x": float(p[0]),
        "y": float(p[1]),
        "det_like": max(0.0, (c_bkg - c_best) / 2.0),
        "ext_like": max(0.0, (c_point - c_ext) / 2.0),
        "extent_arcsec": float(math.exp(best_ext.x[3])) if extended else 0.0,
        "counts": float(math.exp(p[2])),
        "counts_err": float(1.0 / math.sqrt(info)) if info > 0 else math.inf,
        "extended": float(extended),
    }


def detect_sources(
    counts: np.ndarray,
    exposure: np.ndarray,
    background: np.ndarray | None,
    psf_fwhm_arcsec: float,
    pix_arcsec: float,
    settings: DetectSettings | None = None,
) -> Sources:
    """Detect and fit X-ray sources on one counts image (see the module docstring).

    Parameters
    ----------
    counts : numpy.ndarray
        ``(ny, nx)`` counts (NaN where there is no data).
    exposure : numpy.ndarray
        ``(ny, nx)`` seconds.
    background : numpy.ndarray or None
        Expected background counts per pixel, or ``None`` to estimate it.
    psf_fwhm_arcsec, pix_arcsec : float
    settings : DetectSettings, optional

    Returns
    -------
    Sources
    """
    s = settings or DetectSettings()
    expo = np.nan_to_num(np.asarray(exposure, float), nan=0.0)
    valid = np.isfinite(counts) & (expo > 0)
    c = np.where(valid, np.nan_to_num(np.asarray(counts, float), nan=0.0), 0.0)
    psf_sigma = psf_fwhm_arcsec / pix_arcsec / math.sqrt(8 * math.log(2))
    radii = [max(1.5, k * psf_sigma) for k in s.scales_psf_sigma]
    window = max(3, int(round(psf_fwhm_arcsec / pix_arcsec)) | 1)
    if background is None or not np.all(np.isfinite(background[valid])):
        bkg = source_masked_background(c, expo, radii, s.bkg_box)
    else:
        bkg = np.nan_to_num(np.asarray(background, float), nan=0.0)
    bkg = np.where(valid, bkg, 0.0)
    nu, scale = significance_map(c, bkg, radii)
    inner = ndimage.binary_erosion(valid, iterations=2, border_value=0)
    ys, xs = find_seeds(nu, window, s.nu_min, inner, s.max_seeds)
    # a seed within the best-scale aperture of a brighter seed belongs to that source
    keep: list[int] = []
    rad = np.asarray(radii)
    for j in range(ys.size):
        if keep:
            k = np.asarray(keep)
            d = np.hypot(xs[k] - xs[j], ys[k] - ys[j])
            if np.any(d < np.maximum(rad[scale[ys[k], xs[k]]], window)):
                continue
        keep.append(j)
    ys, xs = ys[keep], xs[keep]
    rfit = s.fit_radius_psf_fwhm * psf_fwhm_arcsec / pix_arcsec
    rfit = max(rfit, 2.0 * RC_MAX_ARCSEC / pix_arcsec / 2.0)
    table = _profile_table(round(psf_sigma, 6), round(pix_arcsec, 6), round(rfit * 1.5, 3))
    ny, nx = c.shape
    rows = []
    h = int(math.ceil(rfit))
    # brightest first; every fitted source joins the fixed background of the later fits, so
    # the wings of a bright source do not become sources of their own
    sources = np.zeros_like(c)
    for yy, xx in zip(ys, xs, strict=True):
        y0, y1, x0, x1 = max(0, yy - h), min(ny, yy + h + 1), max(0, xx - h), min(nx, xx + h + 1)
        e = expo[y0:y1, x0:x1]
        rel = e / max(float(expo[yy, xx]), 1e-30)
        # start from the background-subtracted centroid within the seed's best scale
        reach = max(3.0, float(rad[scale[yy, xx]]))
        sc = c[y0:y1, x0:x1]
        sb = bkg[y0:y1, x0:x1] + sources[y0:y1, x0:x1]
        gy, gx = np.mgrid[y0:y1, x0:x1]
        near = np.hypot(gx - xx, gy - yy) <= reach
        w = np.where(near, np.clip(sc - sb, 0.0, None), 0.0)
        cx, cy = (
            (float((w * gx).sum() / w.sum()), float((w * gy).sum() / w.sum()))
            if (w.sum() > 0)
            else (float(xx), float(yy))
        )
        f = fit_source(sc, sb, rel, cx - x0, cy - y0, psf_sigma, table, reach)
        sources[y0:y1, x0:x1] += f.pop("model")
        f["x"] += x0
        f["y"] += y0
        f["nu"] = float(nu[yy, xx])
        f["rate"] = f["counts"] / max(float(expo[yy, xx]), 1e-30)
        rows.append(f)
    keys = ("x", "y", "nu", "det_like", "ext_like", "extent_arcsec", "counts", "counts_err", "rate")
    return Sources(*(np.asarray([r[k] for r in rows], float) for k in keys))
