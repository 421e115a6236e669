"""The ``resnet`` finder with the shipped weights: discovery, candidates, tiling, forced scores,
and one-line errors for skies it cannot read."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from clusterfw.core.errors import PluginError
from clusterfw.core.schema import validate_candidates
from clusterfw.core.sky import Band, Sky

torch = pytest.importorskip("torch")

from clusterfw.plugins.finders.resnet.finder import ResNetFinder, shipped_weights  # noqa: E402


@pytest.fixture(scope="module")
def patch():
    from clusterfw.sim import PatchConfig, simulate_patch

    return simulate_patch(PatchConfig(size_deg=1.0), 11)


def one_tile(sky):
    return sky.tiles(tile_size_arcmin=1e4, margin_arcmin=0.0)[0]


def test_discovery_does_not_import_torch():
    code = (
        "import sys\n"
        "from clusterfw.core.plugins import Registry\n"
        "r = Registry()\n"
        "assert 'resnet' in r.names('finder'), r.names('finder')\n"
        "assert r.get('finder', 'resnet').score_kind == 'probability'\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shipped_files_and_model_card():
    w = shipped_weights()
    size = (w / "resnet.safetensors").stat().st_size
    assert size <= 25 * 2**20
    card = (w / "MODEL.md").read_text()
    for word in ("clusterfw train resnet", "seed", "Platt", "Validation", "Test"):
        assert word in card
    assert '"method": "platt"' in (w / "platt.json").read_text()


def test_find_scores_every_grid_cutout(patch):
    tile = one_tile(patch.sky)
    table = ResNetFinder({"localise": False}).find(tile)
    validate_candidates(table, prefixes=("resnet",))
    # 240 px: cutout centres at 15.5 + 24 k inside the map -> 10 x 10; the last one of each
    # row/column would stick out (216 + 32 > 240) and is moved inwards to 208 … 239
    assert table.num_rows == 100
    np.testing.assert_array_equal(table.column("resnet_masked_fraction").to_numpy(), 0.0)
    s = table.column("score").to_numpy()
    assert np.all((s >= 0) & (s <= 1))
    assert set(table.column("score_kind").to_pylist()) == {"probability"}
    x, y = tile.world_to_pixel(table.column("ra").to_numpy(), table.column("dec").to_numpy())
    want = np.minimum(15.5 + 24 * np.arange(10), 240 - 16.5)
    np.testing.assert_allclose(np.sort(np.unique(np.round(x, 3))), want)
    np.testing.assert_allclose(np.sort(np.unique(np.round(y, 3))), want)


def test_tiling_gives_the_same_cutouts_and_scores(patch):
    finder = ResNetFinder()
    whole = finder.find(one_tile(patch.sky))
    tiles = patch.sky.tiles(tile_size_arcmin=30.0, margin_arcmin=finder.margin_arcmin)
    assert len(tiles) == 4
    parts = [finder.find(t) for t in tiles]
    ra = np.concatenate([p.column("ra").to_numpy() for p in parts])
    dec = np.concatenate([p.column("dec").to_numpy() for p in parts])
    sc = np.concatenate([p.column("score").to_numpy() for p in parts])
    o1 = np.lexsort((whole.column("ra").to_numpy(), whole.column("dec").to_numpy()))
    o2 = np.lexsort((ra, dec))
    np.testing.assert_allclose(ra[o2], whole.column("ra").to_numpy()[o1], atol=1e-9)
    np.testing.assert_allclose(sc[o2], whole.column("score").to_numpy()[o1], atol=1e-4)


def test_score_at_grid_centres_equals_find(patch):
    tile = one_tile(patch.sky)
    finder = ResNetFinder()
    table = finder.find(tile)
    ra, dec = table.column("ra").to_numpy(), table.column("dec").to_numpy()
    forced = finder.score_at(tile, ra, dec)
    np.testing.assert_allclose(forced, table.column("score").to_numpy(), atol=1e-4)
    far = finder.score_at(tile, np.array([ra[0] + 5.0]), np.array([dec[0]]))
    assert np.isnan(far[0])


def test_p_min_drops_low_probabilities(patch):
    tile = one_tile(patch.sky)
    all_rows = ResNetFinder().find(tile)
    t = float(np.median(all_rows.column("score").to_numpy()))
    some = ResNetFinder({"p_min": t}).find(tile)
    assert 0 < some.num_rows < all_rows.num_rows
    assert np.all(some.column("score").to_numpy() >= t)


def _sky(patch, bands=None, pixel_factor=1):
    sky = patch.sky
    maps = sky.maps[:, ::pixel_factor, ::pixel_factor]
    wcs = sky.wcs.deepcopy()
    if pixel_factor != 1:
        wcs = sky.wcs.slice((slice(None, None, pixel_factor), slice(None, None, pixel_factor)))
    idx = list(range(len(sky.bands))) if bands is None else bands
    return Sky(maps[idx], wcs, tuple(sky.bands[i] for i in idx))


def test_two_band_sky_is_refused_in_one_line(patch):
    with pytest.raises(PluginError, match="needs 3 bands") as err:
        ResNetFinder().find(one_tile(_sky(patch, bands=[0, 1])))
    assert "\n" not in str(err.value)


def test_wrong_pixel_scale_is_refused(patch):
    with pytest.raises(PluginError, match="reproject the maps to 0.25'") as err:
        ResNetFinder().find(one_tile(_sky(patch, pixel_factor=2)))
    assert "\n" not in str(err.value)


def test_wrong_frequencies_are_refused(patch):
    sky = patch.sky
    bands = tuple(Band(b.name, b.freq_ghz * 2, b.beam_fwhm_arcmin) for b in sky.bands)
    with pytest.raises(PluginError, match="no band within 15%"):
        ResNetFinder().find(one_tile(Sky(sky.maps, sky.wcs, bands)))


def test_missing_weights_file_is_a_plugin_error(tmp_path, patch):
    with pytest.raises(PluginError, match="weights file not found"):
        ResNetFinder({"weights": str(tmp_path / "none.safetensors")}).find(one_tile(patch.sky))
