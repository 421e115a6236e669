"""Where a finder could see: the footprint of the files it was run on, for ``evaluate``.

A finder run on part of a survey (optical images over part of an SZ map, an X-ray pointing)
cannot find the clusters outside its layers, and a truth catalogue of the whole simulation
would count them as missed. ``clusterfw evaluate --footprint FILE ...`` keeps only the truth
halos and candidates at positions where at least one of the given files has a finite pixel
(HEALPix: a seen pixel, not UNSEEN); the files are read through the same layer readers as
``clusterfw run`` (so the same one-line errors), and only the pixels at the positions are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterfw.core.errors import ClusterfwError
from clusterfw.core.layers.pixelisation import HealpixFile, ImageFile

#: Pixels read at once from an image (a strip of rows of the positions' bounding box).
STRIP_PIXELS = 1 << 24


def image_has_data(file: ImageFile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Whether the image's nearest pixel to each position exists and is finite."""
    from clusterfw.core.layers.reading import read_section

    x, y = file.wcs.world_to_pixel_values(ra, dec)
    ix = np.floor(np.asarray(x, dtype=np.float64) + 0.5)
    iy = np.floor(np.asarray(y, dtype=np.float64) + 0.5)
    ny, nx = file.shape
    inside = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (iy >= 0) & (ix < nx) & (iy < ny)
    out = np.zeros(ra.shape, dtype=bool)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return out
    px, py = ix[idx].astype(np.int64), iy[idx].astype(np.int64)
    x0, x1 = int(px.min()), int(px.max()) + 1
    y0, y1 = int(py.min()), int(py.max()) + 1
    rows = max(1, STRIP_PIXELS // (x1 - x0))
    for r0 in range(y0, y1, rows):
        r1 = min(y1, r0 + rows)
        here = (py >= r0) & (py < r1)
        if not here.any():
            continue
        strip = read_section(file, r0, r1, x0, x1)
        out[idx[here]] = np.isfinite(strip[py[here] - r0, px[here] - x0])
    return out


def healpix_has_data(file: HealpixFile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Whether the map's pixel at each position is seen (finite, not UNSEEN)."""
    import healpy as hp

    from clusterfw.core.layers.reading import read_healpix_pixels

    if ra.size == 0:
        return np.zeros(0, dtype=bool)
    pix = hp.ang2pix(file.nside, ra, dec, nest=file.nest, lonlat=True)
    return np.isfinite(read_healpix_pixels(file, pix))


def files_have_data(sky: Any, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Whether any file of any layer of ``sky`` (a LayerSky) has data at each position."""
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    out = np.zeros(ra.shape, dtype=bool)
    for layer in sky.layers:
        for band in layer.bands:
            for file in band.files:
                todo = np.flatnonzero(~out)
                if todo.size == 0:
                    return out
                if isinstance(file, HealpixFile):
                    has = healpix_has_data(file, ra[todo], dec[todo])
                else:
                    has = image_has_data(file, ra[todo], dec[todo])
                out[todo[has]] = True
    return out


def footprint_mask(paths: Sequence[Path], ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Positions where at least one of ``paths`` has data, reading them as ``run`` does.

    Raises
    ------
    ClusterfwError
        When the files are read by a reader that gives no per-file layer (a whole-map reader
        plugin); bad files give their reader's one-line error.
    """
    from clusterfw.core.cli import cli_registry
    from clusterfw.core.layers.model import LayerSky
    from clusterfw.core.runner import read_inputs

    sky, _ = read_inputs(cli_registry(), [Path(p) for p in paths], {})
    if not isinstance(sky, LayerSky):
        raise ClusterfwError(
            f"--footprint: {paths[0]}: its reader holds whole maps, not layer files; "
            "give the files to a layer reader"
        )
    return files_have_data(sky, ra, dec)
