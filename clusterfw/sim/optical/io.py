"""Writing optical fields as FITS images (one per band, or a mosaic of coadd tiles) and truth.

Every image carries the keywords of the ``optical`` layer (shared/INPUTS.md): ``FILTER``,
``BUNIT = 'nanomaggy'``, ``PSFFWHM`` (arcsec), ``MAGLIM`` (10σ point-source AB depth) and a 2-D
celestial WCS; plus ``PIXSCALE``, ``SKYSIG`` (per-pixel noise, nanomaggies), ``PRESET``,
``SIMSEED``, ``TILE`` and ``ORIGIN``. Writes are atomic (:mod:`clusterfw.core.atomic`).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits

from clusterfw.core.atomic import write_atomic
from clusterfw.core.errors import ClusterfwError
from clusterfw.sim.optical.field import (
    OpticalField,
    OpticalFootprint,
    fits_one_tile,
    render_band,
)
from clusterfw.sim.optical.presets import OpticalPreset, get_preset


def _header(field_: OpticalField, band: str, fp: OpticalFootprint, tile: int) -> fits.Header:
    h = fp.wcs.to_header()
    h["FILTER"] = (band, "AB filter")
    h["BUNIT"] = ("nanomaggy", "AB mag = 22.5 - 2.5 log10(flux)")
    h["PSFFWHM"] = (round(field_.psf_fwhm_arcsec[band], 4), "Moffat PSF FWHM, arcsec")
    h["PSFBETA"] = (field_.preset.psf_beta, "Moffat beta")
    h["MAGLIM"] = (field_.preset.band(band).maglim, "10 sigma point-source depth, AB mag")
    h["SKYSIG"] = (field_.sigma_pixel(band) if field_.noise else 0.0, "pixel noise, nanomaggy")
    h["PIXSCALE"] = (field_.preset.pixel_arcsec, "arcsec / pixel")
    h["PRESET"] = field_.preset.name
    h["SIMSEED"] = (-1 if field_.seed is None else int(field_.seed), "-1: seeded by a Generator")
    h["TILE"] = (int(tile), "coadd tile index (0 for a single field)")
    h["ORIGIN"] = "clusterfw.sim.optical"
    return h


def _write_image(path: Path, data: np.ndarray, header: fits.Header) -> Path:
    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header)
    return write_atomic(path, lambda tmp: hdu.writeto(tmp, output_verify="exception"))


def mosaic_tiles(
    fp: OpticalFootprint, tile_deg: float, overlap_arcmin: float
) -> list[OpticalFootprint]:
    """TAN coadd tiles covering ``fp``: the fewest tiles of at most ``tile_deg`` on a regular grid,
    each with the overlap added on every side and its own tangent point (like DES coadd tiles)."""
    ny, nx = fp.shape
    pix = fp.pixel_arcsec
    step = tile_deg * 3600.0 / pix
    n_x, n_y = max(1, math.ceil(nx / step)), max(1, math.ceil(ny / step))
    side_deg = max(nx / n_x, ny / n_y) * pix / 3600.0 + 2.0 * overlap_arcmin / 60.0
    out = []
    for j in range(n_y):
        for i in range(n_x):
            cx = (i + 0.5) * nx / n_x - 0.5
            cy = (j + 0.5) * ny / n_y - 0.5
            ra, dec = fp.wcs.pixel_to_world_values(cx, cy)
            out.append(OpticalFootprint.from_center(float(ra), float(dec), side_deg, pix, "TAN"))
    return out


def write_optical(
    field_: OpticalField,
    directory: str | Path,
    prefix: str = "optical",
    mosaic_tile_deg: float | None = None,
    truth: bool = True,
) -> list[Path]:
    """Write one FITS image per band (``<prefix>_<band>.fits``), or coadd tiles, and the truth.

    Parameters
    ----------
    field_ : OpticalField
    directory : str or Path
    prefix : str
    mosaic_tile_deg : float, optional
        Write a mosaic of TAN tiles of this size (plus the preset's overlap on each side) named
        ``<prefix>_<band>_t<NNN>.fits`` instead of one image per band; tiles are rendered one at a
        time from the catalogues, so the whole field never sits in memory. By default a field
        whose images were not rendered and that is larger than one tile of the preset
        (:func:`~clusterfw.sim.optical.field.fits_one_tile`) is written as a mosaic of the
        preset's ``tile_deg``.
    truth : bool
        Also write ``<prefix>_truth_galaxies.parquet``, ``<prefix>_truth_stars.parquet`` and
        ``<prefix>_truth_halos.parquet`` (halos with ``richness`` and ``richness_members``).

    Returns
    -------
    list of Path
    """
    out_dir = Path(directory)
    if out_dir.exists() and not out_dir.is_dir():
        raise ClusterfwError(f"{out_dir}: not a directory")
    paths: list[Path] = []
    rendered = all(b in field_.images for b in field_.bands)
    if (
        mosaic_tile_deg is None
        and not rendered
        and not fits_one_tile(field_.footprint, field_.preset)
    ):
        mosaic_tile_deg = field_.preset.tile_deg
    if mosaic_tile_deg is None:
        for b in field_.bands:
            img = field_.images.get(b)
            if img is None:
                img = field_.render(b)
            path = out_dir / f"{prefix}_{b}.fits"
            paths.append(_write_image(path, img, _header(field_, b, field_.footprint, 0)))
    else:
        if mosaic_tile_deg <= 0:
            raise ClusterfwError(f"--tile-deg: must be positive (got {mosaic_tile_deg})")
        tiles = mosaic_tiles(field_.footprint, mosaic_tile_deg, field_.preset.tile_overlap_arcmin)
        for t, fp in enumerate(tiles):
            for b in field_.bands:
                img = render_band(field_, b, fp, t)
                path = out_dir / f"{prefix}_{b}_t{t:03d}.fits"
                paths.append(_write_image(path, img, _header(field_, b, fp, t)))
    if truth:
        for name, table in (
            ("galaxies", field_.galaxies),
            ("stars", field_.stars),
            ("halos", field_.halos),
        ):
            path = out_dir / f"{prefix}_truth_{name}.parquet"
            paths.append(write_atomic(path, partial(_write_parquet, table)))
    return paths


def _write_parquet(table: pa.Table, tmp: Path) -> None:
    """Write ``table`` to the temporary path ``tmp`` (for :func:`write_atomic`)."""
    pq.write_table(table, tmp)


def pointed_fields(
    halos: pa.Table,
    preset: str | OpticalPreset = "sdss",
    size_pix: int = 2000,
    max_offset_arcsec: float = 270.0,
    rng: Any = None,
) -> list[OpticalFootprint]:
    """Deep-CEE-style pointed fields: one square field per halo, the halo offset at random.

    Chan & Stott (2019) cut 2000 × 2000 SDSS pixels around each cluster with a uniform random
    offset of up to 270" in x and y; each field is a TAN image centred on the offset position.
    """
    p = get_preset(preset)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ra = halos["ra"].to_numpy()
    dec = halos["dec"].to_numpy()
    off = gen.uniform(-max_offset_arcsec, max_offset_arcsec, (2, ra.size)) / 3600.0
    size_deg = size_pix * p.pixel_arcsec / 3600.0
    return [
        OpticalFootprint.from_center(
            float(ra[k] + off[0, k] / math.cos(math.radians(dec[k]))),
            float(dec[k] + off[1, k]),
            size_deg,
            p.pixel_arcsec,
        )
        for k in range(ra.size)
    ]
