"""Pixelisations of a layer and the file entries they are made of.

- :class:`FlatImage`: one file per band, every band on the same flat WCS grid (today's mm
  maps). Cutouts are exact pixel sections of that grid.
- :class:`Mosaic`: many files per band (survey coadd tiles, pointed fields), each with its own
  WCS. When all files share one projection and differ only by whole-pixel ``CRPIX`` shifts (an
  LSST tract, a CAR survey split in pieces) cutouts are exact copies on that common grid;
  otherwise (DES coadd tiles: one tangent point per tile) they are resampled bilinearly onto a
  TAN grid at the layer's own pixel scale.
- :class:`HealpixMap`: one healpy FITS map per band, read by region.

WCS are carried as FITS header strings (small, picklable); :func:`wcs_from_header` turns them
into cached :class:`astropy.wcs.WCS` objects.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from astropy.wcs import WCS


@lru_cache(maxsize=4096)
def wcs_from_header(header: str) -> WCS:
    """A celestial :class:`~astropy.wcs.WCS` from a header string (cached; do not mutate)."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(fits.Header.fromstring(header), naxis=2).celestial


def wcs_to_header(wcs: WCS) -> str:
    """The header string of a celestial WCS (the inverse of :func:`wcs_from_header`)."""
    return wcs.celestial.to_header(relax=True).tostring()


def pixel_scale_arcmin(wcs: WCS) -> float:
    """Mean pixel side at the reference point, arcmin."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 60.0)


def grid_offset(a: WCS, b: WCS) -> tuple[int, int] | None:
    """Whole-pixel offset ``(dx, dy)`` with ``pixel_a = pixel_b + (dx, dy)``, if any.

    Two grids are shifted copies of each other when they share the projection, reference
    value and pixel matrix and their ``CRPIX`` differ by whole pixels; otherwise None.
    """
    wa, wb = a.wcs, b.wcs
    if list(wa.ctype) != list(wb.ctype):
        return None
    if not np.allclose(wa.crval, wb.crval, rtol=0, atol=1e-10):
        return None
    if not np.allclose(a.pixel_scale_matrix, b.pixel_scale_matrix, rtol=1e-9, atol=1e-14):
        return None
    if a.sip is not None or b.sip is not None:
        return None
    shift = np.asarray(wa.crpix) - np.asarray(wb.crpix)
    rounded = np.round(shift)
    if not np.allclose(shift, rounded, rtol=0, atol=1e-6):
        return None
    return int(rounded[0]), int(rounded[1])


@dataclass(frozen=True)
class ImageFile:
    """A flat image in one FITS file, described by its header only.

    Parameters
    ----------
    path : str
        The file (a ``.fits.gz`` is read through a decompressed cache copy, see
        :mod:`clusterfw.core.layers.reading`).
    hdu : int
        Index of the image HDU.
    shape : tuple of int
        ``(ny, nx)``.
    wcs_header : str
        Celestial WCS as a header string.
    scale : float
        Factor from stored values to the layer kind's unit.
    compression : str
        ``"none"``, ``"tile"`` (RICE etc. tile compression, read per tile) or ``"gzip"``.
    center : tuple of float
        ``(ra, dec)`` of the image centre, degrees.
    radius_deg : float
        Angular distance from the centre to the farthest corner, degrees.
    exposure_hdu, background_hdu : int or None
        X-ray extensions (same grid as the image).
    exposure_s : float or None
        Uniform exposure (``EXPOSURE`` keyword), seconds.
    psf_fwhm_arcsec : float or None
        This file's PSF (optical, X-ray).
    """

    path: str
    hdu: int
    shape: tuple[int, int]
    wcs_header: str
    scale: float
    compression: str
    center: tuple[float, float]
    radius_deg: float
    exposure_hdu: int | None = None
    background_hdu: int | None = None
    exposure_s: float | None = None
    psf_fwhm_arcsec: float | None = None

    @property
    def wcs(self) -> WCS:
        """The file's celestial WCS (cached)."""
        return wcs_from_header(self.wcs_header)

    @property
    def pixel_arcmin(self) -> float:
        """Pixel side, arcmin."""
        return pixel_scale_arcmin(self.wcs)


@dataclass(frozen=True)
class HealpixFile:
    """A healpy FITS map (binary table) described by its header only.

    Parameters
    ----------
    path : str
    hdu : int
        Index of the binary-table HDU.
    nside : int
    nest : bool
        NESTED ordering (else RING).
    scale : float
        Factor from stored values to the layer kind's unit.
    exposure_s : float or None
        Uniform exposure for X-ray maps.
    """

    path: str
    hdu: int
    nside: int
    nest: bool
    scale: float
    exposure_s: float | None = None

    @property
    def pixel_arcmin(self) -> float:
        """HEALPix resolution (square root of the pixel area), arcmin."""
        return math.degrees(math.sqrt(4 * math.pi / (12 * self.nside**2))) * 60.0


@dataclass(frozen=True)
class FlatImage:
    """One file per band, all bands on one grid.

    Parameters
    ----------
    wcs_header : str
    shape : tuple of int
        ``(ny, nx)``.
    """

    wcs_header: str
    shape: tuple[int, int]

    @property
    def wcs(self) -> WCS:
        """The shared celestial WCS."""
        return wcs_from_header(self.wcs_header)

    @property
    def pixel_arcmin(self) -> float:
        """Pixel side, arcmin."""
        return pixel_scale_arcmin(self.wcs)


@dataclass(frozen=True)
class Mosaic:
    """Many files per band, each with its own WCS.

    Parameters
    ----------
    pixel_arcmin : float
        The layer's own resolution: the median pixel side of its files.
    common_wcs_header : str or None
        When every file is a whole-pixel shift of one grid, that grid (the first file's);
        cutouts are then exact copies on it.
    """

    pixel_arcmin: float
    common_wcs_header: str | None = None


@dataclass(frozen=True)
class HealpixMap:
    """One HEALPix map per band, all at one Nside.

    Parameters
    ----------
    nside : int
    """

    nside: int

    @property
    def pixel_arcmin(self) -> float:
        """HEALPix resolution (``healpy.nside2resol``), arcmin."""
        import healpy as hp

        return float(hp.nside2resol(self.nside, arcmin=True))

    @property
    def cutout_pixel_arcmin(self) -> float:
        """Pixel side of the TAN grids cutouts are made on: half the resolution."""
        return self.pixel_arcmin / 2.0


Pixelisation = FlatImage | Mosaic | HealpixMap


def image_center_radius(wcs: WCS, shape: tuple[int, int]) -> tuple[tuple[float, float], float]:
    """Centre ``(ra, dec)`` and radius (deg) to the farthest corner/edge of an image."""
    from clusterfw.core.layers.footprint import angular_distance_deg

    ny, nx = shape
    xs = np.array([(nx - 1) / 2.0, -0.5, nx - 0.5, nx - 0.5, -0.5, (nx - 1) / 2.0, -0.5])
    ys = np.array([(ny - 1) / 2.0, -0.5, -0.5, ny - 0.5, ny - 0.5, -0.5, (ny - 1) / 2.0])
    ra, dec = wcs.pixel_to_world_values(xs, ys)
    ra, dec = np.asarray(ra), np.asarray(dec)
    radius = float(np.max(angular_distance_deg(ra[0], dec[0], ra[1:], dec[1:])))
    return (float(ra[0]) % 360.0, float(dec[0])), radius
