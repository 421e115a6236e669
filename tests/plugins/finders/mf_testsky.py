"""Small seeded skies for the ``mf`` tests: CMB + white noise + painted clusters and sources.

Independent of the finder's Fourier-space templates: clusters are painted in real space on an
oversampled cutout, convolved with the beam there and point-sampled at the map pixels.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from astropy.wcs import WCS
from scipy import ndimage

from clusterfw.core.sky import Band, PixelBoxCore, Tile

BANDS = (
    Band("f090", 90.0, 2.2, 6.0),
    Band("f150", 150.0, 1.4, 6.0),
    Band("f220", 220.0, 1.0, 15.0),
)
T_CMB = 2.7255e6


def tsz(freq: float) -> float:
    """µK per unit y (non-relativistic), computed independently of the finder."""
    x = 6.62607015e-34 * freq * 1e9 / (1.380649e-23 * 2.7255)
    return T_CMB * (x * (np.exp(x) + 1) / (np.exp(x) - 1) - 4.0)


def make_wcs(n: int, pix: float, ra0: float = 30.0, dec0: float = -10.0) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    w.wcs.crval = [ra0, 0.0]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0 - dec0 * 60.0 / pix]
    w.wcs.cdelt = [-pix / 60.0, pix / 60.0]
    return w


def cmb_map(n: int, pix: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian lensed-CMB realisation (flat sky) from the simulator's shipped C_ell table."""
    ref = resources.files("clusterfw.sim").joinpath("data/cmb_lensed_planck18.npz")
    with resources.as_file(ref) as path:
        d = np.load(path)
        ell, cl = d["ell"].astype(float), d["cl_tt"].astype(float)
    ky = 2 * np.pi * np.fft.fftfreq(n, d=pix)
    kx = 2 * np.pi * np.fft.rfftfreq(n, d=pix)
    kk = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) * 10800 / np.pi
    c = np.interp(kk, ell, cl, right=0.0) * (10800 / np.pi) ** 2  # µK² arcmin²
    c[0, 0] = 0.0
    amp = np.sqrt(c * n * n / pix**2 / 2.0)
    f = (rng.standard_normal(kk.shape) + 1j * rng.standard_normal(kk.shape)) * amp
    return np.fft.irfft2(f, s=(n, n))


def beam_smooth(m: np.ndarray, fwhm: float, pix: float) -> np.ndarray:
    ky = 2 * np.pi * np.fft.fftfreq(m.shape[0], d=pix)
    kx = 2 * np.pi * np.fft.rfftfreq(m.shape[1], d=pix)
    s = fwhm / np.sqrt(8 * np.log(2))
    b = np.exp(-0.5 * (ky[:, None] ** 2 + kx[None, :] ** 2) * s * s)
    return np.fft.irfft2(np.fft.rfft2(m) * b, s=m.shape)


def paint_beta(
    maps: np.ndarray, x: float, y: float, y_c: float, theta_c: float, pix: float,
    bands=BANDS, trunc: float = 5.0, over: int = 5,
) -> None:
    """Add a beam-convolved projected beta model (beta=1) at pixel (x, y), in place."""
    half = int(np.ceil((trunc * theta_c + 4 * max(b.beam_fwhm_arcmin for b in bands)) / pix))
    x0, y0 = int(round(x)), int(round(y))
    n = 2 * half + 1
    fine = (np.arange(n * over) - (n * over - 1) / 2.0) / over  # coarse-pixel units
    fy = fine[:, None] + (y0 - y)
    fx = fine[None, :] + (x0 - x)
    r = np.sqrt(fx**2 + fy**2) * pix / theta_c
    prof = np.where(r <= trunc, 1.0 / (1.0 + r * r), 0.0)
    centre = (np.arange(n) * over + (over - 1) // 2)
    ny, nx = maps.shape[1:]
    ys = slice(max(0, y0 - half), min(ny, y0 + half + 1))
    xs = slice(max(0, x0 - half), min(nx, x0 + half + 1))
    cy = centre[ys.start - (y0 - half): ys.stop - (y0 - half)]
    cx = centre[xs.start - (x0 - half): xs.stop - (x0 - half)]
    for i, b in enumerate(bands):
        s = b.beam_fwhm_arcmin / np.sqrt(8 * np.log(2)) / (pix / over)
        conv = ndimage.gaussian_filter(prof, s, mode="constant", truncate=6.0)
        maps[i, ys, xs] += y_c * tsz(b.freq_ghz) * conv[np.ix_(cy, cx)]


def make_tile(
    n: int = 400, pix: float = 0.5, seed: int = 0, cmb: bool = True, bands=BANDS,
    noise_scale: float = 1.0,
) -> Tile:
    """A square tile of CMB + white noise (no clusters), core = whole tile."""
    rng = np.random.default_rng(seed)
    cmbm = cmb_map(n, pix, rng) if cmb else np.zeros((n, n))
    maps = np.empty((len(bands), n, n), dtype=np.float32)
    for i, b in enumerate(bands):
        white = rng.standard_normal((n, n)) * b.noise_uk_arcmin * noise_scale / pix
        maps[i] = beam_smooth(cmbm, b.beam_fwhm_arcmin, pix) + white
    wcs = make_wcs(n, pix)
    return Tile(0, maps, wcs, tuple(bands), PixelBoxCore(wcs, 0, n, 0, n))


def random_isolated(
    n: int, count: int, min_sep_pix: float, border_pix: int, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``count`` uniform random (x, y) positions at least ``min_sep_pix`` apart."""
    out: list[tuple[float, float]] = []
    for _ in range(50 * count):
        p = rng.uniform(border_pix, n - 1 - border_pix, 2)
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_sep_pix**2 for q in out):
            out.append((float(p[0]), float(p[1])))
            if len(out) == count:
                break
    return np.array(out)


def inject(tile: Tile, pos: np.ndarray, y_c, theta_c) -> None:
    """Paint beta-model clusters at pixel positions ``pos`` (rows of x, y), in place."""
    y_c = np.broadcast_to(y_c, len(pos))
    theta_c = np.broadcast_to(theta_c, len(pos))
    maps = tile.maps.astype(np.float64)
    for (x, y), yc, tc in zip(pos, y_c, theta_c, strict=True):
        paint_beta(maps, x, y, yc, tc, tile.pixel_scale_arcmin, tile.bands)
    tile.maps = maps.astype(np.float32)
