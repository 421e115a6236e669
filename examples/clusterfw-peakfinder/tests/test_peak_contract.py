"""The example plugin's own tests, written with clusterfw's kit for plugin authors."""

from __future__ import annotations

import clusterfw_peakfinder.plugin as peak_plugin
import numpy as np
import pytest
from clusterfw_peakfinder.finder import PeakFinder

from clusterfw.core.errors import PluginError
from clusterfw.core.evaluation.matching import separation_arcmin
from clusterfw.core.pipeline import run_pipeline
from clusterfw.core.plugins import Registry, get_plugin_manager
from clusterfw.testing import check_finder_contract, small_mm_sky


@pytest.fixture(scope="module")
def sky():
    return small_mm_sky(seed=0, simulator=False)  # 12 bright decrements in 1 deg2


def test_contract(sky):
    report = check_finder_contract(PeakFinder, sky)  # scores: noise is measured per tile
    assert report.numbers["n_one_tile"] == 11
    assert report.numbers["matched_one_in_split"] == 1.0
    assert report.numbers["score_at_max_rel_error"] < 1e-6


def test_registered_through_its_hook():
    registry = Registry(get_plugin_manager(load_entrypoints=False, extra_plugins=[peak_plugin]))
    assert registry.names("finder") == ["peak"]
    assert registry.get("finder", "peak") is PeakFinder


def test_finds_the_injected_clusters(sky):
    table = run_pipeline(sky.sky, [PeakFinder()], tile_size_arcmin=30)
    truth_ra, truth_dec = sky.truth.column("ra").to_numpy(), sky.truth.column("dec").to_numpy()
    ra, dec = table.column("ra").to_numpy(), table.column("dec").to_numpy()
    nearest = np.array(
        [separation_arcmin(r, d, truth_ra, truth_dec).min() for r, d in zip(ra, dec, strict=True)]
    )
    assert np.median(nearest) < 0.3  # arcmin
    assert np.sum(nearest < 1.0) >= 10


def test_bad_options_are_one_line_plugin_errors():
    with pytest.raises(PluginError, match=r"^bad option for finder 'peak': peak.threshold: "):
        PeakFinder({"threshold": -1})
    with pytest.raises(PluginError, match=r"peak.bogus: Extra inputs are not permitted$"):
        PeakFinder({"bogus": 1})
