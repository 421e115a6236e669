"""The simulated universe: same halos and Y as `simulate mm`, reruns, files, one-layer CLI."""

from __future__ import annotations

import json

import click
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from click.testing import CliRunner

from clusterfw.core.cli import cli as core_cli
from clusterfw.sim.cli_universe import COMMANDS
from clusterfw.sim.config import PatchConfig
from clusterfw.sim.patch import simulate_patch
from clusterfw.sim.truth import OBSERVABLE_COLUMNS
from clusterfw.sim.universe import (
    UniverseConfig,
    render_layer,
    simulate_universe,
    write_universe,
)

SMALL = UniverseConfig(patch=PatchConfig(size_deg=0.3), layers=["mm", "xray", "ymap"])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("uni")
    uni = simulate_universe(SMALL, 21)
    info = write_universe(uni, root / "u")
    return uni, info


def _group() -> click.Group:
    grp = type(core_cli)("simulate")  # the project's group class: one-line errors, exit 2
    for cmd in COMMANDS:
        grp.add_command(cmd)
    return grp


def test_mm_layer_is_the_plain_mm_simulation_with_the_same_y(written):
    uni, _ = written
    plain = simulate_patch(SMALL.patch, 21)
    assert np.array_equal(uni.layers["mm"].sky.maps, plain.sky.maps)
    for col in ("m500c", "z", "ra", "dec", "y500", "y500_median"):
        assert np.array_equal(uni.halos.column(col).to_numpy(), plain.halos.column(col).to_numpy())
    dln_y = uni.halos.column("dln_y").to_numpy()
    np.testing.assert_allclose(
        dln_y,
        np.log(
            plain.halos.column("y500").to_numpy() / plain.halos.column("y500_median").to_numpy()
        ),
    )
    assert set(OBSERVABLE_COLUMNS) <= set(uni.halos.column_names)


def test_rerun_is_bit_identical(written):
    uni, _ = written
    again = simulate_universe(SMALL, 21)
    assert again.halos.equals(uni.halos)
    assert np.array_equal(again.layers["xray"].counts, uni.layers["xray"].counts)
    assert np.array_equal(again.layers["ymap"].y, uni.layers["ymap"].y)
    other = simulate_universe(SMALL, 22)
    assert not np.array_equal(other.layers["xray"].counts, uni.layers["xray"].counts)


def test_written_files_follow_inputs_md(written):
    uni, info = written
    root = info["directory"]
    manifest = json.loads((root / "universe.json").read_text())
    assert manifest["seed"] == 21 and set(manifest["layers"]) == {"mm", "xray", "ymap"}
    halos = pq.read_table(root / "truth_halos.parquet")
    assert halos.equals(uni.halos)
    field = halos.schema.field("lx500")
    assert field.metadata[b"unit"] == b"erg/s"
    for path in (root / "mm").glob("mm_*.fits"):
        h = fits.getheader(path)
        assert {"FREQ", "BEAMFWHM", "BUNIT"} <= set(h)
    with fits.open(root / "xray" / "xray_0.5-2keV.fits") as hdul:
        h = hdul[0].header
        assert h["BUNIT"] == "count" and h["E_MIN"] == 0.5 and h["E_MAX"] == 2.0
        assert "PSFFWHM" in h and "EXPOSURE" in hdul and "BACKGROUND" in hdul
    h = fits.getheader(root / "ymap" / "ymap.fits")
    assert h["BUNIT"] == "Compton-y" and h["BEAMFWHM"] == 1.6
    assert fits.getheader(root / "stellar_mass" / "stellar_mass.fits")["BUNIT"] == "solMass"
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_one_layer_from_the_catalogue_reproduces_the_universe_layer(written, tmp_path):
    uni, info = written
    out = render_layer("xray", info["halos"], tmp_path / "x")
    counts = fits.getdata(out["directory"] / "xray_0.5-2keV.fits")
    assert np.array_equal(counts, uni.layers["xray"].counts)
    # an mm-only truth table: observables are drawn on the fly, y map rendered
    out2 = render_layer("ymap", info["directory"] / "mm" / "truth_halos.parquet", tmp_path / "y")
    y = fits.getdata(out2["directory"] / "ymap.fits")
    assert np.array_equal(y, uni.layers["ymap"].y)


def test_cli_universe_and_layer_commands(tmp_path):
    runner = CliRunner()
    out = tmp_path / "u"
    res = runner.invoke(
        _group(),
        ["universe", "--size", "0.2", "--seed", "3", "--layers", "xray", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert (out / "xray" / "xray_0.5-2keV.fits").is_file()
    assert not (out / "mm").exists()
    res = runner.invoke(
        _group(),
        [
            "ymap",
            "--halos",
            str(out / "truth_halos.parquet"),
            "--out",
            str(tmp_path / "y"),
            "--preset",
            "planck",
        ],
    )
    assert res.exit_code == 0, res.output
    assert fits.getheader(tmp_path / "y" / "ymap.fits")["BEAMFWHM"] == 10.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "mm,radio"], "--layers: unknown layer 'radio'"),
        (["--size", "-1"], "--size: Input should be greater than 0"),
        (["--xray-preset", "chandra"], "--preset: unknown X-ray preset 'chandra'"),
        (["--ymap-preset", "spt"], "--preset: unknown y-map preset 'spt'"),
    ],
)
def test_cli_bad_options_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "u"
    res = CliRunner().invoke(_group(), ["universe", "--out", str(out), *args])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"clusterfw: error: {message}"), res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_refuses_a_non_empty_out_and_a_missing_catalogue(tmp_path):
    out = tmp_path / "u"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = CliRunner().invoke(_group(), ["universe", "--out", str(out)])
    assert res.exit_code == 2 and "is not empty" in res.output
    assert (out / "keep.txt").read_text() == "x"
    res = CliRunner().invoke(
        _group(), ["xray", "--halos", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2
    assert res.output.strip() == f"clusterfw: error: {tmp_path / 'nope.parquet'}: no such file"


def test_optical_layer_uses_the_universe_richness(tmp_path):
    from clusterfw.core.errors import ClusterfwError
    from clusterfw.sim.universe import _optical_module

    try:
        _optical_module()
    except ClusterfwError as exc:
        pytest.skip(str(exc))
    cfg = UniverseConfig(patch=PatchConfig(size_deg=0.12, m500c_min=1e14), layers=["optical"])
    uni = simulate_universe(cfg, 4)
    assert uni.halos.num_rows == 2
    field = uni.layers["optical"]
    # the optical renderer takes the universe's scattered richness, not its own draw
    ids = field.halos.column("halo_id").to_numpy()
    want = uni.halos.column("richness").to_numpy()[ids]
    assert np.array_equal(field.halos.column("richness").to_numpy(), want)
    info = write_universe(uni, tmp_path / "u")
    names = {p.name for p in info["layers"]["optical"]}
    assert {"optical_g.fits", "optical_r.fits", "optical_i.fits"} <= names
    assert fits.getheader(tmp_path / "u" / "optical" / "optical_r.fits")["FILTER"] == "r"


def test_demo_universe_is_cached(tmp_path, monkeypatch):
    import clusterfw.sim.universe as universe_mod

    monkeypatch.setenv("CLUSTERFW_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        universe_mod,
        "demo_universe_config",
        lambda layers: UniverseConfig(patch=PatchConfig(size_deg=0.15), layers=["xray", "ymap"]),
    )
    monkeypatch.setattr(universe_mod, "_optical_module", _no_optical)
    first = universe_mod.demo_universe()
    stamp = first["manifest"].stat().st_mtime_ns
    second = universe_mod.demo_universe()
    assert second["manifest"].stat().st_mtime_ns == stamp
    assert second["halos"].is_file()
    assert [p.name for p in second["layers"]["xray"]] == ["xray_0.5-2keV.fits", "truth_agn.parquet"]


def _no_optical():
    from clusterfw.core.errors import ClusterfwError

    raise ClusterfwError("--layers: no optical renderer in this test")


def test_run_reads_every_layer_and_evaluate_scores_against_the_truth(tmp_path):
    """`clusterfw run DIR/*/*.fits` takes every simulated layer with no options (mm, optical,
    X-ray, y, stellar mass), and `clusterfw evaluate` scores against the universe's truth."""
    import glob

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    cfg = UniverseConfig(
        patch=PatchConfig(size_deg=0.6, m500c_min=1e14),
        layers=["mm", "optical", "xray", "ymap"],
        optical_preset="sdss",
    )
    root = tmp_path / "u"
    write_universe(simulate_universe(cfg, 5), root)
    inputs = sorted(glob.glob(str(root / "*" / "*.fits")))
    kinds = {p.split("/")[-2] for p in inputs}
    assert kinds == {"mm", "optical", "xray", "ymap", "stellar_mass"}
    out = tmp_path / "cat.parquet"
    r = CliRunner().invoke(cli, ["run", "-q", *inputs, "--finder", "mf", "--out", str(out)])
    assert r.exit_code == 0, r.output
    table = pq.read_table(out)
    assert table.num_rows > 0
    r = CliRunner().invoke(
        cli, ["evaluate", str(out), "--truth", str(root / "truth_halos.parquet"),
              "--mass-min", "1e14", "--z-min", "0"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "true clusters" in r.output and "score [F1-best]" in r.output
