"""vgg_mass picks the network folder of the y survey whose noise matches the run's y layer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clusterfw.core.errors import PluginError
from clusterfw.plugins.estimators.vgg_mass import plugin as plugin_mod
from clusterfw.plugins.estimators.vgg_mass.surveys import measured_y_noise, nearest_survey

HALOS = {"m500c": [4e14], "z": [0.3], "ra": [30.0], "dec": [-10.0]}


@pytest.mark.parametrize(("depth", "rel"), [(5e-7, 0.6), (1e-5, 0.15), (4e-5, 0.15)])
def test_measured_noise_of_white_noise_with_a_cluster(depth, rel):
    """Within 15 %; at the deep depth the cluster's wings add up to 60 % (the surveys'
    depths differ by 20x, so the choice is not at stake)."""
    rng = np.random.default_rng(1)
    pix = 0.5
    n = 40
    yy, xx = np.mgrid[0:n, 0:n] - (n - 1) / 2
    cluster = 1e-4 * np.exp(-0.5 * (np.hypot(yy, xx) * pix / 1.5) ** 2)  # bright, smooth
    cuts = cluster + rng.standard_normal((30, n, n)) * depth / pix
    assert measured_y_noise(cuts, pix) == pytest.approx(depth, rel=rel)


def test_measured_noise_of_beam_smoothed_noise_is_its_large_scale_depth():
    """Noise smoothed by a 1.6' beam (an ILC y map) reads near its depth, not 4x below it."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    pix, depth = 0.5, 1e-5
    white = rng.standard_normal((30, 40, 40)) * depth / pix
    sig = 1.6 / 2.3548 / pix
    smooth = np.stack([gaussian_filter(w, sig, mode="wrap") for w in white])
    per_pixel = np.median(np.std(smooth, axis=(1, 2))) * pix
    assert per_pixel < 0.3 * depth  # what a per-pixel rms would say
    assert 0.5 * depth < measured_y_noise(smooth, pix) < depth  # 0.59: less noise at 2′


def test_measured_noise_without_finite_pixels_is_nan():
    assert math.isnan(measured_y_noise(np.full((2, 20, 20), np.nan), 0.5))
    assert math.isnan(measured_y_noise(np.zeros((0, 20, 20)), 0.5))


def test_nearest_survey_in_log():
    depths = {"act": 1e-5, "deep": 5e-7}
    assert nearest_survey(8e-6, depths) == "act"
    assert nearest_survey(3e-6, depths) == "act"  # nearer 1e-5 than 5e-7 in log
    assert nearest_survey(1.5e-6, depths) == "deep"
    assert nearest_survey(math.nan, depths) == "act"


@pytest.fixture(scope="module")
def survey_dirs(tmp_path_factory, untrained_y_network):
    root = tmp_path_factory.mktemp("surveys")
    return {k: untrained_y_network(root / k, 40, seed=5, preset=k) for k in ("act", "deep")}


def _sky(tmp_path, preset):
    from clusterfw.core.layers.sorting import sort_into_layers
    from clusterfw.sim import ymap
    from clusterfw.sim.footprint import Footprint
    from clusterfw.sim.shards.common import halo_table

    rng = np.random.default_rng(3)
    h = halo_table(*(np.array(HALOS[k]) for k in ("m500c", "z", "ra", "dec")), rng)
    field = ymap.render_ymap(h, Footprint(30.0, -10.0, 0.4, 0.4, "TAN"), preset, rng)
    return sort_into_layers([ymap.write_ymap(field, tmp_path)["ymap"]], check_overlap=False)


def _table():
    import pyarrow as pa

    from clusterfw.core.schema import candidate_table, field_metadata

    ra, dec = np.array([30.0, 30.05]), np.array([-10.0, -10.05])
    t = candidate_table(finder="mf", score_kind="snr", ra=ra, dec=dec, score=np.array([5.0, 4.0]))
    field = pa.field("z", pa.float64(), metadata=field_metadata("", "Redshift (test input)"))
    return t.append_column(field, pa.array([0.3, 0.5], pa.float64()))


@pytest.mark.parametrize("preset", ["act", "deep"])
def test_auto_picks_the_survey_of_the_y_layer(preset, survey_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(plugin_mod, "SURVEY_DIRS", survey_dirs)
    est = plugin_mod.VggMassEstimator({"threads": 1})
    out = est.estimate(_table(), _sky(tmp_path, preset))
    assert out.column("vgg_mass_survey").to_pylist() == [preset, preset]
    assert all(math.isfinite(m) for m in out.column("vgg_mass_m500c").to_pylist())


def test_forced_survey_wins_over_the_noise(survey_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(plugin_mod, "SURVEY_DIRS", survey_dirs)
    est = plugin_mod.VggMassEstimator({"threads": 1, "survey": "act"})
    out = est.estimate(_table(), _sky(tmp_path, "deep"))
    assert out.column("vgg_mass_survey").to_pylist() == ["act", "act"]


def test_unknown_survey_is_one_line():
    with pytest.raises(PluginError, match=r"^vgg_mass.survey: expected auto or one of act, deep"):
        plugin_mod.VggMassEstimator({"survey": "planck"})
