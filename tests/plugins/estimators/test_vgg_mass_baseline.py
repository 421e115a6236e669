"""The Y–M inversion baseline recovers the masses whose Y it was given."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("scipy")
from clusterfw.plugins.estimators.vgg_mass.baseline import ysz_mass  # noqa: E402


def _cutout(m500c, z, *, noise=0.0, on_relation=True, npix=120, size=20.0, seed=1):
    """A y cutout of one halo at the centre, rendered by the simulator (act beam)."""
    from clusterfw.sim import ymap
    from clusterfw.sim.footprint import Footprint
    from clusterfw.sim.shards.common import halo_table

    rng = np.random.default_rng(seed)
    h = halo_table(np.array([m500c]), np.array([z]), np.array([60.0]), np.array([-45.0]), rng)
    if on_relation:
        h = h.set_column(h.column_names.index("y500"), "y500", h["y500_median"])
    fp = Footprint(60.0, -45.0, size / 60, size / 60, "TAN")
    p = ymap.get_preset("act").model_copy(
        update={"pixel_arcmin": size / npix, "noise_y_arcmin": noise}
    )
    return ymap.render_ymap(h, fp, p, rng, stellar_mass=False).y, h


@pytest.mark.parametrize(
    ("m500c", "z"), [(1e14, 0.1), (1e14, 1.0), (2.5e14, 0.35), (6e14, 0.7), (1e15, 0.1)]
)
def test_noiseless_cutouts_invert_to_the_true_mass(m500c, z):
    y, _ = _cutout(m500c, z)
    r = ysz_mass(y, z, 20.0 / 120, 1.6, 0.0)
    assert not r.flag
    assert abs(math.log(r.m500c / m500c)) < 0.02
    # no map noise: the error is the relation's scatter alone, sigma_lnY / B
    assert r.m500c_err / r.m500c == pytest.approx(0.2 / 1.78, rel=1e-9)


def test_scattered_y_gives_the_mass_its_y_implies():
    y, h = _cutout(3e14, 0.5, on_relation=False, seed=4)
    dln_y = math.log(h["y500"][0].as_py() / h["y500_median"][0].as_py())
    assert abs(dln_y) > 0.05  # the draw is off the relation
    r = ysz_mass(y, 0.5, 20.0 / 120, 1.6, 0.0)
    assert math.log(r.m500c / 3e14) == pytest.approx(dln_y / 1.78, abs=0.01)


def test_noise_enters_the_error_and_empty_cutouts_are_flagged():
    y, _ = _cutout(2e14, 0.8, noise=1e-5, seed=2)
    r = ysz_mass(y, 0.8, 20.0 / 120, 1.6)  # noise estimated from the cutout
    assert not r.flag and r.m500c_err / r.m500c > 0.2 / 1.78
    blank = np.random.default_rng(0).normal(0, 6e-5, (120, 120)) - 1e-5
    bad = ysz_mass(blank, 0.5, 20.0 / 120, 1.6)
    assert bad.flag and math.isnan(bad.m500c)
    assert ysz_mass(y, float("nan"), 20.0 / 120, 1.6).flag
