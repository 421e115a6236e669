"""Reading and writing sky maps as FITS: flat-sky images (one file per band) and HEALPix maps.

Band facts travel in header keywords: ``FREQ`` (GHz), ``BEAMFWHM`` (arcmin), ``BUNIT``
(``uK_CMB``, ``K_CMB``, ``Jy/sr`` ...), ``NOISE`` (µK-arcmin, optional) and ``BANDNAME``
(optional). Every value can be overridden (the CLI's ``--freq``, ``--beam``, ``--bunit``,
``--noise``), one value per file or one for all.

Everything is checked before any work, and every problem is an :class:`InputError` naming the
file: a path that is not a regular file (a FIFO is never opened), the same file given twice, a
truncated file, a WCS that wcslib rejects or that does not map pixels to finite sky positions,
band values that are not finite numbers (a boolean ``FREQ = T`` is refused), outside
:data:`FREQ_RANGE_GHZ` or :data:`BEAM_MAX_ARCMIN` (or a beam not smaller than the map), a
HEALPix file whose ``NSIDE`` or length is invalid, and a map with no finite pixel or a constant
one. Infinite pixels are masked (NaN) like blank ones. Warnings and output of astropy, numpy and
healpy while a file is read are held back: they are re-issued only when the file was read.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import os
import stat
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from clusterfw.core.atomic import write_atomic
from clusterfw.core.errors import InputError
from clusterfw.core.sky import Band, HealpixSky, InputFile, Sky
from clusterfw.core.units import to_uk_cmb_factor

_T = TypeVar("_T")

OVERRIDE_KEYS = {"freq": "FREQ", "beam": "BEAMFWHM", "bunit": "BUNIT", "noise": "NOISE"}

#: Accepted band centre frequencies, GHz (radio to far-infrared).
FREQ_RANGE_GHZ = (1.0, 5000.0)
#: Largest accepted beam FWHM, arcmin (10 degrees); a flat map must also be wider than its beam.
BEAM_MAX_ARCMIN = 600.0
#: Largest HEALPix Nside accepted (healpy's limit).
NSIDE_MAX = 2**29


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_regular_file(path: Path) -> os.stat_result:
    """Raise :class:`InputError` unless ``path`` is an existing regular file (never opens it).

    A FIFO, socket or device is refused from its ``stat`` alone: opening a FIFO would block.

    Returns
    -------
    os.stat_result
        The file's status (symlinks followed).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(str(path), "file not found") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot access ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(str(path), "is a directory, not a FITS file")
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "not a plain file")
        raise InputError(str(path), f"is {kind}, not a regular file")
    return st


def is_fits_file(path: Path) -> bool:
    """Whether ``path`` is a regular file that starts like a FITS file (never raises or blocks)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            return fh.read(9) == b"SIMPLE  ="
    except OSError:
        return False


def check_readable_fits(path: Path) -> None:
    """Raise :class:`InputError` unless ``path`` is a regular file that starts like FITS."""
    check_regular_file(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(9)
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror})") from None
    if magic != b"SIMPLE  =":
        raise InputError(str(path), "not a FITS file")


def check_distinct(paths: Sequence[Path]) -> None:
    """Raise :class:`InputError` if two paths are the same file (links and ``./`` included)."""
    seen: dict[tuple[int, int], Path] = {}
    for path in paths:
        st = check_regular_file(path)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise InputError(str(path), f"given twice (same file as {seen[key]})")
        seen[key] = path


HeldWarnings = list[tuple[Path, warnings.WarningMessage]]


@contextlib.contextmanager
def reading(path: Path, held: HeldWarnings | None = None) -> Iterator[None]:
    """Hold back warnings and library output while ``path`` is read.

    Warnings (numpy, astropy, healpy) are recorded and what is printed on stdout/stderr is
    dropped, so a one-line error is never preceded by anything. When the block raises, the
    warnings are discarded; when it succeeds they are added to ``held`` (for
    :func:`reissue` once every file has been read), or issued at once if ``held`` is None.
    """
    sink = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", FITSFixedWarning)
        yield
    if held is None:
        reissue([(path, w) for w in caught])
    else:
        held.extend((path, w) for w in caught)


def reissue(held: HeldWarnings) -> None:
    """Issue warnings held by :func:`reading`, once per file and message, naming the file."""
    issued: set[tuple[Path, type, str]] = set()
    for path, w in held:
        key = (path, w.category, str(w.message))
        if key not in issued:
            issued.add(key)
            warnings.warn_explicit(f"{path}: {w.message}", w.category, w.filename, w.lineno)


def _number(path: Path, key: str, value: Any, from_option: bool) -> float:
    """``value`` as a finite float; booleans (``FREQ = T``) and text are refused."""
    where = f"--{key} value" if from_option else f"{OVERRIDE_KEYS[key]} header keyword"
    if isinstance(value, bool | np.bool_):
        raise InputError(str(path), f"{where} is a boolean ({'T' if value else 'F'}), not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(str(path), f"{where} {value!r} is not a number") from None
    if not np.isfinite(number):
        raise InputError(str(path), f"{where} {value!r} is not finite")
    return number


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
    """Band facts and the factor to µK_CMB from a header plus command-line overrides.

    Raises
    ------
    InputError
        A keyword missing, not a finite number (booleans included), a frequency outside
        :data:`FREQ_RANGE_GHZ`, a beam not in ``(0, BEAM_MAX_ARCMIN]``, a negative noise depth
        or an unknown ``BUNIT``.
    """
    facts: dict[str, Any] = {}
    from_option: dict[str, bool] = {}
    for key, keyword in OVERRIDE_KEYS.items():
        value = _override(overrides, key, index, n_files)
        from_option[key] = value is not None
        facts[key] = value if value is not None else header.get(keyword)
    for key in ("freq", "beam", "bunit"):
        if facts[key] is None:
            raise InputError(
                str(path), f"missing {OVERRIDE_KEYS[key]} header keyword (or give --{key})"
            )
    freq = _number(path, "freq", facts["freq"], from_option["freq"])
    beam = _number(path, "beam", facts["beam"], from_option["beam"])
    noise = (
        None
        if facts["noise"] is None
        else _number(path, "noise", facts["noise"], from_option["noise"])
    )
    lo, hi = FREQ_RANGE_GHZ
    if not lo <= freq <= hi:
        raise InputError(str(path), f"FREQ {freq:g} GHz is outside {lo:g}-{hi:g} GHz")
    if not 0 < beam <= BEAM_MAX_ARCMIN:
        raise InputError(
            str(path), f"BEAMFWHM {beam:g} arcmin is outside (0, {BEAM_MAX_ARCMIN:g}] arcmin"
        )
    if noise is not None and noise < 0:
        raise InputError(str(path), f"NOISE {noise:g} uK-arcmin is negative")
    if isinstance(facts["bunit"], bool | int | float):
        raise InputError(str(path), f"BUNIT {facts['bunit']!r} is not a unit name")
    try:
        factor = to_uk_cmb_factor(str(facts["bunit"]), freq)
    except ValueError as exc:
        raise InputError(str(path), str(exc)) from None
    name = str(header.get("BANDNAME") or f"f{freq:03.0f}")
    return Band(name, freq, beam, noise), factor


def _check_values(path: Path, values: np.ndarray) -> np.ndarray:
    """Mask infinite pixels (NaN, in place) and refuse maps with nothing to search."""
    finite = np.isfinite(values)
    if not finite.all():
        values[~finite] = np.nan
    if not finite.any():
        raise InputError(str(path), "no finite pixel values (all blank, NaN or infinite)")
    low = np.min(values, where=finite, initial=np.inf)
    high = np.max(values, where=finite, initial=-np.inf)
    if low == high:
        raise InputError(str(path), f"constant map (every finite pixel is {low:g}): no signal")
    return values


def _wcslib_reason(exc: Exception) -> str:
    """The informative line of a (multi-line) wcslib error message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("ERROR ")]
    return (useful or lines or [type(exc).__name__])[0].rstrip(".")


def celestial_wcs(path: Path, header: fits.Header, shape: tuple[int, int]) -> WCS:
    """The celestial WCS of a 2-D image, checked to map its pixels to finite sky positions.

    wcslib must accept it (projection code, non-singular matrix, a valid reference point), the
    pixel scale must be finite and positive, and the centre and reference pixels must go to
    finite (ra, dec) and back to themselves.

    Raises
    ------
    InputError
        No celestial axes, or a WCS that fails any of the checks above.
    """
    from astropy.wcs.utils import proj_plane_pixel_scales

    for axis in (1, 2):  # wcslib would read a latitude beyond a pole as a rotated sphere
        ctype = str(header.get(f"CTYPE{axis}", "")).upper()
        lat = header.get(f"CRVAL{axis}", 0.0)
        if (ctype.startswith("DEC-") or ctype[1:4] == "LAT") and isinstance(lat, int | float):
            if not abs(lat) <= 90.0:
                raise InputError(str(path), f"invalid WCS: CRVAL{axis} {lat:g} is not a latitude")
    try:
        wcs = WCS(header, naxis=2)
        if not wcs.has_celestial or wcs.celestial.naxis != 2:
            raise InputError(str(path), "no celestial WCS in the header")
        wcs = wcs.celestial
        wcs.wcs.set()
        scales = proj_plane_pixel_scales(wcs)
        ny, nx = shape
        px = np.array([(nx - 1) / 2.0, wcs.wcs.crpix[0] - 1.0, 0.0, nx - 1.0])
        py = np.array([(ny - 1) / 2.0, wcs.wcs.crpix[1] - 1.0, 0.0, ny - 1.0])
        ra, dec = wcs.pixel_to_world_values(px[:2], py[:2])
        bx, by = wcs.world_to_pixel_values(ra, dec)
    except InputError:
        raise
    except (ValueError, KeyError, MemoryError) as exc:
        raise InputError(str(path), f"invalid WCS: {_wcslib_reason(exc)}") from None
    if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
        raise InputError(str(path), f"invalid WCS: pixel scale {scales.tolist()} deg")
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise InputError(str(path), "invalid WCS: the map centre has no finite sky position")
    if np.max(np.hypot(bx - px[:2], by - py[:2])) > 1e-3 or np.any(np.abs(dec) > 90):
        raise InputError(str(path), "invalid WCS: pixel -> sky -> pixel does not return")
    return wcs


def _image_hdu(path: Path, hdul: fits.HDUList) -> tuple[int, fits.ImageHDU | fits.PrimaryHDU]:
    """The first image HDU with pixels, chosen from the headers (no data read)."""
    for index, hdu in enumerate(hdul):
        if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU):
            continue
        naxes = [hdu.header.get(f"NAXIS{i}", 0) for i in range(1, hdu.header.get("NAXIS", 0) + 1)]
        if naxes and all(isinstance(n, int) and n > 0 for n in naxes):
            return index, hdu
    raise InputError(str(path), "no image data in any HDU")


def _check_complete(path: Path, hdul: fits.HDUList, index: int, size: int) -> None:
    """Raise :class:`InputError` if the file ends before the HDU's data does."""
    hdu = hdul[index]
    if isinstance(hdu, fits.CompImageHDU):  # compressed: the table is checked when read
        return
    need = int(hdul.fileinfo(index)["datLoc"]) + int(hdu.size)
    if need > size:
        raise InputError(str(path), f"truncated file ({size} bytes, the header needs {need})")


def _read_flat_band(
    path: Path, overrides: Mapping[str, Any], index: int, n_files: int, held: HeldWarnings
) -> tuple[np.ndarray, WCS, Band]:
    """One band of :func:`read_flat_fits`: pixels in µK_CMB (NaN where masked), WCS, band."""
    with open_2d_image(path, held) as (_, hdu, data):
        wcs = celestial_wcs(path, hdu.header, data.shape)
        band, factor = band_from_header(path, hdu.header, overrides, index, n_files)
        values = np.asarray(data, dtype=np.float32) * np.float32(factor)
    check_beam_fits(path, band, wcs, values.shape)
    return values, wcs, band


@contextlib.contextmanager
def open_2d_image(
    path: Path, held: HeldWarnings
) -> Iterator[tuple[int, fits.ImageHDU | fits.PrimaryHDU, np.ndarray]]:
    """Open ``path`` and yield ``(hdu_index, hdu, 2-D data)`` of its first image HDU.

    Every failure (not a regular FITS file, unreadable, truncated, not 2-D) is an
    :class:`InputError` naming the file; library warnings are held in ``held``.
    """
    check_readable_fits(path)
    size = path.stat().st_size
    with reading(path, held):
        try:
            hdul = fits.open(path, memmap=True)
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(str(path), f"unreadable FITS ({exc})") from None
        with hdul:
            try:
                hdu_index, hdu = _image_hdu(path, hdul)
            except (OSError, ValueError, TypeError) as exc:
                raise InputError(str(path), f"unreadable FITS ({exc})") from None
            _check_complete(path, hdul, hdu_index, size)
            try:
                data = np.squeeze(hdu.data)
            except (OSError, ValueError, TypeError) as exc:
                raise InputError(str(path), f"unreadable image data ({exc})") from None
            if data.ndim != 2:
                raise InputError(str(path), f"expected a 2-D image, got shape {hdu.data.shape}")
            yield hdu_index, hdu, data


def check_beam_fits(path: Path, band: Band, wcs: WCS, shape: tuple[int, ...]) -> None:
    """Raise :class:`InputError` unless the beam is smaller than the map's shorter side."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    side = float(min(shape[-2:]) * np.min(proj_plane_pixel_scales(wcs)) * 60.0)
    if not band.beam_fwhm_arcmin < side:
        raise InputError(
            str(path),
            f"BEAMFWHM {band.beam_fwhm_arcmin:g} arcmin is not smaller than the map "
            f"({side:.4g} arcmin on its shorter side)",
        )


def read_flat_fits(paths: Sequence[Path], overrides: Mapping[str, Any] | None = None) -> Sky:
    """Read one flat-sky FITS image per band into a :class:`Sky` in µK_CMB.

    Parameters
    ----------
    paths : sequence of Path
        One 2-D image with a celestial WCS per band; all must share shape and WCS.
    overrides : mapping, optional
        ``freq``, ``beam``, ``bunit``, ``noise``: lists with one value per file, or one value.

    Returns
    -------
    Sky
        Maps in µK_CMB; blank and infinite pixels are NaN.

    Raises
    ------
    InputError
        Missing, non-regular, repeated, truncated or non-FITS file; no or invalid celestial WCS;
        bad band keywords (see :func:`band_from_header`), a beam wider than the map; a map with
        no finite or only constant pixels; differing geometry; two files with the same band name.
    """
    overrides = overrides or {}
    paths = [Path(p) for p in paths]
    check_distinct(paths)
    maps: list[np.ndarray] = []
    bands: list[Band] = []
    inputs: list[InputFile] = []
    ref_wcs: WCS | None = None
    ref_shape: tuple[int, ...] = ()
    held: HeldWarnings = []
    for i, path in enumerate(paths):
        values, wcs, band = _read_flat_band(path, overrides, i, len(paths), held)
        if ref_wcs is None:
            ref_wcs, ref_shape = wcs, values.shape
        elif values.shape != ref_shape:
            raise InputError(str(path), f"shape {values.shape} differs from {paths[0]} {ref_shape}")
        elif not _same_geometry(ref_wcs, wcs):
            raise InputError(str(path), f"WCS differs from {paths[0]}")
        _check_band_name(path, band, bands, paths)
        maps.append(values)
        bands.append(band)
        inputs.append(InputFile(str(path), sha256_of(path), band.name))
    assert ref_wcs is not None
    for path, values in zip(paths, maps, strict=True):  # content after every file's structure
        _check_values(path, values)
    reissue(held)
    return Sky(np.stack(maps), ref_wcs, tuple(bands), tuple(inputs))


def _check_band_name(path: Path, band: Band, bands: Sequence[Band], paths: Sequence[Path]) -> None:
    for other, other_path in zip(bands, paths, strict=False):
        if other.name == band.name:
            raise InputError(
                str(path),
                f"band {band.name!r} is also {other_path}'s (two maps of one band; set BANDNAME)",
            )


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
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with reading(path, held=[]), fits.open(path, memmap=True) as hdul:
            return _healpix_hdu_index(hdul) is not None
    except (OSError, ValueError, TypeError):
        return False


def _healpix_hdu_index(hdul: fits.HDUList) -> int | None:
    for index, hdu in enumerate(hdul):
        if index and str(hdu.header.get("PIXTYPE", "")).upper() == "HEALPIX":
            return index
    return None


def _nside_of_length(npix: int) -> int | None:
    """The power-of-2 Nside with ``12 Nside² = npix``, or None."""
    nside = int(round(np.sqrt(npix / 12.0))) if npix > 0 else 0
    if nside < 1 or 12 * nside * nside != npix or nside & (nside - 1) or nside > NSIDE_MAX:
        return None
    return nside


def check_healpix_layout(path: Path, held: HeldWarnings | None = None) -> int:
    """Check a HEALPix FITS file's table before healpy reads it; return its Nside.

    The first ``PIXTYPE = 'HEALPIX'`` HDU must be a binary table in implicit (full-sky)
    indexing, in RING or NESTED order, whose first column holds ``12 Nside²`` values for a
    power-of-2 Nside that equals the header's ``NSIDE`` (when given), and the file must hold all
    of it.

    Raises
    ------
    InputError
        Naming the file and the first rule broken.
    """
    size = path.stat().st_size
    with reading(path, held):
        try:
            with fits.open(path, memmap=True) as hdul:
                index = _healpix_hdu_index(hdul)
                if index is None:
                    raise InputError(str(path), "not a HEALPix map (no PIXTYPE='HEALPIX' table)")
                hdu = hdul[index]
                header = hdu.header
                if not isinstance(hdu, fits.BinTableHDU) or not hdu.columns:
                    raise InputError(str(path), "the HEALPix HDU is not a binary table")
                _check_complete(path, hdul, index, size)
                npix = int(header.get("NAXIS2", 0)) * int(hdu.columns[0].format.repeat)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InputError(str(path), f"unreadable FITS ({exc})") from None
    scheme = str(header.get("INDXSCHM", "IMPLICIT")).strip().upper()
    if scheme != "IMPLICIT":
        raise InputError(str(path), f"INDXSCHM = {scheme!r}: only full-sky (IMPLICIT) maps")
    ordering = str(header.get("ORDERING", "RING")).strip().upper()
    if ordering not in ("RING", "NESTED"):
        raise InputError(str(path), f"ORDERING {ordering!r} is not RING or NESTED")
    nside = _nside_of_length(npix)
    if nside is None:
        raise InputError(
            str(path), f"map length {npix} is not 12*Nside^2 for a power-of-2 Nside (1..2^29)"
        )
    declared = header.get("NSIDE")
    if declared is not None and (isinstance(declared, bool) or declared != nside):
        raise InputError(
            str(path), f"NSIDE {declared!r} does not match the map length {npix} (Nside {nside})"
        )
    return nside


def read_healpix_fits(
    paths: Sequence[Path], overrides: Mapping[str, Any] | None = None
) -> HealpixSky:
    """Read one HEALPix map per band (healpy) into a :class:`HealpixSky` (RING, µK_CMB).

    Every file is checked by :func:`check_healpix_layout` before healpy sees it; healpy's own
    output is held back (see :func:`reading`). ``UNSEEN``, NaN and infinite pixels are NaN.

    Raises
    ------
    InputError
        As :func:`read_flat_fits`, plus an invalid HEALPix layout or differing Nside.
    """
    import healpy as hp

    overrides = overrides or {}
    paths = [Path(p) for p in paths]
    check_distinct(paths)
    maps: list[np.ndarray] = []
    bands: list[Band] = []
    inputs: list[InputFile] = []
    held: HeldWarnings = []
    for i, path in enumerate(paths):
        check_readable_fits(path)
        nside = check_healpix_layout(path, held)
        if maps and maps[0].size != 12 * nside * nside:
            raise InputError(
                str(path),
                f"Nside {nside} differs from {paths[0]} (Nside {hp.npix2nside(maps[0].size)})",
            )
        with reading(path, held):
            try:
                values, header = hp.read_map(path, field=0, h=True, dtype=np.float64)
            except Exception as exc:  # healpy raises a variety of types
                raise InputError(str(path), f"unreadable HEALPix map ({exc})") from None
            header = fits.Header(header)
            band, factor = band_from_header(path, header, overrides, i, len(paths))
            values = (np.where(values == hp.UNSEEN, np.nan, values) * factor).astype(np.float32)
        _check_band_name(path, band, bands, paths)
        maps.append(values)
        bands.append(band)
        inputs.append(InputFile(str(path), sha256_of(path), band.name))
    for path, values in zip(paths, maps, strict=True):  # content after every file's structure
        _check_values(path, values)
    reissue(held)
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


def _write_hdu(hdu: fits.PrimaryHDU, tmp: Path) -> None:
    hdu.writeto(tmp, overwrite=True)


def _write_healpix_map(values: np.ndarray, extra: list[Any], tmp: Path) -> None:
    import healpy as hp

    hp.write_map(str(tmp), values, extra_header=extra, overwrite=True, dtype=np.float32)


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
        write_atomic(path, functools.partial(_write_hdu, hdu))
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
        write_atomic(path, functools.partial(_write_healpix_map, values, extra))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- lazy mm layers
#: Pixels per block when a map's content is checked without holding it in memory.
SCAN_BLOCK_PIXELS = 1 << 20


class _ValueScan:
    """Running "any finite, lowest, highest" over blocks of a map (:func:`_check_values`)."""

    def __init__(self) -> None:
        self.any_finite = False
        self.low: Any = None
        self.high: Any = None

    def add(self, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        if not finite.any():
            return
        low = np.min(values, where=finite, initial=np.inf)
        high = np.max(values, where=finite, initial=-np.inf)
        self.low = low if self.low is None or low < self.low else self.low
        self.high = high if self.high is None or high > self.high else self.high
        self.any_finite = True

    def add_scaled_float32(self, raw: np.ndarray, factor: float) -> bool:
        """:meth:`add` of ``(raw * factor).astype(float32)`` for float32 ``raw``, without the copy.

        Exact: no float32 equals UNSEEN (a float64 that float32 cannot hold), so no pixel
        is blanked; multiplying by a nonzero finite factor and rounding to float32 are
        monotone, so the extremes of the scaled block are the scaled extremes of ``raw``
        (swapped for a negative factor). Returns False (nothing added; the caller takes the
        general path) for a zero or non-finite factor, or when a scaled extreme overflows.
        """
        if not (math.isfinite(factor) and factor != 0.0):
            return False
        finite = np.isfinite(raw)
        if not finite.any():
            return True
        with np.errstate(over="ignore"):  # an overflow is caught below
            low = np.float32(float(np.min(raw, where=finite, initial=np.inf)) * factor)
            high = np.float32(float(np.max(raw, where=finite, initial=-np.inf)) * factor)
        if factor < 0:
            low, high = high, low
        if not (np.isfinite(low) and np.isfinite(high)):
            return False
        self.low = low if self.low is None or low < self.low else self.low
        self.high = high if self.high is None or high > self.high else self.high
        self.any_finite = True
        return True

    def check(self, path: Path) -> None:
        """The same refusals as :func:`_check_values`, with the same messages."""
        if not self.any_finite:
            raise InputError(str(path), "no finite pixel values (all blank, NaN or infinite)")
        if self.low == self.high:
            raise InputError(
                str(path), f"constant map (every finite pixel is {self.low:g}): no signal"
            )


def _scan_flat_values(path: Path, hdu_index: int, factor: float) -> None:
    """Check a flat map's pixels block by block, reading each block's rows from the file.

    The file is not memory-mapped: the pages of a mapping stay resident (and count in the
    process's RSS) until it is closed, which would make memory follow the map size.
    """
    scan = _ValueScan()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            hdu = hdul[hdu_index]
            shape = tuple(int(n) for n in hdu.shape)
            axes = [i for i, n in enumerate(shape) if n != 1]
            ny, nx = shape[axes[0]], shape[axes[1]]
            rows = max(1, SCAN_BLOCK_PIXELS // max(1, nx))
            for r0 in range(0, ny, rows):
                index: list[int | slice] = [0] * len(shape)
                index[axes[0]] = slice(r0, min(ny, r0 + rows))
                index[axes[1]] = slice(0, nx)
                block = np.asarray(hdu.section[tuple(index)], dtype=np.float32)
                scan.add(block * np.float32(factor))
    scan.check(path)


def _scan_healpix_values(
    path: Path, hdu_index: int, factor: float, nside: int, nest: bool, order: int
) -> tuple[str, np.ndarray]:
    """Check a HEALPix map's pixels block by block, as :func:`read_healpix_fits` reads them;
    in the same read, the file's sha256 and its coverage at ``order`` (one pass, not three)."""
    import healpy as hp

    from clusterfw.core.layers.pixelisation import HealpixFile
    from clusterfw.core.layers.reading import scan_healpix_file

    scan = _ValueScan()

    def look(raw: np.ndarray) -> None:
        if raw.dtype == np.float32 and scan.add_scaled_float32(raw, factor):
            return
        values = np.asarray(raw, dtype=np.float64)
        scan.add((np.where(values == hp.UNSEEN, np.nan, values) * factor).astype(np.float32))

    entry = HealpixFile(str(path), hdu_index, nside, nest, float(factor), None)
    got = scan_healpix_file(entry, order, look)
    scan.check(path)
    return got


def _scan_in_threads(scan: Callable[..., _T], jobs: Sequence[tuple[Any, ...]]) -> list[_T]:
    """``[scan(*job) for job in jobs]``, the jobs in threads, one per core at most.

    A HEALPix map's scan is reading, hashing and numpy work on blocks of a few million pixels,
    all of which release the GIL, so the band files of a run scan side by side: the input scan
    runs before any tile starts, so on N cores its time is the whole run's serial part. The
    first failing job in ``jobs`` order raises (the error a serial loop would raise). Warnings
    are silenced around the whole pool (the filter list is process-wide, not per thread).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(len(jobs), cores or 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if threads == 1:
            return [scan(*job) for job in jobs]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="scan") as pool:
            return list(pool.map(lambda job: scan(*job), jobs))


def scan_flat_fits(paths: Sequence[Path], overrides: Mapping[str, Any] | None = None) -> Any:
    """Check flat mm maps exactly as :func:`read_flat_fits` does, without holding their pixels.

    Every structural check (file, HDU, WCS, band keywords, beam, geometry, band names) runs in
    the same order and with the same messages; the content checks (no finite pixel, constant
    map) run block by block on memory-mapped data, so memory does not follow the map size.

    Returns
    -------
    clusterfw.core.layers.model.Layer
        The lazy ``mm`` layer: a :class:`~clusterfw.core.layers.pixelisation.FlatImage`, one
        file per band, each with its unit factor; and the tuple of :class:`InputFile`.
    """
    from clusterfw.core.layers.footprint import Footprint
    from clusterfw.core.layers.model import Layer, LayerBand, MmBand
    from clusterfw.core.layers.pixelisation import (
        FlatImage,
        ImageFile,
        image_center_radius,
        wcs_to_header,
    )

    overrides = overrides or {}
    paths = [Path(p) for p in paths]
    check_distinct(paths)
    held: HeldWarnings = []
    found: list[tuple[Path, int, tuple[int, int], WCS, Band, float]] = []
    bands: list[Band] = []
    for i, path in enumerate(paths):
        with open_2d_image(path, held) as (hdu_index, hdu, data):
            shape = (int(data.shape[0]), int(data.shape[1]))
            wcs = celestial_wcs(path, hdu.header, shape)
            band, factor = band_from_header(path, hdu.header, overrides, i, len(paths))
            del data
        check_beam_fits(path, band, wcs, shape)
        if found:
            ref = found[0]
            if shape != ref[2]:
                raise InputError(str(path), f"shape {shape} differs from {paths[0]} {ref[2]}")
            if not _same_geometry(ref[3], wcs):
                raise InputError(str(path), f"WCS differs from {paths[0]}")
        _check_band_name(path, band, bands, paths)
        bands.append(band)
        found.append((path, hdu_index, shape, wcs, band, factor))
    for path, hdu_index, _, _, _, factor in found:
        _scan_flat_values(path, hdu_index, factor)
    reissue(held)
    ref_wcs, ref_shape = found[0][3], found[0][2]
    header = wcs_to_header(ref_wcs)
    layer_bands = []
    inputs = []
    for path, hdu_index, shape, wcs, band, factor in found:
        center, radius = image_center_radius(wcs, shape)
        entry = ImageFile(
            path=str(path),
            hdu=hdu_index,
            shape=shape,
            wcs_header=header,
            scale=float(factor),
            compression="none",
            center=center,
            radius_deg=radius,
        )
        facts = MmBand(band.name, band.freq_ghz, band.beam_fwhm_arcmin, band.noise_uk_arcmin)
        layer_bands.append(LayerBand(facts, (entry,)))
        inputs.append(InputFile(str(path), sha256_of(path), band.name))
    footprint = Footprint.from_image(ref_wcs, ref_shape)
    layer = Layer("mm", "mm", tuple(layer_bands), FlatImage(header, ref_shape), footprint)
    return layer, tuple(inputs)


def scan_healpix_fits(paths: Sequence[Path], overrides: Mapping[str, Any] | None = None) -> Any:
    """Check HEALPix mm maps as :func:`read_healpix_fits` does, without holding their pixels.

    Returns
    -------
    tuple
        The lazy ``mm`` :class:`~clusterfw.core.layers.model.Layer` (a
        :class:`~clusterfw.core.layers.pixelisation.HealpixMap`) and the :class:`InputFile`
        tuple.
    """
    from clusterfw.core.layers.footprint import FOOTPRINT_ORDER, Footprint
    from clusterfw.core.layers.model import Layer, LayerBand, MmBand
    from clusterfw.core.layers.pixelisation import HealpixFile, HealpixMap

    overrides = overrides or {}
    paths = [Path(p) for p in paths]
    check_distinct(paths)
    held: HeldWarnings = []
    found: list[tuple[Path, int, int, bool, Band, float]] = []
    bands: list[Band] = []
    for i, path in enumerate(paths):
        check_readable_fits(path)
        nside = check_healpix_layout(path, held)
        if found and found[0][2] != nside:
            raise InputError(
                str(path), f"Nside {nside} differs from {paths[0]} (Nside {found[0][2]})"
            )
        with reading(path, held):
            try:
                with fits.open(path, memmap=True) as hdul:
                    index = _healpix_hdu_index(hdul)
                    assert index is not None
                    header = fits.Header(hdul[index].header)
            except (OSError, ValueError, TypeError) as exc:
                raise InputError(str(path), f"unreadable HEALPix map ({exc})") from None
            band, factor = band_from_header(path, header, overrides, i, len(paths))
        nest = str(header.get("ORDERING", "RING")).strip().upper() == "NESTED"
        _check_band_name(path, band, bands, paths)
        bands.append(band)
        found.append((path, index, nside, nest, band, factor))
    scanned = _scan_in_threads(
        _scan_healpix_values,
        [
            (path, index, factor, nside, nest, FOOTPRINT_ORDER)
            for path, index, nside, nest, _, factor in found
        ],
    )
    reissue(held)
    layer_bands, inputs, prints = [], [], []
    for (path, index, nside, nest, band, factor), (digest, cover) in zip(
        found, scanned, strict=True
    ):
        entry = HealpixFile(str(path), index, nside, nest, float(factor), None)
        facts = MmBand(band.name, band.freq_ghz, band.beam_fwhm_arcmin, band.noise_uk_arcmin)
        layer_bands.append(LayerBand(facts, (entry,)))
        inputs.append(InputFile(str(path), digest, band.name))
        order = min(FOOTPRINT_ORDER, nside.bit_length() - 1)
        prints.append(Footprint(order, cover))
    layer = Layer(
        "mm", "mm", tuple(layer_bands), HealpixMap(found[0][2]), Footprint.union_all(prints)
    )
    return layer, tuple(inputs)
