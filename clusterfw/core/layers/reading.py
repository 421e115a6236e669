"""Lazy reads: only the pixels a tile job asks for.

- Plain FITS images: ``hdu.section`` (seek + read of the rows the box spans; nothing else).
- Tile-compressed images (RICE ``.fits.fz`` and other ``ZCMPTYPE``): ``CompImageHDU.section``
  decompresses only the compression tiles the box touches.
- ``.fits.gz``: gzip streams cannot seek (a backward seek restarts decompression from the top),
  so reading sections straight from the stream costs a decompression per row range: one 200²
  box of a 4000² float32 image took 297 s on this project's 2-core test host. Instead a gzipped
  file is decompressed **once**, streaming (bounded memory), to a cache file
  ``<cache>/gunzip/<name>-<key>.fits`` (key: absolute path, size and mtime, so an edited input
  is decompressed again), written atomically; every later read is a memory-mapped section of
  the cache copy. The cache is ``$CLUSTERFW_CACHE_DIR`` or the platform's user cache directory.
- HEALPix maps: healpy FITS maps are binary tables; the table is memory-mapped and only the
  rows holding the wanted pixels are touched.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from clusterfw.core.atomic import atomic_path
from clusterfw.core.errors import InputError
from clusterfw.core.layers.pixelisation import HealpixFile, ImageFile

HEALPIX_UNSEEN = -1.6375e30


def cache_dir() -> Path:
    """``$CLUSTERFW_CACHE_DIR`` or the platform's user cache directory for clusterfw."""
    env = os.environ.get("CLUSTERFW_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("clusterfw"))


def is_gzip(path: str | Path) -> bool:
    """Whether a file starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def gunzip_cached(path: str | Path) -> Path:
    """The decompressed cache copy of a gzipped FITS file, made on first use.

    Decompression streams in 1 MiB blocks (memory does not grow with the file) into a
    temporary file renamed into place, so concurrent tile jobs never see a partial copy.
    """
    src = Path(path).resolve()
    st = src.stat()
    key = hashlib.sha256(f"{src}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    stem = src.name[:-3] if src.name.endswith(".gz") else src.name
    target = cache_dir() / "gunzip" / f"{Path(stem).stem}-{key}.fits"
    if target.exists():
        return target
    import gzip

    with atomic_path(target) as tmp:
        try:
            with gzip.open(src, "rb") as gz, open(tmp, "wb") as out:
                shutil.copyfileobj(gz, out, 1 << 20)
        except (OSError, EOFError) as exc:
            raise InputError(str(path), f"corrupt gzip stream ({exc})") from None
    return target


def local_path(path: str | Path) -> Path:
    """The path to open with astropy: the cache copy for gzip files, else ``path``."""
    return gunzip_cached(path) if is_gzip(path) else Path(path)


@contextmanager
def open_fits(path: str | Path) -> Iterator[fits.HDUList]:
    """Open a FITS file lazily (memory-mapped; gzip through the cache copy)."""
    try:
        hdul = fits.open(local_path(path), memmap=True, lazy_load_hdus=True)
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"unreadable FITS ({exc})") from None
    with hdul:
        yield hdul


def _section(hdu: fits.hdu.base.ExtensionHDU, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Rows ``y0:y1``, columns ``x0:x1`` of a 2-D (or degenerate 3/4-D) image HDU."""
    naxis = hdu.header.get("ZNAXIS", hdu.header.get("NAXIS", 2))
    lead = (0,) * (int(naxis) - 2)
    return np.asarray(hdu.section[(*lead, slice(y0, y1), slice(x0, x1))])


def read_section(
    file: ImageFile, y0: int, y1: int, x0: int, x1: int, plane: str = "data"
) -> np.ndarray:
    """One box of an image file, as float32 in its layer's unit.

    Parameters
    ----------
    file : ImageFile
    y0, y1, x0, x1 : int
        Half-open box, inside ``file.shape``.
    plane : str
        ``"data"`` (scaled by ``file.scale``), ``"exposure"`` (seconds; from the extension or
        the uniform keyword) or ``"background"`` (expected counts).

    Returns
    -------
    numpy.ndarray
        ``(y1 - y0, x1 - x0)`` float32.
    """
    shape = (max(0, y1 - y0), max(0, x1 - x0))
    if plane == "exposure" and file.exposure_hdu is None:
        if file.exposure_s is None:
            raise InputError(file.path, "no exposure (neither an EXPOSURE extension nor keyword)")
        return np.full(shape, file.exposure_s, dtype=np.float32)
    index = {"data": file.hdu, "exposure": file.exposure_hdu, "background": file.background_hdu}[
        plane
    ]
    if index is None:
        return np.full(shape, np.nan, dtype=np.float32)
    if 0 in shape:
        return np.zeros(shape, dtype=np.float32)
    with open_fits(file.path) as hdul:
        values = _section(hdul[index], y0, y1, x0, x1)
    out = values.astype(np.float32)
    if plane == "data" and file.scale != 1.0:
        out *= np.float32(file.scale)
    return out


def _healpix_column(hdu: fits.BinTableHDU) -> np.ndarray:
    """The first column of a healpy table, flattened, still memory-mapped (no copy)."""
    col = hdu.data.field(0)
    return col.reshape(-1)


@dataclass(frozen=True)
class HealpixLayout:
    """Where a healpy map's values lie in its file, for reads that bypass astropy.

    ``contiguous`` tables (one column: healpy's own layout, ``TFIELDS = 1``) keep the values
    back to back from ``offset``; any other table is read through astropy.
    """

    path: str
    offset: int
    dtype: np.dtype
    npix: int
    contiguous: bool


#: Layouts found in this process, by (path, size, mtime, hdu): a worker parses each map's
#: header once, not once per tile and band.
_LAYOUTS: dict[tuple[str, int, int, int], HealpixLayout] = {}


def healpix_layout(file: HealpixFile) -> HealpixLayout:
    """The byte layout of ``file``'s first column (cached per process, keyed by size/mtime)."""
    local = local_path(file.path)
    try:
        st = os.stat(local)
    except OSError as exc:
        raise InputError(file.path, f"unreadable ({exc.strerror or exc})") from None
    key = (str(local), st.st_size, st.st_mtime_ns, file.hdu)
    layout = _LAYOUTS.get(key)
    if layout is not None:
        return layout
    with open_fits(file.path) as hdul:
        hdu = hdul[file.hdu]
        offset = int(hdul.fileinfo(file.hdu)["datLoc"])
        column = hdu.columns[0]
        repeat = int(column.format.repeat)
        dtype = np.dtype(column.dtype).base.newbyteorder(">")
        npix = int(hdu.header.get("NAXIS2", 0)) * repeat
        contiguous = (
            len(hdu.columns) == 1
            and column.bscale in (None, 1)
            and column.bzero in (None, 0)
            and int(hdu.header.get("NAXIS1", 0)) == repeat * dtype.itemsize
            and dtype.kind == "f"
        )
    layout = HealpixLayout(str(local), offset, dtype, npix, contiguous)
    if len(_LAYOUTS) > 64:
        _LAYOUTS.clear()
    _LAYOUTS[key] = layout
    return layout


def _read_span(layout: HealpixLayout, path: str, start: int, count: int) -> np.ndarray:
    """Values ``start : start + count`` of a contiguous map, read with one ``read`` call."""
    size = layout.dtype.itemsize
    buffer = bytearray(count * size)
    with open(layout.path, "rb") as fh:
        fh.seek(layout.offset + start * size)
        got = fh.readinto(buffer)
    if got != len(buffer):
        raise InputError(path, f"truncated file (pixels {start}..{start + count - 1} missing)")
    return np.frombuffer(buffer, dtype=layout.dtype)


#: A contiguous read may cover up to this many values per value wanted (plus a fixed
#: allowance) before the reader gathers the wanted values from a memory map instead.
SPAN_FACTOR = 4
SPAN_ALLOWANCE = 1 << 20


def _raw_healpix_values(file: HealpixFile, pixels: np.ndarray) -> np.ndarray:
    """The stored values (file dtype) of ``pixels`` (file ordering, any shape and order).

    A RING map's tile wants rings of pixels: one contiguous read from the lowest to the
    highest pixel wanted (a few MB) is much cheaper than sorting and gathering. When that span
    is far larger than the number of pixels wanted (NESTED maps, whose neighbours may lie in
    another base pixel), the wanted values are gathered, in sorted order, from a memory map.
    """
    layout = healpix_layout(file)
    if not layout.contiguous:
        order = np.argsort(pixels, axis=None, kind="stable")
        flat = pixels.reshape(-1)
        with open_fits(file.path) as hdul:
            column = _healpix_column(hdul[file.hdu])
            raw = np.asarray(column[flat[order]])
        out = np.empty_like(raw)
        out[order] = raw
        return out.reshape(pixels.shape)
    lo, hi = int(pixels.min()), int(pixels.max())
    if lo < 0 or hi >= layout.npix:
        raise IndexError(f"HEALPix pixel outside 0..{layout.npix - 1}")
    span = hi - lo + 1
    if span <= SPAN_FACTOR * pixels.size + SPAN_ALLOWANCE:
        return _read_span(layout, file.path, lo, span)[pixels - lo]
    mapped = np.memmap(layout.path, dtype=layout.dtype, mode="r", offset=layout.offset,
                       shape=(layout.npix,))  # fmt: skip
    try:
        flat = pixels.reshape(-1)
        order = np.argsort(flat, kind="stable")
        out = np.empty(flat.size, dtype=layout.dtype)
        out[order] = mapped[flat[order]]
    finally:
        del mapped
    return out.reshape(pixels.shape)


#: ``numpy.isclose``'s tolerance for UNSEEN with ``rtol=1e-5, atol=0`` (computed as it does).
_UNSEEN_TOL = 0 + 1e-5 * abs(HEALPIX_UNSEEN)


def _unseen_mask(values: np.ndarray) -> np.ndarray:
    """``numpy.isclose(values, UNSEEN, rtol=1e-5, atol=0)`` (as ``healpy.mask_bad``), exactly.

    For a finite scalar ``b`` numpy evaluates ``(|a - b| <= atol + rtol |b|) | (a == b)``;
    the second term adds nothing (``a == b`` gives a zero difference) and NaN or infinite
    ``a`` fail the first, so this is the same mask in three array operations instead of ten.
    """
    diff = np.subtract(values, HEALPIX_UNSEEN, dtype=np.float64)
    np.abs(diff, out=diff)
    with np.errstate(invalid="ignore"):
        return np.less_equal(diff, _UNSEEN_TOL)


def scale_healpix_values(raw: np.ndarray, scale: float) -> np.ndarray:
    """Stored values to the layer's unit, float64, NaN where unseen (see
    :func:`read_healpix_pixels`)."""
    values = np.asarray(raw, dtype=np.float64)
    values = np.where(_unseen_mask(values), np.nan, values) * scale
    return values.astype(np.float32).astype(np.float64)


def read_healpix_pixels(file: HealpixFile, pixels: np.ndarray) -> np.ndarray:
    """Values of the given pixels (in the file's own ordering), float64, NaN where unseen.

    The values are scaled to the layer's unit exactly as the whole-map reader does (unseen to
    NaN, times the factor, rounded to float32), so cutouts match today's tiles bit for bit.
    ``pixels`` may have any shape and order, and may repeat; the result has its shape.
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    if pixels.size == 0:
        return np.zeros(pixels.shape, dtype=np.float64)
    return scale_healpix_values(_raw_healpix_values(file, pixels), file.scale)


@functools.lru_cache(maxsize=1)
def unseen_interval_float32() -> tuple[np.float32, np.float32]:
    """The float32 values that :func:`_unseen_mask` calls UNSEEN: a closed interval ``[lo, hi]``.

    The mask is ``|v - UNSEEN| <= tol`` evaluated in float64, which is monotone in ``v``; on
    float32 values it therefore holds exactly on the float32 numbers between the two found
    here by stepping outwards one float32 at a time from the one nearest UNSEEN (≈ 170 steps
    each way: ``tol`` is 1e-5 of UNSEEN, a float32 step 6e-8 of it).
    """
    centre = np.float32(HEALPIX_UNSEEN)

    def inside(v: np.float32) -> bool:
        return bool(abs(float(v) - HEALPIX_UNSEEN) <= _UNSEEN_TOL)

    assert inside(centre)
    lo = hi = centre
    while inside(down := np.nextafter(lo, np.float32(-np.inf))):
        lo = down
    while inside(up := np.nextafter(hi, np.float32(np.inf))):
        hi = up
    return lo, hi


def native(values: np.ndarray) -> np.ndarray:
    """``values`` in this machine's byte order (FITS stores big-endian; numpy is faster native)."""
    return values if values.dtype.isnative else values.astype(values.dtype.newbyteorder("="))


def seen_mask(values: np.ndarray) -> np.ndarray:
    """Finite and not UNSEEN (as :func:`_unseen_mask`), for stored values of any dtype.

    float32 blocks (the usual HEALPix map) are compared in float32 against the exact
    interval of :func:`unseen_interval_float32`, with no float64 copy; other dtypes go
    through float64 as before. The mask is the same bit for bit.
    """
    if values.dtype == np.float32:
        lo, hi = unseen_interval_float32()
        seen = np.isfinite(values)
        seen &= (values < lo) | (values > hi)
        return seen
    values = np.asarray(values, dtype=np.float64)
    return np.isfinite(values) & ~_unseen_mask(values)


def _seen_parents(
    values: np.ndarray, start: int, file: HealpixFile, shift: int
) -> np.ndarray | None:
    """Nested parents (``>> shift``) of the seen pixels of one block starting at ``start``."""
    import healpy as hp

    seen = seen_mask(values)
    idx = np.flatnonzero(seen).astype(np.int64) + start
    if idx.size == 0:
        return None
    if not file.nest:
        idx = hp.ring2nest(file.nside, idx)
    return np.unique(idx >> shift)


def _coverage_shift(file: HealpixFile, order: int) -> int:
    map_order = int(round(np.log2(file.nside)))
    return 2 * (map_order - min(order, map_order))


def _union(found: list[np.ndarray]) -> np.ndarray:
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(found))


def healpix_coverage(file: HealpixFile, order: int, chunk: int = 1 << 22) -> np.ndarray:
    """Nested pixels at ``order`` holding any seen (finite, not UNSEEN) pixel of the map.

    Reads the map in chunks of ``chunk`` pixels (plain reads: the file is not mapped, so the
    process's resident memory does not grow with the map), so memory does not follow the map
    size.
    """
    shift = _coverage_shift(file, order)
    found: list[np.ndarray] = []
    for start, raw in _chunks(file, healpix_layout(file), chunk):
        parents = _seen_parents(np.asarray(raw, dtype=np.float64), start, file, shift)
        if parents is not None:
            found.append(parents)
    return _union(found)


def scan_healpix_file(
    file: HealpixFile,
    order: int,
    on_values: Callable[[np.ndarray], None] | None = None,
    chunk: int = 1 << 22,
) -> tuple[str, np.ndarray]:
    """One pass over a HEALPix map file: its sha256, its coverage, and a look at its values.

    What the run's input scan did in three passes (the value checks, the file's sha256 and
    :func:`healpix_coverage`), in one sequential read of the file in blocks of ``chunk``
    pixels, never memory-mapped (the scanning process's resident memory stays flat).

    Parameters
    ----------
    file : HealpixFile
    order : int
        Order of the coverage (as :func:`healpix_coverage`).
    on_values : callable, optional
        Called with every block of stored values, in order, in the file's dtype (native byte
        order; float32 for the usual map).
    chunk : int

    Returns
    -------
    sha256 : str
        Hex digest of the whole file.
    coverage : numpy.ndarray
        As :func:`healpix_coverage`.
    """
    layout = healpix_layout(file)
    shift = _coverage_shift(file, order)
    found: list[np.ndarray] = []
    if not layout.contiguous or is_gzip(file.path):  # astropy reads; the file hashed apart
        for start, raw in _chunks(file, layout, chunk):
            values = native(np.asarray(raw))
            if on_values is not None:
                on_values(values)
            parents = _seen_parents(values, start, file, shift)
            if parents is not None:
                found.append(parents)
        digest = hashlib.sha256()
        with open(file.path, "rb") as fh:
            while block := fh.read(1 << 22):
                digest.update(block)
        return digest.hexdigest(), _union(found)
    digest = hashlib.sha256()
    size = layout.dtype.itemsize
    with open(layout.path, "rb") as fh:
        head = fh.read(layout.offset)
        if len(head) != layout.offset:
            raise InputError(file.path, "truncated file (it ends in the header)")
        digest.update(head)
        for start in range(0, layout.npix, chunk):
            count = min(chunk, layout.npix - start)
            buffer = bytearray(count * size)
            if fh.readinto(buffer) != len(buffer):
                raise InputError(file.path, f"truncated file (pixel {start} onwards missing)")
            digest.update(buffer)
            values = native(np.frombuffer(buffer, dtype=layout.dtype))
            if on_values is not None:
                on_values(values)
            parents = _seen_parents(values, start, file, shift)
            if parents is not None:
                found.append(parents)
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest(), _union(found)


def _chunks(
    file: HealpixFile, layout: HealpixLayout, chunk: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, stored values)`` blocks of a whole map, in order."""
    if layout.contiguous:
        for start in range(0, layout.npix, chunk):
            yield start, _read_span(layout, file.path, start, min(chunk, layout.npix - start))
        return
    with open_fits(file.path) as hdul:
        column = _healpix_column(hdul[file.hdu])
        for start in range(0, column.size, chunk):
            yield start, np.asarray(column[start : start + chunk])
