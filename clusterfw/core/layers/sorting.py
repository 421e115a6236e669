"""Sorting input files into layers by their header keywords.

``sort_into_layers(paths, overrides)`` opens each file's headers (never its pixels), applies
the command-line keyword overrides, asks the readers in order of decreasing ``priority``
which one claims the file, groups files into layers (named by a ``LAYER`` keyword, else by
kind) and bands (``BANDNAME``, else the kind's natural band: frequency, filter, energy band),
checks that the files of each band agree, chooses each layer's pixelisation and footprint, and
checks that every layer overlaps the others.

Overrides map a FITS keyword to a value for every file (``{"FILTER": "r"}``), or
``"<glob>:<KEYWORD>"`` to a value for the files whose path matches the glob
(``{"des/*_r.fits.fz:FILTER": "r"}``). Special keywords: ``KIND`` forces the layer kind,
``LAYER`` names the layer, ``BANDNAME`` groups files into one band (a mosaic), ``HDU`` picks
the image HDU (index or EXTNAME).
"""

from __future__ import annotations

import fnmatch
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from astropy.io import fits

from clusterfw.core.errors import InputError
from clusterfw.core.layers.footprint import FOOTPRINT_ORDER, Footprint
from clusterfw.core.layers.model import Layer, LayerBand, LayerSky, known_kinds
from clusterfw.core.layers.pixelisation import (
    FlatImage,
    HealpixFile,
    HealpixMap,
    ImageFile,
    Mosaic,
    grid_offset,
)
from clusterfw.core.layers.readers import BUILTIN_READERS, FileInfo, LayerReader
from clusterfw.core.layers.reading import healpix_coverage, is_gzip, open_fits


def overrides_for(path: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword overrides that apply to one file (glob-specific ones win)."""
    general: dict[str, Any] = {}
    specific: dict[str, Any] = {}
    for key, value in overrides.items():
        if ":" in key:
            pattern, keyword = key.rsplit(":", 1)
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(Path(path).name, pattern):
                specific[keyword.strip().upper()] = value
        else:
            general[key.strip().upper()] = value
    return {**general, **specific}


def _is_image(hdu: Any) -> tuple[int, int] | None:
    if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        return None
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    dims = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
    if len(dims) < 2 or any(d != 1 for d in dims[2:]) or 0 in dims[:2]:
        return None
    return dims[1], dims[0]


def inspect_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> FileInfo:
    """Read one file's headers into a :class:`FileInfo` (keyword overrides applied).

    Raises
    ------
    InputError
        Missing file, not FITS, no image or HEALPix HDU, a named HDU that is absent.
    """
    path = str(path)
    p = Path(path)
    if not p.exists():
        raise InputError(path, "file not found")
    if p.is_dir():
        raise InputError(path, "is a directory, not a FITS file")
    gz = is_gzip(p)
    if not gz:
        with open(p, "rb") as fh:
            if fh.read(9) != b"SIMPLE  =":
                raise InputError(path, "not a FITS file")
    keys = overrides_for(path, overrides or {})
    with open_fits(p) as hdul:
        try:
            hdus = list(hdul)
        except (OSError, ValueError) as exc:
            raise InputError(path, f"unreadable FITS ({exc})") from None
        wanted = keys.get("HDU")
        index = None
        if wanted is not None:
            for i, hdu in enumerate(hdus):
                if str(wanted).isdigit() and i == int(wanted) or hdu.name == str(wanted).upper():
                    index = i
                    break
            if index is None:
                raise InputError(path, f"no HDU {wanted!r}")
        else:
            for i, hdu in enumerate(hdus):
                is_hpx = str(hdu.header.get("PIXTYPE", "")).upper() == "HEALPIX"
                if _is_image(hdu) is not None or (isinstance(hdu, fits.BinTableHDU) and is_hpx):
                    index = i
                    break
        if index is None:
            raise InputError(path, "no 2-D image or HEALPix map in any HDU")
        target = hdus[index]
        healpix = str(target.header.get("PIXTYPE", "")).upper() == "HEALPIX"
        shape = None if healpix else _is_image(target)
        if not healpix and shape is None:
            raise InputError(path, f"HDU {index} is not a 2-D image")
        header = fits.Header()
        if index != 0:
            for card in hdus[0].header.cards:
                if card.keyword not in ("", "COMMENT", "HISTORY") and not card.keyword.startswith(
                    "NAXIS"
                ):
                    header[card.keyword] = card.value
        header.update(target.header)
        for key, value in keys.items():
            if key != "HDU":
                header[key] = value
        extensions: dict[str, tuple[int, tuple[int, ...]]] = {}
        for i, hdu in enumerate(hdus):
            if i != index and hdu.name and (shape_i := _is_image(hdu)) is not None:
                extensions[hdu.name.upper()] = (i, shape_i)
        if gz:
            compression = "gzip"
        elif isinstance(target, fits.CompImageHDU):
            compression = "tile"
        else:
            compression = "none"
    return FileInfo(path, header, index, healpix, shape, compression, extensions)


def choose_reader(info: FileInfo, readers: Sequence[LayerReader]) -> LayerReader:
    """The reader of highest priority claiming a file (or the one its ``KIND`` names)."""
    ordered = sorted(readers, key=lambda r: -r.priority)
    kind = info.header.get("KIND")
    if kind is not None:
        for reader in ordered:
            if reader.kind == str(kind).strip().lower():
                return reader
        raise InputError(
            info.path, f"unknown layer KIND {kind!r} (known: {', '.join(known_kinds())})"
        )
    for reader in ordered:
        if reader.claims(info.header):
            return reader
    raise InputError(
        info.path,
        "cannot tell the layer kind: no E_MIN (xray), BUNIT=Compton-y (ymap), FILTER (optical) "
        "or FREQ (mm) keyword (override a keyword, or KIND, on the command line)",
    )


def _pixelisation(name: str, bands: Sequence[LayerBand]):
    files = [f for b in bands for f in b.files]
    healpix = [f for f in files if isinstance(f, HealpixFile)]
    if healpix and len(healpix) != len(files):
        raise InputError(files[0].path, f"layer {name!r} mixes HEALPix maps and flat images")
    if healpix:
        nside = healpix[0].nside
        for f in healpix[1:]:
            if f.nside != nside:
                raise InputError(
                    f.path, f"Nside {f.nside} differs from {healpix[0].path} (Nside {nside})"
                )
        return HealpixMap(nside)
    images: list[ImageFile] = files  # type: ignore[assignment]
    first = images[0]
    offsets = [grid_offset(first.wcs, f.wcs) for f in images]
    one_per_band = all(len(b.files) == 1 for b in bands)
    if one_per_band and all(o == (0, 0) for o in offsets):
        if all(f.shape == first.shape for f in images):
            return FlatImage(first.wcs_header, first.shape)
    common = first.wcs_header if all(o is not None for o in offsets) else None
    pixel = float(statistics.median(f.pixel_arcmin for f in images))
    return Mosaic(pixel, common)


def _footprint(files: Sequence[ImageFile | HealpixFile], order: int) -> Footprint:
    parts = []
    for f in files:
        if isinstance(f, HealpixFile):
            pixels = healpix_coverage(f, order)
            map_order = f.nside.bit_length() - 1
            parts.append(Footprint(min(order, map_order), pixels))
        else:
            parts.append(Footprint.from_image(f.wcs, f.shape, order))
    return Footprint.union_all(parts)


def sort_into_layers(
    paths: Sequence[str | Path],
    overrides: Mapping[str, Any] | None = None,
    readers: Sequence[LayerReader] | None = None,
    footprint_order: int = FOOTPRINT_ORDER,
    check_overlap: bool = True,
) -> LayerSky:
    """Sort input files into the layers of a :class:`LayerSky` by their header keywords.

    Parameters
    ----------
    paths : sequence of path
        FITS files of any layers, in any order (a band's mosaic files keep their given order).
    overrides : mapping, optional
        Keyword overrides: ``KEYWORD`` for all files, ``glob:KEYWORD`` for matching files.
    readers : sequence of LayerReader, optional
        Defaults to :data:`~clusterfw.core.layers.readers.BUILTIN_READERS`; plugins add theirs.
    footprint_order : int
        HEALPix order of the footprints.
    check_overlap : bool
        Raise when a layer overlaps none of the others.

    Returns
    -------
    LayerSky
        Layers in order of first appearance of their files.

    Raises
    ------
    InputError
        One line naming the file and the problem.
    """
    if not paths:
        raise InputError("inputs", "no input files")
    readers = tuple(readers) if readers is not None else BUILTIN_READERS
    overrides = overrides or {}
    # layer name -> (reader, band name -> [(path, facts, file)])
    groups: dict[str, tuple[LayerReader, dict[str, list]]] = {}
    for path in paths:
        info = inspect_file(path, overrides)
        reader = choose_reader(info, readers)
        band, facts, entry = reader.describe(info)
        layer_name = str(info.header.get("LAYER") or reader.kind)
        if layer_name in groups and groups[layer_name][0] is not reader:
            raise InputError(
                str(path),
                f"layer {layer_name!r} already holds {groups[layer_name][0].kind} files, "
                f"this file is {reader.kind}",
            )
        groups.setdefault(layer_name, (reader, defaultdict(list)))[1][band].append(
            (str(path), facts, entry)
        )
    layers = []
    for layer_name, (reader, bands) in groups.items():
        layer_bands = []
        for band_name, members in bands.items():
            facts = reader.merge_band(band_name, [(p, f) for p, f, _ in members])
            layer_bands.append(LayerBand(facts, tuple(e for _, _, e in members)))
        pix = _pixelisation(layer_name, layer_bands)
        files = [f for b in layer_bands for f in b.files]
        footprint = _footprint(files, footprint_order)
        layers.append(Layer(layer_name, reader.kind, tuple(layer_bands), pix, footprint))
    sky = LayerSky(tuple(layers), tuple(str(p) for p in paths))
    if check_overlap:
        sky.check_overlap()
    return sky
