"""Pixel checks of an X-ray counts file, made once when the file is described.

Headers alone cannot tell that a "counts" image holds fractional or negative numbers, that its
exposure map sits on another grid, or that the exposure is zero everywhere; each of these would
make every Poisson statistic downstream meaningless, so the X-ray reader refuses the file with
one line naming it. The image and the exposure extension are read in row blocks (memory does not
grow with the file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clusterfw.core.errors import InputError

ROW_BLOCK_PIXELS = 4_000_000
_WCS_KEYS = ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2")


def _blocks(hdu: Any, shape: tuple[int, int]):
    ny, nx = shape
    step = max(1, ROW_BLOCK_PIXELS // max(nx, 1))
    naxis = int(hdu.header.get("ZNAXIS", hdu.header.get("NAXIS", 2)))
    lead = (0,) * (naxis - 2)
    for y0 in range(0, ny, step):
        yield np.asarray(hdu.section[(*lead, slice(y0, min(ny, y0 + step)), slice(0, nx))])


def _scale_matrix(header: Any) -> np.ndarray | None:
    from astropy.wcs import WCS

    try:
        w = WCS(header, naxis=2)
        return np.asarray(w.pixel_scale_matrix, float)
    except Exception:  # astropy raises several types for broken WCS
        return None


def _same_wcs(image: Any, other: Any) -> str | None:
    """``None`` when the extension's WCS (if it has one) is the image's; else the difference."""
    if not any(k in other for k in _WCS_KEYS):
        return None  # no WCS of its own: on the image's grid by definition
    for key in _WCS_KEYS:
        a, b = image.get(key), other.get(key)
        if isinstance(a, str) or isinstance(b, str):
            if str(a).strip().upper() != str(b).strip().upper():
                return f"{key} {b!r} (the image has {a!r})"
        elif a is None or b is None or not np.isclose(float(a), float(b), rtol=1e-9, atol=1e-9):
            return f"{key} {b!r} (the image has {a!r})"
    ma, mb = _scale_matrix(image), _scale_matrix(other)
    if ma is None or mb is None or not np.allclose(ma, mb, rtol=1e-7, atol=1e-12):
        return "pixel scale or rotation differs from the image's"
    return None


def check_xray_pixels(info: Any, facts: dict[str, Any]) -> None:
    """Refuse counts that are not non-negative integers and unusable exposure maps.

    Parameters
    ----------
    info : clusterfw.core.layers.readers.FileInfo
    facts : dict
        The reader's facts (``exposure_hdu`` when the file has an ``EXPOSURE`` extension).

    Raises
    ------
    InputError
        ``counts are not integers``, ``counts are negative``, ``EXPOSURE extension WCS
        differs ...`` or ``EXPOSURE is zero everywhere``, naming the file.
    """
    if info.healpix or info.shape is None:
        return
    from clusterfw.core.layers.reading import open_fits

    with open_fits(info.path) as hdul:
        hdu = hdul[info.hdu]
        integer_type = np.issubdtype(_dtype(hdu), np.integer)
        for block in _blocks(hdu, info.shape):
            finite = block[np.isfinite(block)] if not integer_type else block
            if finite.size and float(finite.min()) < 0:
                raise InputError(
                    info.path, f"counts are negative (minimum {float(finite.min()):g})"
                )
            if not integer_type and finite.size and not np.all(finite == np.round(finite)):
                bad = finite[finite != np.round(finite)][0]
                raise InputError(
                    info.path, f"counts are not integers (a pixel holds {float(bad):g})"
                )
        index = facts.get("exposure_hdu")
        if index is None:
            return
        ext = hdul[index]
        diff = _same_wcs(hdu.header, ext.header)
        if diff is not None:
            raise InputError(info.path, f"EXPOSURE extension WCS differs from the image: {diff}")
        positive = False
        for block in _blocks(ext, info.shape):
            if np.any(np.nan_to_num(block, nan=0.0) > 0):
                positive = True
                break
        if not positive:
            raise InputError(info.path, "EXPOSURE is zero everywhere (no exposed pixel)")


def _dtype(hdu: Any) -> np.dtype:
    """The image's numeric type from its header (BITPIX, or ZBITPIX when tile-compressed),
    before any BSCALE/BZERO scaling."""
    bitpix = int(hdu.header.get("ZBITPIX", hdu.header.get("BITPIX", -32)))
    scaled = float(hdu.header.get("BSCALE", 1.0)) != 1.0
    if bitpix < 0 or scaled:
        return np.dtype(np.float64)
    return np.dtype({8: np.uint8, 16: np.int16, 32: np.int32, 64: np.int64}[bitpix])
