"""Cutouts of a tile's layers on the network's grid (32 × 32 pixels of 8", centred on a position).

Every layer pixel in the box is assigned to the network pixel holding its centre (offsets in
the layer's own pixel units, scaled by ``layer pixel / 8"``); a network pixel gets the mean of
its layer pixels times the area ratio ``(8" / layer pixel)²``, i.e. the counts (X-ray) or
nanomaggies (optical) in 8" × 8". Where the layer pixel divides 8" (eROSITA's 4") the grid is
snapped to the layer's pixel edges, so the values are exact 2 × 2 sums of the counts — the same
numbers as the training cutouts (:mod:`clusterfw.plugins.finders.xray.data`). Axis flips
between layers (east left or right) are a dihedral transform, which the networks were trained
to ignore. Layer pixels coarser than 8" are not supported (NaN).
"""

from __future__ import annotations

import math

import numpy as np

from clusterfw.plugins.finders.xray.data import NET_PIX, NET_PIXEL_ARCSEC


def pixel_arcsec(wcs) -> float:
    """Pixel side (arcsec) of a celestial WCS at its reference point."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs.celestial))) * 3600.0)


def to_net_grid(
    planes: np.ndarray, wcs, ra: float, dec: float, npix: int = NET_PIX
) -> tuple[np.ndarray, float]:
    """``(n_plane, npix, npix)`` network-grid cutout of ``planes`` around (ra, dec).

    Returns
    -------
    cutout : numpy.ndarray
        Float64, NaN where no finite layer pixel falls in a network pixel.
    covered : float
        Fraction of network pixels with data.
    """
    p = pixel_arcsec(wcs)
    nb = planes.shape[0]
    out = np.full((nb, npix, npix), np.nan)
    if not p <= NET_PIXEL_ARCSEC * 1.0001:
        return out, 0.0
    f = NET_PIXEL_ARCSEC / p  # layer pixels per network pixel
    x, y = wcs.world_to_pixel_values(ra, dec)
    x, y = float(x), float(y)
    if not (math.isfinite(x) and math.isfinite(y)):
        return out, 0.0
    if abs(f - round(f)) < 1e-3:
        # snap the grid centre to a layer-pixel edge (even npix: the centre is a pixel corner)
        k = int(round(f))
        off = 0.5 if (k * npix) % 2 == 0 else 0.0
        x = math.floor(x) + off if off else float(round(x))
        y = math.floor(y) + off if off else float(round(y))
    half = npix * f / 2.0
    ny, nx = planes.shape[1:]
    x0, x1 = max(0, int(math.floor(x - half)) - 1), min(nx, int(math.ceil(x + half)) + 2)
    y0, y1 = max(0, int(math.floor(y - half)) - 1), min(ny, int(math.ceil(y + half)) + 2)
    if x1 <= x0 or y1 <= y0:
        return out, 0.0
    ix = np.floor((np.arange(x0, x1) - x) / f + npix / 2.0).astype(np.int64)
    iy = np.floor((np.arange(y0, y1) - y) / f + npix / 2.0).astype(np.int64)
    okx, oky = (ix >= 0) & (ix < npix), (iy >= 0) & (iy < npix)
    box = planes[:, y0:y1, x0:x1][:, oky][:, :, okx]
    bins = (iy[oky][:, None] * npix + ix[okx][None, :]).ravel()
    finite = np.all(np.isfinite(box), axis=0).ravel()
    n = np.bincount(bins[finite], minlength=npix * npix).astype(float)
    have = n > 0
    for b in range(nb):
        vals = box[b].ravel()[finite]
        s = np.bincount(bins[finite], weights=vals, minlength=npix * npix)
        plane = np.where(have, s / np.maximum(n, 1) * f * f, np.nan)
        out[b] = plane.reshape(npix, npix)
    return out, float(have.mean())
