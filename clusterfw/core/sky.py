"""The sky data model: bands, flat-sky and HEALPix multi-band maps, and the tiles finders see.

All map values are in µK_CMB (thermodynamic temperature fluctuation); masked pixels are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # astropy.wcs is imported lazily: plugin discovery must stay fast
    from astropy.wcs import WCS

    from clusterfw.core.layers.cutout import LayerCutout


def _pixel_scale_arcmin(wcs: WCS) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 60.0)


@dataclass(frozen=True)
class Band:
    """One frequency band of a sky.

    Parameters
    ----------
    name : str
        Short label, e.g. ``"f150"``.
    freq_ghz : float
        Effective frequency in GHz.
    beam_fwhm_arcmin : float
        FWHM of the Gaussian beam in arcmin.
    noise_uk_arcmin : float or None
        White-noise depth in µK_CMB-arcmin, if known.
    """

    name: str
    freq_ghz: float
    beam_fwhm_arcmin: float
    noise_uk_arcmin: float | None = None


@dataclass(frozen=True)
class InputFile:
    """An input file and its sha256, recorded in catalogue provenance."""

    path: str
    sha256: str
    band: str = ""


@dataclass(frozen=True)
class PixelBoxCore:
    """A tile core given as a half-open pixel box ``[y0, y1) x [x0, x1)`` of the parent map.

    Pixel ``i`` covers ``[i - 0.5, i + 0.5)`` in the parent's 0-based pixel coordinates, so the
    cores of a tiling are disjoint and cover the map.
    """

    parent_wcs: WCS
    y0: int
    y1: int
    x0: int
    x1: int

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Boolean mask of the positions (degrees) inside the core."""
        x, y = self.parent_wcs.world_to_pixel_values(np.asarray(ra), np.asarray(dec))
        x = np.asarray(x)
        y = np.asarray(y)
        return (
            (y >= self.y0 - 0.5) & (y < self.y1 - 0.5) & (x >= self.x0 - 0.5) & (x < self.x1 - 0.5)
        )


@dataclass(frozen=True)
class HealpixCore:
    """A tile core given as one nested HEALPix pixel at ``order``."""

    order: int
    ipix: int

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Boolean mask of the positions (degrees) inside the core."""
        import healpy as hp

        pix = hp.ang2pix(2**self.order, np.asarray(ra), np.asarray(dec), nest=True, lonlat=True)
        return np.asarray(pix == self.ipix)


@dataclass
class Tile:
    """A rectangular piece of sky, with margin, handed to finders.

    Finders look at all of ``maps`` but keep only candidates for which :meth:`in_core` is true,
    so the candidates of a tiling can be concatenated without de-duplication.

    ``maps``, ``wcs`` and ``bands`` are the tile's primary layer (its ``mm`` layer when the
    finder uses one, else its first layer); :attr:`layers` holds a
    :class:`~clusterfw.core.layers.cutout.LayerCutout` of every layer the finder declared in
    ``requires``, each at its own resolution (:meth:`layer` picks one by name or kind).

    Attributes
    ----------
    tile_id : int
        Index of the tile in its tiling.
    maps : numpy.ndarray
        Array of shape ``(n_band, ny, nx)`` in µK_CMB, NaN where masked.
    wcs : astropy.wcs.WCS
        Celestial WCS of the tile pixels.
    bands : tuple of Band
        The bands, in the order of ``maps``.
    core : PixelBoxCore or HealpixCore
        The region of sky this tile owns.
    layers : mapping of str to LayerCutout
        Cutouts of the layers this tile carries, by layer name (empty for tiles of an
        in-memory :class:`Sky`: :meth:`layer` then offers ``maps`` as the ``mm`` layer).
    native_pixel_arcmin : float or None
        Resolution of the source pixels when ``maps`` were interpolated from a coarser
        pixelisation (HEALPix), else None: ``maps`` hold no information above
        ``pi / native_pixel_arcmin`` (see ``LayerCutout.native_pixel_arcmin``).
    """

    tile_id: int
    maps: np.ndarray
    wcs: WCS
    bands: tuple[Band, ...]
    core: PixelBoxCore | HealpixCore
    layers: Mapping[str, LayerCutout] = field(default_factory=dict)
    native_pixel_arcmin: float | None = None

    def layer(self, name_or_kind: str) -> LayerCutout:
        """The cutout of the layer called ``name_or_kind``, else the first of that kind.

        Raises
        ------
        KeyError
            Naming the layers the tile has.
        """
        if not self.layers and name_or_kind == "mm":
            return self._maps_cutout()
        if name_or_kind in self.layers:
            return self.layers[name_or_kind]
        for cutout in self.layers.values():
            if cutout.kind == name_or_kind:
                return cutout
        have = ", ".join(f"{k} ({v.kind})" for k, v in self.layers.items()) or "mm"
        raise KeyError(f"tile {self.tile_id} has no layer {name_or_kind!r} (has {have})")

    def _maps_cutout(self) -> LayerCutout:
        from clusterfw.core.layers.cutout import LayerCutout
        from clusterfw.core.layers.model import MmBand

        facts: tuple[Any, ...] = tuple(
            MmBand(b.name, b.freq_ghz, b.beam_fwhm_arcmin, b.noise_uk_arcmin) for b in self.bands
        )
        return LayerCutout("mm", "mm", "uK_CMB", facts, self.maps, self.wcs)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the tile."""
        return self.maps.shape[1], self.maps.shape[2]

    @property
    def pixel_scale_arcmin(self) -> float:
        """Pixel side at the reference point, in arcmin (pixels are assumed square)."""
        return _pixel_scale_arcmin(self.wcs)

    @property
    def valid(self) -> np.ndarray:
        """Boolean ``(ny, nx)`` mask: True where every band has a finite value."""
        return np.all(np.isfinite(self.maps), axis=0)

    def pixel_to_world(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-based pixel coordinates to (ra, dec) in degrees."""
        ra, dec = self.wcs.pixel_to_world_values(np.asarray(x, float), np.asarray(y, float))
        return np.asarray(ra) % 360.0, np.asarray(dec)

    def world_to_pixel(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ra, dec) in degrees to 0-based pixel coordinates ``(x, y)``."""
        x, y = self.wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
        return np.asarray(x), np.asarray(y)

    def in_core(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Boolean mask of the positions this tile owns."""
        return self.core.contains(ra, dec)

    def band_index(self, name: str) -> int:
        """Index of the band called ``name``."""
        for i, band in enumerate(self.bands):
            if band.name == name:
                return i
        raise KeyError(name)


@dataclass
class Sky:
    """A multi-band flat-sky map on one celestial WCS.

    Attributes
    ----------
    maps : numpy.ndarray
        ``(n_band, ny, nx)`` float32 in µK_CMB; NaN marks masked pixels.
    wcs : astropy.wcs.WCS
        2-D celestial WCS shared by all bands.
    bands : tuple of Band
    inputs : tuple of InputFile
        The files the sky was read from (empty for simulated skies held in memory).
    """

    maps: np.ndarray
    wcs: WCS
    bands: tuple[Band, ...]
    inputs: tuple[InputFile, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.maps.ndim != 3 or self.maps.shape[0] != len(self.bands):
            raise ValueError(
                f"maps must have shape (n_band={len(self.bands)}, ny, nx), got {self.maps.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.maps.shape[1], self.maps.shape[2]

    @property
    def pixel_scale_arcmin(self) -> float:
        """Pixel side at the reference point, in arcmin."""
        return _pixel_scale_arcmin(self.wcs)

    @property
    def area_deg2(self) -> float:
        """Approximate area of the unmasked pixels in square degrees."""
        valid = np.all(np.isfinite(self.maps), axis=0)
        return float(valid.sum() * (self.pixel_scale_arcmin / 60.0) ** 2)

    def tiles(self, tile_size_arcmin: float = 240.0, margin_arcmin: float = 20.0) -> list[Tile]:
        """Cut the map into overlapping tiles with disjoint cores.

        Parameters
        ----------
        tile_size_arcmin : float
            Side of a tile core. Maps smaller than this give one tile.
        margin_arcmin : float
            Extra border around each core (clipped at the map edge).

        Returns
        -------
        list of Tile
        """
        from clusterfw.core.tiling import flat_tiles

        return flat_tiles(self, tile_size_arcmin, margin_arcmin)


@dataclass
class HealpixSky:
    """A multi-band HEALPix sky (RING ordering) in µK_CMB; ``hp.UNSEEN`` / NaN are masked.

    Finders never see HEALPix pixels directly: :meth:`tiles` projects the sky onto gnomonic
    (TAN) tiles whose cores are nested HEALPix pixels of a coarse order.
    """

    maps: np.ndarray
    bands: tuple[Band, ...]
    inputs: tuple[InputFile, ...] = field(default=())

    @property
    def nside(self) -> int:
        """HEALPix Nside of the maps."""
        import healpy as hp

        return int(hp.npix2nside(self.maps.shape[1]))

    def tiles(
        self,
        tile_size_arcmin: float = 240.0,
        margin_arcmin: float = 20.0,
        pixel_arcmin: float | None = None,
        region: Sequence[int] | None = None,
    ) -> list[Tile]:
        """Project the sky onto TAN tiles whose cores are nested HEALPix pixels.

        Parameters
        ----------
        tile_size_arcmin : float
            Approximate core size; the HEALPix core order is the one whose pixels are closest.
        margin_arcmin : float
            Border around each core.
        pixel_arcmin : float, optional
            Tile pixel size; defaults to half the HEALPix resolution.
        region : sequence of int, optional
            Only these core pixels (nested, at the chosen order).
        """
        from clusterfw.core.tiling import healpix_tiles

        return healpix_tiles(self, tile_size_arcmin, margin_arcmin, pixel_arcmin, region)
