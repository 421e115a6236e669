"""The Fourier grid of a (padded) tile and the 1-D <-> 2-D mapping of radial functions.

Every function the filter needs in Fourier space (beams, profiles, noise spectra, filter
weights) is radial. They are evaluated on a fine uniform 1-D grid of ``|k|`` and gathered onto
the 2-D ``rfft2`` grid with one precomputed index array, which is cheaper than evaluating or
interpolating on the 2-D grid for every scale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

_N_FINE = 16384

try:  # scipy.fft's own pocketfft binding: the same transform as sfft.irfft2, with an ``out``
    from scipy.fft._pocketfft import pypocketfft as _pocketfft
except ImportError:  # pragma: no cover - other scipy layouts: allocate as sfft does
    _pocketfft = None


def fft_threads(workers: int) -> int:
    """``scipy.fft``'s ``workers`` as a thread count (negative: counted from the core count)."""
    if workers < 0:
        return max(1, workers + 1 + (os.cpu_count() or 1))
    return max(1, workers)


def irfft2_into(x: np.ndarray, shape: tuple[int, int], out: np.ndarray, workers: int) -> np.ndarray:
    """``scipy.fft.irfft2(x, s=shape)`` written into ``out`` (float32 of ``shape``).

    ``scipy.fft`` has no ``out`` argument; a fresh result costs the kernel's page faults and
    zeroing (about a quarter of an inverse FFT here), so this calls the pocketfft binding
    ``scipy.fft`` itself uses (same algorithm, normalisation and threads) with ``out``, and
    falls back to the public function and a copy if that binding is missing or refuses.
    """
    if _pocketfft is not None and x.dtype == np.complex64 and out.dtype == np.float32:
        try:
            return _pocketfft.c2r(
                x,
                axes=(0, 1),
                lastsize=shape[1],
                forward=False,
                inorm=2,
                out=out,
                nthreads=fft_threads(workers),
            )
        except (TypeError, ValueError, RuntimeError):  # pragma: no cover - other bindings
            pass
    np.copyto(out, sfft.irfft2(x, s=shape, workers=workers))
    return out


def rfft2_into(x: np.ndarray, out: np.ndarray, workers: int) -> np.ndarray:
    """``scipy.fft.rfft2(x)`` written into ``out`` (complex64 of ``x``'s rfft shape), through
    the same binding as :func:`irfft2_into`, with the same fallback."""
    if _pocketfft is not None and x.dtype == np.float32 and out.dtype == np.complex64:
        try:
            return _pocketfft.r2c(
                x, axes=(0, 1), forward=True, inorm=0, out=out, nthreads=fft_threads(workers)
            )
        except (TypeError, ValueError, RuntimeError):  # pragma: no cover - other bindings
            pass
    np.copyto(out, sfft.rfft2(x, workers=workers))
    return out


@dataclass(frozen=True)
class FourierGrid:
    """Geometry of the ``rfft2`` grid of a padded tile.

    Attributes
    ----------
    shape : tuple of int
        Padded real-space shape ``(ny, nx)``.
    pix_arcmin : float
        Pixel side in arcmin.
    k_fine : numpy.ndarray
        Uniform 1-D grid of ``|k|`` (rad / arcmin) covering the 2-D grid.
    idx : numpy.ndarray
        ``(ny, nx // 2 + 1)`` index (``intp``, so gathers and ``bincount`` need no cast) of
        each 2-D mode into ``k_fine`` (nearest).
    counts : numpy.ndarray
        Number of full-plane modes mapped to each ``k_fine`` entry (rfft Hermitian weights).
    herm : numpy.ndarray
        Full-plane modes each ``rfft2`` column stands for (2, or 1 for columns 0 and Nyquist).
    bin_idx : numpy.ndarray
        ``(ny, nx // 2 + 1)`` index (``intp``) of each mode into the coarse power-spectrum bins.
    bin_counts : numpy.ndarray
        Full-plane modes per coarse bin.
    bin_k : numpy.ndarray
        Mode-weighted mean ``|k|`` of each coarse bin.
    bin_of_fine : numpy.ndarray
        Coarse bin of each ``k_fine`` entry.
    fold_rows : int
        Rows ``1..fold_rows`` have the same ``|k|`` (hence bins) as rows ``ny-1`` down to
        ``ny-fold_rows`` (``ky`` and ``-ky``): per-mode quantities can be added row pair by row
        pair before binning, which halves the binning work.
    bin_idx_half : numpy.ndarray
        Flat ``bin_idx`` of the ``ny - fold_rows`` rows kept after folding.
    edge_cols : numpy.ndarray
        The columns that stand for one full-plane mode (``herm == 1``).
    bin_idx_half_edge : numpy.ndarray
        Flat ``bin_idx`` of those columns in the kept rows.
    """

    shape: tuple[int, int]
    pix_arcmin: float
    k_fine: np.ndarray
    idx: np.ndarray
    counts: np.ndarray
    herm: np.ndarray
    bin_idx: np.ndarray
    bin_counts: np.ndarray
    bin_k: np.ndarray
    bin_of_fine: np.ndarray
    fold_rows: int = 0
    bin_idx_half: np.ndarray | None = None
    edge_cols: np.ndarray | None = None
    bin_idx_half_edge: np.ndarray | None = None

    @property
    def npix(self) -> int:
        """Number of real-space pixels of the padded grid."""
        return self.shape[0] * self.shape[1]

    @property
    def pix_area(self) -> float:
        """Pixel solid angle in arcmin²."""
        return self.pix_arcmin**2

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Map a radial function tabulated on ``k_fine`` onto the 2-D grid (float32)."""
        return np.take(np.asarray(values, dtype=np.float32), self.idx)

    @property
    def half_rows(self) -> int:
        """Rows of a radial table after folding: ``ny - fold_rows`` (the others mirror them)."""
        return self.shape[0] - self.fold_rows

    def gather_half(self, values: np.ndarray, index2d: np.ndarray | None = None) -> np.ndarray:
        """A radial table gathered onto the first :attr:`half_rows` rows only (float32).

        ``index2d`` is the 2-D row index of ``values`` (``idx`` by default, or ``bin_idx``);
        rows ``ny - y`` repeat rows ``y``, so :meth:`apply_half` multiplies the whole grid
        with half the gather (and half the memory of a cached table).
        """
        index2d = self.idx if index2d is None else index2d
        return np.take(np.asarray(values, dtype=np.float32), index2d[: self.half_rows], mode="clip")

    def apply_half(
        self, half: np.ndarray, x: np.ndarray, out: np.ndarray, part: int | None = None
    ) -> np.ndarray:
        """``out = T * x`` on the whole ``rfft2`` grid for a table ``half`` from
        :meth:`gather_half` (``out`` may be ``x``).

        ``part`` 0 or 1 does only the first :attr:`half_rows` rows or only the mirrored
        rows (two threads can share the work).
        """
        n = self.half_rows
        f = self.fold_rows
        if part != 1:
            np.multiply(half, x[:n], out=out[:n])
        if f and part != 0:
            np.multiply(half[f:0:-1], x[n:], out=out[n:])
        return out

    def unfold(self, half: np.ndarray) -> np.ndarray:
        """The full 2-D table from its :meth:`gather_half` rows."""
        f = self.fold_rows
        return np.concatenate([half, half[f:0:-1]]) if f else np.array(half)


def padded_shape(ny: int, nx: int) -> tuple[int, int]:
    """A shape at least ``(ny, nx)`` with fast FFT sizes."""
    return sfft.next_fast_len(ny, real=True), sfft.next_fast_len(nx, real=True)


@lru_cache(maxsize=8)
def fourier_grid(shape: tuple[int, int], pix_arcmin: float, min_modes: int = 24) -> FourierGrid:
    """Build (and cache) the :class:`FourierGrid` of a padded shape.

    Parameters
    ----------
    shape : tuple of int
        Padded ``(ny, nx)``.
    pix_arcmin : float
        Pixel side in arcmin.
    min_modes : int
        Minimum number of modes in a coarse power-spectrum bin (low-k bins are merged).
    """
    ny, nx = shape
    ky = (2.0 * np.pi * sfft.fftfreq(ny, d=pix_arcmin)).astype(np.float32)
    kx = (2.0 * np.pi * sfft.rfftfreq(nx, d=pix_arcmin)).astype(np.float32)
    k = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    kmax = float(k.max()) * 1.0001
    k_fine = np.linspace(0.0, kmax, _N_FINE)
    dk = k_fine[1]
    idx = np.rint(k / dk).astype(np.intp)
    herm = np.full(kx.size, 2.0, dtype=np.float32)
    herm[0] = 1.0
    if nx % 2 == 0:
        herm[-1] = 1.0
    wmap = np.broadcast_to(herm[None, :], k.shape)
    counts = np.bincount(idx.ravel(), weights=wmap.ravel(), minlength=_N_FINE)
    # coarse bins for power spectra: one fundamental wide, merged at low k to >= min_modes
    dkb = 2.0 * np.pi / (min(ny, nx) * pix_arcmin)
    fine_bin = np.floor(k / dkb).astype(np.int64)
    nfb = int(fine_bin.max()) + 1
    c = np.bincount(fine_bin.ravel(), weights=wmap.ravel(), minlength=nfb)
    cum = np.cumsum(c)
    group = np.floor((cum - c) / min_modes).astype(np.int64)
    _, group = np.unique(group, return_inverse=True)
    bin_idx = group[fine_bin].astype(np.intp)
    nbin = int(group.max()) + 1
    bin_counts = np.bincount(bin_idx.ravel(), weights=wmap.ravel(), minlength=nbin)
    ksum = np.bincount(bin_idx.ravel(), weights=(k * wmap).ravel(), minlength=nbin)
    bin_k = ksum / np.maximum(bin_counts, 1)
    fine_fb = np.minimum(np.floor(k_fine / dkb).astype(np.int64), nfb - 1)
    bin_of_fine = group[fine_fb].astype(np.intp)
    # rows y and ny - y hold ky and -ky: same |k|, same bins (checked, not assumed)
    fold = (ny - 1) // 2
    mirror = slice(ny - 1, ny - 1 - fold, -1)
    if fold and not (
        np.array_equal(bin_idx[1 : 1 + fold], bin_idx[mirror])
        and np.array_equal(idx[1 : 1 + fold], idx[mirror])
    ):
        fold = 0
    edge_cols = np.flatnonzero(herm < 1.5)
    half = bin_idx[: ny - fold]
    for a in (idx, bin_idx, bin_of_fine, counts, herm, k_fine):
        a.flags.writeable = False  # shared by every tile of this shape (cached)
    return FourierGrid(
        shape=(ny, nx),
        pix_arcmin=float(pix_arcmin),
        k_fine=k_fine,
        idx=idx,
        counts=counts,
        herm=herm,
        bin_idx=bin_idx,
        bin_counts=bin_counts,
        bin_k=bin_k,
        bin_of_fine=bin_of_fine,
        fold_rows=int(fold),
        bin_idx_half=half.ravel(),
        edge_cols=edge_cols,
        bin_idx_half_edge=np.ascontiguousarray(half[:, edge_cols]).ravel(),
    )
