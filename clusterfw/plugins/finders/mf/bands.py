"""The filter's band-by-band stage: windowed, beam-deconvolved transforms, spectra, point sources.

Until the cross-spectra, every band is processed on its own: window, forward FFT, beam
deconvolution, auto-spectrum and, with a point-source stage, the band's sources (found with its
own beam and noise), their subtraction, and the same again without them. The bands therefore
run side by side on a thread pool (one band's element-wise passes overlap another's FFTs), and
each cross-spectrum is measured as soon as its two bands are final.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

import numpy as np
import scipy.fft as sfft

from clusterfw.plugins.finders.mf import noise as noise_mod
from clusterfw.plugins.finders.mf import point_sources as ps_mod
from clusterfw.plugins.finders.mf.grid import FourierGrid, fft_threads, rfft2_into


def transform_bands(
    maps: np.ndarray,
    window: np.ndarray,
    valid: np.ndarray | None,
    grid: FourierGrid,
    beam_inverse: np.ndarray,
    beams: Sequence[float],
    pix_arcmin: float,
    w2: float,
    point_sources: str,
    ps_snr_min: float,
    modelled: noise_mod.NoiseCov | None,
    workers: int,
    new_map: Callable[[], np.ndarray],
) -> tuple[np.ndarray, np.ndarray | None, ps_mod.PointSources]:
    """Transforms of the windowed, beam-deconvolved maps, their spectra and point sources.

    Parameters
    ----------
    maps : numpy.ndarray
        ``(n_band, ny, nx)`` maps (µK); masked pixels may hold anything (see ``valid``).
    window : numpy.ndarray
        ``(ny, nx)`` apodisation window (0 on masked pixels).
    valid : numpy.ndarray or None
        Where every band has data; None when all pixels do.
    grid : FourierGrid
        Grid of the padded shape.
    beam_inverse : numpy.ndarray
        ``1 / B_b`` per band on the folded grid (:meth:`FourierGrid.gather_half`).
    beams : sequence of float
        Beam FWHM per band (arcmin).
    pix_arcmin : float
    w2 : float
        Mean squared window over the padded grid.
    point_sources : {"subtract", "inpaint", "none"}
    ps_snr_min : float
        Point-source detection threshold.
    modelled : NoiseCov or None
        Noise model for the point-source filter; None to measure each band's auto-spectrum.
    workers : int
        Threads (``scipy.fft`` meaning).
    new_map : callable
        Returns a float32 map of the tile's shape (scratch for the point-source SNR maps).

    Returns
    -------
    fmaps : numpy.ndarray
        ``(n_band, ny_pad, nx_pad // 2 + 1)`` complex64 transforms, sources removed.
    binned : numpy.ndarray or None
        ``(n_bin, n_band, n_band)`` measured cross-spectra of ``fmaps`` (not regularised);
        None with a noise model.
    sources : PointSources
        Every band's sources, band by band.
    """
    nb, ny, nx = maps.shape
    shape = grid.shape
    fmaps = np.empty((nb, shape[0], shape[1] // 2 + 1), dtype=np.complex64)
    windowed = np.empty((nb, ny, nx), dtype=np.float32)
    measured = modelled is None
    binned = np.zeros((grid.bin_counts.size, nb, nb)) if measured else None
    threads = fft_threads(workers)
    side_by_side = threads > 1 and nb > 1
    # Bands (and cross-spectra) running side by side give each FFT one core; a band running
    # alone, at the end, takes every thread again.
    running = [0]
    lock = threading.Lock()

    def fft_workers() -> int:
        return workers if running[0] <= 1 else 1

    def counted(job: Callable) -> Callable:
        def run(*args):
            with lock:
                running[0] += 1
            try:
                return job(*args)
            finally:
                with lock:
                    running[0] -= 1

        return run

    def transform(b: int, m: np.ndarray | None) -> None:
        """Window band ``b`` of ``m`` (None: the buffer as it is), transform, deconvolve."""
        if m is not None:
            np.multiply(m[b], window, out=windowed[b])
            if valid is not None:
                windowed[b][~valid] = 0.0
        if shape == (ny, nx):
            rfft2_into(windowed[b], fmaps[b], fft_workers())
        else:
            fmaps[b] = sfft.rfft2(windowed[b], s=shape, workers=fft_workers())
        grid.apply_half(beam_inverse[b], fmaps[b], out=fmaps[b])

    def measure(pairs: list[tuple[int, int]], parallel: bool = False) -> None:
        noise_mod.cross_spectra(
            fmaps, grid, w2, pairs=pairs, threads=threads if parallel else 1, out=binned
        )

    def band_stage(b: int) -> ps_mod.PointSources:
        """Band ``b`` up to the cross-spectra."""
        transform(b, maps)
        if measured:
            measure([(b, b)])
        if point_sources == "none":
            return ps_mod.PointSources.empty()
        own = noise_mod.NoiseCov.from_bins(binned, grid) if measured else modelled
        found = ps_mod.detect_band(
            fmaps[b],
            grid,
            float(beams[b]),
            own.band(b),
            window,
            ps_snr_min,
            fft_workers(),
            band=b,
            scratch=new_map() if shape == (ny, nx) else None,
        )
        if point_sources == "subtract" and len(found):
            # the window is 0 on masked pixels: they stay 0
            ps_mod.subtract_models(
                windowed, found, list(beams), pix_arcmin, weight=window, inplace=True
            )
            transform(b, None)
            if measured:
                measure([(b, b)])
        return found

    # inpainting needs every band's sources before the final transforms
    cross_now = measured and point_sources != "inpaint"
    if side_by_side:
        with ThreadPoolExecutor(max_workers=nb) as executor:
            bands = {executor.submit(counted(band_stage), b): b for b in range(nb)}
            final: list[int] = []
            pairs: list[Future] = []
            for done in as_completed(bands):
                done.result()  # a failed band stops here
                b = bands[done]
                if cross_now:
                    pairs += [executor.submit(counted(measure), [(a, b)]) for a in final]
                final.append(b)
            for p in pairs:
                p.result()
            found = [f.result() for f in bands]  # band order
    else:
        found = [band_stage(b) for b in range(nb)]
        if cross_now:
            measure([(i, j) for i in range(nb) for j in range(i + 1, nb)])
    sources = ps_mod.PointSources.concat(found)
    if point_sources == "inpaint" and len(sources):
        cleaned = ps_mod.inpaint(maps, sources, list(beams), pix_arcmin)
        for b in range(nb):
            transform(b, cleaned)
    if measured and not cross_now:  # inpainting: the cross-spectra, and the autos if changed
        start = 0 if len(sources) else 1
        measure([(i, j) for i in range(nb) for j in range(i + start, nb)], parallel=True)
    return fmaps, binned, sources


__all__ = ["transform_bands"]
