"""From g, r, i images in nanomaggies to the network's input: working scale and stretch.

Working scale
    ``PIXEL_ARCSEC`` = 4.208" (16 × 16 DES pixels of 0.263"; 10.6 SDSS pixels of 0.396"). At
    this scale a 160-pixel window is 11.2' — 2.4 Mpc at z = 0.2, 4.5 Mpc at z = 0.6 — and
    bright cluster members (r ≲ m* + 2) are still separate dots; the scale was chosen for
    training speed on two shared cores (2.104" costs four times more per step). Images are
    brought to it by summing whole ``k × k`` blocks of pixels (``k = floor(scale / pixel)``)
    and, when the remaining factor is not 1 (within 1 %), by bilinear resampling of the
    surface brightness times the pixel-area ratio (flux per working pixel is kept). Pixels
    from ``MIN_PIXEL_ARCSEC`` (0.1") up to the
    working scale (+5 %) are resampled; coarser pixels are refused, since the galaxies the
    network learnt to see would be blended (and finer ones would need a > 42-fold sum: beyond
    any survey the model was trained for).

Stretch
    ``x = asinh(f / SOFT) / STRETCH_NORM`` per band with one softening ``SOFT = 0.2`` nanomaggy
    per working pixel for all bands (about 3σ of the DES sky noise at this scale): linear for faint
    galaxies, logarithmic above (Lupton et al. 2004). Deep-CEE used a square-root stretch; with
    sqrt a 14-mag star is still ~100 times brighter than a cluster member at r = 22 and dominates
    every window it sits in, whereas asinh compresses it to ~3 times the member's value. One
    softening for all bands keeps the colours (ratios of the band fluxes) that make the red
    sequence stand out. NaN pixels (no data) become 0 after the stretch.
"""

from __future__ import annotations

import numpy as np

from clusterfw.core.errors import PluginError

PIXEL_ARCSEC = 4.208
SOFT_NMGY = 0.2
STRETCH_NORM = 3.0
MIN_PIXEL_ARCSEC = 0.1
MAX_PIXEL_RATIO = 1.05


def check_pixel_scale(pixel_arcsec: float, name: str = "frcnn") -> None:
    """Refuse pixels the model cannot be given (one-line :class:`PluginError`)."""
    if not np.isfinite(pixel_arcsec) or pixel_arcsec <= 0:
        raise PluginError(f"{name}: optical pixel scale {pixel_arcsec!r} is not positive")
    if pixel_arcsec > PIXEL_ARCSEC * MAX_PIXEL_RATIO:
        raise PluginError(
            f"{name}: optical pixels of {pixel_arcsec:.3g}\" are coarser than the model's working "
            f'scale of {PIXEL_ARCSEC:g}" (it was trained on 0.263" DES-like images summed to '
            f'{PIXEL_ARCSEC:g}"); galaxies would blend — give images with pixels ≤ '
            f'{PIXEL_ARCSEC * MAX_PIXEL_RATIO:.3g}"'
        )
    if pixel_arcsec < MIN_PIXEL_ARCSEC:
        raise PluginError(
            f'{name}: optical pixels of {pixel_arcsec:.3g}" are finer than {MIN_PIXEL_ARCSEC:g}" '
            "(the model's scale would need a more than 42-fold sum); rebin the images first"
        )


def block_sum(img: np.ndarray, k: int) -> np.ndarray:
    """Sum ``k × k`` blocks of the last two axes (edges that do not fill a block are dropped)."""
    if k == 1:
        return img
    ny, nx = img.shape[-2] // k * k, img.shape[-1] // k * k
    lead = img.shape[:-2]
    out = np.empty((*lead, ny // k, nx // k), dtype=np.result_type(img.dtype, np.float32))
    # in strips of rows: reshaping a cropped image copies it, so a large tile is copied a strip
    # at a time (the same sums, element by element)
    rows = max(1, (1 << 22) // max(1, nx * k)) * k
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        a = img[..., y0:y1, :nx]
        out[..., y0 // k : y1 // k, :] = a.reshape(*lead, (y1 - y0) // k, k, nx // k, k).sum(
            axis=(-3, -1)
        )
    return out


def to_working_scale(pixels: np.ndarray, pixel_arcsec: float) -> tuple[np.ndarray, float]:
    """Flux per working pixel of ``(n_band, ny, nx)`` images, and the factor applied.

    Returns
    -------
    images : numpy.ndarray
        ``(n_band, my, mx)`` float32 nanomaggies per working pixel (NaN stays NaN).
    factor : float
        Working pixel / input pixel: working pixel ``(j, i)`` is centred on input pixel
        ``(factor · (j + 0.5) - 0.5, factor · (i + 0.5) - 0.5)``.
    """
    from scipy import ndimage

    check_pixel_scale(pixel_arcsec)
    ratio = PIXEL_ARCSEC / pixel_arcsec
    k = max(1, int(np.floor(ratio + 0.01)))
    img = block_sum(np.asarray(pixels, np.float32), k)
    rest = ratio / k
    if abs(rest - 1.0) <= 0.01:
        return img.astype(np.float32), float(k)
    ny, nx = img.shape[-2:]
    my, mx = max(1, int(np.floor(ny / rest))), max(1, int(np.floor(nx / rest)))
    # output pixel j centred on input (block) pixel rest * (j + 0.5) - 0.5
    yy = rest * (np.arange(my) + 0.5) - 0.5
    xx = rest * (np.arange(mx) + 0.5) - 0.5
    grid = np.meshgrid(yy, xx, indexing="ij")
    out = np.empty((img.shape[0], my, mx), np.float32)
    for b in range(img.shape[0]):
        out[b] = ndimage.map_coordinates(img[b], grid, order=1, mode="nearest", cval=np.nan)
    return out * np.float32(rest * rest), float(ratio)


def stretch(images: np.ndarray, soft: float = SOFT_NMGY) -> np.ndarray:
    """``asinh(f / soft) / STRETCH_NORM`` (float32), NaN → 0."""
    x = np.arcsinh(np.asarray(images, np.float32) / np.float32(soft)) / np.float32(STRETCH_NORM)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
