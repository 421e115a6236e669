"""Layer readers: which kind a file belongs to, and its band facts, from its header alone.

Each reader has an explicit ``priority`` (higher is asked first, never alphabetical order)
and ``claims(header)`` deciding from keywords (INPUTS.md):

=========  ========  ==========================================================
reader     priority  claims a file when
=========  ========  ==========================================================
xray       40        ``E_MIN`` or ``E_MAX`` is present (``BUNIT`` must be count)
ymap       30        ``BUNIT`` is Compton-y
optical    20        ``FILTER`` is present, or ``BUNIT`` is nanomaggy, or ``MAGZERO``
mm         10        ``FREQ`` is present
=========  ========  ==========================================================

A ``KIND`` keyword (usually an override from the command line) forces the kind. Readers only
read headers: pixels are read later, per tile, by :mod:`clusterfw.core.layers.reading`.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits

from clusterfw.core.errors import InputError
from clusterfw.core.layers.model import MmBand, OpticalBand, StellarMassBand, XrayBand, YBand
from clusterfw.core.layers.pixelisation import (
    HealpixFile,
    ImageFile,
    image_center_radius,
    wcs_to_header,
)

OPTICAL_FILTERS = ("u", "g", "r", "i", "z", "y")
_COUNT_UNITS = {"count", "counts", "ct", "cts"}
_NMGY_UNITS = {"nanomaggy", "nanomaggies", "nmgy"}
_Y_UNITS = {"compton-y", "compton_y", "comptony", "y", "y_sz"}


@dataclass
class FileInfo:
    """What a reader needs to know about one file (headers only).

    Attributes
    ----------
    path : str
        The file as the user gave it.
    header : astropy.io.fits.Header
        Primary-header cards, then the image HDU's, then the command-line overrides.
    hdu : int
        Index of the image (or HEALPix table) HDU.
    healpix : bool
    shape : tuple of int or None
        ``(ny, nx)`` of a flat image.
    compression : str
        ``"none"``, ``"tile"`` or ``"gzip"``.
    extensions : dict of str to int
        EXTNAME (upper case) of each further 2-D image HDU, to its index and shape.
    """

    path: str
    header: fits.Header
    hdu: int
    healpix: bool
    shape: tuple[int, int] | None
    compression: str
    extensions: dict[str, tuple[int, tuple[int, ...]]]


def _unit(header: fits.Header) -> str | None:
    value = header.get("BUNIT")
    return None if value is None else str(value).strip().lower().replace(" ", "")


def _float(info: FileInfo, key: str, required: bool = True, positive: bool = True) -> Any:
    value = info.header.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError(info.path, f"missing {key} header keyword")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(info.path, f"{key} = {value!r} is not a number") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise InputError(info.path, f"{key} must be a positive number (got {value!r})")
    return number


class LayerReader(ABC):
    """Decides whether a file belongs to its kind and describes it from its header.

    Subclasses set ``name``, ``kind`` and ``priority`` and implement :meth:`claims`,
    :meth:`file_facts` and :meth:`merge_band`.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    priority: ClassVar[int] = 0

    @abstractmethod
    def claims(self, header: fits.Header) -> bool:
        """Whether a header says the file is of this reader's kind."""

    @abstractmethod
    def file_facts(self, info: FileInfo) -> tuple[str, dict[str, Any], float]:
        """``(band name, facts, scale to the kind's unit)`` of one file; InputError if bad."""

    @abstractmethod
    def merge_band(self, name: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> Any:
        """Band facts from the facts of its files (``(path, facts)`` pairs); InputError when
        the files of one band disagree."""

    def describe(self, info: FileInfo) -> tuple[str, dict[str, Any], ImageFile | HealpixFile]:
        """``(band name, facts, file entry)`` for one file."""
        band, facts, scale = self.file_facts(info)
        return band, facts, make_file_entry(info, scale, facts)

    @staticmethod
    def _agree(name: str, key: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> Any:
        first_path, first = facts[0]
        for path, other in facts[1:]:
            a, b = first.get(key), other.get(key)
            same = a == b or (
                isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-6)
            )
            if not same:
                raise InputError(
                    path,
                    f"mosaic band {name!r} mixes {key.upper()} {b} (this file) and {a} "
                    f"({first_path})",
                )
        return first.get(key)

    @staticmethod
    def _median(key: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> float | None:
        values = [f[key] for _, f in facts if f.get(key) is not None]
        return float(statistics.median(values)) if values else None


class MmLayerReader(LayerReader):
    """Millimetre maps: ``FREQ``, ``BEAMFWHM``, ``BUNIT`` (to µK_CMB), optional ``NOISE``."""

    name = "mm"
    kind = "mm"
    priority = 10

    def claims(self, header: fits.Header) -> bool:
        """A ``FREQ`` keyword."""
        return "FREQ" in header

    def file_facts(self, info: FileInfo) -> tuple[str, dict[str, Any], float]:
        """Band facts via :func:`clusterfw.core.fits_io.band_from_header` (today's rules)."""
        from clusterfw.core.fits_io import band_from_header

        band, factor = band_from_header(Path(info.path), info.header, {}, 0, 1)
        facts: dict[str, Any] = {"freq": band.freq_ghz, "beam": band.beam_fwhm_arcmin}
        facts["noise"] = band.noise_uk_arcmin
        return band.name, facts, factor

    def merge_band(self, name: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> MmBand:
        """One frequency and beam per band; the median noise."""
        freq = self._agree(name, "freq", facts)
        beam = self._agree(name, "beam", facts)
        return MmBand(name, freq, beam, self._median("noise", facts))


class OpticalLayerReader(LayerReader):
    """Optical images: ``FILTER``, ``BUNIT`` nanomaggy or count + ``MAGZERO``, ``PSFFWHM``."""

    name = "optical"
    kind = "optical"
    priority = 20

    def claims(self, header: fits.Header) -> bool:
        """``FILTER``, a nanomaggy ``BUNIT`` or a ``MAGZERO``."""
        return "FILTER" in header or "MAGZERO" in header or _unit(header) in _NMGY_UNITS

    def file_facts(self, info: FileInfo) -> tuple[str, dict[str, Any], float]:
        """Filter, PSF, depth; the scale to nanomaggies ``10**(-0.4 (MAGZERO - 22.5))``."""
        raw = info.header.get("FILTER")
        if raw is None or not str(raw).strip():
            raise InputError(info.path, "missing FILTER header keyword (u, g, r, i, z or y)")
        band = str(raw).split()[0].lower()
        if band not in OPTICAL_FILTERS:
            raise InputError(info.path, f"unknown FILTER {raw!r} (expected u, g, r, i, z or y)")
        unit = _unit(info.header)
        if unit in _NMGY_UNITS:
            scale = 1.0
        elif unit in _COUNT_UNITS:
            zero_point = _float(info, "MAGZERO")
            scale = 10.0 ** (-0.4 * (zero_point - 22.5))
        elif unit is None:
            raise InputError(info.path, "missing BUNIT header keyword (nanomaggy or count)")
        else:
            raise InputError(
                info.path,
                f"unknown BUNIT {info.header['BUNIT']!r} for an optical image "
                "(expected nanomaggy, or count with MAGZERO)",
            )
        facts = {
            "filter": band,
            "psf": _float(info, "PSFFWHM", required=False),
            "depth": _float(info, "MAGLIM", required=False),
        }
        name = str(info.header.get("BANDNAME") or band)
        return name, facts, scale

    def merge_band(self, name: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> OpticalBand:
        """One filter per band; median PSF and depth."""
        band = self._agree(name, "filter", facts)
        return OpticalBand(band, self._median("psf", facts), 22.5, self._median("depth", facts))


class XrayLayerReader(LayerReader):
    """X-ray counts: ``BUNIT`` count, ``E_MIN``/``E_MAX``, ``PSFFWHM``, exposure, background."""

    name = "xray"
    kind = "xray"
    priority = 40

    def claims(self, header: fits.Header) -> bool:
        """An ``E_MIN`` or ``E_MAX`` keyword."""
        return "E_MIN" in header or "E_MAX" in header

    def file_facts(self, info: FileInfo) -> tuple[str, dict[str, Any], float]:
        """Energy band, PSF, exposure (extension or keyword) and background extension."""
        unit = _unit(info.header)
        if unit is None:
            raise InputError(info.path, "missing BUNIT header keyword (count)")
        if unit not in _COUNT_UNITS:
            raise InputError(
                info.path,
                f"unknown BUNIT {info.header['BUNIT']!r} for an X-ray image (expected count)",
            )
        e_min = _float(info, "E_MIN", positive=False)
        e_max = _float(info, "E_MAX")
        if not 0 <= e_min < e_max:
            raise InputError(info.path, f"E_MIN {e_min} must be below E_MAX {e_max} (keV)")
        facts: dict[str, Any] = {
            "e_min": e_min,
            "e_max": e_max,
            "psf": _float(info, "PSFFWHM", required=False),
        }
        for ext in ("EXPOSURE", "BACKGROUND"):
            if ext in info.extensions:
                index, shape = info.extensions[ext]
                if not info.healpix and tuple(shape[-2:]) != info.shape:
                    raise InputError(
                        info.path,
                        f"{ext} extension shape {tuple(shape[-2:])} differs from the image "
                        f"{info.shape}",
                    )
                facts[ext.lower() + "_hdu"] = index
        if "exposure_hdu" not in facts:
            if "EXPOSURE" not in info.header:
                raise InputError(
                    info.path,
                    "no exposure: neither an EXPOSURE image extension nor an EXPOSURE keyword",
                )
            facts["exposure_s"] = _float(info, "EXPOSURE")
        facts["exposure_mode"] = "map" if "exposure_hdu" in facts else "uniform"
        from clusterfw.core.layers.xray_checks import check_xray_pixels

        check_xray_pixels(info, facts)  # integer, non-negative counts; a usable exposure map
        name = str(info.header.get("BANDNAME") or f"{e_min:g}-{e_max:g}keV")
        return name, facts, 1.0

    def merge_band(self, name: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> XrayBand:
        """One energy band per band; exposure ``map``, ``uniform`` or ``mixed``."""
        e_min = self._agree(name, "e_min", facts)
        e_max = self._agree(name, "e_max", facts)
        modes = {f["exposure_mode"] for _, f in facts}
        mode = modes.pop() if len(modes) == 1 else "mixed"
        background = all("background_hdu" in f for _, f in facts)
        return XrayBand(name, e_min, e_max, self._median("psf", facts), mode, background)


class YmapLayerReader(LayerReader):
    """Compton-y maps: ``BUNIT`` Compton-y, ``BEAMFWHM``."""

    name = "ymap"
    kind = "ymap"
    priority = 30

    def claims(self, header: fits.Header) -> bool:
        """``BUNIT`` Compton-y."""
        return _unit(header) in _Y_UNITS

    def file_facts(self, info: FileInfo) -> tuple[str, dict[str, Any], float]:
        """The beam; y maps are read as they are (scale 1)."""
        if _unit(info.header) not in _Y_UNITS:
            raise InputError(
                info.path,
                f"unknown BUNIT {info.header.get('BUNIT')!r} for a y map (expected Compton-y)",
            )
        facts = {"beam": _float(info, "BEAMFWHM")}
        return str(info.header.get("BANDNAME") or "y"), facts, 1.0

    def merge_band(self, name: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> YBand:
        """One beam per band."""
        return YBand(name, self._agree(name, "beam", facts))


_MSTAR_UNITS = {"solmass", "msun", "msol"}


class StellarMassLayerReader(LayerReader):
    """Projected stellar-mass maps: ``BUNIT`` solMass (Msun per pixel)."""

    name = "stellar_mass"
    kind = "stellar_mass"
    priority = 25

    def claims(self, header: fits.Header) -> bool:
        """``BUNIT`` solMass."""
        return _unit(header) in _MSTAR_UNITS

    def file_facts(self, info: FileInfo) -> tuple[str, dict[str, Any], float]:
        """No band facts; maps are read as they are (scale 1)."""
        return str(info.header.get("BANDNAME") or "mstar"), {}, 1.0

    def merge_band(self, name: str, facts: Sequence[tuple[str, dict[str, Any]]]) -> StellarMassBand:
        """One band, no facts to agree on."""
        return StellarMassBand(name)


BUILTIN_READERS: tuple[LayerReader, ...] = (
    MmLayerReader(),
    OpticalLayerReader(),
    XrayLayerReader(),
    YmapLayerReader(),
    StellarMassLayerReader(),
)
"""The built-in readers (the order here does not matter: ``priority`` decides)."""


def make_file_entry(info: FileInfo, scale: float, facts: dict[str, Any]) -> ImageFile | HealpixFile:
    """The picklable file entry of a described file."""
    if info.healpix:
        nside = int(info.header["NSIDE"])
        nest = str(info.header.get("ORDERING", "RING")).strip().upper().startswith("NEST")
        return HealpixFile(info.path, info.hdu, nside, nest, scale, facts.get("exposure_s"))
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(info.header, naxis=2)
        except Exception as exc:  # astropy raises several types for broken WCS
            raise InputError(info.path, f"unreadable WCS ({exc})") from None
    if not wcs.has_celestial or wcs.celestial.naxis != 2:
        raise InputError(info.path, "no celestial WCS in the header")
    wcs = wcs.celestial
    assert info.shape is not None
    center, radius = image_center_radius(wcs, info.shape)
    if not all(np.isfinite(center)):
        raise InputError(info.path, "the WCS gives no sky position at the image centre")
    return ImageFile(
        path=info.path,
        hdu=info.hdu,
        shape=info.shape,
        wcs_header=wcs_to_header(wcs),
        scale=float(scale),
        compression=info.compression,
        center=center,
        radius_deg=radius,
        exposure_hdu=facts.get("exposure_hdu"),
        background_hdu=facts.get("background_hdu"),
        exposure_s=facts.get("exposure_s"),
        psf_fwhm_arcsec=facts.get("psf"),
    )
