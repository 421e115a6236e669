"""Reading and writing sky maps as FITS: flat-sky images (one file per band) and HEALPix maps.

Band facts travel in header keywords: ``FREQ`` (GHz), ``BEAMFWHM`` (arcmin), ``BUNIT``
(``uK_CMB``, ``K_CMB``, ``Jy/sr`` ...), ``NOISE`` (µK-arcmin, optional) and ``BANDNAME``
(optional). Every value can be overridden (the CLI's ``--freq``, ``--beam``, ``--bunit``,
``--noise``), one value per file or one for all.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from clusterfw.core.atomic import write_atomic
from clusterfw.core.errors import InputError
from clusterfw.core.sky import Band, HealpixSky, InputFile, Sky
from clusterfw.core.units import to_uk_cmb_factor

OVERRIDE_KEYS = {"freq": "FREQ", "beam": "BEAMFWHM", "bunit": "BUNIT", "noise": "NOISE"}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_fits_file(path: Path) -> bool:
    """Whether ``path`` is a file that starts like a FITS file (never raises)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(9) == b"SIMPLE  ="
    except OSError:
        return False


def check_readable_fits(path: Path) -> None:
    """Raise :class:`InputError` unless ``path`` exists and starts like a FITS file."""
    if not path.exists():
        raise InputError(str(path), "file not found")
    if path.is_dir():
        raise InputError(str(path), "is a directory, not a FITS file")
    with open(path, "rb") as fh:
        if fh.read(9) != b"SIMPLE  =":
            raise InputError(str(path), "not a FITS file")


def _override(overrides: Mapping[str, Any], key: str, index: int, n_files: int) -> Any:
    values = overrides.get(key)
    if values is None or len(values) == 0:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) != n_files:
        raise InputError(
            "--" + key, f"gives {len(values)} values for {n_files} files (give 1 or {n_files})"
        )
    return values[index]


def band_from_header(
    path: Path, header: fits.Header, overrides: Mapping[str, Any], index: int, n_files: int
) -> tuple[Band, float]:
    """Band facts and the factor to µK_CMB from a header plus command-line overrides."""
    facts: dict[str, Any] = {}
    for key, keyword in OVERRIDE_KEYS.items():
        value = _override(overrides, key, index, n_files)
        facts[key] = value if value is not None else header.get(keyword)
    for key in ("freq", "beam", "bunit"):
        if facts[key] is None:
            raise InputError(
                str(path), f"missing {OVERRIDE_KEYS[key]} header keyword (or give --{key})"
            )
    try:
        freq = float(facts["freq"])
        beam = float(facts["beam"])
        noise = None if facts["noise"] is None else float(facts["noise"])
    except (TypeError, ValueError) as exc:
        raise InputError(str(path), f"non-numeric band keyword ({exc})") from None
    if not (freq > 0 and beam > 0):
        raise InputError(str(path), f"FREQ and BEAMFWHM must be positive (got {freq}, {beam})")
    try:
        factor = to_uk_cmb_factor(str(facts["bunit"]), freq)
    except ValueError as exc:
        raise InputError(str(path), str(exc)) from None
    name = str(header.get("BANDNAME") or f"f{freq:03.0f}")
    return Band(name, freq, beam, noise), factor


def _image_hdu(path: Path, hdul: fits.HDUList) -> fits.ImageHDU | fits.PrimaryHDU:
    for hdu in hdul:
        if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) and hdu.data is not None:
            return hdu
    raise InputError(str(path), "no image data in any HDU")


def read_flat_fits(paths: Sequence[Path], overrides: Mapping[str, Any] | None = None) -> Sky:
    """Read one flat-sky FITS image per band into a :class:`Sky` in µK_CMB.

    Parameters
    ----------
    paths : sequence of Path
        One 2-D image with a celestial WCS per band; all must share shape and WCS.
    overrides : mapping, optional
        ``freq``, ``beam``, ``bunit``, ``noise``: lists with one value per file, or one value.

    Raises
    ------
    InputError
        Missing or non-FITS file, no celestial WCS, bad keywords, differing geometry.
    """
    overrides = overrides or {}
    paths = [Path(p) for p in paths]
    maps, bands, inputs = [], [], []
    ref_wcs: WCS | None = None
    ref_shape: tuple[int, ...] = ()
    for i, path in enumerate(paths):
        check_readable_fits(path)
        try:
            hdul = fits.open(path, memmap=True)
        except (OSError, ValueError) as exc:
            raise InputError(str(path), f"unreadable FITS ({exc})") from None
        with hdul:
            hdu = _image_hdu(path, hdul)
            data = np.squeeze(hdu.data)
            if data.ndim != 2:
                raise InputError(str(path), f"expected a 2-D image, got shape {hdu.data.shape}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(hdu.header, naxis=2)
            if not wcs.has_celestial or wcs.celestial.naxis != 2:
                raise InputError(str(path), "no celestial WCS in the header")
            wcs = wcs.celestial
            band, factor = band_from_header(path, hdu.header, overrides, i, len(paths))
            if ref_wcs is None:
                ref_wcs, ref_shape = wcs, data.shape
            elif data.shape != ref_shape:
                raise InputError(
                    str(path), f"shape {data.shape} differs from {paths[0]} {ref_shape}"
                )
            elif not _same_geometry(ref_wcs, wcs):
                raise InputError(str(path), f"WCS differs from {paths[0]}")
            maps.append(np.asarray(data, dtype=np.float32) * np.float32(factor))
        bands.append(band)
        inputs.append(InputFile(str(path), sha256_of(path), band.name))
    assert ref_wcs is not None
    return Sky(np.stack(maps), ref_wcs, tuple(bands), tuple(inputs))


def _same_geometry(a: WCS, b: WCS) -> bool:
    wa, wb = a.wcs, b.wcs
    return (
        list(wa.ctype) == list(wb.ctype)
        and np.allclose(wa.crval, wb.crval, atol=1e-9)
        and np.allclose(wa.crpix, wb.crpix, atol=1e-6)
        and np.allclose(a.pixel_scale_matrix, b.pixel_scale_matrix, rtol=1e-7, atol=1e-12)
    )


def is_healpix_fits(path: Path) -> bool:
    """Whether a FITS file holds a HEALPix map (``PIXTYPE = 'HEALPIX'`` in a binary table)."""
    try:
        with fits.open(path, memmap=True) as hdul:
            return any(str(h.header.get("PIXTYPE", "")).upper() == "HEALPIX" for h in hdul[1:])
    except (OSError, ValueError):
        return False


def read_healpix_fits(
    paths: Sequence[Path], overrides: Mapping[str, Any] | None = None
) -> HealpixSky:
    """Read one HEALPix map per band (healpy) into a :class:`HealpixSky` (RING, µK_CMB)."""
    import healpy as hp

    overrides = overrides or {}
    paths = [Path(p) for p in paths]
    maps, bands, inputs = [], [], []
    for i, path in enumerate(paths):
        check_readable_fits(path)
        if not is_healpix_fits(path):
            raise InputError(str(path), "not a HEALPix map (no PIXTYPE='HEALPIX' table)")
        try:
            values, header = hp.read_map(path, field=0, h=True, dtype=np.float64)
        except Exception as exc:  # healpy raises a variety of types
            raise InputError(str(path), f"unreadable HEALPix map ({exc})") from None
        header = fits.Header(header)
        band, factor = band_from_header(path, header, overrides, i, len(paths))
        values = np.where(values == hp.UNSEEN, np.nan, values) * factor
        if maps and values.size != maps[0].size:
            raise InputError(
                str(path),
                f"Nside {hp.npix2nside(values.size)} differs from {paths[0]} "
                f"(Nside {hp.npix2nside(maps[0].size)})",
            )
        maps.append(values.astype(np.float32))
        bands.append(band)
        inputs.append(InputFile(str(path), sha256_of(path), band.name))
    return HealpixSky(np.stack(maps), tuple(bands), tuple(inputs))


def _band_cards(band: Band) -> list[tuple[str, Any, str]]:
    cards = [
        ("FREQ", band.freq_ghz, "[GHz] band centre frequency"),
        ("BEAMFWHM", band.beam_fwhm_arcmin, "[arcmin] Gaussian beam FWHM"),
        ("BUNIT", "uK_CMB", "thermodynamic temperature fluctuation"),
        ("BANDNAME", band.name, "band label"),
    ]
    if band.noise_uk_arcmin is not None:
        cards.append(("NOISE", band.noise_uk_arcmin, "[uK-arcmin] white-noise depth"))
    return cards


def write_flat_sky_fits(sky: Sky, directory: str | Path, prefix: str = "sky") -> list[Path]:
    """Write each band of ``sky`` to ``<directory>/<prefix>_<band>.fits`` (atomically).

    Returns
    -------
    list of Path
        The files written, in band order.
    """
    directory = Path(directory)
    paths = []
    for band, data in zip(sky.bands, sky.maps, strict=True):
        header = sky.wcs.celestial.to_header()
        for card in _band_cards(band):
            header[card[0]] = card[1:]
        hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header)
        path = directory / f"{prefix}_{band.name}.fits"
        write_atomic(path, lambda tmp, hdu=hdu: hdu.writeto(tmp, overwrite=True))
        paths.append(path)
    return paths


def write_healpix_sky_fits(
    sky: HealpixSky, directory: str | Path, prefix: str = "sky"
) -> list[Path]:
    """Write each band of a :class:`HealpixSky` to ``<directory>/<prefix>_<band>.fits``."""
    import healpy as hp

    directory = Path(directory)
    paths = []
    for band, data in zip(sky.bands, sky.maps, strict=True):
        values = np.where(np.isfinite(data), data, hp.UNSEEN)
        extra = _band_cards(band)
        path = directory / f"{prefix}_{band.name}.fits"
        write_atomic(
            path,
            lambda tmp, values=values, extra=extra: hp.write_map(
                str(tmp), values, extra_header=extra, overwrite=True, dtype=np.float32
            ),
        )
        paths.append(path)
    return paths
