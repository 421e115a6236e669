"""The shipped vgg_mass networks: files, cards, sizes, and masses on fresh simulated cutouts."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.plugins.estimators.vgg_mass.plugin import read_network_config, shipped_sets
from clusterfw.plugins.estimators.vgg_mass.surveys import SURVEY_DIRS
from clusterfw.plugins.estimators.vgg_mass.train import stem

SETS = {
    "act": [("y", "xray", "optical"), ("y", "xray"), ("y",)],
    "deep": [("y", "xray", "optical"), ("y",)],
}


def test_shipped_networks_have_configs_cards_and_fit_the_size_limit():
    total = 0
    for survey, sets in SETS.items():
        wdir = SURVEY_DIRS[survey]
        assert shipped_sets(wdir) == sets
        for chans in sets:
            cfg = read_network_config(wdir / f"{stem(chans)}.json")
            assert tuple(cfg["channels"]) == chans
            assert cfg["ymap_preset"] == survey
            assert 0.3 < cfg["sigma_scale"] < 3.0
            assert cfg["setting"] == "randomised"
            card = (wdir / f"{stem(chans)}.md").read_text()
            assert "clusterfw train vgg_mass" in card and "SMOKE" not in card
            total += (wdir / f"{stem(chans)}.weights.h5").stat().st_size
    assert total < 25 * 2**20


# (survey, channels, largest |median ln ratio|, largest median |ln ratio|) on 24 fresh cutouts
CASES = [
    ("act", ("y",), 0.15, 0.3),
    ("act", ("y", "xray", "optical"), 0.15, 0.3),
    ("deep", ("y",), 0.1, 0.2),
    ("deep", ("y", "xray", "optical"), 0.1, 0.2),
]


@pytest.mark.parametrize(("survey", "chans", "max_bias", "max_abs"), CASES)
def test_shipped_networks_recover_masses_of_unseen_cutouts(survey, chans, max_bias, max_abs):
    """Fresh cutouts (a seed the training never used): median bias and scatter are sane."""
    pytest.importorskip("tensorflow")
    from clusterfw.plugins.estimators.vgg_mass import data as d
    from clusterfw.plugins.estimators.vgg_mass.plugin import VggMassEstimator
    from clusterfw.sim.shards.mass import MassCutoutConfig, pack_mass_cutout, render_mass_cutout

    est = VggMassEstimator({"threads": 1, "survey": survey})
    model, cfg = est.network(chans)
    raw_npix = cfg["npix"] * cfg["rebin"]
    sim = MassCutoutConfig(
        npix=raw_npix, size_arcmin=raw_npix * cfg["pixel_arcmin"] / cfg["rebin"],
        m_min=2e14, m_max=1e15, offset_arcmin=1.0, setting="randomised", ymap_preset=survey,
    )  # fmt: skip
    rows = [pack_mass_cutout(sim, render_mass_cutout(sim, 777, i)) for i in range(24)]
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    x = d.stack_channels(arrays, chans, cfg["rebin"])
    pred = model.predict({"image": x, "z": arrays["z"][:, None].astype(np.float32)}, verbose=0)
    r = np.asarray(pred)[:, 0] - d.target(arrays["m500c"])
    assert abs(np.median(r)) < max_bias
    assert np.median(np.abs(r)) < max_abs
