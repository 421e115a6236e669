"""The pipeline: tiling invariance, core ownership, forced scoring, estimators."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import ndimage

from clusterfw.core.errors import PluginError
from clusterfw.core.executors import get_executor
from clusterfw.core.pipeline import run_pipeline
from clusterfw.core.plugin_api import Combiner, Estimator, Finder, PluginOptions
from clusterfw.core.schema import candidate_table, plugin_field
from tests.conftest import make_blob_sky


class MinOptions(PluginOptions):
    band: int = 0
    threshold: float = 30.0


class LocalMinFinder(Finder):
    """Local minima of one smoothed band below -threshold (test finder)."""

    name = "localmin"
    score_kind = "snr"
    margin_arcmin = 4.0
    Options = MinOptions

    def _smooth(self, tile):
        return ndimage.gaussian_filter(tile.maps[self.options.band].astype(float), 1.5)

    def find(self, tile):
        img = self._smooth(tile)
        peaks = (img == ndimage.minimum_filter(img, size=9)) & (img < -self.options.threshold)
        y, x = np.nonzero(peaks)
        ra, dec = tile.pixel_to_world(x, y)
        keep = tile.in_core(ra, dec)
        return candidate_table(
            finder=self.name,
            score_kind="snr",
            ra=ra[keep],
            dec=dec[keep],
            score=-img[y, x][keep],
            tile_id=tile.tile_id,
        )

    def score_at(self, tile, ra, dec):
        img = self._smooth(tile)
        x, y = tile.world_to_pixel(ra, dec)
        return -img[np.round(y).astype(int), np.round(x).astype(int)]


class OtherBandFinder(LocalMinFinder):
    name = "otherband"


class RecordingCombiner(Combiner):
    """Concatenates, adding every finder's forced score as <finder>_score."""

    name = "record"

    def combine(self, tables, forced, calibration=None):
        merged = pa.concat_tables(list(tables.values())).unify_dictionaries()
        ra, dec = merged["ra"].to_numpy(), merged["dec"].to_numpy()
        out = candidate_table(
            finder=self.name,
            score_kind="vote",
            ra=ra,
            dec=dec,
            score=merged["score"].to_numpy(),
            extra={
                f"{n}_score": (
                    plugin_field(f"{n}_score", pa.float32(), "", f"forced score of {n}"),
                    forced(n, ra, dec),
                )
                for n in tables
            },
            prefixes=tuple(tables),
        )
        return out


class CountEstimator(Estimator):
    name = "count"
    columns = (plugin_field("count_index", pa.int32(), "", "row index"),)

    def estimate(self, table, sky):
        return table.append_column(self.columns[0], pa.array(np.arange(table.num_rows), pa.int32()))


@pytest.fixture(scope="module")
def sky():
    return make_blob_sky(seed=11, size=240)[0]


def _positions(table):
    return sorted(
        zip(np.round(table["ra"].to_numpy(), 8), np.round(table["dec"].to_numpy(), 8), strict=True)
    )


def test_tiling_does_not_change_candidates(sky):
    finder = LocalMinFinder()
    one = run_pipeline(sky, [finder], tile_size_arcmin=1e4)
    many = run_pipeline(sky, [finder], tile_size_arcmin=25.0)
    assert len(set(many["tile_id"].to_pylist())) > 9
    assert one.num_rows == 12
    assert _positions(one) == _positions(many)


def test_process_pool_gives_same_result(sky):
    finder = LocalMinFinder()
    pooled = run_pipeline(sky, [finder], tile_size_arcmin=40.0, executor=get_executor(2))
    assert _positions(pooled) == _positions(run_pipeline(sky, [finder], tile_size_arcmin=40.0))


def test_forced_scores_reach_the_combiner(sky):
    finders = [LocalMinFinder(), OtherBandFinder({"band": 2, "threshold": 1e9})]
    table = run_pipeline(
        sky, finders, RecordingCombiner(), [CountEstimator()], tile_size_arcmin=40.0
    )
    assert table.num_rows == 12  # otherband finds nothing (threshold 1e9)
    # forced scores equal the finders' own scores where they detected, and are real values
    np.testing.assert_allclose(
        table["localmin_score"].to_numpy(), table["score"].to_numpy(), rtol=1e-5
    )
    other = table["otherband_score"].to_numpy()
    assert np.all(np.isfinite(other))
    # f220 carries -0.1 x the decrement (a small increment): forced scores are small, negative
    assert -0.3 * np.median(table["score"].to_numpy()) < np.median(other) < 0
    assert table["count_index"].to_pylist() == list(range(12))


def test_duplicate_finder_rejected(sky):
    with pytest.raises(PluginError, match="listed twice"):
        run_pipeline(sky, [LocalMinFinder(), LocalMinFinder()])
