"""Tests of the ``mf`` matched-filter finder on small seeded skies (see mf_testsky.py)."""

from __future__ import annotations

import numpy as np
import pytest
from mf_testsky import BANDS, inject, make_tile, random_isolated

from clusterfw.core.errors import PluginError
from clusterfw.core.sky import Band
from clusterfw.plugins.finders.mf import MatchedFilterFinder
from clusterfw.plugins.finders.mf.finder import scale_tag
from clusterfw.plugins.finders.mf.templates import template_transform, tsz_uk_per_y


def test_tsz_law_and_template_normalisation():
    f = tsz_uk_per_y([90.0, 150.0, 217.0, 353.0])
    assert f[0] < f[1] < 0 and abs(f[2]) < 0.02 * abs(f[0]) and f[3] > 0
    # 2-D integral of the truncated beta model: pi theta_c^2 ln(1 + 5^2)
    assert template_transform("beta", 2.0, np.array([0.0]))[0] == pytest.approx(
        4.0 * np.pi * np.log(26.0), rel=1e-4
    )
    assert scale_tag(2.4) == "2p4" and scale_tag(0.25) == "0p25" and scale_tag(1.0) == "1p0"


def test_bad_input_is_a_plugin_error():
    tile = make_tile(n=64, seed=0)
    tile.bands = (Band("x", 150.0, 0.0), *tile.bands[1:])
    with pytest.raises(PluginError, match="beam"):
        MatchedFilterFinder().find(tile)
    tile = make_tile(n=64, seed=0)
    tile.maps = tile.maps[:0]
    tile.bands = ()
    with pytest.raises(PluginError, match="n_band>=1"):
        MatchedFilterFinder().find(tile)
    tile = make_tile(n=64, seed=0)
    with pytest.raises(PluginError, match="NOISE"):
        tile.bands = tuple(Band(b.name, b.freq_ghz, b.beam_fwhm_arcmin) for b in tile.bands)
        MatchedFilterFinder({"noise": "model"}).find(tile)


NULL_THRESHOLDS = (4.0, 4.5, 5.0)


def _phase_randomised(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian fields with the 2-D auto- and cross-spectra of ``maps`` (one per scale).

    Every scale is multiplied by the *same* random phase field, so the scales stay correlated
    as in the data and the maximum over scales is accounted for; each is then scaled to unit
    variance: the expectation is that of a calibrated SNR map with the data's spectral shape.
    """
    ny, nx = maps.shape[1:]
    phase = np.fft.rfft2(rng.standard_normal((ny, nx)))
    phase /= np.abs(phase)
    f = np.fft.rfft2(maps - maps.mean(axis=(1, 2), keepdims=True), axes=(-2, -1)) * phase
    out = np.fft.irfft2(f, s=(ny, nx), axes=(-2, -1))
    return out / out.std(axis=(1, 2), keepdims=True)


def _null_statistics(n_tiles: int, n_random: int, n: int = 1024) -> dict:
    """Null-map peak counts above each of ``NULL_THRESHOLDS`` and their Gaussian expectation.

    Each tile is CMB + white noise with a 20' margin around its core (as the pipeline tiles
    have), so the count is the finder's own catalogue. The expectation counts, with the same
    peak finder and merge radius, the peaks of phase-randomised copies of the filtered maps
    over the same core.
    """
    from clusterfw.core.sky import PixelBoxCore
    from clusterfw.plugins.finders.mf.peaks import find_peaks, merge_peaks

    margin = 40  # 20' at 0.5'
    found = dict.fromkeys(NULL_THRESHOLDS, 0)
    expected = dict.fromkeys(NULL_THRESHOLDS, 0.0)
    border = {5.0: 0}
    ratio = []
    core_std = []
    for seed in range(n_tiles):
        tile = make_tile(n=n, seed=1000 + seed)
        tile.core = PixelBoxCore(tile.wcs, margin, n - margin, margin, n - margin)
        finder = MatchedFilterFinder({"point_sources": "none", "snr_min": NULL_THRESHOLDS[0]})
        snr = finder.find(tile)["snr"].to_numpy()
        res = finder.filter_tile(tile)
        ratio.append(res.rms)
        crop = np.stack([m[margin : n - margin, margin : n - margin] for m in res.snr])
        core_std.append(crop.std(axis=(1, 2)))
        rng = np.random.default_rng(seed)
        for _ in range(n_random):
            r = _phase_randomised(crop, rng)
            p = find_peaks(list(r), r.max(axis=0), NULL_THRESHOLDS[0], None, "peak")
            p = merge_peaks(p, finder.options.merge_radius_arcmin / tile.pixel_scale_arcmin)
            for nu in NULL_THRESHOLDS:
                expected[nu] += np.count_nonzero(p.snr > nu) / n_random
        for nu in NULL_THRESHOLDS:
            found[nu] += int(np.count_nonzero(snr > nu))
        # a tile at the map border has its core up to the edge: the 20' strip next to the
        # apodisation taper must not add spurious peaks (filtered maps are cached)
        tile.core = PixelBoxCore(tile.wcs, 0, n, 0, n)
        whole = finder.find(tile)["snr"].to_numpy()
        border[5.0] += int(np.count_nonzero(whole > 5.0)) - int(np.count_nonzero(snr > 5.0))
    return {
        "border_above_5": border[5.0],
        "border_area_fraction": 1.0 - ((n - 2.0 * margin) / n) ** 2,
        "found": found,
        "expected": expected,
        "rms_over_filter_sigma": np.asarray(ratio),
        "core_std": np.asarray(core_std),
    }


def test_null_maps_snr_calibrated():
    """Noise + CMB, no clusters: SNR unit and peak counts above 4 and 4.5 are Gaussian.

    Eight 73 deg² tiles (62 deg² of core each). Above 5 the expectation is ~0.4 peaks per
    tile, too few for a fast test: see ``test_null_maps_count_above_5`` (``--runslow``).
    """
    st = _null_statistics(n_tiles=8, n_random=3)
    found, expected = st["found"], st["expected"]
    # filter σ vs measured RMS: tile to tile within 6 % (0.95-1.02 over 120 tiles), on average
    # within 2.5 % (0.986-0.995 per scale), so the 'filter' unit agrees with the default one
    ratio = st["rms_over_filter_sigma"]
    assert np.all(np.abs(ratio - 1.0) < 0.06), ratio
    assert np.all(np.abs(ratio.mean(axis=0) - 1.0) < 0.025), ratio.mean(axis=0)
    assert np.all(np.abs(st["core_std"] - 1.0) < 0.03)
    assert expected[4.0] > 100 and expected[4.5] > 15, expected
    assert 0.75 < found[4.0] / expected[4.0] < 1.33, (found, expected)
    assert 0.5 < found[4.5] / expected[4.5] < 2.0, (found, expected)
    # border strip (15 % of the tile, ~0.6 peaks above 5 expected over eight tiles; the old 4'
    # taper gave 37-51 per tile)
    assert st["border_above_5"] <= 2, st["border_above_5"]


@pytest.mark.slow
def test_null_maps_count_above_5():
    """The acceptance: above SNR 5 the null count matches the Gaussian expectation within 2×.

    120 tiles (7400 deg² of core, ~10 min on two shared cores) give ~50 expected peaks above 5
    (measured: 69 found / 52 expected; above 4: 2726 / 2650; above 4.5: 481 / 507).
    """
    st = _null_statistics(n_tiles=120, n_random=1)
    found, expected = st["found"], st["expected"]
    print("null peaks found", found, "expected", expected)
    assert expected[5.0] > 10, expected
    assert 0.5 < found[5.0] / expected[5.0] < 2.0, (found, expected)


def test_isolated_clusters_position_and_yc():
    rng = np.random.default_rng(5)
    tile = make_tile(n=500, seed=6)
    pos = random_isolated(500, 25, 60, 30, rng)
    y_true = 1.0e-4
    inject(tile, pos, y_true, 1.0)
    finder = MatchedFilterFinder({"snr_min": 5.0, "ref_scale_arcmin": 1.0})
    tab = finder.find(tile)
    x, y = tile.world_to_pixel(tab["ra"].to_numpy(), tab["dec"].to_numpy())
    d = np.hypot(x[:, None] - pos[:, 0], y[:, None] - pos[:, 1]) * tile.pixel_scale_arcmin
    match = d.argmin(axis=0)
    ok = d.min(axis=0) < 2.0
    assert ok.mean() > 0.95
    assert np.median(d.min(axis=0)[ok]) < 0.3
    yc_ref = tab["mf_y_c_1p0"].to_numpy()[match[ok]]
    assert np.median(yc_ref) / y_true == pytest.approx(1.0, abs=0.10)
    # forced scoring agrees with the catalogue at the detected positions
    forced = finder.score_at(tile, tab["ra"].to_numpy(), tab["dec"].to_numpy())
    rel = np.abs(forced / tab["snr"].to_numpy() - 1.0)
    assert np.nanmedian(rel) < 0.05
    assert set(tab.column_names) >= {"snr", "filter_scale", "y_c", "y_c_err", "pos_err", "flags"}


def test_point_source_flagged_and_removed():
    tile = make_tile(n=300, seed=8)
    from mf_testsky import beam_smooth

    for i, b in enumerate(BANDS):
        spike = np.zeros(tile.maps.shape[1:])
        spike[150, 150] = 1.0
        amp = 3000.0 * (b.beam_fwhm_arcmin / 0.5) ** 2 * 2 * np.pi / (8 * np.log(2))
        tile.maps[i] += (beam_smooth(spike, b.beam_fwhm_arcmin, 0.5) * amp).astype(np.float32)
    with_ps = MatchedFilterFinder({"snr_min": 5.0})
    res = with_ps.filter_tile(tile)
    assert len(res.sources) >= 1
    assert np.min(np.hypot(res.sources.x - 150, res.sources.y - 150)) < 1.0
    assert abs(res.max_snr[140:160, 140:160]).max() < 6.0


def _simulated_search(seed: int, size_deg: float = 5.0):
    """Simulate a patch with ``clusterfw.sim`` (default physics and SPT-3G-like bands), run
    ``mf`` on it as one tile, and return the catalogue with the truth halos of the region the
    finder searches (the apodisation plateau)."""
    from clusterfw.core.evaluation import Truth
    from clusterfw.sim import PatchConfig, simulate_patch

    sim = simulate_patch(PatchConfig(size_deg=size_deg, pixel_arcmin=0.5), seed)
    tile = sim.sky.tiles(tile_size_arcmin=1e6, margin_arcmin=0.0)[0]
    finder = MatchedFilterFinder()
    cat = finder.find(tile)
    res = finder.filter_tile(tile)
    halos = sim.halos
    x, y = tile.world_to_pixel(halos["ra"].to_numpy(), halos["dec"].to_numpy())
    ny, nx = res.window.shape
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    ix = np.clip(np.rint(x).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(y).astype(int), 0, ny - 1)
    inside &= res.detectable[iy, ix]
    return cat, Truth.from_table(halos.filter(inside))


def test_held_out_purity_completeness_f1():
    """DeepSZ-style labels (evaluation defaults: M500c >= 2e14 Msun, z >= 0.25); threshold
    picked on a validation patch, purity/completeness/F1 reported on a separate test patch.

    At SPT-3G depth most halos of 0.7-2e14 Msun are detected at SNR 5-10 and count as false
    positives under this label, so the F1-best threshold is high (~10-13 on 25 deg² patches);
    almost every candidate above SNR 5 is a real halo (checked below).
    """
    from clusterfw.core.evaluation import evaluate, match_to_truth

    val_cat, val_truth = _simulated_search(seed=11)
    test_cat, test_truth = _simulated_search(seed=12)
    val = evaluate(val_cat, val_truth)
    thr = val.best_threshold
    test = evaluate(test_cat, test_truth, threshold=thr)
    c = test.at_threshold
    print(
        f"held-out: threshold {thr:.2f} (validation F1 {val.best.f1:.3f}); test purity "
        f"{c.purity:.3f} completeness {c.completeness:.3f} F1 {c.f1:.3f} "
        f"({c.tp + c.fn} true clusters)"
    )
    assert 6.0 < thr < 20.0
    assert c.tp + c.fn >= 20
    assert c.f1 > 0.5 and c.completeness > 0.6 and c.purity > 0.4, c
    # candidates above SNR 5 are halos (of any mass) within 1', not noise or sources
    snr = test_cat["snr"].to_numpy()
    m = match_to_truth(test_cat["ra"].to_numpy(), test_cat["dec"].to_numpy(), test_truth)
    assert np.mean(m.halo[snr >= 5.0] >= 0) > 0.85


def test_masked_hole_no_detections_in_taper():
    """NaN holes are apodised like the edge: nothing is detected in their taper (score_at NaN)."""
    tile = make_tile(n=400, seed=21)
    pos = np.array([[200.0, 150.0], [200.0, 290.0]])
    inject(tile, pos, 1.5e-4, 1.0)
    tile.maps[:, 190:210, 190:210] = np.nan  # 10' hole between the two clusters
    finder = MatchedFilterFinder({"snr_min": 5.0})
    tab = finder.find(tile)
    res = finder.filter_tile(tile)
    x, y = tile.world_to_pixel(tab["ra"].to_numpy(), tab["dec"].to_numpy())
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    assert np.all(res.window[iy, ix] >= 0.999)
    d = np.hypot(x[:, None] - pos[:, 0], y[:, None] - pos[:, 1]).min(axis=0)
    assert np.all(d < 2.0)  # both clusters found, 25' from the hole's centre
    assert np.isnan(
        finder.score_at(tile, *tile.pixel_to_world(np.array([200.0]), np.array([200.0])))
    )[0]


# ----------------------------------------------------------------- fast paths (issue 4)


def test_label_sparse_matches_ndimage_label():
    """Run-based sparse labelling: same groups and numbering as ndimage.label."""
    from scipy import ndimage

    from clusterfw.plugins.finders.mf.point_sources import _min_roots, label_sparse

    rng = np.random.default_rng(3)
    masks = [rng.random(rng.integers(1, 60, 2)) < rng.uniform(0.05, 0.7) for _ in range(150)]
    snake = np.zeros((60, 60), dtype=bool)  # one long serpentine group
    snake[::2] = True
    snake[1::4, -1] = True
    snake[3::4, 0] = True
    masks += [snake, np.zeros((5, 7), dtype=bool), np.ones((4, 9), dtype=bool)]
    for mask in masks:
        for eight in (False, True):
            ref, n = ndimage.label(mask, structure=np.ones((3, 3)) if eight else None)
            pixels, labels, n2 = label_sparse(mask, eight)
            assert n2 == n
            assert np.array_equal(pixels, np.flatnonzero(mask))
            assert np.array_equal(labels, ref.ravel()[pixels])
    # the csgraph fallback of the union-find gives the same roots
    src, dst = rng.integers(0, 300, (2, 200))
    assert np.array_equal(_min_roots(300, src, dst), _min_roots(300, src, dst, rounds=0))


@pytest.mark.parametrize("shape", [(64, 64), (63, 80), (2, 10), (45, 36)])
def test_half_plane_tables_and_cross_spectra(shape):
    """Radial tables gathered on the ky >= 0 rows and mirrored equal the full gather; binned
    cross-spectra with the ±ky rows folded equal a direct full-plane sum."""
    import scipy.fft as sfft

    from clusterfw.plugins.finders.mf.grid import fourier_grid
    from clusterfw.plugins.finders.mf.noise import cross_spectra

    grid = fourier_grid(shape, 0.5)
    rng = np.random.default_rng(0)
    table = rng.random(grid.k_fine.size)
    x = (rng.standard_normal(grid.idx.shape) + 1j * rng.standard_normal(grid.idx.shape)).astype(
        np.complex64
    )
    full = grid.gather(table)
    half = grid.gather_half(table)
    assert np.array_equal(grid.unfold(half), full)
    out = np.empty_like(x)
    assert np.array_equal(grid.apply_half(half, x, out=out), full * x)
    bins = rng.random(grid.bin_counts.size)
    binned = grid.unfold(grid.gather_half(bins, grid.bin_idx))
    assert np.array_equal(binned, bins.astype(np.float32)[grid.bin_idx])

    maps = rng.standard_normal((3, *shape)).astype(np.float32)
    f = sfft.rfft2(maps, axes=(-2, -1))
    got = cross_spectra(f, grid, 0.7)
    w = np.broadcast_to(grid.herm, grid.idx.shape).ravel()
    norm = 1.0 / (np.maximum(grid.bin_counts, 1) * 0.7)
    for i in range(3):
        for j in range(3):
            prod = (f[i] * np.conj(f[j])).real.astype(np.float64).ravel()
            ref = np.bincount(grid.bin_idx.ravel(), weights=prod * w, minlength=norm.size) * norm
            scale = np.abs(ref).max()
            assert np.allclose(got[:, i, j], ref, rtol=0, atol=1e-5 * scale)
    autos = cross_spectra(f, grid, 0.7, pairs=[(0, 0), (1, 1), (2, 2)])
    assert np.allclose(np.einsum("kii->ki", autos), np.einsum("kii->ki", got), rtol=1e-6)
    assert not autos[:, 0, 1].any()  # pairs not asked for are left alone


def test_irfft2_into_and_map_pool():
    """The inverse FFT written into a given map equals scipy's; pooled maps are handed out
    again only once nothing else refers to them, so results still held are never overwritten."""
    import scipy.fft as sfft

    from clusterfw.plugins.finders.mf.filters import MapPool
    from clusterfw.plugins.finders.mf.grid import irfft2_into

    rng = np.random.default_rng(1)
    f = sfft.rfft2(rng.standard_normal((40, 50)).astype(np.float32))
    out = np.empty((40, 50), dtype=np.float32)
    assert np.array_equal(irfft2_into(f.copy(), (40, 50), out, 1), sfft.irfft2(f, s=(40, 50)))

    pool = MapPool(limit=3)
    a = pool.take((4, 5))
    b = pool.take((4, 5))
    assert a is not b
    view = a[1:3]
    del a
    assert pool.take((4, 5)) is not view.base  # a view keeps its map
    addr = b.__array_interface__["data"][0]
    del b
    assert pool.take((4, 5)).__array_interface__["data"][0] == addr  # dropped: reused

    tile = make_tile(n=128, seed=2)
    finder = MatchedFilterFinder({"point_sources": "none"})
    held = finder.filter_tile(tile)
    kept = [m.copy() for m in held.snr]
    other = make_tile(n=128, seed=3)
    finder.filter_tile(other)  # a second tile while the first result is still held
    assert all(np.array_equal(m, k) for m, k in zip(held.snr, kept, strict=True))
    del held
    res = finder.filter_tile(make_tile(n=128, seed=4))
    assert np.array_equal(res.max_snr, np.max(res.snr, axis=0))


def test_measured_rms_is_the_mad_of_the_subsample():
    """The robust RMS (single-selection medians; strided slice or index subsample) equals
    1.4826 × MAD from np.median on the same pixels."""
    from clusterfw.plugins.finders.mf.filters import _measured_rms, _rms_pixels

    rng = np.random.default_rng(4)
    img = rng.standard_normal((97, 83)).astype(np.float32) ** 3
    box = np.zeros(img.shape, dtype=bool)
    box[10:90, 7:70] = True
    holed = box.copy()
    holed[40:50, 30:40] = False
    for interior, stride in ((box, 4), (box, 3), (holed, 4), (holed, 2)):
        pix = _rms_pixels(interior, stride)
        assert isinstance(pix, tuple) == (interior is box)
        vals = img[::stride, ::stride][interior[::stride, ::stride]].astype(np.float64)
        ref = 1.4826 * np.median(np.abs(vals - np.median(vals)))
        got = _measured_rms(img, interior, stride, pix)
        assert got == pytest.approx(ref, rel=1e-6)
        assert _measured_rms(img, interior, stride) == got


def test_irfft2_into_fallback_without_private_binding(monkeypatch):
    """Without scipy's private pocketfft binding the public ``irfft2`` path gives the same map,
    and neither path changes its input."""
    import scipy.fft as sfft

    from clusterfw.plugins.finders.mf import grid as grid_mod

    rng = np.random.default_rng(5)
    f = sfft.rfft2(rng.standard_normal((36, 42)).astype(np.float32))
    f0 = f.copy()
    fast = grid_mod.irfft2_into(f, (36, 42), np.empty((36, 42), np.float32), 1)
    assert np.array_equal(f, f0)
    monkeypatch.setattr(grid_mod, "_pocketfft", None)
    slow = grid_mod.irfft2_into(f, (36, 42), np.empty((36, 42), np.float32), 1)
    assert np.array_equal(f, f0)
    np.testing.assert_allclose(fast, slow, atol=1e-6)
    np.testing.assert_allclose(slow, sfft.irfft2(f0, s=(36, 42)), atol=1e-6)


@pytest.mark.parametrize("point_sources", ["subtract", "inpaint", "none"])
def test_band_stage_side_by_side_matches_serial(point_sources):
    """Bands run side by side (cross-spectra measured as each pair of bands becomes final)
    give exactly the serial result, and the assembled spectra are those of the final
    transforms."""
    from mf_testsky import beam_smooth

    from clusterfw.plugins.finders.mf.bands import transform_bands
    from clusterfw.plugins.finders.mf.filters import _beam_inverse, _full_geometry
    from clusterfw.plugins.finders.mf.grid import fourier_grid
    from clusterfw.plugins.finders.mf.noise import cross_spectra

    tile = make_tile(n=160, seed=6)
    for i, b in enumerate(BANDS):  # one source per band, at different places
        spike = np.zeros(tile.maps.shape[1:])
        spike[40 + 30 * i, 80] = 3e4
        tile.maps[i] += beam_smooth(spike, b.beam_fwhm_arcmin, 0.5).astype(np.float32)
    maps = tile.maps
    beams = [b.beam_fwhm_arcmin for b in BANDS]
    grid = fourier_grid(maps.shape[1:], 0.5)
    window, w2, *_ = _full_geometry(*maps.shape[1:], 20.0, 40.0, 4, grid.npix)
    binv = _beam_inverse(grid.shape, 0.5, tuple(beams))

    def run(workers):
        return transform_bands(
            maps,
            window,
            None,
            grid,
            binv,
            beams,
            0.5,
            w2,
            point_sources,
            5.0,
            None,
            workers,
            lambda: np.empty(maps.shape[1:], np.float32),
        )

    serial = run(1)
    for _ in range(3):  # completion order varies from run to run
        parallel = run(2)
        assert np.array_equal(parallel[0], serial[0])
        assert np.array_equal(parallel[1], serial[1])
        for field in ("x", "y", "band", "amp_uk", "snr"):
            assert np.array_equal(getattr(parallel[2], field), getattr(serial[2], field))
    fmaps, binned, sources = serial
    assert np.array_equal(binned, cross_spectra(fmaps, grid, w2))
    if point_sources == "none":
        assert len(sources) == 0
    else:
        assert sorted(set(sources.band.tolist())) == [0, 1, 2]


def test_subpixel_peak_from_each_peaks_own_map():
    """Peaks refined on a list of maps (each peak on its own map) equal one map at a time."""
    from clusterfw.plugins.finders.mf.point_sources import subpixel_peak

    rng = np.random.default_rng(7)
    maps = [rng.standard_normal((30, 40)).astype(np.float32) for _ in range(4)]
    py, px = rng.integers(0, 30, 50), rng.integers(0, 40, 50)
    which = rng.integers(0, 4, 50)
    got = subpixel_peak(maps, py, px, which=which)
    for m in range(4):
        sel = which == m
        ref = subpixel_peak(maps[m], py[sel], px[sel])
        for g, r in zip(got, ref, strict=True):
            assert np.array_equal(g[sel], r)


def test_rfft2_into_matches_scipy(monkeypatch):
    """The forward FFT written into a plane equals ``scipy.fft.rfft2``, with or without the
    private binding."""
    import scipy.fft as sfft

    from clusterfw.plugins.finders.mf import grid as grid_mod

    x = np.random.default_rng(8).standard_normal((3, 36, 42)).astype(np.float32)
    out = np.empty((3, 36, 22), np.complex64)
    grid_mod.rfft2_into(x[1], out[1], 2)
    assert np.array_equal(out[1], sfft.rfft2(x[1]))
    monkeypatch.setattr(grid_mod, "_pocketfft", None)
    grid_mod.rfft2_into(x[2], out[2], 1)
    assert np.array_equal(out[2], sfft.rfft2(x[2]))
