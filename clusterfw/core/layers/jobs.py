"""Tile jobs: a core, a margin per layer, and the layers to read — never pixel arrays.

A :class:`TileJob` pickles to a few kilobytes whatever the size of the maps behind it, so it
can run in another process or on another machine; :meth:`TileJob.read` reads only the pixels
of its core plus that layer's margin, at the layer's own resolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from clusterfw.core.layers.cutout import LayerCutout, read_cutout
from clusterfw.core.layers.footprint import BoxRegion, Footprint, TanRegion
from clusterfw.core.layers.model import Layer, LayerSky
from clusterfw.core.layers.pixelisation import FlatImage, pixel_scale_arcmin, wcs_from_header

if TYPE_CHECKING:
    from astropy.wcs import WCS


@dataclass(frozen=True)
class BoxCore:
    """A core given as a half-open pixel box ``[y0, y1) x [x0, x1)`` of a reference grid.

    Pixel ``i`` covers ``[i - 0.5, i + 0.5)``, so the cores of a tiling are disjoint.
    """

    wcs_header: str
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def wcs(self) -> WCS:
        """The reference grid."""
        return wcs_from_header(self.wcs_header)

    def region(self, margin_arcmin: float) -> BoxRegion:
        """The core grown by ``ceil(margin / pixel)`` pixels on every side (not clipped)."""
        m = int(math.ceil(margin_arcmin / pixel_scale_arcmin(self.wcs)))
        return BoxRegion(self.wcs_header, self.y0 - m, self.y1 + m, self.x0 - m, self.x1 + m)

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Boolean mask of the positions (degrees) inside the core."""
        x, y = self.wcs.world_to_pixel_values(np.asarray(ra), np.asarray(dec))
        x, y = np.asarray(x), np.asarray(y)
        return (
            (y >= self.y0 - 0.5) & (y < self.y1 - 0.5) & (x >= self.x0 - 0.5) & (x < self.x1 - 0.5)
        )


@dataclass(frozen=True)
class HealpixCore:
    """A core given as one nested HEALPix pixel at ``order``."""

    order: int
    ipix: int

    def region(self, margin_arcmin: float) -> TanRegion:
        """A square around the pixel centre of half-width max pixel radius + margin."""
        import healpy as hp

        ra0, dec0 = hp.pix2ang(2**self.order, self.ipix, nest=True, lonlat=True)
        half = math.degrees(hp.max_pixrad(2**self.order)) * 60.0 + margin_arcmin
        return TanRegion(float(ra0), float(dec0), half)

    def contains(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Boolean mask of the positions (degrees) inside the core."""
        import healpy as hp

        pix = hp.ang2pix(2**self.order, np.asarray(ra), np.asarray(dec), nest=True, lonlat=True)
        return np.asarray(pix == self.ipix)


Core = BoxCore | HealpixCore


@dataclass(frozen=True)
class TileJob:
    """One tile's work: a core, the layers it reads, and each layer's margin.

    Parameters
    ----------
    tile_id : int
    core : BoxCore or HealpixCore
    layers : tuple of Layer
        The layers the job's plugins need (without footprints).
    margins : tuple of (str, float)
        Margin in arcmin per layer name.
    """

    tile_id: int
    core: Core
    layers: tuple[Layer, ...]
    margins: tuple[tuple[str, float], ...]

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the layers this job can read."""
        return tuple(layer.name for layer in self.layers)

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (KeyError naming the available ones)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"tile job has no layer {name!r} (has {', '.join(self.layer_names)})")

    def region(self, name: str) -> BoxRegion | TanRegion:
        """The region read from layer ``name``: the core plus that layer's margin."""
        return self.core.region(dict(self.margins).get(name, 0.0))

    def read(self, layer_name: str, bands: Sequence[str] | None = None) -> LayerCutout:
        """Read a layer over the core plus its margin, at the layer's own resolution.

        Parameters
        ----------
        layer_name : str
        bands : sequence of str, optional
            Band names (all by default).

        Returns
        -------
        LayerCutout
        """
        return read_cutout(self.layer(layer_name), self.region(layer_name), bands)

    def in_core(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Boolean mask of the positions this job owns."""
        return self.core.contains(ra, dec)


def _block_edges(n: int, block: int) -> np.ndarray:
    count = max(1, math.ceil(n / max(block, 1)))
    return np.linspace(0, n, count + 1).round().astype(int)


def healpix_core_order(tile_size_arcmin: float) -> int:
    """The nested HEALPix order whose pixel side is closest to ``tile_size_arcmin``."""
    import healpy as hp

    sides = [hp.nside2resol(2**o, arcmin=True) for o in range(0, 14)]
    return int(np.argmin([abs(math.log(s / tile_size_arcmin)) for s in sides]))


def _at_order(footprint: Footprint, order: int) -> np.ndarray:
    if order <= footprint.order:
        return footprint.degrade(order).pixels
    shift = 2 * (order - footprint.order)
    children = (footprint.pixels[:, None] << shift) + np.arange(1 << shift)[None, :]
    return np.sort(children.ravel())


def plan_tile_jobs(
    sky: LayerSky,
    margins: Mapping[str, float],
    tile_size_arcmin: float = 240.0,
    reference: str | None = None,
) -> list[TileJob]:
    """Disjoint cores covering the union footprint of the layers in ``margins``.

    Parameters
    ----------
    sky : LayerSky
    margins : mapping of str to float
        The layers the plugins need, each with the largest margin (arcmin) asked for it.
    tile_size_arcmin : float
        Core size.
    reference : str, optional
        A :class:`FlatImage` layer whose grid the cores are pixel boxes of. By default, a
        sky whose only needed layer is a flat image uses it (today's tiling); any other sky
        gets nested HEALPix cores.

    Returns
    -------
    list of TileJob
    """
    names = list(margins)
    layers = tuple(sky[n].without_footprint() for n in names)
    margin_items = tuple((n, float(margins[n])) for n in names)
    if reference is None and len(names) == 1 and isinstance(sky[names[0]].pixelisation, FlatImage):
        reference = names[0]
    jobs: list[TileJob] = []
    if reference is not None:
        pix = sky[reference].pixelisation
        if not isinstance(pix, FlatImage):
            raise ValueError(f"reference layer {reference!r} is not a single flat image")
        block = int(round(tile_size_arcmin / pix.pixel_arcmin))
        y_edges, x_edges = _block_edges(pix.shape[0], block), _block_edges(pix.shape[1], block)
        for j in range(len(y_edges) - 1):
            for i in range(len(x_edges) - 1):
                core = BoxCore(
                    pix.wcs_header,
                    int(y_edges[j]),
                    int(y_edges[j + 1]),
                    int(x_edges[i]),
                    int(x_edges[i + 1]),
                )
                jobs.append(TileJob(len(jobs), core, layers, margin_items))
        return jobs
    order = healpix_core_order(tile_size_arcmin)
    for ipix in _at_order(sky.union_footprint(names), order):
        jobs.append(TileJob(len(jobs), HealpixCore(order, int(ipix)), layers, margin_items))
    return jobs
