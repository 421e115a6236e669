"""Helpers writing small FITS inputs of every layer kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS


def tan_header(ra0: float, dec0: float, pixel_arcsec: float, ny: int, nx: int) -> fits.Header:
    """A TAN WCS header of ny x nx pixels centred on (ra0, dec0)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0]
    return w.to_header()


def write_image(
    path: Path,
    data: np.ndarray,
    header: fits.Header,
    cards: dict,
    extensions: dict | None = None,
    compress: str | None = None,
) -> Path:
    """Write an image with extra cards; ``compress``: None, "rice" (HDU 1) or "gzip"."""
    header = header.copy()
    for key, value in cards.items():
        header[key] = value
    if compress == "rice":
        hdus = [fits.PrimaryHDU(), fits.CompImageHDU(data, header, compression_type="RICE_1")]
    else:
        hdus = [fits.PrimaryHDU(data, header)]
    for name, ext in (extensions or {}).items():
        hdus.append(fits.ImageHDU(ext, header, name=name))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    if compress == "gzip":
        import gzip

        raw = path.read_bytes()
        path.unlink()
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    return path


def smooth_field(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth test pattern on the sky (varies on ~arcmin scales)."""
    return 10.0 + np.sin(np.radians(ra) * 900.0) * np.cos(np.radians(dec) * 700.0)
