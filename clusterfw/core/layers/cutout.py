"""Cutouts: a layer's pixels over a region, at the layer's own resolution.

How the output grid is chosen (``grid`` not given):

- :class:`FlatImage`: a pixel section of the layer's own grid (clipped at the image edge) —
  for a :class:`BoxRegion` on that same grid this is exactly today's tile slice.
- :class:`Mosaic` whose files are whole-pixel shifts of one grid: a section of that common
  grid, filled by exact copies from every file that overlaps (the first file in the band's
  order that covers a pixel wins; NaN where none does).
- any other :class:`Mosaic`: a TAN grid centred on the region at the layer's median pixel
  scale; every overlapping file is resampled onto it bilinearly (``scipy.ndimage``; the
  ``reproject`` package would do the same ``reproject_interp`` step but pulls in dask, zarr and
  dask-image, so it was not added). Bilinear resampling keeps surface brightness (nanomaggies
  or counts per pixel of the same size), not integrated flux exactly.
- :class:`HealpixMap`: a TAN grid at half the HEALPix resolution (``npix = ceil(2 *
  half-width / pixel)``), values interpolated bilinearly from the 4 nearest HEALPix pixels,
  masked where the nearest pixel is unseen — the same numbers as today's HEALPix tiles.

With ``grid`` given, every kind is resampled (or copied, where the grids align) onto it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterfw.core.layers.footprint import (
    BoxRegion,
    Region,
    TanRegion,
    angular_distance_deg,
    region_radius_deg,
    tan_wcs,
)
from clusterfw.core.layers.model import Layer, LayerBand, get_kind
from clusterfw.core.layers.pixelisation import (
    FlatImage,
    HealpixFile,
    HealpixMap,
    ImageFile,
    Mosaic,
    grid_offset,
    wcs_from_header,
)
from clusterfw.core.layers.reading import read_healpix_pixels, read_section

if TYPE_CHECKING:
    from astropy.wcs import WCS


@dataclass
class LayerCutout:
    """A layer's pixels over a region.

    Attributes
    ----------
    layer : str
        Layer name.
    kind : str
        Layer kind.
    unit : str
        Unit of ``pixels`` (µK_CMB for mm, nanomaggy for optical, count for X-ray, Compton-y).
    bands : tuple
        Band facts, in the order of ``pixels``.
    pixels : numpy.ndarray
        ``(n_band, ny, nx)`` float32, NaN where there is no data.
    wcs : astropy.wcs.WCS
        Celestial WCS of the pixels.
    exposure, background : numpy.ndarray or None
        X-ray only: ``(n_band, ny, nx)`` float32 seconds and expected counts (background NaN
        where a file has none).
    native_pixel_arcmin : float or None
        Resolution of the source pixels when ``pixels`` were interpolated from a coarser
        pixelisation (HEALPix: its ``nside2resol``), else None. The cutout holds no information
        above the source's Nyquist wavenumber ``pi / native_pixel_arcmin``, and its noise is not
        stationary there; filters should not weight those modes.
    """

    layer: str
    kind: str
    unit: str
    bands: tuple[Any, ...]
    pixels: np.ndarray
    wcs: WCS
    exposure: np.ndarray | None = None
    background: np.ndarray | None = None
    native_pixel_arcmin: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[2])

    @property
    def valid(self) -> np.ndarray:
        """``(ny, nx)`` bool: every band has a finite value."""
        return np.all(np.isfinite(self.pixels), axis=0)

    @property
    def band_names(self) -> tuple[str, ...]:
        """Names of the bands, in order."""
        return tuple(str(b.name) for b in self.bands)

    def band_index(self, name: str) -> int:
        """Index of the band called ``name``."""
        return self.band_names.index(name)


def _bbox(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel box ``(y0, y1, x0, x1)`` of ``wcs`` holding the points (unclipped)."""
    x, y = wcs.world_to_pixel_values(ra, dec)
    x, y = np.asarray(x), np.asarray(y)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    x, y = x[ok], y[ok]
    return (
        math.floor(y.min() + 0.5),
        math.floor(y.max() + 0.5) + 1,
        math.floor(x.min() + 0.5),
        math.floor(x.max() + 0.5) + 1,
    )


def _clip(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    y0, y1, x0, x1 = box
    ny, nx = shape
    y0, x0 = max(0, y0), max(0, x0)
    return y0, max(y0, min(ny, y1)), x0, max(x0, min(nx, x1))


def _planes(layer: Layer) -> tuple[str, ...]:
    return ("data", *get_kind(layer.kind).extra_planes)


def _region_box(region: Region, wcs: WCS) -> tuple[int, int, int, int] | None:
    """The box of grid ``wcs`` covering a region (exact for a box on a shifted grid)."""
    if isinstance(region, BoxRegion):
        off = grid_offset(wcs, region.wcs)
        if off is not None:
            dx, dy = off
            return region.y0 + dy, region.y1 + dy, region.x0 + dx, region.x1 + dx
    ra, dec = region.outline()
    return _bbox(wcs, ra, dec)


def resample_grid(region: Region, pixel_arcmin: float) -> tuple[WCS, int, int]:
    """The TAN grid at ``pixel_arcmin`` covering a region: ``(wcs, ny, nx)``."""
    if isinstance(region, TanRegion):
        return region.grid(pixel_arcmin)
    ra0, dec0 = region.center()
    probe = tan_wcs(ra0, dec0, pixel_arcmin, 1)
    ra, dec = region.outline()
    x, y = probe.world_to_pixel_values(ra, dec)
    half_x = float(np.max(np.abs(x))) + 0.5
    half_y = float(np.max(np.abs(y))) + 0.5
    nx, ny = 2 * math.ceil(half_x), 2 * math.ceil(half_y)
    return tan_wcs(ra0, dec0, pixel_arcmin, nx, ny), ny, nx


def _flat_cutout(layer: Layer, bands: Sequence[LayerBand], region: Region):
    pix = layer.pixelisation
    assert isinstance(pix, FlatImage)
    box = _region_box(region, pix.wcs)
    y0, y1, x0, x1 = _clip(box, pix.shape) if box is not None else (0, 0, 0, 0)
    wcs = pix.wcs.slice((slice(y0, y1), slice(x0, x1)))
    planes: dict[str, list[np.ndarray]] = {p: [] for p in _planes(layer)}
    for band in bands:
        (file,) = band.files
        assert isinstance(file, ImageFile)
        for plane in planes:
            planes[plane].append(read_section(file, y0, y1, x0, x1, plane))
    return wcs, {p: np.stack(v) for p, v in planes.items()}


#: Target rows resampled at a time (bounds the memory of the coordinate arrays).
CHUNK_PIXELS = 1 << 20
#: Spacing (target pixels) of the nodes where the exact WCS transform is evaluated; between
#: them the (smooth) target-to-file pixel mapping is interpolated bilinearly.
MAP_NODE_STEP = 32
#: Largest interpolation error of the mapping (file pixels) accepted; above it, exact transforms.
MAP_MAX_ERROR_PIX = 1e-3


def _file_box_in_grid(
    file: ImageFile, grid_wcs: WCS, shape: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """The box of the target grid (``y0, y1, x0, x1``, clipped) that a file's outline covers."""
    fny, fnx = file.shape
    n = 65
    ex = np.linspace(-0.5, fnx - 0.5, n)
    ey = np.linspace(-0.5, fny - 0.5, n)
    xs = np.concatenate([ex, ex, np.full(n, -0.5), np.full(n, fnx - 0.5)])
    ys = np.concatenate([np.full(n, -0.5), np.full(n, fny - 0.5), ey, ey])
    ra, dec = file.wcs.pixel_to_world_values(xs, ys)
    box = _bbox(grid_wcs, np.asarray(ra), np.asarray(dec))
    if box is None:
        return None
    y0, y1, x0, x1 = box
    y0, y1, x0, x1 = _clip((y0 - 2, y1 + 2, x0 - 2, x1 + 2), shape)
    if y1 <= y0 or x1 <= x0:
        return None
    return y0, y1, x0, x1


class _PixelMap:
    """Target-grid pixel ``(x, y)`` → file pixel, over a box of the target grid.

    The exact transform (``grid_wcs`` to sky to ``file_wcs``) is evaluated on nodes every
    :data:`MAP_NODE_STEP` pixels (and on the box's last row and column) and interpolated
    bilinearly in between; if the interpolation misses the exact transform at the cell centres
    by more than :data:`MAP_MAX_ERROR_PIX`, every pixel is transformed exactly instead.
    """

    def __init__(self, grid_wcs: WCS, file_wcs: WCS, box: tuple[int, int, int, int]) -> None:
        self.grid_wcs, self.file_wcs = grid_wcs, file_wcs
        y0, y1, x0, x1 = box
        step = MAP_NODE_STEP
        self.ny_nodes = np.unique(np.append(np.arange(y0, y1, step), y1 - 1)).astype(float)
        self.nx_nodes = np.unique(np.append(np.arange(x0, x1, step), x1 - 1)).astype(float)
        gy, gx = np.meshgrid(self.ny_nodes, self.nx_nodes, indexing="ij")
        self.fx, self.fy = self._exact(gx, gy)
        self.interpolate = bool(np.isfinite(self.fx).all() and np.isfinite(self.fy).all())
        if self.interpolate and self.ny_nodes.size > 1 and self.nx_nodes.size > 1:
            my = 0.5 * (self.ny_nodes[:-1] + self.ny_nodes[1:])
            mx = 0.5 * (self.nx_nodes[:-1] + self.nx_nodes[1:])
            cx, cy = self._exact(*np.meshgrid(mx, my, indexing="xy"))
            ix, iy = self._interp(mx, my)
            err = max(float(np.max(np.abs(ix - cx))), float(np.max(np.abs(iy - cy))))
            self.interpolate = bool(err <= MAP_MAX_ERROR_PIX)

    def _exact(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ra, dec = self.grid_wcs.pixel_to_world_values(x, y)
        fx, fy = self.file_wcs.world_to_pixel_values(ra, dec)
        return np.asarray(fx, float), np.asarray(fy, float)

    def _interp(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear interpolation of the node values at the grid ``ys`` × ``xs``."""

        def weights(nodes: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if nodes.size == 1:
                return np.zeros(v.size, int), np.zeros(v.size)
            i = np.clip(np.searchsorted(nodes, v, side="right") - 1, 0, nodes.size - 2)
            return i, (v - nodes[i]) / (nodes[i + 1] - nodes[i])

        iy, ty = weights(self.ny_nodes, np.asarray(ys, float))
        ix, tx = weights(self.nx_nodes, np.asarray(xs, float))
        jy = np.minimum(iy + 1, self.ny_nodes.size - 1)
        jx = np.minimum(ix + 1, self.nx_nodes.size - 1)
        ty, tx = ty[:, None], tx[None, :]
        out = []
        for a in (self.fx, self.fy):
            top = a[iy][:, ix] * (1 - tx) + a[iy][:, jx] * tx
            bottom = a[jy][:, ix] * (1 - tx) + a[jy][:, jx] * tx
            out.append(top * (1 - ty) + bottom * ty)
        return out[0], out[1]

    def rows(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """File pixels ``(fx, fy)`` of target rows ``y0:y1``, columns ``x0:x1``."""
        ys, xs = np.arange(y0, y1, dtype=float), np.arange(x0, x1, dtype=float)
        if self.interpolate:
            return self._interp(xs, ys)
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        return self._exact(gx, gy)


def _fill_from_image(
    out: dict[str, np.ndarray],
    file: ImageFile,
    grid_wcs: WCS,
    maps: dict[tuple[str, tuple[int, int]], Any] | None = None,
) -> None:
    """Fill the NaN pixels of ``out`` (planes of one band) from one file.

    Files on a whole-pixel shift of the target grid are copied. Others are resampled
    bilinearly, only over the box of the target grid the file covers, in row chunks of
    :data:`CHUNK_PIXELS` (memory follows the chunk, not the tile), reading the file's section
    under that box once per plane. ``maps`` caches the pixel mapping of each file WCS (the
    files of the other bands at the same position share it).
    """
    ny, nx = out["data"].shape
    fny, fnx = file.shape
    off = grid_offset(grid_wcs, file.wcs)
    if off is not None:  # exact copy: target pixel = file pixel + off
        dx, dy = off
        ty0, ty1, tx0, tx1 = _clip((dy, dy + fny, dx, dx + fnx), (ny, nx))
        if ty1 <= ty0 or tx1 <= tx0:
            return
        hole = np.isnan(out["data"][ty0:ty1, tx0:tx1])
        if not hole.any():
            return
        for plane, arr in out.items():
            values = read_section(file, ty0 - dy, ty1 - dy, tx0 - dx, tx1 - dx, plane)
            arr[ty0:ty1, tx0:tx1][hole] = values[hole]
        return
    from scipy.ndimage import map_coordinates

    key = (file.wcs_header, file.shape)
    cached = maps.get(key) if maps is not None else None
    if cached is None:
        box = _file_box_in_grid(file, grid_wcs, (ny, nx))
        cached = (box, _PixelMap(grid_wcs, file.wcs, box) if box is not None else None)
        if maps is not None:
            maps[key] = cached
    box, pmap = cached
    if box is None or pmap is None:
        return
    gy0, gy1, gx0, gx1 = box
    if not np.isnan(out["data"][gy0:gy1, gx0:gx1]).any():
        return
    # the file section under the box (its corners and edge midpoints, plus a pixel)
    cy = np.array([gy0, gy0, gy1 - 1, gy1 - 1, gy0, gy1 - 1, (gy0 + gy1) // 2, (gy0 + gy1) // 2])
    cx = np.array([gx0, gx1 - 1, gx0, gx1 - 1, (gx0 + gx1) // 2, (gx0 + gx1) // 2, gx0, gx1 - 1])
    ex, ey = pmap._exact(cx.astype(float), cy.astype(float))
    if not (np.isfinite(ex).all() and np.isfinite(ey).all()):
        ex, ey = np.array([0.0, fnx - 1.0]), np.array([0.0, fny - 1.0])
    sy0, sy1, sx0, sx1 = _clip(
        (
            math.floor(ey.min()) - 2,
            math.floor(ey.max()) + 3,
            math.floor(ex.min()) - 2,
            math.floor(ex.max()) + 3,
        ),
        (fny, fnx),
    )
    if sy1 <= sy0 or sx1 <= sx0:
        return
    sections: dict[str, np.ndarray] = {}
    rows = max(1, CHUNK_PIXELS // max(1, gx1 - gx0))
    for r0 in range(gy0, gy1, rows):
        r1 = min(gy1, r0 + rows)
        hole = np.isnan(out["data"][r0:r1, gx0:gx1])
        if not hole.any():
            continue
        fx, fy = pmap.rows(r0, r1, gx0, gx1)
        inside = hole & (fx >= -0.5) & (fx < fnx - 0.5) & (fy >= -0.5) & (fy < fny - 0.5)
        if not inside.any():
            continue
        fx, fy = fx[inside], fy[inside]
        # the outer half pixel takes the edge value
        coords = np.vstack([np.clip(fy, 0, fny - 1) - sy0, np.clip(fx, 0, fnx - 1) - sx0])
        if (
            coords.min() < -1e-9
            or coords[0].max() > sy1 - sy0 - 1
            or coords[1].max() > sx1 - sx0 - 1
        ):
            sy0, sy1, sx0, sx1 = 0, fny, 0, fnx  # a rare curved edge: the whole file
            coords = np.vstack([np.clip(fy, 0, fny - 1), np.clip(fx, 0, fnx - 1)])
            sections.clear()
        for plane, arr in out.items():
            if plane not in sections:
                sections[plane] = read_section(file, sy0, sy1, sx0, sx1, plane)
            values = map_coordinates(
                sections[plane], coords, order=1, mode="nearest", prefilter=False,
                output=np.float64,
            )  # fmt: skip
            arr[r0:r1, gx0:gx1][inside] = values.astype(np.float32)


#: Interpolation geometry of one cutout grid on one HEALPix grid: the 4 neighbours of every
#: grid pixel (in the file's ordering), their weights, and the nearest pixel.
HealpixGeometry = tuple[np.ndarray, np.ndarray, np.ndarray]


def healpix_geometry(grid_wcs: WCS, ny: int, nx: int, nside: int, nest: bool) -> HealpixGeometry:
    """Neighbours, bilinear weights and nearest pixel of every pixel of a TAN grid.

    Computed once per cutout and shared by every band and file of that Nside and ordering
    (the pixel centres, ``healpy.get_interp_weights`` and ``ang2pix`` were the bulk of a
    HEALPix tile's cost when repeated per band).
    """
    import healpy as hp

    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = grid_wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    ra, dec = np.asarray(ra), np.asarray(dec)
    # RING neighbours and weights, as healpy.get_interp_val on a RING map (today's tiles)
    p_ring, weights = hp.get_interp_weights(nside, ra, dec, lonlat=True)
    nearest = hp.ang2pix(nside, ra, dec, lonlat=True)
    if nest:
        return hp.ring2nest(nside, p_ring), weights, hp.ring2nest(nside, nearest)
    return np.asarray(p_ring), weights, np.asarray(nearest)


def _healpix_fill(
    out: dict[str, np.ndarray],
    file: HealpixFile,
    grid_wcs: WCS,
    geometry: dict[tuple[int, bool], HealpixGeometry] | None = None,
) -> None:
    """Interpolate one HEALPix file onto ``out``'s grid (bilinear in the 4 neighbours, NaN
    where the nearest pixel is unseen); ``geometry`` caches :func:`healpix_geometry`."""
    ny, nx = out["data"].shape
    key = (file.nside, file.nest)
    cache = geometry if geometry is not None else {}
    if key not in cache:
        cache[key] = healpix_geometry(grid_wcs, ny, nx, file.nside, file.nest)
    neighbours, weights, nearest = cache[key]
    # one read of the pixels wanted: the 4 neighbours of every grid pixel, then the nearest
    values = read_healpix_pixels(file, np.concatenate([neighbours.reshape(-1), nearest]))
    neigh = values[: neighbours.size].reshape(neighbours.shape)
    interp = np.sum(np.nan_to_num(neigh) * weights, axis=0)
    interp[~np.isfinite(values[neighbours.size :])] = np.nan
    out["data"][...] = interp.reshape(ny, nx).astype(np.float32)
    if "exposure" in out:
        out["exposure"][...] = np.float32(file.exposure_s if file.exposure_s else np.nan)


def read_cutout(
    layer: Layer,
    region: Region,
    bands: Sequence[str] | None = None,
    grid: tuple[WCS, int, int] | None = None,
) -> LayerCutout:
    """Read a layer's pixels over a region, touching only the files and pixels it needs.

    Parameters
    ----------
    layer : Layer
    region : BoxRegion or TanRegion
        Core plus margin, as made by a tile job's core.
    bands : sequence of str, optional
        Band names to read (all by default), in the order wanted.
    grid : tuple, optional
        ``(wcs, ny, nx)``: resample onto this grid instead of the layer's own.

    Returns
    -------
    LayerCutout
    """
    chosen = [layer.band(b) for b in bands] if bands is not None else list(layer.bands)
    plane_names = _planes(layer)
    pix = layer.pixelisation
    if grid is None and isinstance(pix, FlatImage):
        wcs, arrays = _flat_cutout(layer, chosen, region)
        return _make(layer, chosen, wcs, arrays)
    if grid is None and isinstance(pix, Mosaic) and pix.common_wcs_header is not None:
        common = wcs_from_header(pix.common_wcs_header)
        box = _region_box(region, common)
        extent = _mosaic_extent(chosen, common)
        if box is None or extent is None:
            box = (0, 0, 0, 0)
        else:
            y0, y1, x0, x1 = box
            ey0, ey1, ex0, ex1 = extent
            y0, x0 = max(y0, ey0), max(x0, ex0)
            box = (y0, max(y0, min(y1, ey1)), x0, max(x0, min(x1, ex1)))
        y0, y1, x0, x1 = box
        grid = (common.slice((slice(y0, y1), slice(x0, x1))), y1 - y0, x1 - x0)
    if grid is None and isinstance(pix, HealpixMap):
        grid = resample_grid(region, pix.cutout_pixel_arcmin)
    if grid is None:
        grid = resample_grid(region, pix.pixel_arcmin)
    wcs, ny, nx = grid
    ra0, dec0 = region.center()
    # the region's reach (an outline through the WCS) only matters for image files
    reach = 0.0 if isinstance(pix, HealpixMap) else region_radius_deg(region)
    # the output planes, filled band by band in place (no stacking copy of a large tile)
    stacked = {p: np.full((len(chosen), ny, nx), np.nan, dtype=np.float32) for p in plane_names}
    maps: dict[tuple[str, tuple[int, int]], Any] = {}
    geometry: dict[tuple[int, bool], HealpixGeometry] = {}
    for b, band in enumerate(chosen):
        out = {p: stacked[p][b] for p in plane_names}
        for file in band.files:
            if isinstance(file, HealpixFile):
                _healpix_fill(out, file, wcs, geometry)
                continue
            dist = angular_distance_deg(ra0, dec0, file.center[0], file.center[1])
            if dist > reach + file.radius_deg:
                continue
            _fill_from_image(out, file, wcs, maps)
    native = pix.pixel_arcmin if isinstance(pix, HealpixMap) else None
    return _make(layer, chosen, wcs, stacked, native)


def _mosaic_extent(bands: Sequence[LayerBand], common: WCS) -> tuple[int, int, int, int] | None:
    boxes = []
    for band in bands:
        for file in band.files:
            if not isinstance(file, ImageFile):
                continue
            off = grid_offset(common, file.wcs)
            if off is not None:
                dx, dy = off
                boxes.append((dy, dy + file.shape[0], dx, dx + file.shape[1]))
    if not boxes:
        return None
    b = np.array(boxes)
    return int(b[:, 0].min()), int(b[:, 1].max()), int(b[:, 2].min()), int(b[:, 3].max())


def _make(
    layer: Layer,
    bands: Sequence[LayerBand],
    wcs: WCS,
    arrays: dict[str, np.ndarray],
    native_pixel_arcmin: float | None = None,
) -> LayerCutout:
    return LayerCutout(
        layer=layer.name,
        kind=layer.kind,
        unit=layer.unit,
        bands=tuple(b.facts for b in bands),
        pixels=arrays["data"],
        wcs=wcs,
        exposure=arrays.get("exposure"),
        background=arrays.get("background"),
        native_pixel_arcmin=native_pixel_arcmin,
    )
