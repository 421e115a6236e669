"""Footprints (where a layer has data) and regions (what a tile job reads).

A :class:`Footprint` is a set of nested HEALPix pixels at a coarse order (a simple MOC):
unions and overlap tests are set operations. File footprints are found conservatively
(``query_polygon(..., inclusive=True)`` on the image outline), HEALPix-map footprints from the
non-``UNSEEN`` pixels degraded to the coarse order, so "no overlap" is never claimed wrongly.

A region is the sky a tile job reads from one layer: the core plus that layer's margin.
:class:`BoxRegion` is a pixel box of a flat reference grid (cores of a single flat map, as
today), :class:`TanRegion` a square around a nested-HEALPix core centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clusterfw.core.layers.pixelisation import wcs_from_header

if TYPE_CHECKING:
    from astropy.wcs import WCS

FOOTPRINT_ORDER = 8
"""Default HEALPix order of footprints (pixels of about 13.7 arcmin)."""


def angular_distance_deg(
    ra1: float | np.ndarray,
    dec1: float | np.ndarray,
    ra2: float | np.ndarray,
    dec2: float | np.ndarray,
) -> np.ndarray:
    """Great-circle distance in degrees (haversine)."""
    r1, d1, r2, d2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


@dataclass(frozen=True, eq=False)
class Footprint:
    """A set of nested HEALPix pixels at ``order``.

    Parameters
    ----------
    order : int
    pixels : numpy.ndarray
        Sorted unique int64 nested pixel indices.
    """

    order: int
    pixels: np.ndarray

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Footprint)
            and self.order == other.order
            and np.array_equal(self.pixels, other.pixels)
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def empty(cls, order: int = FOOTPRINT_ORDER) -> Footprint:
        """A footprint with no pixels."""
        return cls(order, np.zeros(0, dtype=np.int64))

    @classmethod
    def from_polygon(
        cls, ra: np.ndarray, dec: np.ndarray, order: int = FOOTPRINT_ORDER
    ) -> Footprint:
        """Pixels touched by a convex spherical polygon given by its vertices (degrees)."""
        import healpy as hp

        vec = hp.ang2vec(np.asarray(ra, float), np.asarray(dec, float), lonlat=True)
        pix = hp.query_polygon(2**order, vec, inclusive=True, nest=True)
        return cls(order, np.unique(np.asarray(pix, dtype=np.int64)))

    @classmethod
    def from_image(
        cls, wcs: WCS, shape: tuple[int, int], order: int = FOOTPRINT_ORDER
    ) -> Footprint:
        """Footprint of a flat image, from points sampled every quarter footprint pixel.

        The samples include the image's outer edges, so every footprint pixel the image covers
        more than a sliver of is found; the cost is a few ``ang2pix`` calls per footprint
        pixel, whatever the image size, done in blocks so memory stays bounded.
        """
        import healpy as hp

        ny, nx = shape
        step_deg = math.degrees(hp.nside2resol(2**order)) / 4.0
        pix_deg = max(float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))), 1e-12)
        step = max(1.0, step_deg / pix_deg)
        xs = np.linspace(-0.5, nx - 0.5, max(2, math.ceil(nx / step) + 1))
        ys = np.linspace(-0.5, ny - 0.5, max(2, math.ceil(ny / step) + 1))
        # rows of samples in blocks of ~32k points: memory does not follow the image size
        rows = max(1, (1 << 15) // xs.size)
        found = []
        for start in range(0, ys.size, rows):
            gx, gy = np.meshgrid(xs, ys[start : start + rows])
            ra, dec = wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
            ra, dec = np.asarray(ra), np.asarray(dec)
            ok = np.isfinite(ra) & np.isfinite(dec)
            pix = hp.ang2pix(2**order, ra[ok], dec[ok], nest=True, lonlat=True)
            found.append(np.unique(pix.astype(np.int64)))
        return cls(order, np.unique(np.concatenate(found)))

    @classmethod
    def union_all(cls, prints: Sequence[Footprint], order: int | None = None) -> Footprint:
        """Union of footprints, at the coarsest order among them (or ``order``)."""
        if not prints:
            return cls.empty(order if order is not None else FOOTPRINT_ORDER)
        target = min(p.order for p in prints) if order is None else order
        arrays = [p.degrade(target).pixels for p in prints]
        return cls(target, np.unique(np.concatenate(arrays)))

    def degrade(self, order: int) -> Footprint:
        """The same footprint at a coarser (or equal) order."""
        if order > self.order:
            raise ValueError(f"cannot degrade order {self.order} to finer order {order}")
        if order == self.order:
            return self
        return Footprint(order, np.unique(self.pixels >> (2 * (self.order - order))))

    def union(self, other: Footprint) -> Footprint:
        """Union with another footprint."""
        return Footprint.union_all([self, other])

    def overlaps(self, other: Footprint) -> bool:
        """Whether the two footprints share a pixel (at the coarser of their orders)."""
        order = min(self.order, other.order)
        a, b = self.degrade(order).pixels, other.degrade(order).pixels
        return bool(np.intersect1d(a, b, assume_unique=True).size)

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Boolean mask of positions (degrees) inside the footprint."""
        import healpy as hp

        pix = hp.ang2pix(2**self.order, np.asarray(ra), np.asarray(dec), nest=True, lonlat=True)
        return np.isin(pix, self.pixels)

    @property
    def area_deg2(self) -> float:
        """Area of the footprint's pixels, deg²."""
        return float(self.pixels.size * 41252.96124941928 / (12 * 4**self.order))

    def __len__(self) -> int:
        return int(self.pixels.size)


def tan_wcs(ra0: float, dec0: float, pixel_arcmin: float, nx: int, ny: int | None = None) -> WCS:
    """A gnomonic (TAN) WCS of ``ny`` x ``nx`` pixels centred on (ra0, dec0).

    Identical to :func:`clusterfw.core.tiling.tan_wcs` for square grids, so HEALPix cutouts
    match today's HEALPix tiles pixel for pixel.
    """
    from astropy.wcs import WCS

    ny = nx if ny is None else ny
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cdelt = [-pixel_arcmin / 60.0, pixel_arcmin / 60.0]
    w.wcs.radesys = "ICRS"
    return w


@dataclass(frozen=True)
class BoxRegion:
    """A half-open pixel box ``[y0, y1) x [x0, x1)`` of a flat grid (may exceed the grid).

    Parameters
    ----------
    wcs_header : str
        The grid's celestial WCS.
    y0, y1, x0, x1 : int
    """

    wcs_header: str
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def wcs(self) -> WCS:
        """The grid's WCS."""
        return wcs_from_header(self.wcs_header)

    def outline(self, per_edge: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Points along the box's outer pixel edges, as (ra, dec) degrees."""
        t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
        xa, xb, ya, yb = self.x0 - 0.5, self.x1 - 0.5, self.y0 - 0.5, self.y1 - 0.5
        xs = np.concatenate(
            [xa + t * (xb - xa), np.full_like(t, xb), xb - t * (xb - xa), [xa] * t.size]
        )
        ys = np.concatenate(
            [np.full_like(t, ya), ya + t * (yb - ya), np.full_like(t, yb), yb - t * (yb - ya)]
        )
        ra, dec = self.wcs.pixel_to_world_values(xs, ys)
        return np.asarray(ra) % 360.0, np.asarray(dec)

    def center(self) -> tuple[float, float]:
        """(ra, dec) of the box centre, degrees."""
        ra, dec = self.wcs.pixel_to_world_values(
            (self.x0 + self.x1 - 1) / 2, (self.y0 + self.y1 - 1) / 2
        )
        return float(ra) % 360.0, float(dec)


@dataclass(frozen=True)
class TanRegion:
    """A square of half-width ``half_width_arcmin`` around (ra0, dec0), on a TAN projection.

    Parameters
    ----------
    ra0, dec0 : float
        Centre, degrees.
    half_width_arcmin : float
    """

    ra0: float
    dec0: float
    half_width_arcmin: float

    def grid(self, pixel_arcmin: float) -> tuple[WCS, int, int]:
        """The TAN grid covering the square at ``pixel_arcmin``: ``(wcs, ny, nx)``.

        ``npix = ceil(2 * half_width / pixel)``, as today's HEALPix tiles.
        """
        npix = int(math.ceil(2 * self.half_width_arcmin / pixel_arcmin))
        return tan_wcs(self.ra0, self.dec0, pixel_arcmin, npix), npix, npix

    def outline(self, per_edge: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Points along the square's edge, as (ra, dec) degrees."""
        # a 1-arcsec-pixel grid only to place the outline; no pixels are made
        pixel = 1.0 / 60.0
        npix = int(math.ceil(2 * self.half_width_arcmin / pixel))
        box = BoxRegion(
            tan_wcs(self.ra0, self.dec0, pixel, npix).to_header(relax=True).tostring(),
            0,
            npix,
            0,
            npix,
        )
        return box.outline(per_edge)

    def center(self) -> tuple[float, float]:
        """(ra, dec) of the centre, degrees."""
        return self.ra0 % 360.0, self.dec0


Region = BoxRegion | TanRegion


def region_radius_deg(region: Region) -> float:
    """Distance from a region's centre to its farthest outline point, degrees."""
    ra0, dec0 = region.center()
    ra, dec = region.outline(4)
    return float(np.max(angular_distance_deg(ra0, dec0, ra, dec)))
