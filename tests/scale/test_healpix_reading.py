"""The fast HEALPix pixel reader gives the values of the astropy/isclose reader, bit for bit."""

from __future__ import annotations

import os

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from clusterfw.core.errors import InputError
from clusterfw.core.layers import reading
from clusterfw.core.layers.cutout import _healpix_fill, healpix_geometry
from clusterfw.core.layers.footprint import TanRegion
from clusterfw.core.layers.pixelisation import HealpixFile
from clusterfw.core.layers.reading import (
    HEALPIX_UNSEEN,
    healpix_coverage,
    healpix_layout,
    read_healpix_pixels,
)

NSIDE = 64


def _values(rng: np.random.Generator) -> np.ndarray:
    """A map with every awkward value: UNSEEN (exact and float32-rounded and within the
    tolerance), NaN, +-inf, huge negative values just outside the UNSEEN tolerance."""
    m = rng.normal(0.0, 30.0, 12 * NSIDE**2)
    m[:500] = hp.UNSEEN
    m[500:600] = np.float32(hp.UNSEEN)
    m[600:700] = HEALPIX_UNSEEN * (1 + 9e-6)  # inside rtol 1e-5: unseen
    m[700:800] = HEALPIX_UNSEEN * (1 + 2e-5)  # outside: a (silly) value
    m[800:900] = np.nan
    m[900:950] = np.inf
    m[950:1000] = -np.inf
    m[1000:1100] = -2e29
    return m


def _write(path, values, nest=False, dtype=np.float32, columns=1):
    cols = (
        [values]
        if columns == 1
        else [values] + [np.full_like(values, k) for k in range(1, columns)]
    )
    hp.write_map(path, cols if columns > 1 else values, nest=nest, dtype=dtype, overwrite=True)
    return path


def _reference(file: HealpixFile, pixels: np.ndarray) -> np.ndarray:
    """The reader as it was: astropy memmap, sorted gather, numpy.isclose."""
    flat = np.asarray(pixels, dtype=np.int64).reshape(-1)
    order = np.argsort(flat, kind="stable")
    with fits.open(file.path, memmap=True) as hdul:
        column = hdul[file.hdu].data.field(0).reshape(-1)
        raw = np.asarray(column[flat[order]], dtype=np.float64)
    values = np.empty_like(raw)
    values[order] = raw
    unseen = np.isclose(values, HEALPIX_UNSEEN, rtol=1e-5, atol=0)
    values = np.where(unseen, np.nan, values) * file.scale
    return values.astype(np.float32).astype(np.float64).reshape(np.shape(pixels))


@pytest.mark.parametrize(
    ("nest", "dtype", "columns", "scale"),
    [
        (False, np.float32, 1, 1.0),
        (True, np.float64, 1, 1e6),
        (False, np.float64, 3, 1.0),  # several columns: read through astropy
    ],
)
@pytest.mark.parametrize("path_kind", ["span", "mapped"])
def test_pixel_values_match_the_astropy_reader(
    tmp_path, monkeypatch, nest, dtype, columns, scale, path_kind
):
    rng = np.random.default_rng(5)
    path = _write(tmp_path / "m.fits", _values(rng), nest, dtype, columns)
    file = HealpixFile(str(path), 1, NSIDE, nest, scale)
    if path_kind == "mapped":  # the memory-map gather used for scattered (NESTED) pixels
        monkeypatch.setattr(reading, "SPAN_FACTOR", 0)
        monkeypatch.setattr(reading, "SPAN_ALLOWANCE", 0)
    # the awkward pixels, random ones, repeats, unsorted, in a 2-D shape
    pixels = np.concatenate([np.arange(0, 1200), rng.integers(0, 12 * NSIDE**2, 3000)])
    pixels = rng.permutation(np.concatenate([pixels, pixels[:400]]))[:4400].reshape(4, 1100)
    got = read_healpix_pixels(file, pixels)
    want = _reference(file, pixels)
    assert got.shape == (4, 1100) and got.dtype == np.float64
    assert got.tobytes() == want.tobytes()
    assert np.isnan(got).sum() == np.isnan(want).sum() > 0
    assert healpix_layout(file).contiguous is (columns == 1)


def test_interpolated_cutout_matches_per_band_geometry(tmp_path):
    """The geometry computed once per cutout and shared by two bands gives each band's
    cutout exactly as computed alone."""
    rng = np.random.default_rng(9)
    files = []
    for k in range(2):
        path = _write(tmp_path / f"b{k}.fits", rng.normal(0, 10, 12 * NSIDE**2))
        files.append(HealpixFile(str(path), 1, NSIDE, False, 1.0))
    wcs, ny, nx = TanRegion(30.0, -20.0, 200.0).grid(hp.nside2resol(NSIDE, arcmin=True) / 2)
    shared: dict = {}
    for file in files:
        alone = {"data": np.full((ny, nx), np.nan, np.float32)}
        both = {"data": np.full((ny, nx), np.nan, np.float32)}
        _healpix_fill(alone, file, wcs)
        _healpix_fill(both, file, wcs, shared)
        assert alone["data"].tobytes() == both["data"].tobytes()
        assert np.isfinite(both["data"]).all()
    assert list(shared) == [(NSIDE, False)]
    neighbours, weights, nearest = shared[(NSIDE, False)]
    assert neighbours.shape == weights.shape == (4, ny * nx) and nearest.shape == (ny * nx,)
    n2, w2, near2 = healpix_geometry(wcs, ny, nx, NSIDE, True)
    assert np.array_equal(n2, hp.ring2nest(NSIDE, neighbours)) and np.array_equal(w2, weights)
    assert np.array_equal(near2, hp.ring2nest(NSIDE, nearest))


@pytest.mark.parametrize("nest", [False, True])
def test_coverage_is_every_order_pixel_with_a_seen_pixel(tmp_path, nest):
    m = np.full(12 * NSIDE**2, hp.UNSEEN)
    disc = hp.query_disc(NSIDE, hp.ang2vec(40.0, 10.0, lonlat=True), np.radians(8.0))
    m[disc] = 1.0
    m[5] = np.nan  # not seen
    m[7] = HEALPIX_UNSEEN * (1 + 5e-6)  # not seen either (within the tolerance)
    m[9] = 2.0  # seen, far from the disc
    if nest:
        m = hp.reorder(m, r2n=True)
    path = _write(tmp_path / "c.fits", m, nest)
    file = HealpixFile(str(path), 1, NSIDE, nest, 1.0)
    ring_seen = np.concatenate([disc, [9]])
    want = np.unique(hp.ring2nest(NSIDE, ring_seen) >> 2 * (6 - 3))
    got = healpix_coverage(file, 3, chunk=1000)  # chunks that do not divide the map
    assert np.array_equal(got, want)


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_map_is_one_line_naming_the_file(tmp_path):
    path = _write(tmp_path / "t.fits", np.arange(12 * NSIDE**2, dtype=np.float64))
    file = HealpixFile(str(path), 1, NSIDE, False, 1.0)
    layout = healpix_layout(file)
    os.truncate(path, layout.offset + 1000 * 4)
    with pytest.raises(InputError, match=r"t\.fits: truncated file \(pixels 0\.\.1999"):
        read_healpix_pixels(file, np.arange(2000))


def test_layout_cache_follows_a_rewritten_file(tmp_path):
    path = _write(tmp_path / "r.fits", np.full(12 * NSIDE**2, 1.0))
    file = HealpixFile(str(path), 1, NSIDE, False, 1.0)
    assert read_healpix_pixels(file, np.array([3]))[0] == 1.0
    _write(path, np.full(12 * NSIDE**2, 2.0), dtype=np.float64)  # other size and dtype
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert healpix_layout(file).dtype == np.dtype(">f8")
    assert read_healpix_pixels(file, np.array([3]))[0] == 2.0


@pytest.mark.parametrize(("nest", "columns"), [(False, 1), (True, 1), (False, 2)])
def test_one_pass_scan_gives_the_sha256_coverage_and_every_value(tmp_path, nest, columns):
    from clusterfw.core.fits_io import sha256_of
    from clusterfw.core.layers.reading import scan_healpix_file

    rng = np.random.default_rng(2)
    m = _values(rng)
    path = _write(tmp_path / "s.fits", m, nest, np.float32, columns)
    file = HealpixFile(str(path), 1, NSIDE, nest, 1.0)
    blocks: list[np.ndarray] = []
    digest, cover = scan_healpix_file(file, 4, blocks.append, chunk=5000)
    assert digest == sha256_of(path)
    assert np.array_equal(cover, healpix_coverage(file, 4))
    assert 0 < cover.size < 12 * 4**4
    seen = np.concatenate(blocks)
    assert seen.dtype == np.float32 and seen.dtype.isnative and seen.size == m.size
    assert seen.tobytes() == m.astype(np.float32).tobytes()


def _special_float32(rng: np.random.Generator) -> np.ndarray:
    """float32 values around UNSEEN (inside and just outside its tolerance), non-finite ones,
    and ordinary noise."""
    from clusterfw.core.layers.reading import unseen_interval_float32

    lo, hi = unseen_interval_float32()
    edges = [lo, hi, np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(0))]
    edges += [np.nextafter(hi, np.float32(np.inf)), np.float32(hp.UNSEEN)]
    special = np.array(edges + [np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    near = np.float32(hp.UNSEEN) * (1 + rng.uniform(-3e-5, 3e-5, 2000)).astype(np.float32)
    noise = rng.normal(0, 50, 5000).astype(np.float32)
    return rng.permutation(np.concatenate([special, near, noise]))


def test_float32_seen_mask_is_the_float64_isclose_mask_bit_for_bit():
    """The float32 fast path of the scan marks exactly the pixels healpy's rule does."""
    from clusterfw.core.layers.reading import seen_mask

    values = _special_float32(np.random.default_rng(3))
    as64 = values.astype(np.float64)
    expected = np.isfinite(as64) & ~np.isclose(as64, hp.UNSEEN, rtol=1e-5, atol=0)
    got = seen_mask(values)
    assert got.dtype == bool and np.array_equal(got, expected)
    assert 0 < (~got & np.isfinite(values)).sum() < 2000  # some near-UNSEEN values kept
    assert np.array_equal(seen_mask(as64), expected)  # the float64 path agrees


@pytest.mark.parametrize("factor", [1.0, 2.7255e6, -3.5, 1e-30])
def test_float32_value_scan_matches_scaling_every_pixel(factor):
    """Extremes of the scaled block from the extremes of the raw block: the same numbers."""
    from clusterfw.core.fits_io import _ValueScan

    rng = np.random.default_rng(4)
    fast, slow = _ValueScan(), _ValueScan()
    for _ in range(3):
        block = _special_float32(rng)
        assert fast.add_scaled_float32(block, factor)
        as64 = block.astype(np.float64)
        slow.add((np.where(as64 == hp.UNSEEN, np.nan, as64) * factor).astype(np.float32))
    assert fast.any_finite and slow.any_finite
    assert (fast.low, fast.high) == (slow.low, slow.high)
    assert type(fast.low) is type(slow.low) is np.float32
    assert not _ValueScan().add_scaled_float32(np.ones(3, np.float32), 0.0)  # general path
    assert not _ValueScan().add_scaled_float32(np.full(3, 3e38, np.float32), 1e10)  # overflow


def test_local_dask_workers_keep_freed_memory_in_the_heap(monkeypatch):
    """--dask workers start with malloc settings that keep freed memory (no page-fault storm
    per tile); a user's own setting is kept."""
    dask_config = pytest.importorskip("dask.config")
    from clusterfw.core.executors import LOCAL_WORKER_MALLOC, local_worker_environ

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    env = local_worker_environ()
    assert env["MALLOC_MMAP_THRESHOLD_"] == "2147483647"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "4294967296"  # Dask's default 65536 replaced
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    spawn = {"MALLOC_MMAP_THRESHOLD_": 9, "MALLOC_TRIM_THRESHOLD_": 65536, "OTHER": "x"}
    with dask_config.set({"distributed.nanny.pre-spawn-environ": spawn}):
        env = local_worker_environ()
    assert env["MALLOC_MMAP_THRESHOLD_"] == "9" and env["OTHER"] == "x"
    assert env.get("MALLOC_TRIM_THRESHOLD_") == "65536"  # left to the user's environment
    assert set(LOCAL_WORKER_MALLOC) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}


def test_local_dask_cluster_housekeeping_is_quiet_unless_the_user_chose(monkeypatch):
    """--dask's own LocalCluster runs without the worker profiler and with slow monitors (CPU
    the tiles need); a value the user set is kept."""
    dask_config = pytest.importorskip("dask.config")
    pytest.importorskip("distributed")
    from clusterfw.core import executors

    started: list[dict] = []

    class FakeCluster:
        def __init__(self, **kwargs):
            started.append({key: dask_config.get(key) for key in executors.LOCAL_HOUSEKEEPING})

    monkeypatch.setattr("distributed.LocalCluster", FakeCluster)
    monkeypatch.setattr("distributed.Client", lambda cluster: object())
    with dask_config.set({"distributed.admin.tick.interval": "50ms"}):
        executors.DaskExecutor.local(workers=2)
    got = started[0]
    assert got["distributed.worker.profile.enabled"] is False
    assert got["distributed.admin.system-monitor.interval"] == "5s"
    assert got["distributed.scheduler.work-stealing"] is False
    assert got["distributed.admin.tick.interval"] == "50ms"  # the user's value
