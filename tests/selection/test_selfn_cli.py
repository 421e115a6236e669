"""``clusterfw selfn`` end to end on a tiny simulated sky, and its one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

GRID = ["--mass-grid", "1e14:8e14:3", "--z-grid", "0.2:1.0:2"]
FAST = ["--max-density", "60", "--min-separation", "8", "--per-round", "12"]


def _cli(*args: str, cwd: Path) -> SimpleNamespace:
    """The real command group, in-process (its one-line error handling included)."""
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_selfn_injection_writes_table(tiny_sky, tmp_path):
    before = {p: _sha(p) for p in tiny_sky}
    out = tmp_path / "selfn.parquet"
    log = tmp_path / "inj.parquet"
    res = _cli(
        "selfn",
        *map(str, tiny_sky),
        "-f",
        "mf",
        *GRID,
        *FAST,
        "--max-rounds",
        "2",
        "--out",
        str(out),
        "--injections",
        str(log),
        "--seed",
        "3",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert {p: _sha(p) for p in tiny_sky} == before  # the user's maps are never written
    table = pq.read_table(out)
    for col in (
        "m500c_lo",
        "m500c_hi",
        "z_lo",
        "z_hi",
        "completeness",
        "completeness_err",
        "n_injected",
        "n_recovered",
        "tile",
    ):
        assert col in table.column_names
    whole = [r for r in table.to_pylist() if r["tile"] is None]
    assert len(whole) == 6
    inj = pq.read_table(log).to_pydict()
    assert sum(r["n_injected"] for r in whole) == len(inj["m500c"]) > 6
    assert sum(r["n_recovered"] for r in whole) == int(np.sum(inj["recovered"]))
    # per-tile rows add up to the whole map (one tile here)
    tiles = [r for r in table.to_pylist() if r["tile"] is not None]
    assert sum(r["n_injected"] for r in tiles) == sum(r["n_injected"] for r in whole)
    for r in whole:
        if r["n_injected"]:
            assert r["completeness"] == pytest.approx(r["n_recovered"] / r["n_injected"])
            assert 0 < r["completeness_err"] <= 0.5
    # the most massive cell is found, the least massive mostly not (SNR threshold 7.1)
    top = [r for r in whole if r["m500c_lo"] >= 4e14 and r["n_injected"]]
    assert all(r["completeness"] >= 0.5 for r in top)
    meta = table.schema.metadata
    assert meta[b"clusterfw.selfn_method"] == b"injection"
    assert json.loads(meta[b"clusterfw.run"])["finders"] == ["mf"]
    assert b"default calibration" in meta[b"clusterfw.selfn_calibration"]
    assert len(json.loads(meta[b"clusterfw.inputs"])) == 3
    assert "injected in 2 rounds" in res.stdout


def test_selfn_analytic_fast_and_monotonic(tiny_sky, tmp_path):
    out = tmp_path / "a.parquet"
    mlim = tmp_path / "mlim.fits"
    res = _cli(
        "selfn",
        *map(str, tiny_sky),
        "-f",
        "mf",
        "--method",
        "analytic",
        "--mass-grid",
        "5e13:1e15:6",
        "--z-grid",
        "0.2:1.0:2",
        "--out",
        str(out),
        "--mass-limit-map",
        str(mlim),
        "--plots",
        str(tmp_path / "plots"),
        "-q",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    rows = [r for r in pq.read_table(out).to_pylist() if r["tile"] is None]
    z_lo = sorted({r["z_lo"] for r in rows})
    assert z_lo == pytest.approx([0.2, 0.6])
    for zl in z_lo:
        c = [r["completeness"] for r in rows if r["z_lo"] == zl]
        assert len(c) == 6
        assert np.all(np.diff(c) >= -1e-9)  # more massive, more complete
        assert c[0] < 0.5 < c[-1]
    from astropy.io import fits

    with fits.open(mlim) as hdul:
        data = hdul[0].data
        assert hdul[0].header["BUNIT"] == "solMass" and hdul[0].header["COMPLETE"] == 0.9
    assert data.shape == (120, 120)
    assert 5e13 < np.nanmedian(data) < 1e15
    assert (tmp_path / "plots" / "selfn_contour.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mass-grid", "1e14:1e15:0"], "clusterfw: error: --mass-grid: empty grid (0 bins"),
        (["--z-grid", "0.5:0.5:3"], "clusterfw: error: --z-grid: empty grid (HI <= LO"),
        (["--method", "analytic", "-f", "resnet"], "the analytic path is for the mf finder"),
    ],
)
def test_selfn_bad_options(tiny_sky, tmp_path, extra, message):
    out = tmp_path / "x.parquet"
    args = [
        "selfn",
        *map(str, tiny_sky),
        *(["-f", "mf"] if "-f" not in extra else []),
        *extra,
        "--out",
        str(out),
    ]
    res = _cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clusterfw: error: ")
    assert message in lines[0]
    assert not out.exists()


def test_selfn_calibration_without_threshold(tiny_sky, tmp_path):
    cal = tmp_path / "cal.json"
    cal.write_text(
        json.dumps(
            {
                "format": "clusterfw.calibration",
                "version": 1,
                "finders": {"resnet": {"threshold": 0.5}},
            }
        )
    )
    out = tmp_path / "x.parquet"
    res = _cli(
        "selfn",
        *map(str, tiny_sky),
        "-f",
        "mf",
        "--calibration",
        str(cal),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"clusterfw: error: --calibration: {cal}: no threshold for finder 'mf'"
    )
    assert not out.exists()
    res = _cli(
        "selfn",
        *map(str, tiny_sky),
        "-f",
        "mf",
        "-f",
        "resnet",
        "--combine",
        "rankprod",
        "--calibration",
        str(cal),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"clusterfw: error: --calibration: {cal}: no rankprod threshold for finder set mf+resnet"
    )


def test_selfn_layer_that_cannot_take_injections(tmp_path):
    """A HEALPix mm map: one line naming the file, the finder and the layer."""
    import healpy as hp

    from clusterfw.core.fits_io import write_healpix_sky_fits
    from clusterfw.core.sky import Band, HealpixSky

    nside = 64
    rng = np.random.default_rng(0)
    maps = rng.normal(0, 5, (1, hp.nside2npix(nside))).astype(np.float32)
    files = write_healpix_sky_fits(
        HealpixSky(maps, (Band("f150", 150.0, 1.2, 5.0),)), tmp_path, "hp"
    )
    res = _cli(
        "selfn", *map(str, files), "-f", "mf", "--out", str(tmp_path / "x.parquet"), cwd=tmp_path
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"clusterfw: error: {files[0]}: finder 'mf' uses layer 'mm'")
    assert "injections go into flat single-file maps only" in lines[0]


def test_build_target_refuses_other_kinds():
    """A layer kind registered by a plugin (here a lensing map) has no renderer: one line."""
    from clusterfw.core.layers.model import Layer, LayerKind, LayerSky, YBand, register_kind
    from clusterfw.selection.inject import InjectionUnsupported, build_target

    class Finder:
        name = "xfinder"

    register_kind(LayerKind("selfn_test_kappa", "kappa", YBand, (), "test kind"))
    layer = Layer("kappa", "selfn_test_kappa", (), None)  # type: ignore[arg-type]
    with pytest.raises(
        InjectionUnsupported,
        match="finder 'xfinder' uses layer 'kappa' of kind 'selfn_test_kappa', which cannot "
        "take injections \\(only mm, ymap, xray, optical, stellar_mass\\)",
    ):
        build_target(LayerSky((layer,)), [Finder()], [("kappa",)])


def test_evaluate_with_selfn(tiny_sky, tmp_path):
    """``evaluate --selfn`` prints the cell comparison with chi2 and draws the figure."""
    selfn = tmp_path / "a.parquet"
    res = _cli(
        "selfn",
        *map(str, tiny_sky),
        "-f",
        "mf",
        "--method",
        "analytic",
        "--mass-grid",
        "3e13:1e15:4",
        "--z-grid",
        "0.1:1.5:2",
        "--out",
        str(selfn),
        "-q",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    cat = tmp_path / "cat.parquet"
    res = _cli("run", *map(str, tiny_sky), "-f", "mf", "--out", str(cat), "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    truth = tiny_sky[0].parent / "truth_halos.parquet"
    res = _cli(
        "evaluate",
        str(cat),
        "--truth",
        str(truth),
        "--selfn",
        str(selfn),
        "--threshold",
        "7.1",
        "--plots",
        str(tmp_path / "plots"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("selection function"))
    assert "vs detections (score >= 7.1)" in line and "chi2/dof = " in line
    n_true = pq.read_table(truth).num_rows
    rows = [x for x in res.stdout.splitlines() if x[:1].isdigit() and "e+" in x[:10]]
    assert 1 <= len(rows) <= 8
    assert sum(int(r.split()[2]) for r in rows) <= n_true
    assert (tmp_path / "plots" / "eval_selfn.png").stat().st_size > 1000


def test_compare_cells_chi2_exact():
    """Two cells with known counts and a flat selection function: the chi2 by hand."""
    from clusterfw.selection.compare import compare_cells
    from clusterfw.selection.grid import MassRedshiftGrid
    from clusterfw.selection.table import analytic_rows, build_table

    grid = MassRedshiftGrid(np.array([1e14, 2e14, 4e14]), np.array([0.1, 1.0]))
    selfn = build_table([analytic_rows(grid, None, np.array([0.5, 0.5]), np.zeros(2))], {})
    m = np.array([1.2e14] * 10 + [3e14] * 4)
    z = np.full(m.size, 0.5)
    det = np.array([True] * 8 + [False] * 2 + [True, False, False, False])
    doc = compare_cells(selfn, m, z, det)
    # cell 0: k=8, expected 5, var 2.5; cell 1: k=1, expected 2, var 1
    assert doc["chi2"] == pytest.approx(9.0 / 2.5 + 1.0 / 1.0)
    assert doc["dof"] == 2
    assert [c["detected"] for c in doc["cells"]] == [8, 1]


def test_selfn_checkpoint_resumes_rounds(tiny_sky, tmp_path):
    """A rerun with --checkpoint continues after the saved rounds; the log equals a fresh run's."""

    def selfn(rounds: str, name: str, *extra: str) -> dict:
        log = tmp_path / f"{name}.parquet"
        res = _cli(
            "selfn",
            *map(str, tiny_sky),
            "-f",
            "mf",
            *GRID,
            *FAST,
            "--max-rounds",
            rounds,
            "--out",
            str(tmp_path / f"t_{name}.parquet"),
            "--injections",
            str(log),
            *extra,
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr
        return {"log": pq.read_table(log).to_pydict(), "stderr": res.stderr}

    ck = ["--checkpoint", str(tmp_path / "ck")]
    first = selfn("1", "a", *ck)
    assert (tmp_path / "ck" / "selfn_state.json").exists()
    second = selfn("2", "b", *ck)
    assert "resumed from" in second["stderr"] and "1 rounds done" in second["stderr"]
    assert "baseline run" not in second["stderr"]
    fresh = selfn("2", "c")
    n1 = len(first["log"]["m500c"])
    assert len(second["log"]["m500c"]) > n1
    assert second["log"]["m500c"][:n1] == first["log"]["m500c"]
    for col in ("m500c", "z", "ra", "recovered", "round"):
        assert second["log"][col] == fresh["log"][col]


def test_injection_into_mm_and_y_layers(tiny_sky, tmp_path):
    """Every layer of the target gets the cluster: tSZ in µK per band, y in the y map."""
    from astropy.io import fits

    from clusterfw.core.plugins import Registry
    from clusterfw.core.runner import read_inputs
    from clusterfw.selection.inject import build_target, write_injected
    from clusterfw.selection.model import ScalingModel, draw_clusters
    from clusterfw.sim.instrument import ARCMIN, tsz_uk_per_y

    ymap = tmp_path / "ymap.fits"
    with fits.open(tiny_sky[0].parent / "truth_ymap.fits") as hdul:
        hdul[0].header["BEAMFWHM"] = 1.5
        hdul.writeto(ymap)
    sky, _ = read_inputs(Registry(), [*tiny_sky, ymap], {}, {})
    assert [(la.name, la.kind) for la in sky] == [("mm", "mm"), ("ymap", "ymap")]

    class Fake:
        name = "fake"

    target = build_target(sky, [Fake()], [("mm", "ymap")])
    assert [b.beam_fwhm_arcmin for b in target.bands] == [1.6, 1.2, 1.0, 1.5]
    clusters = draw_clusters(
        np.array([5e14]), np.array([0.3]), ScalingModel(ksz=False), np.random.default_rng(0)
    )
    copies = write_injected(target, clusters, np.array([[60.0, 60.0]]), 5.0, tmp_path / "inj")
    pix_sr = (0.5 * ARCMIN) ** 2
    y_tot = clusters.y_total_sr(5.0)[0]
    for band, freq in zip(target.bands, [95.0, 150.0, 220.0, None], strict=True):
        before = fits.getdata(band.path).astype(float)
        after = fits.getdata(copies[band.path]).astype(float)
        per_y = 1.0 if freq is None else float(tsz_uk_per_y(freq))
        assert (after - before).sum() * pix_sr == pytest.approx(y_tot * per_y, rel=1e-3)
