"""``mf`` refuses meaningless numbers: bad options, C_ell files, scales larger than a tile.

Blank or constant tiles inside a valid map give no candidates; the filter cache never hands one
sky's result to another (issue 12). Errors go through the real command group (in-process).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clusterfw.core.fits_io import write_flat_sky_fits
from clusterfw.core.pipeline import run_pipeline
from clusterfw.core.sky import Sky
from clusterfw.plugins.finders.mf import MatchedFilterFinder
from tests.conftest import car_wcs, make_blob_sky


def _cli(*args: object) -> tuple[int, str, str]:
    """The real command group, in-process (its error handling included)."""
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def _only_error(rc: int, stdout: str, stderr: str) -> str:
    assert rc == 2, (rc, stderr)
    assert stdout == "", stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """Three 120' x 120' maps (240 px at 0.5') with 12 injected decrements."""
    sky, _, _ = make_blob_sky()
    return write_flat_sky_fits(sky, tmp_path_factory.mktemp("mf"), prefix="m")


def _run_error(maps, tmp_path, *options: str, tile_size: float = 240.0) -> str:
    out = tmp_path / "o.parquet"
    opts = [x for o in options for x in ("-o", o)]
    args = ["run", "-q", "--finder", "mf", *maps, *opts, "--tile-size", tile_size, "--out", out]
    line = _only_error(*_cli(*args))
    assert not out.exists()
    return line


@pytest.mark.parametrize(
    "option, problem",
    [
        ("mf.snr_min=-1", "mf.snr_min: Input should be greater than 0"),
        ("mf.snr_min=0", "mf.snr_min: Input should be greater than 0"),
        ("mf.snr_min=nan", "mf.snr_min: Input should be a finite number"),
        ("mf.snr_min=NaN", "mf.snr_min: Input should be a finite number"),
        ("mf.snr_min=Infinity", "mf.snr_min: Input should be a finite number"),
        ("mf.ref_scale_arcmin=inf", "mf.ref_scale_arcmin: Input should be a finite number"),
        ("mf.merge_radius_arcmin=-2", "mf.merge_radius_arcmin: Input should be greater than"),
        (
            "mf.scales_arcmin=[1, Infinity]",
            "mf.scales_arcmin: Value error, scales_arcmin must be a non-empty list of positive, "
            "finite numbers",
        ),
    ],
)
def test_bad_numeric_options(maps, tmp_path, option, problem):
    line = _run_error(maps, tmp_path, option)
    assert line.startswith(f"clusterfw: error: bad option for finder 'mf': {problem}"), line


@pytest.mark.parametrize(
    "content, problem",
    [
        ("2 1e3\n3 -5e2\n4 4e2\n", "negative C_ell (-500 at ell=3, row 2): a power spectrum is "
         "never negative"),
        ("2 1e3\n3 nan\n", "non-finite value in row 2"),
        ("2 1e3\n3 4e2\n2 1e2\n", "ell must start at >= 0 and increase from row to row"),
        ("2\n3\n4\n", "needs two columns (ell, C_ell in µK²) and two rows, got (3, 1)"),
        ("ell cl\n2 1e3\n", "unreadable C_ell table (could not convert string 'ell' to float64 "
         "at row 0, column 1.)"),
    ],
    ids=["negative", "nan", "ell not increasing", "one column", "text header"],
)  # fmt: skip
def test_bad_cmb_spectrum_names_file(maps, tmp_path, content, problem):
    cl = tmp_path / "cl.txt"
    cl.write_text(content)
    line = _run_error(maps, tmp_path, "mf.noise=model", f"mf.cmb_spectrum={cl}")
    assert line == f"clusterfw: error: {cl}: {problem}"


def test_missing_cmb_spectrum(maps, tmp_path):
    cl = tmp_path / "none.txt"
    line = _run_error(maps, tmp_path, "mf.noise=model", f"mf.cmb_spectrum={cl}")
    assert line == f"clusterfw: error: {cl}: file not found"


def test_scales_larger_than_the_tile_refused(maps, tmp_path):
    # one 120' tile (the whole map), 10' taper: 100' plateau; a 12' beta profile needs 101.2'
    line = _run_error(maps, tmp_path, "mf.scales_arcmin=[1, 12]")
    assert line == (
        "clusterfw: error: mf.scales_arcmin: scale 12' does not fit in tile 0 (90% of a beta "
        "profile's signal lies within 101.2', the tile has 100' inside its 10' taper); use "
        "scales <= 11.9' or a larger --tile-size"
    )
    # the smallest beta scale (0.25') needs 2.1': a 24' map with 10' tapers has 4' left, but
    # explicit scales that do not fit are refused, never quietly dropped
    sky, _, _ = make_blob_sky(size=48, n_sources=2)
    tiny = write_flat_sky_fits(sky, tmp_path, prefix="tiny")
    line = _run_error(tiny, tmp_path, "mf.scales_arcmin=[0.5, 1]")
    assert line.startswith("clusterfw: error: mf.scales_arcmin: scale 1' does not fit in tile 0")


def test_default_scales_limited_to_the_tile_with_a_warning(tmp_path):
    """The arnaud default (θ500 up to 10': 41.4') does not fit a 30' map's 10' plateau: the
    default scales that fit (≤ 2.42') are searched, with one warning line."""
    sky, _, _ = make_blob_sky(size=60, n_sources=2)
    small = write_flat_sky_fits(sky, tmp_path, prefix="small")
    out = tmp_path / "o.parquet"
    with pytest.warns(UserWarning, match="mf: default scales above 2.42' do not fit tile 0"):
        rc, _, err = _cli("run", "-q", "--finder", "mf", *small, "-o", "mf.profile=arnaud",
                          "-o", "mf.snr_min=3", "--out", out)  # fmt: skip
    assert rc == 0, err
    import pyarrow.parquet as pq

    scales = pq.read_table(out).column("filter_scale").to_pylist()
    assert scales and max(scales) <= 2.42


def test_scale_that_fits_is_searched(maps, tmp_path):
    out = tmp_path / "o.parquet"
    rc, _, err = _cli("run", "-q", "--finder", "mf", *maps, "-o", "mf.scales_arcmin=[1, 11.5]",
                      "--out", out)  # fmt: skip
    assert rc == 0, err


def _half_blank_sky(fill: float) -> tuple[Sky, Sky]:
    """A 120' x 240' sky whose right half (x >= 200 px) is ``fill``, and the untouched sky."""
    left, _, _ = make_blob_sky(size=240, seed=4)
    right, _, _ = make_blob_sky(size=240, seed=5)
    maps = np.concatenate([left.maps, right.maps], axis=2)
    wcs = car_wcs(240, 480, 0.5)
    full = Sky(maps.copy(), wcs, left.bands)
    maps[:, :, 200:] = fill
    return Sky(maps, wcs, left.bands), full


@pytest.mark.parametrize("fill", [np.nan, 0.0], ids=["blank", "zero-filled"])
def test_blank_or_constant_tile_gives_no_candidates(fill):
    """Two 120' tiles; the second lies wholly in the blank part: no candidates from it."""
    sky, full = _half_blank_sky(fill)
    finder = MatchedFilterFinder({"snr_min": 5.0})
    table = run_pipeline(sky, [finder], tile_size_arcmin=120.0)
    tiles = set(table.column("tile_id").to_pylist())
    assert tiles == {0}, tiles
    x, _ = sky.wcs.world_to_pixel_values(table["ra"].to_numpy(), table["dec"].to_numpy())
    assert table.num_rows >= 5 and x.max() < 200
    on_full = run_pipeline(full, [MatchedFilterFinder({"snr_min": 5.0})], tile_size_arcmin=120.0)
    assert set(on_full.column("tile_id").to_pylist()) == {0, 1}  # the right half has sources


def test_blank_tile_forced_score_is_nan():
    sky, _ = _half_blank_sky(np.nan)
    from clusterfw.core.tiling import flat_tiles

    tile = flat_tiles(sky, 120.0, 20.0)[1]
    assert MatchedFilterFinder.blank_band(tile) == "f095"
    ra, dec = sky.wcs.pixel_to_world_values(np.array([300.0, 400.0]), np.array([100.0, 120.0]))
    assert np.isnan(MatchedFilterFinder().score_at(tile, ra, dec)).all()


def test_filter_cache_never_returns_another_skys_candidates():
    """Issue 12: one finder through run_pipeline on sky A, then B, gives B's own catalogue."""
    finder = MatchedFilterFinder()
    sky_a, _, _ = make_blob_sky(seed=1)
    sky_b, _, _ = make_blob_sky(seed=2)
    cat_a = run_pipeline(sky_a, [finder])
    for _ in range(3):  # freed tile maps are re-allocated at the same address
        cat_b = run_pipeline(sky_b, [finder])
        fresh_b = run_pipeline(sky_b, [MatchedFilterFinder()])
        assert cat_b.equals(fresh_b)
        assert not cat_b.equals(cat_a)
        cat_a = run_pipeline(sky_a, [finder])
        assert cat_a.equals(run_pipeline(sky_a, [MatchedFilterFinder()]))


def test_filter_cache_hit_on_the_same_tile():
    """``score_at`` after ``find`` on the same tile reuses the filter (one filtering)."""
    from clusterfw.core.tiling import flat_tiles

    sky, _, _ = make_blob_sky(seed=3)
    tile = flat_tiles(sky, 240.0, 20.0)[0]
    finder = MatchedFilterFinder()
    table = finder.find(tile)
    first = finder.filter_tile(tile)
    assert finder.filter_tile(tile) is first
    scores = finder.score_at(tile, table["ra"].to_numpy(), table["dec"].to_numpy())
    assert np.allclose(scores, table["score"].to_numpy(), rtol=0.05)
    other = flat_tiles(make_blob_sky(seed=4)[0], 240.0, 20.0)[0]  # same id, shape, geometry
    assert finder.filter_tile(other) is not first
    assert isinstance(table, pa.Table)
