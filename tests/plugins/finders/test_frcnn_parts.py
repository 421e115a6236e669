"""``frcnn`` building blocks without a trained network: working scale, stretch, augmentation,
matching, red-sequence photo-z, weights files."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.core.errors import InputError, PluginError
from clusterfw.plugins.finders.frcnn import prep
from clusterfw.plugins.finders.frcnn.data import crop_boxes, rot_flip
from clusterfw.plugins.finders.frcnn.metrics import best_f1, f1_at, match_field, pool
from clusterfw.plugins.finders.frcnn.photoz import (
    Z_GRID,
    Sources,
    box_photoz,
    find_sources,
    moffat_enclosed,
    red_sequence_model,
)


def test_working_scale_keeps_flux_and_refuses_far_pixels():
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 1, (3, 64, 64)).astype(np.float32)
    # DES 0.263" -> 16x16 sums, exactly
    out, f = prep.to_working_scale(img, 0.263)
    assert f == 16.0 and out.shape == (3, 4, 4)
    assert out[1, 2, 3] == pytest.approx(img[1, 32:48, 48:64].sum(), rel=1e-5)
    # SDSS 0.396": 10x10 sums, then a bilinear step of 1.0626; flux per area kept
    big = np.full((3, 800, 800), 0.5, np.float32)
    out, f = prep.to_working_scale(big, 0.396)
    assert f == pytest.approx(4.208 / 0.396)
    assert out.shape[1] == int(800 // 10 / (4.208 / 0.396 / 10))
    assert np.allclose(out, 0.5 * f * f, rtol=1e-4)
    with pytest.raises(PluginError, match=r'pixels of 5" are coarser than the model'):
        prep.to_working_scale(img, 5.0)
    with pytest.raises(PluginError, match="finer than 0.1"):
        prep.check_pixel_scale(0.05)


def test_asinh_stretch_compresses_stars_and_keeps_colours():
    f = np.array([0.0, 0.2, 1.0, 1000.0], np.float32)
    x = prep.stretch(f)
    assert x[0] == 0.0
    assert x[1] == pytest.approx(np.arcsinh(1.0) / 3)
    # a 1000-nanomaggy star pixel is < 4 times a 1-nanomaggy member pixel (sqrt: 31.6 times)
    assert x[3] / x[2] < 4.0
    assert np.isfinite(prep.stretch(np.array([np.nan]))).all()


def test_rotations_and_flips_move_boxes_with_the_pixels():
    n = 40
    img = np.zeros((3, n, n), np.float32)
    box = np.array([[5.0, 8.0, 15.0, 12.0]], np.float32)  # x 5..15, y 8..12
    img[:, 8:12, 5:15] = 1.0
    for k in range(4):
        for flip in (False, True):
            x, b = rot_flip(img, box, k, flip)
            x0, y0, x1, y1 = b[0].astype(int)
            assert x[0, y0:y1, x0:x1].sum() == 40.0, (k, flip)
            assert x[0].sum() == 40.0
    b, keep = crop_boxes(np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32), 5, 5, 30)
    assert keep.tolist() == [0, 1] and b[1].tolist() == [15, 15, 30, 30]
    b, keep = crop_boxes(np.array([[40, 40, 60, 60]], np.float32), 5, 5, 30)
    assert keep.size == 0


def test_greedy_matching_and_f1():
    det = np.array([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0]])
    s = np.array([0.9, 0.8, 0.7])
    true = np.array([[0.5, 0.0], [100.0, 100.0]])
    tp, ts, off = match_field(det, s, true, 2.0)
    assert tp.tolist() == [True, False, False]
    assert ts[0] == 0.9 and ts[1] == -np.inf and off[0] == 0.5
    m = pool([(s, tp, ts, off)])
    r = f1_at(m, 0.85)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    assert r["f1"] == pytest.approx(2 / 3)
    assert best_f1(m)["threshold"] == 0.9


def test_moffat_aperture_fraction():
    # half the flux within the half-width at half maximum is not a Moffat property; check the
    # limits and a value computed by hand for beta = 3: alpha = 1 / (2 sqrt(2^(1/3) - 1))
    alpha = 1.0 / (2 * np.sqrt(2 ** (1 / 3) - 1))
    assert moffat_enclosed(1.0, np.array([1.0]), 3.0)[0] == pytest.approx(
        1 - (1 + (1 / alpha) ** 2) ** -2
    )
    assert moffat_enclosed(1e4, np.array([1.0]), 3.0)[0] == pytest.approx(1.0)


def _red_sequence_scene(z: float, n_members: int, rng: np.random.Generator):
    """A 300² px image (0.5") of Gaussian point sources: members on the E locus at z, plus
    field sources of random colours."""
    gr_m, ri_m, ms = red_sequence_model()
    k = int(np.argmin(np.abs(Z_GRID - z)))
    pix, fwhm = 0.5, 1.0
    n = 300
    img = rng.normal(0, 0.003, (3, n, n)).astype(np.float32)
    yy, xx = np.mgrid[0:n, 0:n]
    sig = fwhm / pix / 2.3548

    def paint(x, y, mags):
        g = np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sig**2) / (2 * np.pi * sig**2)
        for b in range(3):
            img[b] += 10 ** (-0.4 * (mags[b] - 22.5)) * g

    for _ in range(n_members):
        x, y = rng.normal(150, 25, 2).clip(20, 280)
        r = rng.uniform(ms[k] - 1.0, ms[k] + 1.3)
        gr = gr_m[k] + rng.normal(0, 0.03)
        ri = ri_m[k] + rng.normal(0, 0.03)
        paint(x, y, (r + gr, r, r - ri))
    for _ in range(40):
        x, y = rng.uniform(10, 290, 2)
        r = rng.uniform(19, 23)
        paint(x, y, (r + rng.uniform(0.2, 1.8), r, r - rng.uniform(0.1, 1.0)))
    return img, pix, fwhm


@pytest.mark.parametrize("z", [0.2, 0.45, 0.65])
def test_red_sequence_photoz_recovers_the_redshift(z):
    rng = np.random.default_rng(int(z * 100))
    img, pix, fwhm = _red_sequence_scene(z, 25, rng)
    src = find_sources(img, pix, fwhm)
    assert len(src) >= 40
    pz = box_photoz(src, (50.0, 50.0, 250.0, 250.0), img.shape[1:])
    assert abs(pz.z - z) / (1 + z) < 0.02, pz
    assert 0 < pz.z_err < 0.05
    assert pz.centred


def test_photoz_of_an_empty_box_is_nan():
    src = Sources(np.zeros(0), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
    pz = box_photoz(src, (0.0, 0.0, 10.0, 10.0), (100, 100))
    assert np.isnan(pz.z) and not pz.centred


def test_weights_round_trip_and_corrupt_files(tmp_path):
    torch = pytest.importorskip("torch")
    from clusterfw.plugins.finders.frcnn.model import build_model, load_weights, save_weights

    torch.manual_seed(0)
    model = build_model(width=4, window=64, head=16)
    meta = {"pixel_arcsec": 4.208, "soft_nmgy": 0.2, "bands": ["g", "r", "i"]}
    path = tmp_path / "w.safetensors"
    save_weights(model, str(path), meta)
    loaded, m = load_weights(str(path))
    assert m["pixel_arcsec"] == 4.208
    a = model.state_dict()["backbone.body.0.0.weight"].half().float()
    assert torch.equal(loaded.state_dict()["backbone.body.0.0.weight"], a)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match="bad.safetensors: not a readable safetensors file"):
        load_weights(str(bad))
    save_weights(model, str(bad), {**meta, "bands": ["r"]})
    with pytest.raises(InputError, match="metadata bands"):
        load_weights(str(bad))


def test_cosine_schedule_is_fixed_in_advance(tmp_path):
    from clusterfw.plugins.finders.frcnn.train import TrainConfig, learning_rate

    cfg = TrainConfig(out=tmp_path, lr=1e-3, lr_min=1e-5, schedule="cosine")
    total = 1000
    lrs = np.array([learning_rate(cfg, s, total, plateau_lr=123.0) for s in range(total + 1)])
    assert lrs[0] == pytest.approx(1e-3 * (1 / 50) * (1e-5 + 0.5 * (1e-3 - 1e-5) * 2) / 1e-3)
    assert lrs[49] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + np.cos(np.pi * 0.049)))
    assert lrs[500] == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert lrs[total] == pytest.approx(1e-5)
    assert np.all(np.diff(lrs[49:]) <= 0)  # after the warm-up, only down: no noise can move it
    plateau = TrainConfig(out=tmp_path, schedule="plateau")
    assert learning_rate(plateau, 10, total, plateau_lr=3e-4) == pytest.approx(3e-4 * 11 / 50)
    assert learning_rate(plateau, 900, total, plateau_lr=3e-4) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="schedule must be one of"):
        learning_rate(TrainConfig(out=tmp_path, schedule="step"), 0, total, 1e-3)


def _rs_sources(z: float, xy: list[tuple[float, float]], dmag: list[float]) -> Sources:
    """Point sources with the E colours at ``z``, r = m*(z) + dmag, tiny errors."""
    gr_m, ri_m, ms = red_sequence_model()
    k = int(np.argmin(np.abs(Z_GRID - z)))
    r = ms[k] + np.asarray(dmag)
    mags = np.stack([r + gr_m[k], r, r - ri_m[k]], axis=1)
    flux = 10 ** (-0.4 * (mags - 22.5))
    x, y = np.array(xy, float).T
    return Sources(x, y, flux, flux * 0.01)


def test_bcg_reach_and_far_rules():
    from clusterfw.plugins.finders.frcnn.evaluate import apply_centring
    from clusterfw.plugins.finders.frcnn.photoz import pick_bcg

    # the brightest member 40 px from the box centre, a fainter one 5 px from it
    src = _rs_sources(0.3, [(140.0, 100.0), (105.0, 100.0)], [-2.0, 0.0])
    assert pick_bcg(src, 0.3, 100.0, 100.0, reach=60.0) == 0
    assert pick_bcg(src, 0.3, 100.0, 100.0, reach=20.0) == 1
    assert pick_bcg(src, float("nan"), 100.0, 100.0, reach=60.0) == -1
    assert pick_bcg(src, 0.6, 100.0, 100.0, reach=60.0) == -1  # wrong colours at z = 0.6
    # two boxes of side 200 px (1" pixels): one with a photo-z, one without
    field = {
        "xy_box": np.array([[100.5, 100.5], [300.5, 300.5]]),
        "side": np.array([200.0, 200.0]),
        "z": np.array([0.3, np.nan]),
        "p_raw": np.array([0.8, 0.6]),
        "pix": 1.0,
        "src": src,
    }
    apply_centring([field], None, None, 1.0)  # 0.35 sides = 70 px: the bright one
    np.testing.assert_allclose(field["xy_bcg"][0], (140.5, 100.5))
    np.testing.assert_allclose(field["p"], [0.8, 0.6])
    apply_centring([field], 0.5, None, 0.5)  # within 30": the near member; no-z box halved
    np.testing.assert_allclose(field["xy_bcg"][0], (105.5, 100.5))
    np.testing.assert_allclose(field["p"], [0.8, 0.3])
    apply_centring([field], None, 0.25, 0.0)  # the bright one is 40" > 15" away: box centre
    np.testing.assert_allclose(field["xy_bcg"], field["xy_box"])
    np.testing.assert_allclose(field["p"], [0.8, 0.0])


def _crowd_scene() -> Sources:
    """z = 0.3, 1" pixels, box centre (100, 100): an isolated bright red galaxy A 60 px (~270
    kpc) east, and B, 0.5 mag fainter, 2 px from the centre amid eight red members."""
    rng = np.random.default_rng(7)
    xy = [(160.0, 100.0), (102.0, 100.0)]
    xy += [(102.0 + dx, 100.0 + dy) for dx, dy in rng.normal(0, 6, (8, 2))]
    dmag = [-2.0, -1.5, *rng.uniform(0.0, 1.0, 8)]
    return _rs_sources(0.3, xy, dmag)


def test_central_galaxy_is_bright_and_surrounded_by_the_red_sequence():
    from clusterfw.plugins.finders.frcnn.photoz import kpc_per_pixel, pick_bcg, pick_central

    src = _crowd_scene()
    kpp = kpc_per_pixel(0.3, 1.0)
    assert 4.3 < kpp < 4.7  # proper kpc per arcsec at z = 0.3 (Planck-like cosmology)
    sig = 100.0 / kpp
    # the brightest red galaxy is the isolated one; the central is the one in the crowd
    assert pick_bcg(src, 0.3, 100.0, 100.0, reach=70.0) == 0
    assert pick_central(src, 0.3, 100.0, 100.0, 70.0, sig, gamma=2.0) == 1
    # luminosity alone (a huge gamma) gives the brightest back; no candidate in reach: -1
    assert pick_central(src, 0.3, 100.0, 100.0, 70.0, sig, gamma=50.0) == 0
    assert pick_central(src, 0.3, 300.0, 300.0, 20.0, sig) == -1
    assert pick_central(src, float("nan"), 100.0, 100.0, 70.0, sig) == -1
    assert pick_central(src, 0.65, 100.0, 100.0, 70.0, sig) == -1  # wrong colours at 0.65


def test_box_photoz_centres_on_the_central_within_the_offset_limit():
    src = _crowd_scene()
    box = (0.0, 0.0, 200.0, 200.0)  # centre (100, 100), 0.35 sides = 70 px
    pz = box_photoz(src, box, (200, 200), pixel_arcsec=1.0)
    assert abs(pz.z - 0.3) < 0.02 and pz.centred
    assert (pz.x, pz.y) == (102.0, 100.0)
    # the session-5 rule takes the brightest; a 5 kpc limit (B is ~9 kpc off) the box centre
    old = box_photoz(src, box, (200, 200), pixel_arcsec=1.0, centring="brightest")
    assert (old.x, old.y) == (160.0, 100.0)
    tight = box_photoz(src, box, (200, 200), pixel_arcsec=1.0, max_offset_kpc=5.0)
    assert (tight.x, tight.y, tight.centred) == (100.0, 100.0, False)
    with pytest.raises(ValueError, match="centring must be"):
        box_photoz(src, box, (200, 200), centring="median")


def test_a_second_red_sequence_makes_the_redshift_ambiguous():
    rng = np.random.default_rng(3)

    def population(z: float, n: int) -> Sources:
        xy = [tuple(v) for v in 100.0 + rng.normal(0, 12, (n, 2))]
        return _rs_sources(z, xy, list(rng.uniform(-0.5, 1.0, n)))

    def merged(*parts: Sources) -> Sources:
        return Sources(*(np.concatenate([getattr(p, a) for p in parts])
                         for a in ("x", "y", "flux", "err")))  # fmt: skip

    box = (0.0, 0.0, 200.0, 200.0)
    one = box_photoz(population(0.25, 12), box, (200, 200))
    assert abs(one.z - 0.25) < 0.02 and not one.ambiguous and np.isnan(one.z_alt)
    # a projected second cluster at z = 0.6 with as many members: both redshifts reported
    two = box_photoz(merged(population(0.25, 12), population(0.6, 12)), box, (200, 200))
    assert two.ambiguous
    zs = sorted([two.z, two.z_alt])
    assert abs(zs[0] - 0.25) < 0.02 and abs(zs[1] - 0.6) < 0.03, two
    assert two.z_err >= abs(two.z_alt - two.z) > 0.3
    # two members at z = 0.6 are below AMBIGUOUS_RATIO of twelve: not a second structure
    few = box_photoz(merged(population(0.25, 12), population(0.6, 2)), box, (200, 200))
    assert abs(few.z - 0.25) < 0.02 and not few.ambiguous and few.z_err < 0.05


def test_central_rule_in_the_evaluation_and_its_grid():
    from clusterfw.plugins.finders.frcnn.evaluate import apply_centring, centring_grid

    src = _crowd_scene()
    field = {
        "xy_box": np.array([[100.5, 100.5]]),
        "side": np.array([200.0]),
        "z": np.array([0.3]),
        "p_raw": np.array([0.8]),
        "pix": 1.0,
        "src": src,
    }
    apply_centring([field], centring="central", gamma=2.0, sigma_kpc=100.0, max_offset_kpc=200.0)
    np.testing.assert_allclose(field["xy_bcg"][0], (102.5, 100.5))
    apply_centring([field], centring="brightest")  # 60 px = ~270 kpc away, no limit
    np.testing.assert_allclose(field["xy_bcg"][0], (160.5, 100.5))
    apply_centring([field], centring="central", gamma=50.0, max_offset_kpc=200.0)
    np.testing.assert_allclose(field["xy_bcg"][0], (100.5, 100.5))  # A is > 200 kpc: box
    grid = centring_grid()
    assert len(grid) == 4 * 3 * 4 + 3 * 2 * 4 * 4
    assert {"centring": "central", "gamma": 2.0, "sigma_kpc": 100.0, "max_offset_kpc": 200.0,
            "nored_weight": 0.5} in grid  # fmt: skip


def test_an_extended_bcg_outshines_a_compact_satellite_in_the_wide_aperture():
    """A de Vaucouleurs-like BCG (Gaussian of 4" FWHM after seeing) with twice the light of a
    compact red satellite: the PSF aperture sees the satellite brighter, the wide one the BCG,
    and both the brightest and the central rule take the BCG."""
    from clusterfw.plugins.finders.frcnn.photoz import (
        TOTAL_APERTURE_ARCSEC,
        pick_bcg,
        pick_central,
    )

    z = 0.35
    gr_m, ri_m, ms = red_sequence_model()
    k = int(np.argmin(np.abs(Z_GRID - z)))
    pix, fwhm, n = 0.5, 1.0, 200
    rng = np.random.default_rng(11)
    img = rng.normal(0, 0.002, (3, n, n)).astype(np.float32)
    yy, xx = np.mgrid[0:n, 0:n]

    def paint(x: float, y: float, r: float, fwhm_arcsec: float) -> None:
        sig = fwhm_arcsec / pix / 2.3548
        g = np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sig**2) / (2 * np.pi * sig**2)
        for b, m in enumerate((r + gr_m[k], r, r - ri_m[k])):
            img[b] += 10 ** (-0.4 * (m - 22.5)) * g

    paint(100, 100, ms[k] - 1.5, 4.0)  # the BCG: 2x the satellite's light, spread out
    paint(130, 100, ms[k] - 0.75, fwhm)  # a compact satellite 15" east
    src = find_sources(img, pix, fwhm)
    near = [int(np.argmin(np.hypot(src.x - x, src.y - 100))) for x in (100, 130)]
    bcg, sat = near
    assert src.flux[sat, 1] > src.flux[bcg, 1]  # PSF aperture: the satellite looks brighter
    assert src.flux_wide is not None and src.flux_wide[bcg, 1] > src.flux_wide[sat, 1]
    assert TOTAL_APERTURE_ARCSEC / pix > 2 * fwhm / pix
    assert pick_bcg(src, z, 115.0, 100.0, reach=40.0) == bcg
    assert pick_central(src, z, 115.0, 100.0, 40.0, 20.0, gamma=2.0) == bcg
    # without the wide aperture (sources built by hand) the PSF aperture decides: the satellite
    bare = Sources(src.x, src.y, src.flux, src.err)
    assert pick_bcg(bare, z, 115.0, 100.0, reach=40.0) == sat


def test_boxes_move_onto_the_bcg_keeping_their_size(tmp_path):
    from clusterfw.plugins.finders.frcnn.data import load_fields, recentre_boxes
    from clusterfw.sim.shards.common import write_dataset
    from clusterfw.sim.shards.detection import (
        KIND,
        OpticalFieldsConfig,
        bcg_positions,
        field_samples,
    )

    b = np.array([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 8.0, 8.0]])
    c = np.array([[20.0, 30.0], [4.0, 4.0]])
    new = recentre_boxes(b, c, np.array([[25.0, 28.0], [1.0, 4.0]]), (50, 50))
    assert np.allclose(new[0], [15, 18, 35, 38])  # moved, size kept
    assert np.allclose(new[1], [0, 0, 5, 8])  # clipped at the edge
    # Deep-CEE's truth in the training data: boxes and centres on the simulated BCG
    cfg = OpticalFieldsConfig(size_deg=0.06, preset="sdss", rebin=2, max_clusters=2,
                              empty_fraction=0.0, z_max=0.4)  # fmt: skip
    out = tmp_path / "fields"
    write_dataset(out, KIND, 5, cfg.model_dump(mode="json"), 3, 2, field_samples(cfg, 5, 3),
                  progress=False)  # fmt: skip
    halo = load_fields([out])
    bcg = load_fields([out], box_centre="bcg")
    truth = bcg_positions(out)
    moved = 0
    for k in range(3):
        assert np.allclose(bcg.centres[k], truth[k] / bcg.factor)
        shift = bcg.centres[k] - halo.centres[k]
        moved += int(np.any(np.abs(shift) > 1e-6))
        inside = np.all((bcg.boxes[k] > 0) & (bcg.boxes[k] < bcg.x.shape[-1]), axis=1)
        inside &= np.all((halo.boxes[k] > 0) & (halo.boxes[k] < halo.x.shape[-1]), axis=1)
        sides = bcg.boxes[k][:, 2:] - bcg.boxes[k][:, :2]
        assert np.allclose(sides[inside], (halo.boxes[k][:, 2:] - halo.boxes[k][:, :2])[inside])
        assert np.allclose(bcg.boxes[k][inside, :2] - halo.boxes[k][inside, :2], shift[inside])
    assert moved >= 1, "no miscentred BCG in these fields: the move is not tested"
    with pytest.raises(ValueError, match="box_centre"):
        load_fields([out], box_centre="members")
