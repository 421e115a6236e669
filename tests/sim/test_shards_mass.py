"""Mass cutouts: channels consistent with the target's Y500, L_X and stellar mass; labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clusterfw.sim.shards.mass import MassCutoutConfig, pack_mass_cutout, render_mass_cutout
from clusterfw.sim.xray import XRAY_PRESETS

# alone: no neighbours (floor at the top of the mass range), compact targets (z > 0.6)
ALONE = MassCutoutConfig(neighbour_floor=1e16, z_min=0.6, z_max=1.0)
NO_AGN = XRAY_PRESETS["erosita"].model_copy(update={"agn_s_min": 1e-11, "agn_s_max": 1.000001e-11})


@pytest.mark.parametrize("index", [0, 1, 2])
def test_channels_match_the_target_y500_lx_and_stellar_mass(index):
    cut = render_mass_cutout(ALONE, 5, index, xray_preset=NO_AGN)
    s = pack_mass_cutout(ALONE, cut)
    assert cut.halos.num_rows == 1 and int(s["n_neighbours"]) == 0
    pix = ALONE.pixel_arcmin
    # y: the noiseless beamed map holds Y inside 5 R500 = Y500 I(5)/I(1) (A10); the stored
    # channel is that plus white noise of the preset's depth
    y_total = float(cut.ymap.y_signal.astype(np.float64).sum()) * pix**2
    assert y_total == pytest.approx(float(s["y500"]) * 1.1037 / 0.6145, rel=3e-3)
    assert np.array_equal(s["y"], cut.ymap.y)
    resid = (s["y"] - cut.ymap.y_signal).astype(np.float64)
    want_rms = 1e-5 / pix  # act: 1e-5 y arcmin
    assert resid.std() == pytest.approx(want_rms, rel=4 / math.sqrt(2 * resid.size))
    # X-ray: counts minus the known background = flux x ECF x exposure within Poisson
    net = float(s["xray_counts"].sum()) - float(cut.xray.background.astype(np.float64).sum())
    expected = float(s["xray_model_counts"])
    assert net == pytest.approx(expected, abs=4 * math.sqrt(float(s["xray_counts"].sum())))
    assert np.all(s["xray_exposure"] == 2000.0)
    # stellar mass: the members' total, all inside R200 within the cutout
    assert float(s["stellar_mass"].sum()) == pytest.approx(float(s["mstar_total"]), rel=1e-4)


def test_labels_are_the_target_halo_and_in_range():
    cfg = MassCutoutConfig(size_arcmin=10.0, npix=40)
    for i in range(4):
        cut = render_mass_cutout(cfg, 9, i)
        s = pack_mass_cutout(cfg, cut)
        h = cut.halos
        for name in ("m500c", "z", "y500", "lx500", "richness", "dln_y", "dln_lx"):
            assert float(s[name]) == h[name][0].as_py()
        assert 1e14 <= float(s["m500c"]) <= 1e15 and 0.1 <= float(s["z"]) <= 1.0
        # the deviates are the truth's: ln(Y/Y_median)
        assert float(s["dln_y"]) == pytest.approx(
            math.log(h["y500"][0].as_py() / h["y500_median"][0].as_py())
        )
        assert s["y"].shape == (40, 40) and s["y"].dtype == np.float32
        assert s["xray_counts"].dtype == np.uint16
    # neighbours above 3e13 Msun are there along the line of sight (~10 per 10' + margins)
    n_halos = [render_mass_cutout(cfg, 9, i).halos.num_rows for i in range(4)]
    assert sum(n_halos) > 4 + 8


def test_target_is_at_the_centre_of_every_channel():
    cfg = ALONE.model_copy(update={"m_min": 8e14, "m_max": 1e15})
    cut = render_mass_cutout(cfg, 2, 0, xray_preset=NO_AGN)
    s = pack_mass_cutout(cfg, cut)
    n = cfg.npix
    c = (n - 1) / 2.0
    for name in ("stellar_mass",):
        img = s[name].astype(np.float64)
        yy, xx = np.indices(img.shape)
        assert (img * xx).sum() / img.sum() == pytest.approx(c, abs=0.05)
        assert (img * yy).sum() / img.sum() == pytest.approx(c, abs=0.05)
    sig = cut.ymap.y_signal.astype(np.float64)
    iy, ix = np.unravel_index(np.argmax(sig), sig.shape)
    assert abs(ix - c) <= 1 and abs(iy - c) <= 1
