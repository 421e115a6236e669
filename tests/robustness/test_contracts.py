"""Plugin contracts: a plugin that breaks one is named in a one-line PluginError (issue 11)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from clusterfw.core.errors import PluginError
from clusterfw.core.fits_io import write_flat_sky_fits
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.pipeline import run_pipeline
from clusterfw.core.plugin_api import Combiner, Estimator, Finder
from clusterfw.core.plugins import PluginLoadWarning, Registry, get_plugin_manager
from clusterfw.core.schema import candidate_table, plugin_field
from clusterfw.plugins.combiners.rankprod import RankProductCombiner
from tests.conftest import make_blob_sky


class GoodFinder(Finder):
    """Reports the brightest decrement of each tile's core (or nothing)."""

    name = "good"
    score_kind = "snr"
    margin_arcmin = 2.0

    def find(self, tile):
        img = tile.maps[0]
        y, x = np.unravel_index(np.nanargmin(img), img.shape)
        ra, dec = tile.pixel_to_world(np.array([x]), np.array([y]))
        keep = tile.in_core(ra, dec)
        flags = np.array([5], dtype=np.uint32)[keep]
        return candidate_table(
            finder=self.name,
            score_kind="snr",
            ra=ra[keep],
            dec=dec[keep],
            score=-img[y, x] * np.ones(keep.sum()),
            tile_id=tile.tile_id,
            optional={"flags": flags},
        )

    def score_at(self, tile, ra, dec):
        x, y = tile.world_to_pixel(ra, dec)
        return -tile.maps[0][np.round(y).astype(int), np.round(x).astype(int)].astype(float)


def _bad_finder(find_result, name="bad"):
    cls = type("BadFinder", (GoodFinder,), {"name": name})
    cls.find = lambda self, tile: find_result(GoodFinder.find(self, tile))
    return cls()


@pytest.fixture(scope="module")
def sky():
    return make_blob_sky(seed=3, n_sources=4, size=120)[0]


def _run(sky, finders, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_pipeline(sky, finders, tile_size_arcmin=30, **kw)


def test_good_plugins_pass(sky):
    table = _run(sky, [GoodFinder()])
    assert table.num_rows == 4  # one per tile core: 60' square in 30' tiles
    assert table.column("flags").to_pylist() == [5, 5, 5, 5]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda t: t.to_pylist(),
            "finder 'bad': find returned builtins.list, not a pyarrow.Table (build it with "
            "clusterfw.core.schema.candidate_table)",
        ),
        (
            lambda t: None,
            "finder 'bad': find returned builtins.NoneType, not a pyarrow.Table (build it "
            "with clusterfw.core.schema.candidate_table)",
        ),
        (
            lambda t: t.drop_columns(["healpix_29"]),
            "finder 'bad': find returned an invalid table: missing required column 'healpix_29'",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("score"), "score", t.column("score").cast(pa.float64())
            ),
            "finder 'bad': find returned an invalid table: column 'score' has type double, "
            "schema wants float",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("dec"), "dec", pa.array(np.full(t.num_rows, np.nan))
            ),
            "finder 'bad': find returned an invalid table: columns 'ra'/'dec' have NaN or infinite "
            "positions",
        ),
        (
            lambda t: t.append_column(
                plugin_field("other_x", pa.int32(), "", "x"),
                pa.array(np.zeros(t.num_rows, np.int32)),
            ),
            "finder 'bad': find returned an invalid table: column 'other_x' is not a standard "
            "column and lacks a plugin prefix (bad_)",
        ),
    ],
)
def test_finder_contract(sky, mutate, message):
    with pytest.raises(PluginError) as err:
        _run(sky, [_bad_finder(mutate)])
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_finder_must_label_its_rows(sky):
    finder = _bad_finder(lambda t: t, name="bad")
    finder.find = lambda tile: GoodFinder.find(GoodFinder(), tile)  # rows say finder 'good'
    with pytest.raises(
        PluginError,
        match=r"^finder 'bad': find returned rows with finder "
        r"\['good'\], not \['bad'\]$",
    ):
        _run(sky, [finder])


def test_score_at_must_return_one_score_per_position(sky):
    class Short(GoodFinder):
        name = "short"

        def score_at(self, tile, ra, dec):
            return np.zeros(ra.size + 1)

    with pytest.raises(
        PluginError,
        match=r"^finder 'short': score_at returned shape \(\d+,\) "
        r"for \d+ positions$",
    ):
        _run(sky, [GoodFinder(), Short()], combiner=RankProductCombiner())


class AddMass(Estimator):
    name = "mass"
    columns = (plugin_field("mass_m500", pa.float32(), "Msun", "toy mass"),)

    def estimate(self, table, sky):
        return table.append_column(self.columns[0], pa.array(np.ones(table.num_rows, np.float32)))


@pytest.mark.parametrize(
    ("estimate", "message"),
    [  # estimate(correct output, input table) -> what a broken estimator returns
        (
            lambda out, inp: out.slice(1),
            "estimator 'mass': estimate returned 3 rows for 4 (it must not drop or add rows)",
        ),
        (
            lambda out, inp: out.take([1, 0, 2, 3]),
            "estimator 'mass': estimate reordered or changed the rows (candidate_id differs; keep "
            "the rows in the order given)",
        ),
        (
            lambda out, inp: out.drop_columns(["flags"]),
            "estimator 'mass': estimate dropped column(s) flags",
        ),
        (
            lambda out, inp: {"rows": 4},
            "estimator 'mass': estimate returned builtins.dict, not a pyarrow.Table",
        ),
        (lambda out, inp: inp, "estimator 'mass' added columns [] but declares ['mass_m500']"),
    ],
)
def test_estimator_contract(sky, estimate, message):
    class Bad(AddMass):
        def estimate(self, table, sky):
            return estimate(AddMass.estimate(self, table, sky), table)

    with pytest.raises(PluginError) as err:
        _run(sky, [GoodFinder()], estimators=[Bad()])
    assert str(err.value) == message


def test_good_estimator_passes(sky):
    table = _run(sky, [GoodFinder()], estimators=[AddMass()])
    assert table.column("mass_m500").to_pylist() == [1.0] * 4


class DropScores(Combiner):
    name = "dropper"

    def combine(self, tables, forced, calibration=None):
        return (
            RankProductCombiner().combine(tables, forced, calibration).drop_columns(["good_score"])
        )


class NotATable(Combiner):
    name = "nat"

    def combine(self, tables, forced, calibration=None):
        return list(tables)


def test_combiner_contract(sky):
    with pytest.raises(
        PluginError,
        match=r"^combiner 'dropper': combine returned a table "
        r"without the required column\(s\) good_score$",
    ):
        _run(sky, [GoodFinder()], combiner=DropScores())
    with pytest.raises(
        PluginError,
        match=r"^combiner 'nat': combine returned builtins.list, "
        r"not a pyarrow.Table$",
    ):
        _run(sky, [GoodFinder()], combiner=NotATable())


def test_finder_flags_survive_combination(sky):
    class Other(GoodFinder):
        name = "other"

    table = _run(sky, [GoodFinder(), Other()], combiner=RankProductCombiner())
    for f in ("good", "other"):
        col = table.column(f"{f}_flags")
        assert col.type == pa.uint32()
        assert col.to_pylist() == [5] * table.num_rows  # both detect all four
    assert table.column("flags").to_pylist() == [0] * table.num_rows  # nothing merged


def test_pipeline_adds_finder_flags_for_a_combiner_that_keeps_ids(sky):
    class KeepsIds(Combiner):
        """rankprod without the <finder>_flags columns."""

        name = "keepsids"

        def combine(self, tables, forced, calibration=None):
            t = RankProductCombiner().combine(tables, forced, calibration)
            t = t.drop_columns([f"{f}_flags" for f in tables])
            names = [n.replace("rankprod", self.name) for n in t.column_names]
            t = t.rename_columns(names)
            return t.set_column(
                t.schema.get_field_index("finder"),
                "finder",
                pa.array([self.name] * t.num_rows).dictionary_encode(),
            )

    table = _run(sky, [GoodFinder()], combiner=KeepsIds())
    assert table.column("good_flags").to_pylist() == [5] * 4


# ---- registration


def _registry_with(*plugins):
    return Registry(get_plugin_manager(load_entrypoints=False, extra_plugins=plugins))


@pytest.mark.parametrize("bad_name", ["my-finder", "2d", "with space", ""])
def test_plugin_name_must_be_an_identifier(bad_name):
    class Named(GoodFinder):
        name = bad_name

    class Plugin:
        @hookimpl
        def clusterfw_register_finders(self, register):
            register(Named)

    class Fine:
        @hookimpl
        def clusterfw_register_finders(self, register):
            register(GoodFinder)

    with pytest.warns(PluginLoadWarning) as rec:
        registry = _registry_with(Plugin(), Fine())
    (w,) = [r for r in rec if "Named" in str(r.message)]
    assert f"has name {bad_name!r}, which is not a valid Python identifier" in str(w.message)
    assert "failed in clusterfw_register_finders: PluginError" in str(w.message)
    assert registry.names("finder") == ["good"]  # the rest still works


# ---- through the real CLI, with a plugin installed from an entry point


def _install(site: Path, module: str, source: str, entry: str) -> None:
    """A distribution on ``site``: a module and a dist-info with one clusterfw entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-0.1.dist-info"  # name-version: no '-' in the name
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[clusterfw]\n{entry} = {module}\n")


def _cli(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "clusterfw", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_cli_broken_find_and_broken_hooks(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install(
        site,
        "cfw_listfinder",
        """
        from clusterfw import hookimpl
        from clusterfw.core.plugin_api import Finder

        class ListFinder(Finder):
            name = "listy"
            margin_arcmin = 1.0

            def find(self, tile):
                return [1, 2, 3]

        @hookimpl
        def clusterfw_register_finders(register):
            register(ListFinder)
        """,
        "listy",
    )
    _install(
        site,
        "cfw_typo",
        """
        from clusterfw import hookimpl

        @hookimpl
        def clusterfw_register_finder(register):  # misspelt: no final s
            pass
        """,
        "typo",
    )
    _install(
        site,
        "cfw_raises",
        """
        from clusterfw import hookimpl

        @hookimpl
        def clusterfw_register_combiners(register):
            raise RuntimeError("boom")
        """,
        "raises",
    )
    sky = make_blob_sky(seed=3, n_sources=4, size=120)[0]
    paths = write_flat_sky_fits(sky, tmp_path, prefix="map")
    r = _cli(site, "run", *map(str, paths), "-f", "listy", "--out", "out.parquet", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == (
        "clusterfw: error: finder 'listy': find returned builtins.list, not a "
        "pyarrow.Table (build it with clusterfw.core.schema.candidate_table)"
    )
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.parquet").exists()
    # the misspelt and the raising hook each give one warning line; other commands still work
    warn = [ln for ln in lines if ln.startswith("clusterfw: warning:")]
    assert any(
        "'typo' from distribution 'cfw_typo' ignored" in ln and "clusterfw_register_finder" in ln
        for ln in warn
    )
    assert any(
        "'raises' from distribution 'cfw_raises' failed in clusterfw_register_combiners: "
        "RuntimeError: boom" in ln
        for ln in warn
    )
    r = _cli(site, "plugins", cwd=tmp_path)
    assert r.returncode == 0 and "listy" in r.stdout and "rankprod" in r.stdout
