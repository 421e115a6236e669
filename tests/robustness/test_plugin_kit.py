"""clusterfw.testing: the kit for plugin authors, run on the built-in plugins (issue 11)."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest

from clusterfw.core.plugin_api import Estimator, Finder
from clusterfw.core.schema import candidate_table, plugin_field
from clusterfw.plugins.combiners.and_ import AndCombiner
from clusterfw.plugins.combiners.rankprod import RankProductCombiner
from clusterfw.testing import (
    ContractError,
    check_combiner_contract,
    check_estimator_contract,
    check_finder_contract,
    small_mm_sky,
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def sky2():
    return small_mm_sky(seed=0, size_deg=2.0)


def test_small_mm_sky_is_seeded():
    a, b = small_mm_sky(3, simulator=False), small_mm_sky(3, simulator=False)
    np.testing.assert_array_equal(a.sky.maps, b.sky.maps)
    assert a.sky.maps.shape == (3, 120, 120) and a.truth.num_rows == 12
    assert not np.array_equal(small_mm_sky(4, simulator=False).sky.maps, a.sky.maps)
    sim = small_mm_sky(1)
    assert sim.simulated and sim.sky.maps.shape == (3, 120, 120)
    assert set(sim.truth.column_names) == {"ra", "dec", "z", "m500c"}


def test_mf_passes(sky2):
    from clusterfw.plugins.finders.mf.finder import MatchedFilterFinder

    # mf's score_at (bilinear in the max-SNR map) reads 1-16 % below find's sub-pixel peak SNR
    # on this sky, hence the looser score_at tolerance; its noise is measured per tile, hence
    # the default score tolerance of the tiling check
    report = check_finder_contract(MatchedFilterFinder, sky2, score_at_rtol=0.2)
    assert report.numbers["n_one_tile"] >= 30
    assert report.numbers["matched_one_in_split"] >= 0.9
    assert report.numbers["score_at_max_rel_error"] < 0.2


def test_resnet_passes():
    pytest.importorskip("torch")
    from clusterfw.plugins.finders.resnet.finder import ResNetFinder

    report = check_finder_contract(
        ResNetFinder,
        small_mm_sky(seed=2, size_deg=0.75, pixel_arcmin=0.25),
        options={"p_min": 0.3, "threads": 1},
    )
    assert report.numbers["n_one_tile"] >= 1


def test_a_finder_that_ignores_the_core_fails():
    class Greedy(Finder):
        name = "greedy"
        margin_arcmin = 5.0

        def find(self, tile):
            ny, nx = tile.shape
            ra, dec = tile.pixel_to_world(np.array([1.0, nx - 2.0]), np.array([1.0, ny - 2.0]))
            return candidate_table(
                finder=self.name,
                score_kind="snr",
                ra=ra,
                dec=dec,
                score=[5.0, 6.0],
                tile_id=tile.tile_id,
            )

    with pytest.raises(
        ContractError,
        match=r"^finder 'greedy': core rule: 1 of 2 candidates "
        r"of tile 0 lie outside its core",
    ):
        check_finder_contract(Greedy, small_mm_sky(0, simulator=False))


def test_a_finder_without_options_model_rejects_unknown_options():
    class Plain(Finder):
        name = "plain"

        def find(self, tile):
            return candidate_table(finder=self.name, score_kind="snr", ra=[], dec=[], score=[])

    report = check_finder_contract(Plain, small_mm_sky(0, simulator=False))
    assert report.numbers["n_one_tile"] == 0


def test_builtin_combiners_pass():
    for cls in (RankProductCombiner, AndCombiner):
        report = check_combiner_contract(cls)
        assert report.numbers["n_rows"] > 100
        assert "calibrate returns a JSON section" in report.checks


def test_a_combiner_that_keeps_no_finder_scores_fails():
    class Lazy(RankProductCombiner):
        name = "lazy"

        def combine(self, tables, forced, calibration=None):
            out = super().combine(tables, forced, calibration)
            return out.drop_columns(["toya_score"])

    with pytest.raises(
        ContractError,
        match=r"^combiner 'lazy': combine returned a table "
        r"without the required column\(s\) toya_score$",
    ):
        check_combiner_contract(Lazy)


class Richness(Estimator):
    name = "rich"
    columns = (plugin_field("rich_lambda", pa.float32(), "", "toy richness"),)

    def estimate(self, table, sky):
        lam = np.abs(table.column("score").to_numpy()).astype(np.float32)
        return table.append_column(self.columns[0], pa.array(lam))


def test_estimator_kit():
    report = check_estimator_contract(Richness, sky=small_mm_sky(0, simulator=False))
    assert report.numbers["n_rows"] == 12

    class Sorting(Richness):
        def estimate(self, table, sky):
            return super().estimate(table, sky).sort_by([("dec", "ascending")])

    with pytest.raises(ContractError, match="^estimator 'rich': estimate reordered"):
        check_estimator_contract(Sorting, sky=small_mm_sky(0, simulator=False))
