"""The multi-frequency, multi-scale matched filter.

For a cluster of central Compton ``y_c`` with unit profile ``τ_s`` (scale ``s``), band ``b``
sees ``y_c a_b(k) τ_s(k)`` with ``a_b = f_SZ(ν_b) T_CMB B_b(k)``. With noise covariance
``P(k)`` (bands × bands) the minimum-variance unbiased estimate of ``y_c`` at every pixel is

``ŷ_s(x) = Σ_k τ_s(k) D(k) e^{ikx} / (Ω F_s)``,  ``D = aᵀ P⁻¹ M``,  ``F_s = Σ_k τ_s² aᵀP⁻¹a / Ω²``

and ``σ_s = F_s^{-1/2}``. ``D`` does not depend on the scale, so the bands are combined once
and each scale costs one multiply (with a cached template table) and one inverse real FFT,
written into a map of the previous tile when the finder's :class:`MapPool` has a free one.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from clusterfw.plugins.finders.mf import noise as noise_mod
from clusterfw.plugins.finders.mf import point_sources as ps_mod
from clusterfw.plugins.finders.mf.bands import transform_bands
from clusterfw.plugins.finders.mf.grid import (
    FourierGrid,
    fft_threads,
    fourier_grid,
    irfft2_into,
    padded_shape,
)
from clusterfw.plugins.finders.mf.peaks import find_peaks
from clusterfw.plugins.finders.mf.templates import (
    T_CMB_UK,
    gaussian_beam_transform,
    template_transform,
    tsz_uk_per_y,
)

PLATEAU = 0.999
"""Detections are only made where the apodisation window is at least this (its plateau)."""


class MapPool:
    """Float32 maps for :func:`run_filter`'s results, reused once nothing else refers to them.

    A finder filters tile after tile; writing each tile's SNR maps into the memory of the
    previous tile's (dropped) maps avoids asking the kernel for fresh, zeroed pages every time.
    A map is handed out again only when the pool's own list is its sole reference (CPython
    reference count), so results that are still held are never overwritten. At most
    ``limit`` maps are kept; beyond that, or for a new shape, maps are allocated as usual.
    """

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._maps: list[np.ndarray] = []
        self._lock = threading.Lock()
        probe = [np.empty(0)]
        self._free_count = sys.getrefcount(probe[0])  # references of a map only we hold

    def take(self, shape: tuple[int, int]) -> np.ndarray:
        """A float32 map of ``shape`` (content undefined)."""
        with self._lock:
            maps = self._maps
            for i in range(len(maps)):
                if sys.getrefcount(maps[i]) == self._free_count:
                    if maps[i].shape == shape:
                        return maps[i]
            # forget free maps of another shape (a new tile shape) before growing
            self._maps = maps = [
                maps[i]
                for i in range(len(maps))
                if maps[i].shape == shape or sys.getrefcount(maps[i]) != self._free_count
            ]
            out = np.empty(shape, dtype=np.float32)
            if len(maps) < self.limit:
                maps.append(out)
            return out

    def __getstate__(self) -> dict:  # pickled with a finder (process pools): maps stay behind
        return {"limit": self.limit}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["limit"])


@dataclass
class FilterSettings:
    """Everything the filter needs besides the maps (see the finder's ``Options``)."""

    profile: str = "beta"
    scales_arcmin: Sequence[float] = tuple(np.arange(1, 13) * 0.25)
    ref_scale_arcmin: float | None = None
    noise: str = "data"
    cmb_dl: Callable[[np.ndarray], np.ndarray] | None = None
    apod_arcmin: float = 10.0
    point_sources: str = "subtract"
    ps_snr_min: float = 5.0
    noise_iterations: int = 0
    noise_mask_snr: float = 5.0
    rms_stride: int = 4
    rms_border_arcmin: float = 10.0
    snr_calibration: str = "measured"
    workers: int = -1
    native_pixel_arcmin: float | None = None


@dataclass
class FilterResult:
    """Filtered maps and what is needed to turn peaks into catalogue entries.

    Attributes
    ----------
    snr : list of numpy.ndarray
        One float32 ``(ny, nx)`` SNR map per scale of the search.
    snr_ref : numpy.ndarray
        SNR map at the reference scale.
    sigma_y : numpy.ndarray
        1σ of ``y_c`` per scale (search scales).
    sigma_y_ref : float
    kvar : numpy.ndarray
        Mode-weighted ``<k²>`` of each scale's filtered field (rad² / arcmin²), for position
        errors and Gaussian peak statistics.
    rms : numpy.ndarray
        Measured RMS of each filter-σ SNR map over the fully weighted interior (≈ 1 when the
        noise model is right); with ``snr_calibration="measured"`` the maps and ``sigma_y``
        are rescaled by it.
    window : numpy.ndarray
    dist_mask : numpy.ndarray or None
        Pixel distance to masked pixels/edges (None when nothing is masked).
    sources : PointSources
    interior : numpy.ndarray
        Where the RMS was measured: the window's plateau, ``apod + rms_border`` from the edge.
    max_snr : numpy.ndarray
        Pixel-wise maximum of ``snr`` over scales (computed if not given).
    plateau : numpy.ndarray
        ``window >= PLATEAU`` (computed on first use if not given), see :attr:`detectable`.
    """

    snr: list[np.ndarray]
    snr_ref: np.ndarray
    sigma_y: np.ndarray
    sigma_y_ref: float
    kvar: np.ndarray
    rms: np.ndarray
    window: np.ndarray
    dist_mask: np.ndarray | None
    sources: ps_mod.PointSources
    interior: np.ndarray
    max_snr: np.ndarray = field(default=None)  # type: ignore[assignment]
    plateau: np.ndarray | None = field(default=None, repr=False)

    @property
    def detectable(self) -> np.ndarray:
        """Where candidates may be: the plateau of the apodisation window.

        Inside the taper the per-band beam deconvolution of a windowed map no longer leaves the
        CMB identical in every band (``B_b⁻¹[w, B_b]`` differs between beams), so the CMB
        leaks into the combination there and makes spurious peaks.
        """
        if self.plateau is None:
            self.plateau = self.window >= PLATEAU
        return self.plateau

    def __post_init__(self) -> None:
        if self.max_snr is None:
            m = self.snr[0].copy()
            for s in self.snr[1:]:
                np.maximum(m, s, out=m)
            self.max_snr = m


def band_response(grid: FourierGrid, freqs: Sequence[float], beams: Sequence[float]) -> np.ndarray:
    """``a_b(k) = f_SZ(ν_b) T_CMB B_b(k)`` on ``grid.k_fine``: µK per unit y, ``(n_fine, nb)``."""
    f = np.atleast_1d(tsz_uk_per_y(np.asarray(freqs)))
    return np.stack(
        [fb * gaussian_beam_transform(bm, grid.k_fine) for fb, bm in zip(f, beams, strict=True)],
        axis=1,
    )


def combine_weights(power_fine: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``v = P⁻¹ a`` (``(n_fine, nb)``) and ``Q = aᵀ P⁻¹ a`` (``(n_fine,)``)."""
    v = np.linalg.solve(power_fine, a[:, :, None])[:, :, 0]
    q = np.einsum("kb,kb->k", a, v)
    return v, np.maximum(q, 0.0)


def _rms_pixels(interior: np.ndarray, stride: int) -> np.ndarray | tuple[slice, slice]:
    """The ``interior`` pixels of the ``stride``-subsampled grid (raster order): a pair of
    slices when they fill a rectangle (the usual unmasked tile), else their flat indices."""
    ny, nx = interior.shape
    iy, ix = np.nonzero(interior[::stride, ::stride])
    if iy.size:
        y0, y1, x0, x1 = iy.min(), iy.max(), ix.min(), ix.max()
        if iy.size == (y1 - y0 + 1) * (x1 - x0 + 1):
            return (
                slice(int(y0) * stride, int(y1) * stride + 1, stride),
                slice(int(x0) * stride, int(x1) * stride + 1, stride),
            )
    return (iy * stride).astype(np.intp) * nx + ix * stride


def _median_inplace(vals: np.ndarray) -> float:
    """Median of a 1-D array, reordering it in place (``np.median``'s value, one selection).

    ``np.median`` of an even-length array selects two order statistics at once, which costs
    several times a single ``partition``; the lower middle value is the maximum of the lower
    part after selecting the upper one.
    """
    n = vals.size
    h = n // 2
    vals.partition(h)
    hi = float(vals[h])
    if n % 2:
        return hi
    return 0.5 * (float(vals[:h].max()) + hi)


def _measured_rms(
    img: np.ndarray,
    interior: np.ndarray,
    stride: int,
    pixels: np.ndarray | tuple[slice, slice] | None = None,
) -> float:
    """Robust RMS (1.4826 × MAD) over ``interior``, on a subsampled grid.

    The median absolute deviation ignores the clusters and sources in the map. ``pixels``
    (from :func:`_rms_pixels`) saves masking the same subsample again for every map.
    """
    if pixels is None:
        pixels = _rms_pixels(interior, stride)
    if isinstance(pixels, tuple):
        vals = np.array(img[pixels]).reshape(-1)  # a copy: reordered in place below
    else:
        vals = np.take(img.reshape(-1), pixels, mode="clip")
    if vals.size < 16:
        return float("nan")
    if vals.dtype.kind != "f":
        vals = vals.astype(np.float64)
    if np.isnan(vals).any():  # as np.median: a NaN median, no calibration
        return float("nan")
    med = _median_inplace(vals)
    np.subtract(vals, med, out=vals)
    np.abs(vals, out=vals)
    return float(1.4826 * _median_inplace(vals))


def interior_mask(window: np.ndarray, dist: np.ndarray | None, border_pix: float) -> np.ndarray:
    """Pixels at least ``border_pix`` beyond the apodisation taper (where the RMS is measured).

    Filtered maps are noisier next to the taper, and the finder's tile margin keeps reported
    candidates away from it, so the SNR unit is measured where candidates can be.
    """
    full = window >= 0.999
    b = int(round(border_pix))
    if b <= 0:
        return full
    if dist is None:
        out = np.zeros_like(full)
        ny, nx = full.shape
        if 2 * b < ny and 2 * b < nx:
            out[b : ny - b, b : nx - b] = full[b : ny - b, b : nx - b]
        return out if out.sum() >= 256 else full
    out = dist > (dist[~full].max(initial=0.0) if (~full).any() else 0.0) + b
    return out if out.sum() >= 256 else full


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


@lru_cache(maxsize=4)
def _full_geometry(
    ny: int, nx: int, apod_pix: float, border_pix: float, stride: int, npix: int
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray | tuple[slice, slice], np.ndarray]:
    """Window, ``<w²>``, RMS interior and its subsample, plateau of a tile without masked pixels.

    They depend on the tile's shape only, so every tile of a pipeline run shares them (cached,
    read-only).
    """
    window, _ = noise_mod.apodisation(np.ones((ny, nx), dtype=bool), apod_pix)
    w2 = float(np.sum(window.astype(np.float64) ** 2)) / npix
    interior = interior_mask(window, None, border_pix)
    pixels = _rms_pixels(interior, stride)
    plateau = window >= PLATEAU
    _readonly(window, interior, plateau)
    if isinstance(pixels, np.ndarray):
        _readonly(pixels)
    return window, w2, interior, pixels, plateau


@lru_cache(maxsize=4)
def _beam_inverse(shape: tuple[int, int], pix: float, beams: tuple[float, ...]) -> np.ndarray:
    """``1 / B_b(k)`` of every band on the folded 2-D grid (``FourierGrid.gather_half``),
    float32 (cached, read-only)."""
    grid = fourier_grid(shape, pix)
    out = np.stack(
        [
            grid.gather_half(1.0 / np.maximum(gaussian_beam_transform(bm, grid.k_fine), 1e-6))
            for bm in beams
        ]
    )
    _readonly(out)
    return out


def native_nyquist_taper(k: np.ndarray, native_pixel_arcmin: float | None) -> np.ndarray | float:
    """Cosine taper from 1 at 0.8 to 0 at 1.0 times the source's Nyquist ``pi / native pixel``.

    Maps interpolated from a coarser pixelisation (HEALPix cut into finer TAN tiles) carry no
    signal above the source's Nyquist wavenumber, and their noise there is tiny and not
    stationary (bilinear weights follow the source grid): a filter that trusts the measured noise
    spectrum would weight those modes as nearly noise-free and give heavy-tailed SNRs
    (``tests/core/test_healpix_white_noise.py``). Returns 1.0 when there is no native pixel.
    """
    if native_pixel_arcmin is None:
        return 1.0
    k_nyq = np.pi / float(native_pixel_arcmin)
    x = np.clip((np.asarray(k, dtype=float) - 0.8 * k_nyq) / (0.2 * k_nyq), 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * x)


def _tapered_template(
    profile: str, scale: float, k: np.ndarray, native_pixel_arcmin: float | None
) -> np.ndarray:
    """``template_transform`` times :func:`native_nyquist_taper`."""
    return template_transform(profile, scale, k) * native_nyquist_taper(k, native_pixel_arcmin)


@lru_cache(maxsize=3)
def _template_bank(
    shape: tuple[int, int],
    pix: float,
    profile: str,
    scales: tuple[float, ...],
    native_pixel_arcmin: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Profile transforms ``τ_s`` of every scale on ``k_fine`` (float64) and on the folded 2-D
    grid (``FourierGrid.gather_half``, float32), tapered at the native Nyquist of interpolated
    maps (:func:`native_nyquist_taper`).

    Neither depends on the data (the data enter each scale through a scalar normalisation and
    the band combination ``D``), so a pipeline of equal-shaped tiles gathers them once.
    """
    grid = fourier_grid(shape, pix)
    fine = np.stack(
        [_tapered_template(profile, s, grid.k_fine, native_pixel_arcmin) for s in scales]
    )
    maps = np.stack([grid.gather_half(f) for f in fine])
    _readonly(fine, maps)
    return fine, maps


def _all_finite(maps: np.ndarray) -> bool:
    """Whether every value is finite, in one BLAS pass (a NaN or inf makes the sum of squares
    non-finite; an overflowing sum of squares only sends the caller to the per-pixel check)."""
    flat = maps.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.dot(flat, flat)))


def run_filter(
    maps: np.ndarray,
    pix_arcmin: float,
    freqs: Sequence[float],
    beams: Sequence[float],
    noise_uk_arcmin: Sequence[float | None],
    settings: FilterSettings,
    pool: MapPool | None = None,
) -> FilterResult:
    """Filter a multi-band tile at every scale.

    Parameters
    ----------
    maps : numpy.ndarray
        ``(n_band, ny, nx)`` in µK_CMB, NaN where masked.
    pix_arcmin : float
        Pixel side.
    freqs, beams, noise_uk_arcmin : sequence
        Per-band frequency (GHz), beam FWHM (arcmin) and white-noise depth (µK-arcmin or None).
    settings : FilterSettings
    pool : MapPool, optional
        Where to take the result maps from (the finder keeps one); fresh arrays if None.

    Returns
    -------
    FilterResult
    """
    nb, ny, nx = maps.shape

    def new_map() -> np.ndarray:
        return np.empty((ny, nx), dtype=np.float32) if pool is None else pool.take((ny, nx))

    workers = settings.workers
    pix = round(float(pix_arcmin), 9)
    shape = padded_shape(ny, nx)
    grid = fourier_grid(shape, pix)
    apod_pix = settings.apod_arcmin / pix_arcmin
    border_pix = (settings.apod_arcmin + settings.rms_border_arcmin) / pix_arcmin

    all_valid = _all_finite(maps)
    valid = None
    if not all_valid:
        valid = np.all(np.isfinite(maps), axis=0)
        all_valid = bool(valid.all())
    if all_valid:
        dist = None
        window, w2, interior, rms_pixels, plateau = _full_geometry(
            ny, nx, apod_pix, border_pix, settings.rms_stride, grid.npix
        )
    else:
        window, dist = noise_mod.apodisation(valid, apod_pix)
        w2 = float(np.sum(window.astype(np.float64) ** 2)) / grid.npix
        interior = interior_mask(window, dist, border_pix)
        rms_pixels = _rms_pixels(interior, settings.rms_stride)
        plateau = window >= PLATEAU

    modelled = None
    if settings.noise == "model":
        if settings.cmb_dl is None:
            raise ValueError("noise='model' needs a CMB spectrum")
        p = noise_mod.model_power(
            grid, freqs, beams, [float(n) for n in noise_uk_arcmin], settings.cmb_dl
        )
        modelled = noise_mod.NoiseCov.from_fine(p, grid)
    # Work with beam-deconvolved transforms: the CMB is then identical in every band at every
    # mode, so binned cross-spectra keep its rank-one structure and the bands can cancel it.
    fmaps, binned, sources = transform_bands(
        maps,
        window,
        None if all_valid else valid,
        grid,
        _beam_inverse(shape, pix, tuple(float(b) for b in beams)),
        beams,
        pix_arcmin,
        w2,
        settings.point_sources,
        settings.ps_snr_min,
        modelled,
        workers,
        new_map,
    )
    threads = fft_threads(workers)

    def covariance(binned: np.ndarray) -> noise_mod.NoiseCov:
        return noise_mod.NoiseCov.from_bins(noise_mod.regularise(binned), grid)

    power = modelled if modelled is not None else covariance(binned)

    # deconvolved maps: the response per unit y is the tSZ law alone, the same at every k
    fsz = np.atleast_1d(tsz_uk_per_y(np.asarray(freqs)))
    k2 = grid.k_fine**2
    bank: dict[str, np.ndarray] = {}

    def combine(cov: noise_mod.NoiseCov) -> None:
        a = np.broadcast_to(fsz, cov.power.shape[:2])
        v, q_rows = combine_weights(cov.power, a)
        d = np.empty(fmaps.shape[1:], dtype=np.complex64)
        tmp = np.empty_like(d)
        wgt = [grid.gather_half(v[:, b], cov.index2d) for b in range(nb)]
        n = grid.half_rows

        def weighted_sum(part: int) -> None:
            rows = slice(0, n) if part == 0 else slice(n, None)
            for b in range(nb):
                grid.apply_half(wgt[b], fmaps[b], out=d if b == 0 else tmp, part=part)
                if b:
                    d[rows] += tmp[rows]

        # the table's own rows and the mirrored rows: two halves of the work
        if threads > 1 and grid.fold_rows:
            with ThreadPoolExecutor(max_workers=2) as executor:
                list(executor.map(weighted_sum, (0, 1)))
        else:
            weighted_sum(0)
            weighted_sum(1)
        bank["d"] = d
        bank["q"] = q_rows[cov.fine_row]

    scales_all = tuple(float(x) for x in settings.scales_arcmin)
    native = settings.native_pixel_arcmin
    if native is not None and not native > pix:
        native = None  # only maps interpolated onto a finer grid lack the high-k modes
    tau_fine, tau_2d = _template_bank(shape, pix, settings.profile, scales_all, native)
    buffers = threading.local()

    def one_scale(
        scale: float, tau: np.ndarray, tau2: np.ndarray, fft_workers: int = workers
    ) -> tuple[np.ndarray, float, float, float]:
        """Unnormalised filtered map ``irfft2(τ D)``, its gain to SNR, ``σ(y_c)`` and ``<k²>``."""
        wq = grid.counts * tau * tau * bank["q"]
        f_sum = float(np.sum(wq))  # = Ω² F_s
        if not f_sum > 0:
            raise ValueError(f"filter at scale {scale} has no signal power")
        kvar = float(np.sum(wq * k2) / f_sum)
        buf = getattr(buffers, "buf", None)
        if buf is None:  # scratch buffer per thread
            buf = buffers.buf = np.empty(grid.idx.shape, dtype=np.complex64)
        grid.apply_half(tau2, bank["d"], out=buf)
        m = new_map()
        if shape == (ny, nx):
            irfft2_into(buf, shape, m, fft_workers)
        else:
            np.copyto(m, sfft.irfft2(buf, s=shape, workers=fft_workers)[:ny, :nx])
        gain = grid.npix / np.sqrt(f_sum)
        sigma_y = grid.pix_area / np.sqrt(f_sum)
        return m, gain, sigma_y, kvar

    def scale_at(i: int, fft_workers: int = workers) -> tuple[np.ndarray, float, float, float]:
        return one_scale(scales_all[i], tau_fine[i], tau_2d[i], fft_workers)

    calibrate = settings.snr_calibration == "measured"

    def calibration(m: np.ndarray, gain: float, sg: float) -> tuple[np.float32, float, float]:
        """Factor turning an unnormalised map into SNR: the filter's gain, or ``1 / RMS`` of the
        map (robust, measured); ``r`` is that RMS in units of the filter's σ (``gain × RMS``)."""
        r = _measured_rms(m, interior, settings.rms_stride, rms_pixels) * gain
        if calibrate and np.isfinite(r) and r > 0:
            return np.float32(gain / r), sg * r, r
        return np.float32(gain), sg, r

    def calibrated(m: np.ndarray, gain: float, sg: float) -> tuple[np.ndarray, float, float]:
        c, sg, r = calibration(m, gain, sg)
        m *= c
        return m, sg, r

    iterations = settings.noise_iterations if settings.noise == "data" else 0
    for _ in range(iterations):
        # Bright clusters bias a covariance measured from the data (the bands learn to cancel
        # the tSZ spectrum): find them on a few scales, subtract their models from a copy of
        # the transforms, and measure the spectra again.
        combine(power)
        pick = sorted(set(np.linspace(0, len(scales_all) - 1, 3).round().astype(int)))
        first = []
        for i in pick:
            m, gain, sg, _ = scale_at(i)
            first.append(calibrated(m, gain, sg))
        found = find_peaks(
            [f[0] for f in first],
            np.max([f[0] for f in first], axis=0),
            settings.noise_mask_snr,
            plateau,
            "peak",
        )
        if not len(found):
            break
        sig_first = np.array([f[1] for f in first])
        amp = found.snr * sig_first[found.scale_index] * window[found.py, found.px]
        model = np.zeros(fmaps.shape[1:], dtype=np.complex64)
        fy = sfft.fftfreq(shape[0])
        fx = sfft.rfftfreq(shape[1])
        for j, i in enumerate(pick):
            sel = found.scale_index == j
            if not sel.any():
                continue
            ey = np.exp(-2j * np.pi * np.outer(found.y[sel], fy)).astype(np.complex64)
            ex = np.exp(-2j * np.pi * np.outer(found.x[sel], fx)).astype(np.complex64)
            tau_map = grid.unfold(tau_2d[i]) / np.float32(grid.pix_area)
            model += tau_map * (ey.T @ (amp[sel, None] * ex))
        cleaned = fmaps - fsz[:, None, None].astype(np.float32) * model[None]
        power = covariance(noise_mod.cross_spectra(cleaned, grid, w2, threads=threads))
    combine(power)

    def scale_job(i: int) -> tuple[np.ndarray, np.float32, float, float, float]:
        m, gain, sg, kk = scale_at(i, fft_workers=1)
        c, sg, r = calibration(m, gain, sg)
        return m, c, sg, kk, r

    nscale = len(scales_all)
    max_snr = new_map()
    step = max(1, (256 * 1024) // (4 * nx))  # rows per block: a block of every map stays in cache
    blocks = [slice(a, min(a + step, ny)) for a in range(0, ny, step)]

    def scale_and_max(rows: slice) -> None:
        """Bring every map to SNR and take the maximum over scales, block by block of rows: each
        map is read and written once, the maximum is never out of cache."""
        acc = max_snr[rows]
        for s, res in enumerate(results):
            blk = res[0][rows]
            np.multiply(blk, res[1], out=blk)
            if s == 0:
                np.copyto(acc, blk)
            else:
                np.maximum(acc, blk, out=acc)

    # Scales are independent: run them on a thread pool (FFTs and numpy ufuncs release the
    # GIL), so the element-wise passes between FFTs use every core too.
    if threads > 1 and nscale > 1:
        with ThreadPoolExecutor(max_workers=min(threads, nscale)) as executor:
            results = list(executor.map(scale_job, range(nscale)))
            chunk = -(-len(blocks) // threads)
            groups = [blocks[a : a + chunk] for a in range(0, len(blocks), chunk)]
            list(executor.map(lambda group: [scale_and_max(b) for b in group], groups))
    else:
        results = [scale_job(i) for i in range(nscale)]
        for b in blocks:
            scale_and_max(b)
    snrs, _, sig, kv, rms = (list(column) for column in zip(*results, strict=True))
    ref = settings.ref_scale_arcmin
    scales = np.asarray(scales_all, dtype=float)
    if ref is None or np.min(np.abs(scales - ref)) < 1e-6:
        i = int(np.argmin(np.abs(scales - (ref if ref is not None else scales[0]))))
        snr_ref, sig_ref = snrs[i], sig[i]
    else:
        tau = _tapered_template(settings.profile, float(ref), grid.k_fine, native)
        m, gain, sg, _ = one_scale(float(ref), tau, grid.gather_half(tau))
        snr_ref, sig_ref, _ = calibrated(m, gain, sg)
    return FilterResult(
        snr=snrs,
        snr_ref=snr_ref,
        sigma_y=np.asarray(sig),
        sigma_y_ref=float(sig_ref),
        kvar=np.asarray(kv),
        rms=np.asarray(rms),
        window=window,
        dist_mask=dist,
        sources=sources,
        interior=interior,
        max_snr=max_snr,
        plateau=plateau,
    )


__all__ = ["FilterSettings", "FilterResult", "run_filter", "band_response", "T_CMB_UK", "PLATEAU"]
