"""Noise covariance across bands: apodisation, data cross-spectra, and the modelled alternative.

Power is held in DFT units of the padded grid: for a stationary field with angular power
``C(k)`` (µK² arcmin²), ``<M_b(k) M_b'(k)*> = N_pix C_bb'(k) / Ω_pix``; white noise of depth
``s`` µK-arcmin has ``C = s²``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from clusterfw.plugins.finders.mf.grid import FourierGrid
from clusterfw.plugins.finders.mf.templates import gaussian_beam_transform, tsz_uk_per_y

ARCMIN_PER_RAD = 10800.0 / np.pi


@dataclass
class NoiseCov:
    """Noise covariance on a set of radial rows (coarse bins or the fine grid).

    Attributes
    ----------
    power : numpy.ndarray
        ``(n_row, nb, nb)`` in DFT units of the beam-deconvolved maps.
    index2d : numpy.ndarray
        Row of every 2-D ``rfft2`` mode.
    counts : numpy.ndarray
        Full-plane modes per row.
    fine_row : numpy.ndarray
        Row of every ``k_fine`` entry.
    """

    power: np.ndarray
    index2d: np.ndarray
    counts: np.ndarray
    fine_row: np.ndarray

    def band(self, b: int) -> NoiseCov:
        """Band ``b``'s own noise: the ``1 × 1`` covariance on the same rows."""
        own = self.power[:, b : b + 1, b : b + 1]
        return NoiseCov(own, self.index2d, self.counts, self.fine_row)

    @classmethod
    def from_bins(cls, power: np.ndarray, grid: FourierGrid) -> NoiseCov:
        """Piecewise constant in the coarse bins: every mode is weighted with the covariance
        measured from its own bin, so the bands cancel the CMB realisation actually present."""
        return cls(power, grid.bin_idx, grid.bin_counts, grid.bin_of_fine)

    @classmethod
    def from_fine(cls, power: np.ndarray, grid: FourierGrid) -> NoiseCov:
        """Tabulated on ``grid.k_fine`` (smooth models)."""
        return cls(power, grid.idx, grid.counts, np.arange(grid.k_fine.size))


def _taper(d: np.ndarray, width: float) -> np.ndarray:
    """Cosine taper rising from 0 at ``d = 0`` to 1 at ``d >= width`` (``d`` in pixels)."""
    if width <= 0:
        return (d > 0).astype(np.float32)
    x = np.clip(np.asarray(d, dtype=np.float32) / np.float32(width), 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * x)).astype(np.float32)


def apodisation(valid: np.ndarray, width_pix: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Window that tapers to zero at the tile edge and around masked pixels.

    Parameters
    ----------
    valid : numpy.ndarray
        Boolean ``(ny, nx)``: True where every band has data.
    width_pix : float
        Taper width in pixels.

    Returns
    -------
    window : numpy.ndarray
        float32 ``(ny, nx)`` in [0, 1].
    dist : numpy.ndarray or None
        Distance in pixels to the nearest masked pixel or edge (only computed when the tile
        has masked pixels; otherwise None and the window is separable).
    """
    ny, nx = valid.shape
    if valid.all():
        wy = _taper(np.minimum(np.arange(ny), ny - 1 - np.arange(ny)) + 0.5, width_pix)
        wx = _taper(np.minimum(np.arange(nx), nx - 1 - np.arange(nx)) + 0.5, width_pix)
        return wy[:, None] * wx[None, :], None
    padded = np.pad(valid, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1].astype(np.float32)
    return _taper(dist - 0.5, width_pix), dist


def cross_spectra(
    fmaps: np.ndarray,
    grid: FourierGrid,
    w2: float,
    threads: int = 1,
    pairs: Sequence[tuple[int, int]] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Binned, band-by-band power spectra of windowed maps, in DFT units.

    Parameters
    ----------
    fmaps : numpy.ndarray
        ``(n_band, ny, nx // 2 + 1)`` complex rfft2 of the windowed maps.
    grid : FourierGrid
    w2 : float
        Mean of the squared window over the padded grid (corrects the window's power loss).
    threads : int
        Band pairs measured concurrently.
    pairs : sequence of (int, int), optional
        Measure only these band pairs ``(i, j)``, ``i <= j`` (default: every pair).
    out : numpy.ndarray, optional
        ``(n_bin, n_band, n_band)`` array to write the measured pairs into (others untouched);
        a new zeroed one if None.

    Returns
    -------
    numpy.ndarray
        ``(n_bin, n_band, n_band)`` symmetric cross-spectra at ``grid.bin_k``.
    """
    nb = fmaps.shape[0]
    ny = fmaps.shape[1]
    nbin = grid.bin_counts.size
    fold = grid.fold_rows
    idx = grid.bin_idx_half
    # rfft2 holds half the plane: columns other than 0 and Nyquist stand for two modes. Count
    # every column twice and take the edge columns off once more (no weight array needed).
    edge_cols = grid.edge_cols
    idx_edge = grid.bin_idx_half_edge
    if out is None:
        out = np.zeros((nbin, nb, nb))
    norm = 1.0 / (np.maximum(grid.bin_counts, 1) * w2)
    if pairs is None:
        pairs = [(i, j) for i in range(nb) for j in range(i, nb)]
    scratch = threading.local()  # two plane-sized buffers per thread, reused across pairs

    def pair_spectrum(pair: tuple[int, int]) -> None:
        i, j = pair
        if getattr(scratch, "prod", None) is None:
            scratch.prod = np.empty(fmaps.shape[1:], dtype=np.float32)
            scratch.tmp = np.empty_like(scratch.prod)
        prod, tmp = scratch.prod, scratch.tmp
        np.multiply(fmaps[i].real, fmaps[j].real, out=prod)
        prod += np.multiply(fmaps[i].imag, fmaps[j].imag, out=tmp)
        if fold:  # rows ky and -ky fall in the same bins: add them before binning
            prod[1 : 1 + fold] += prod[ny - 1 : ny - 1 - fold : -1]
        half = prod[: ny - fold]
        p = 2.0 * np.bincount(idx, weights=half.reshape(-1), minlength=nbin)
        p -= np.bincount(idx_edge, weights=half[:, edge_cols].reshape(-1), minlength=nbin)
        p *= norm
        out[:, i, j] = p
        out[:, j, i] = p

    if threads > 1 and len(pairs) > 1:
        # the products release the GIL: two pairs at a time on a 2-core machine
        with ThreadPoolExecutor(max_workers=min(threads, len(pairs))) as executor:
            list(executor.map(pair_spectrum, pairs))
    else:
        for pair in pairs:
            pair_spectrum(pair)
    return out


def to_fine(power_binned: np.ndarray, grid: FourierGrid) -> np.ndarray:
    """Interpolate binned spectra ``(n_bin, nb, nb)`` onto ``grid.k_fine`` (log-linear)."""
    nbin, nb, _ = power_binned.shape
    out = np.empty((grid.k_fine.size, nb, nb))
    for i in range(nb):
        for j in range(i, nb):
            p = power_binned[:, i, j]
            if i == j:
                v = np.exp(np.interp(grid.k_fine, grid.bin_k, np.log(np.maximum(p, 1e-30))))
            else:
                v = np.interp(grid.k_fine, grid.bin_k, p)
            out[:, i, j] = v
            out[:, j, i] = v
    return out


def regularise(power: np.ndarray, max_corr: float = 1.0 - 1e-7) -> np.ndarray:
    """Clip cross-correlations to ``|r| <= max_corr`` so every matrix is positive definite.

    The clip must stay far from the correlations the data really have: where the CMB dominates
    (ell below ~2000 for µK-arcmin noise) beam-deconvolved bands are correlated at
    ``1 - r ~ 1e-4``. Clipping at 0.999 there pretends the bands carry uncorrelated noise they
    do not have, which weakens the CMB cancellation and makes the filter's own σ overestimate
    the filtered map's real scatter (by up to 14 % at 3' core radius). Bins hold at least 24
    modes, so the sample matrices are well conditioned; the clip only guards degenerate input
    (identical bands).
    """
    d = np.sqrt(np.maximum(np.einsum("kii->ki", power), 1e-30))
    r = power / (d[:, :, None] * d[:, None, :])
    r = np.clip(r, -max_corr, max_corr)
    nb = power.shape[1]
    r[:, np.arange(nb), np.arange(nb)] = 1.0
    return r * d[:, :, None] * d[:, None, :]


def flat_foreground_dl(freqs_ghz: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """D_3000 (µK²) of the flat-in-C_ell point-source and flat-in-D_ell tSZ-background terms.

    Values follow the DeepSZ paper (§2.1): point sources (2.7, 8.8, 71) µK² at (90, 148, 219)
    GHz, log-interpolated in frequency and treated as uncorrelated between bands; tSZ background
    3.6 µK² at 90 GHz, scaled by the tSZ law and fully correlated between bands.

    Returns
    -------
    ps_dl3000 : numpy.ndarray
        ``(n_band,)`` point-source D_3000.
    sz_amp : numpy.ndarray
        ``(n_band,)`` square root of the tSZ-background D_3000 with the tSZ sign.
    """
    f = np.asarray(freqs_ghz, dtype=np.float64)
    ps = np.exp(np.interp(np.log(f), np.log([90.0, 148.0, 219.0]), np.log([2.7, 8.8, 71.0])))
    sz = np.sqrt(3.6) * tsz_uk_per_y(f) / abs(tsz_uk_per_y(90.0))
    return ps, sz


def model_power(
    grid: FourierGrid,
    freqs_ghz: Sequence[float],
    beams_arcmin: Sequence[float],
    noise_uk_arcmin: Sequence[float],
    cmb_dl: Callable[[np.ndarray], np.ndarray],
    foregrounds: bool = True,
) -> np.ndarray:
    """Modelled noise covariance of the beam-deconvolved maps on ``grid.k_fine`` (DFT units).

    CMB (same in every band, beam-convolved) + flat foreground terms (see
    :func:`flat_foreground_dl`) + white instrument noise per band.

    Parameters
    ----------
    grid : FourierGrid
    freqs_ghz, beams_arcmin, noise_uk_arcmin : sequence of float
        Per band.
    cmb_dl : callable
        ``D_ell`` of the lensed CMB temperature in µK² as a function of ``ell``.
    foregrounds : bool
        Include the point-source and tSZ-background terms.

    Returns
    -------
    numpy.ndarray
        ``(n_fine, n_band, n_band)``.
    """
    ell = np.maximum(grid.k_fine * ARCMIN_PER_RAD, 1.0)
    to_cl = 2.0 * np.pi / (ell * (ell + 1.0)) * ARCMIN_PER_RAD**2  # D_ell -> C_ell in arcmin²
    beams = np.stack([gaussian_beam_transform(b, grid.k_fine) for b in beams_arcmin])
    nb = beams.shape[0]
    cl_cmb = np.asarray(cmb_dl(ell), dtype=np.float64) * to_cl
    cov = cl_cmb[:, None, None] * np.ones((nb, nb))
    if foregrounds:
        ps, sz = flat_foreground_dl(freqs_ghz)
        cl3000 = 2.0 * np.pi / (3000.0 * 3001.0) * ARCMIN_PER_RAD**2
        cov = cov + (np.diag(ps) * cl3000)[None, :, :]
        cov = cov + (to_cl[:, None, None] * np.outer(sz, sz)[None, :, :])
    bt = beams.T
    white = np.asarray(noise_uk_arcmin, dtype=np.float64) ** 2
    # beam-deconvolved: sky terms as they are, white noise divided by the beam²
    cov[:, np.arange(nb), np.arange(nb)] += white[None, :] / np.maximum(bt, 1e-6) ** 2
    return cov * grid.npix / grid.pix_area
