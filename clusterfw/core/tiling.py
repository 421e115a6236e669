"""Cutting skies into overlapping tiles whose cores are disjoint."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from astropy.wcs import WCS

from clusterfw.core.sky import HealpixCore, PixelBoxCore, Tile

if TYPE_CHECKING:
    from clusterfw.core.sky import HealpixSky, Sky


def portable_wcs(wcs: WCS) -> WCS:
    """``wcs`` exactly as a worker process receives it (a pickle round trip).

    Astropy pickles a WCS through its FITS header text, which keeps about 12 significant
    digits: a tile WCS built in this process and the copy a ``--workers`` process unpickles
    differed by up to ~1e-12 deg in the positions they give. Tiles therefore carry the
    round-tripped WCS (the round trip is idempotent), so ``--workers 1`` and ``--workers N``
    compute with bit-identical WCS parameters and give identical catalogues.
    """
    rebuild, args = wcs.__reduce__()[:2]  # what pickling stores, rebuilt without any bytes
    return rebuild(*args)


def _block_edges(n: int, block: int) -> np.ndarray:
    """Edges of ``ceil(n / block)`` nearly equal blocks covering ``[0, n)``."""
    count = max(1, math.ceil(n / max(block, 1)))
    return np.linspace(0, n, count + 1).round().astype(int)


def flat_tiles(sky: Sky, tile_size_arcmin: float, margin_arcmin: float) -> list[Tile]:
    """Tiles of a flat-sky map: pixel-box cores plus a margin clipped at the map edge.

    Parameters
    ----------
    sky : Sky
    tile_size_arcmin : float
        Target core side.
    margin_arcmin : float
        Border added on every side of a core.

    Returns
    -------
    list of Tile
        Tiles in row-major order of their cores.
    """
    pix = sky.pixel_scale_arcmin
    block = int(round(tile_size_arcmin / pix))
    margin = int(math.ceil(margin_arcmin / pix))
    ny, nx = sky.shape
    y_edges = _block_edges(ny, block)
    x_edges = _block_edges(nx, block)
    parent_wcs = portable_wcs(sky.wcs.celestial)
    tiles: list[Tile] = []
    for j in range(len(y_edges) - 1):
        for i in range(len(x_edges) - 1):
            y0, y1, x0, x1 = y_edges[j], y_edges[j + 1], x_edges[i], x_edges[i + 1]
            ty0, ty1 = max(0, y0 - margin), min(ny, y1 + margin)
            tx0, tx1 = max(0, x0 - margin), min(nx, x1 + margin)
            tile_wcs = portable_wcs(parent_wcs.slice((slice(ty0, ty1), slice(tx0, tx1))))
            tiles.append(
                Tile(
                    tile_id=len(tiles),
                    maps=sky.maps[:, ty0:ty1, tx0:tx1],
                    wcs=tile_wcs,
                    bands=sky.bands,
                    core=PixelBoxCore(parent_wcs, int(y0), int(y1), int(x0), int(x1)),
                )
            )
    return tiles


def tan_wcs(ra0: float, dec0: float, pixel_arcmin: float, npix: int) -> WCS:
    """A square gnomonic (TAN) WCS of ``npix`` pixels centred on (ra0, dec0)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(npix + 1) / 2.0, (npix + 1) / 2.0]
    w.wcs.cdelt = [-pixel_arcmin / 60.0, pixel_arcmin / 60.0]
    w.wcs.radesys = "ICRS"
    return w


def healpix_core_order(tile_size_arcmin: float) -> int:
    """The nested HEALPix order whose pixel side is closest to ``tile_size_arcmin``."""
    import healpy as hp

    sides = [hp.nside2resol(2**o, arcmin=True) for o in range(0, 14)]
    return int(np.argmin([abs(math.log(s / tile_size_arcmin)) for s in sides]))


def healpix_tiles(
    sky: HealpixSky,
    tile_size_arcmin: float,
    margin_arcmin: float,
    pixel_arcmin: float | None = None,
    region: Sequence[int] | None = None,
) -> list[Tile]:
    """Tiles of a HEALPix sky, projected onto TAN grids around coarse nested HEALPix cores.

    Map values are interpolated bilinearly (``healpy.get_interp_val``); masked pixels (NaN or
    ``UNSEEN``) stay masked. Core pixels with no unmasked data are skipped.
    """
    import healpy as hp

    order = healpix_core_order(tile_size_arcmin)
    nside_core = 2**order
    if pixel_arcmin is None:
        pixel_arcmin = hp.nside2resol(sky.nside, arcmin=True) / 2.0
    maps = np.where(sky.maps == hp.UNSEEN, np.nan, sky.maps).astype(np.float64)
    cores: Sequence[int]
    if region is None:
        valid = np.all(np.isfinite(maps), axis=0).astype(np.float64)
        coverage = hp.ud_grade(valid, nside_core, order_in="RING", order_out="NESTED")
        cores = [int(i) for i in np.flatnonzero(coverage > 0)]
    else:
        cores = region
    half_width = math.degrees(hp.max_pixrad(nside_core)) * 60.0 + margin_arcmin
    npix = int(math.ceil(2 * half_width / pixel_arcmin))
    tiles: list[Tile] = []
    for ipix in cores:
        ra0, dec0 = hp.pix2ang(nside_core, int(ipix), nest=True, lonlat=True)
        wcs = portable_wcs(tan_wcs(float(ra0), float(dec0), pixel_arcmin, npix))
        yy, xx = np.mgrid[0:npix, 0:npix]
        ra, dec = wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
        nearest = hp.ang2pix(sky.nside, ra, dec, lonlat=True)
        bands = []
        for band_map in maps:
            values = hp.get_interp_val(np.nan_to_num(band_map), ra, dec, lonlat=True)
            values[~np.isfinite(band_map[nearest])] = np.nan
            bands.append(values.reshape(npix, npix))
        tiles.append(
            Tile(
                tile_id=len(tiles),
                maps=np.asarray(bands, dtype=np.float32),
                wcs=wcs,
                bands=sky.bands,
                core=HealpixCore(order, int(ipix)),
                native_pixel_arcmin=hp.nside2resol(sky.nside, arcmin=True),
            )
        )
    return tiles
