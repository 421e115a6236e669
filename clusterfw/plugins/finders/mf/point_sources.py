"""Point sources: detection with a per-band beam matched filter, then subtraction or inpainting.

Sources are found as positive peaks of each band's beam-filtered SNR map (clusters are
decrements below 217 GHz, so they do not trigger it). ``subtract`` removes a beam-shaped model
of every source from the band it was found in (real-space stamps); ``inpaint`` fills a disc
around every source in every band from its surroundings (normalised Gaussian convolution).
Either way the maps are transformed once more (one forward FFT per band).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from clusterfw.plugins.finders.mf.grid import FourierGrid, irfft2_into
from clusterfw.plugins.finders.mf.noise import NoiseCov


@dataclass
class PointSources:
    """Detected point sources (pixel coordinates of the tile).

    Attributes
    ----------
    x, y : numpy.ndarray
        Sub-pixel positions.
    band : numpy.ndarray
        Index of the band they were found in.
    amp_uk : numpy.ndarray
        Peak amplitude (µK_CMB) in that band.
    snr : numpy.ndarray
        Point-source filter SNR.
    """

    x: np.ndarray
    y: np.ndarray
    band: np.ndarray
    amp_uk: np.ndarray
    snr: np.ndarray

    @classmethod
    def empty(cls) -> PointSources:
        """No sources."""
        z = np.zeros(0)
        return cls(z, z, np.zeros(0, int), z, z)

    def __len__(self) -> int:
        return int(self.x.size)

    @classmethod
    def concat(cls, parts: list[PointSources]) -> PointSources:
        """All sources of ``parts``, in order."""
        if not parts:
            return cls.empty()
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__)
        )


def label_sparse(mask: np.ndarray, eight: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Connected groups of the True pixels of a sparse 2-D ``mask``.

    Same groups and numbering as ``ndimage.label`` (4- or 8-connected, labels ``1..n`` in
    raster order of each group's first pixel), but the work after one pass to find the pixels
    scales with their number, not with the map: the pixels are cut into runs along rows, runs
    of adjacent rows that touch are linked, and the (small) graph of runs is split into its
    connected components.

    Returns
    -------
    pixels : numpy.ndarray
        Flat indices of the True pixels (raster order).
    labels : numpy.ndarray
        Label of each of them.
    n : int
        Number of groups.
    """
    nx = mask.shape[1]
    pixels = np.flatnonzero(mask)
    m = pixels.size
    if m == 0:
        return pixels, np.zeros(0, dtype=np.int64), 0
    # runs: maximal sequences of consecutive pixels of one row
    row = pixels // nx
    new = np.ones(m, dtype=bool)
    new[1:] = (pixels[1:] != pixels[:-1] + 1) | (row[1:] != row[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], m) - 1
    start, end = pixels[first], pixels[last]
    r = row[first]
    # runs of the next row touching columns [c0 - e, c1 + e] (e = 1: diagonal neighbours);
    # runs are sorted and disjoint, so they are those from j0 (first ending at or after the
    # range) to j1 (first starting after it), all in row r + 1
    e = 1 if eight else 0
    base = (r + 1) * nx
    lo = base + np.maximum(start - r * nx - e, 0)
    hi = base + np.minimum(end - r * nx + e, nx - 1)
    j0 = np.searchsorted(end, lo, side="left")
    j1 = np.searchsorted(start, hi, side="right")
    cnt = np.maximum(j1 - j0, 0)
    nrun = first.size
    src = np.repeat(np.arange(nrun), cnt)
    dst = np.repeat(j0, cnt) + (np.arange(src.size) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    root = _min_roots(nrun, src, dst)
    # the root of a group is its first run in raster order: numbering the roots in order
    # numbers the groups as ndimage.label does
    roots, rank = np.unique(root, return_inverse=True)
    return pixels, np.repeat(rank.reshape(-1) + 1, last - first + 1), int(roots.size)


def _min_roots(n: int, src: np.ndarray, dst: np.ndarray, rounds: int = 64) -> np.ndarray:
    """Smallest node of the connected component of every node of an undirected graph.

    Parallel union-find: the larger root of every edge is hooked under the smaller, then
    pointers are jumped to the roots, until no edge joins two roots (a handful of vectorised
    rounds for the blobs of a thresholded map; scipy's csgraph is the fallback).
    """
    root = np.arange(n)
    for _ in range(rounds):
        rs, rd = root[src], root[dst]
        join = rs != rd
        if not join.any():
            return root
        np.minimum.at(root, np.maximum(rs[join], rd[join]), np.minimum(rs[join], rd[join]))
        while True:
            up = root[root]
            if np.array_equal(up, root):
                break
            root = up
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))
    return first[comp]


def sparse_argmax(
    img: np.ndarray, pixels: np.ndarray, labels: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(py, px)`` of the maximum of ``img`` in each group of :func:`label_sparse`.

    Ties go to the last pixel in raster order (as ``ndimage.maximum_position`` on labels).
    """
    vals = np.take(img.reshape(-1), pixels)
    # same dtype as the values: ufunc.at's fast path (a float64 table is ~30x slower)
    best = np.full(n + 1, -np.inf, dtype=np.result_type(vals.dtype, np.float32))
    np.maximum.at(best, labels, vals)
    hit = vals >= best[labels]
    flat = np.zeros(n + 1, dtype=np.int64)
    flat[labels[hit]] = pixels[hit]
    py, px = np.divmod(flat[1:], img.shape[1])
    return py, px


def subpixel_peak(
    img: np.ndarray | Sequence[np.ndarray],
    py: np.ndarray,
    px: np.ndarray,
    which: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Parabolic sub-pixel refinement of peaks at integer ``(py, px)``.

    ``img`` is one map, or a sequence of equal-shaped maps with ``which`` naming the map of
    each peak (e.g. its best scale).

    Returns
    -------
    y, x, value : numpy.ndarray
        Refined positions (offsets clipped to ±0.5 pixel) and interpolated peak values.
    """
    maps = [img] if which is None else img
    ny, nx = maps[0].shape
    py = np.asarray(py, dtype=np.int64)
    px = np.asarray(px, dtype=np.int64)
    ym, yp = np.clip(py - 1, 0, ny - 1), np.clip(py + 1, 0, ny - 1)
    xm, xp = np.clip(px - 1, 0, nx - 1), np.clip(px + 1, 0, nx - 1)
    # the peak and its four neighbours, each from the peak's own map
    stencil = ((py, px), (ym, px), (yp, px), (py, xm), (py, xp))
    which = np.zeros(py.size, dtype=np.intp) if which is None else which
    vals = np.empty((5, py.size))
    for m in np.unique(which):
        sel = np.flatnonzero(which == m)
        for k, (iy, ix) in enumerate(stencil):
            vals[k, sel] = maps[m][iy[sel], ix[sel]]
    v0 = vals[0]
    out = [None, None]
    val = v0.copy()
    for axis, (p, n, vm, vp) in enumerate(((py, ny, vals[1], vals[2]), (px, nx, vals[3], vals[4]))):
        den = vm - 2.0 * v0 + vp
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(den < 0, 0.5 * (vm - vp) / den, 0.0)
        d = np.clip(d, -0.5, 0.5)
        d = np.where((p > 0) & (p < n - 1), d, 0.0)
        val = val - 0.25 * (vm - vp) * d
        out[axis] = p + d
    return out[0], out[1], val


def ps_filter_weights(
    grid: FourierGrid, beam_fwhm: float, power: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, float]:
    """Fine-grid filter turning a band's rfft into a point-source SNR map, and the 1σ amplitude.

    Parameters
    ----------
    grid : FourierGrid
    beam_fwhm : float
        Beam FWHM in arcmin.
    power : numpy.ndarray
        The band's auto-spectrum per noise row (DFT units, beam-deconvolved).
    counts : numpy.ndarray
        Modes per row.

    Returns
    -------
    weights : numpy.ndarray
        Per noise row; ``irfft2`` of ``M`` times their 2-D gather (``noise.index2d``) is SNR.
    sigma_uk : float
        1σ uncertainty of the peak amplitude in µK.
    """
    sig = beam_fwhm / np.sqrt(8.0 * np.log(2.0))
    # maps are beam-deconvolved: a source of peak amplitude A is flat, A * 2 pi sigma² / Ω
    t = 2.0 * np.pi * sig**2 / grid.pix_area
    f = float(np.sum(counts * t * t / power))
    return t / power * grid.npix / np.sqrt(f), 1.0 / np.sqrt(f)


def detect_band(
    fmap: np.ndarray,
    grid: FourierGrid,
    beam_fwhm: float,
    noise: NoiseCov,
    window: np.ndarray,
    snr_min: float,
    workers: int,
    band: int = 0,
    scratch: np.ndarray | None = None,
) -> PointSources:
    """Find positive beam-shaped peaks above ``snr_min`` in one band.

    Bands are searched one by one (and may be searched side by side): a source is looked for
    in each band with that band's own beam and noise.

    Parameters
    ----------
    fmap : numpy.ndarray
        ``(ny, nx // 2 + 1)`` rfft2 of the band's windowed, beam-deconvolved map.
    grid : FourierGrid
    beam_fwhm : float
        The band's beam FWHM (arcmin).
    noise : NoiseCov
        The band's noise (``power`` of shape ``(n_row, 1, 1)``, see :meth:`NoiseCov.band`).
    window : numpy.ndarray
        Apodisation window of the (unpadded) tile; only peaks where it exceeds 0.5 count.
    snr_min : float
    workers : int
        FFT threads.
    band : int
        Band index recorded with the sources.
    scratch : numpy.ndarray, optional
        float32 map of the padded shape for the SNR map (allocated if None).
    """
    ny, nx = window.shape
    wts, sigma = ps_filter_weights(grid, beam_fwhm, noise.power[:, 0, 0], noise.counts)
    buf = grid.apply_half(
        grid.gather_half(wts, noise.index2d), fmap, out=np.empty_like(fmap, np.complex64)
    )
    if scratch is None:
        scratch = np.empty(grid.shape, dtype=np.float32)
    snr = irfft2_into(buf, grid.shape, scratch, workers)[:ny, :nx]
    del buf
    above = snr > snr_min
    above &= window > 0.5
    if not above.any():
        return PointSources.empty()
    pixels, labels, n = label_sparse(above)
    iy, ix = sparse_argmax(snr, pixels, labels, n)
    py, px, val = subpixel_peak(snr, iy, ix)
    amp = val * sigma / np.maximum(window[iy, ix], 1e-3)
    return PointSources(px, py, np.full(n, band), amp, val)


def subtract_models(
    maps: np.ndarray,
    sources: PointSources,
    beams: list[float],
    pix_arcmin: float,
    radius_fwhm: float = 2.0,
    weight: np.ndarray | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Subtract a beam-shaped model of every source from the band it was found in (copy).

    Models are painted in real space on stamps of ``radius_fwhm`` beam FWHMs (the Gaussian has
    fallen to 1.5e-5 of its peak there), all sources of a band at once with one ``bincount``;
    the caller re-transforms the maps (one forward FFT per band), which is far cheaper than
    summing a plane wave per source in Fourier space.

    Parameters
    ----------
    maps : numpy.ndarray
        ``(n_band, ny, nx)`` maps in µK (NaN allowed; they stay NaN).
    sources : PointSources
        Positions (pixels) and peak amplitudes in µK of the unwindowed map.
    beams : list of float
        Beam FWHM per band (arcmin).
    pix_arcmin : float
    radius_fwhm : float
        Stamp half-size in beam FWHMs.
    weight : numpy.ndarray, optional
        ``(ny, nx)`` factor applied to the models (the apodisation window, when ``maps`` are
        already windowed).
    inplace : bool
        Subtract from ``maps`` itself (float32) instead of a copy.

    Returns
    -------
    numpy.ndarray
        float32 maps with the models subtracted.
    """
    out = maps if inplace else np.array(maps, dtype=np.float32, copy=True)
    ny, nx = out.shape[1:]
    for b, fwhm in enumerate(beams):
        sel = sources.band == b
        if not sel.any():
            continue
        sig = fwhm / np.sqrt(8.0 * np.log(2.0)) / pix_arcmin
        half = int(np.ceil(radius_fwhm * fwhm / pix_arcmin))
        off = np.arange(-half, half + 1)
        x, y, amp = sources.x[sel], sources.y[sel], sources.amp_uk[sel]
        iy = np.rint(y).astype(np.int64)[:, None] + off[None, :]
        ix = np.rint(x).astype(np.int64)[:, None] + off[None, :]
        gy = np.exp(-0.5 * ((iy - y[:, None]) / sig) ** 2) * ((iy >= 0) & (iy < ny))
        gx = np.exp(-0.5 * ((ix - x[:, None]) / sig) ** 2) * ((ix >= 0) & (ix < nx))
        stamps = amp[:, None, None] * gy[:, :, None] * gx[:, None, :]
        flat = np.clip(iy, 0, ny - 1)[:, :, None] * nx + np.clip(ix, 0, nx - 1)[:, None, :]
        flat = flat.ravel()
        if weight is not None:
            stamps = stamps.ravel() * np.take(weight.reshape(-1), flat)
        # unbuffered: overlapping stamps add up, only the touched pixels are visited
        np.subtract.at(out[b].reshape(-1), flat, np.asarray(stamps, dtype=np.float32).ravel())
    return out


def inpaint(
    maps: np.ndarray, sources: PointSources, beams: list[float], pix_arcmin: float
) -> np.ndarray:
    """Fill a disc around each source in every band from its surroundings (copy returned).

    The disc radius grows with the source SNR (where the beam tail falls below the noise).
    Holes are filled by normalised Gaussian convolution of the unmasked pixels, box by box.
    """
    out = maps.copy()
    ny, nx = maps.shape[1:]
    fwhm = max(beams)
    sig_pix = fwhm / np.sqrt(8.0 * np.log(2.0)) / pix_arcmin
    radius = sig_pix * np.sqrt(2.0 * np.log(np.maximum(sources.snr, 2.0))) + 1.0
    hole = np.zeros((ny, nx), dtype=bool)
    yy, xx = np.ogrid[:ny, :nx]
    for x, y, r in zip(sources.x, sources.y, radius, strict=True):
        y0, y1 = int(max(0, y - r - 1)), int(min(ny, y + r + 2))
        x0, x1 = int(max(0, x - r - 1)), int(min(nx, x + r + 2))
        hole[y0:y1, x0:x1] |= (yy[y0:y1] - y) ** 2 + (xx[:, x0:x1] - x) ** 2 <= r * r
    labels, _ = ndimage.label(hole)
    for sl in ndimage.find_objects(labels):
        h = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        pad = int(2 * h)
        ys = slice(max(0, sl[0].start - pad), min(ny, sl[0].stop + pad))
        xs = slice(max(0, sl[1].start - pad), min(nx, sl[1].stop + pad))
        m = hole[ys, xs]
        keep = (~m).astype(np.float64)
        data = np.nan_to_num(out[:, ys, xs].astype(np.float64)) * keep
        s = max(h / 2.0, 1.0)
        num = ndimage.gaussian_filter(data, (0, s, s), mode="nearest")
        den = ndimage.gaussian_filter(keep, s, mode="nearest")
        fill = num / np.maximum(den, 1e-6)
        out[:, ys, xs] = np.where(m[None], fill, out[:, ys, xs])
    return out
