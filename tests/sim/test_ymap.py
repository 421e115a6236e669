"""y-map layer: white-noise RMS, beam width, Y conservation, stellar mass, FITS keywords."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits

from clusterfw.sim.footprint import Footprint
from clusterfw.sim.instrument import ARCMIN
from clusterfw.sim.ymap import YMAP_PRESETS, render_ymap, write_stellar_mass, write_ymap


def _halos(n: int = 1, theta: float = 2.0, y500: float = 1e-3) -> pa.Table:
    cols = {
        "ra": np.full(n, 60.0),
        "dec": np.full(n, -45.0),
        "theta500_arcmin": np.full(n, theta),
        "y500": np.full(n, y500),
        "m500c": np.full(n, 3e14),
        "m200c": np.full(n, 4.2e14),
        "c200c": np.full(n, 4.0),
        "mstar_total": np.full(n, 5e12),
    }
    return pa.table({k: pa.array(v) for k, v in cols.items()})


@pytest.mark.parametrize("name", ["act", "planck", "s4", "deep"])
def test_noise_rms_matches_the_preset_depth(name):
    p = YMAP_PRESETS[name]
    fp = Footprint(60.0, -45.0, 2.0, 2.0)
    f = render_ymap(_halos(0), fp, p, np.random.default_rng(1), stellar_mass=False)
    n = f.y.size
    want = p.noise_y_arcmin / p.pixel_arcmin
    assert f.y.std() == pytest.approx(want, rel=4 / np.sqrt(2 * n))
    assert np.abs(f.y_signal).max() == 0.0


def _second_moment(sig: np.ndarray) -> float:
    yy, xx = np.indices(sig.shape)
    cx = (sig * xx).sum() / sig.sum()
    return float((sig * (xx - cx) ** 2).sum() / sig.sum())


def test_beam_width_from_a_compact_halo_and_y_conserved():
    p = YMAP_PRESETS["act"]
    fp = Footprint(60.0, -45.0, 0.5, 0.5)
    y500 = 2e-3  # arcmin2
    halos = _halos(1, theta=0.1, y500=y500)
    f = render_ymap(halos, fp, p, np.random.default_rng(2))
    sig = f.y_signal.astype(float)
    pix_sr = (p.pixel_arcmin * ARCMIN) ** 2
    # Y inside the truncation radius (5 R500) over Y500: A10's I(5)/I(1)
    total_arcmin2 = sig.sum() * pix_sr / ARCMIN**2
    assert total_arcmin2 == pytest.approx(y500 * 1.1037 / 0.6145, rel=2e-3)
    # second moments add: beamed = intrinsic (no beam) + (FWHM / 2.3548)^2 per axis
    sharp = p.model_copy(update={"beam_fwhm_arcmin": 1e-3})
    raw = render_ymap(halos, fp, sharp, np.random.default_rng(2)).y_signal.astype(float)
    beam_var = _second_moment(sig) - _second_moment(raw)
    fwhm = np.sqrt(beam_var) * 2.3548 * p.pixel_arcmin
    assert fwhm == pytest.approx(p.beam_fwhm_arcmin, rel=0.01)


def test_stellar_mass_map_sums_to_the_members_mass(tmp_path):
    fp = Footprint(60.0, -45.0, 0.5, 0.5)
    f = render_ymap(_halos(1, theta=3.0), fp, "act", np.random.default_rng(3))
    assert f.stellar_mass is not None
    assert float(f.stellar_mass.sum()) == pytest.approx(5e12, rel=1e-5)
    # concentrated (NFW, c = 4) and falling outwards
    ny, nx = f.stellar_mass.shape
    row = f.stellar_mass[ny // 2, nx // 2 :]
    assert row[0] > 3 * row[2] and (np.diff(row[:6]) < 0).all()
    path = write_stellar_mass(f, tmp_path / "sm")
    assert fits.getheader(path)["BUNIT"] == "solMass"


def test_rerun_is_bit_identical_and_fits_keywords(tmp_path):
    fp = Footprint(60.0, -45.0, 0.5, 0.5)
    a = render_ymap(_halos(1), fp, "planck", np.random.default_rng(4))
    b = render_ymap(_halos(1), fp, "planck", np.random.default_rng(4))
    assert np.array_equal(a.y, b.y) and np.array_equal(a.stellar_mass, b.stellar_mass)
    path = write_ymap(a, tmp_path)["ymap"]
    h = fits.getheader(path)
    assert h["BUNIT"] == "Compton-y"
    assert h["BEAMFWHM"] == 10.0
    assert h["CTYPE2"].startswith("DEC--")
    assert np.array_equal(fits.getdata(path), a.y)
