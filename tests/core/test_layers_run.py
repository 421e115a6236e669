"""Issue 12 acceptance: a seeded mm + optical + X-ray sky through ``clusterfw run``.

The sky is written by numpy (a fixture): two mm bands on a 0.5' CAR-like TAN grid, g, r, i
optical images at 6" and an X-ray count map at 30" with a uniform exposure, with a few
"clusters" (an X-ray blob, red light, an SZ decrement) at fixed positions. A test finder that
needs the optical and X-ray layers runs through the CLI in-process (its plugin module is
registered through ``extra_plugins``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.layers.requirements import LayerRequirement
from clusterfw.core.plugin_api import Estimator, Finder
from clusterfw.core.schema import candidate_table, plugin_field

RA0, DEC0 = 150.0, 2.0
CLUSTERS = [(150.10, 2.05), (149.93, 1.95), (150.02, 1.88), (149.90, 2.12), (150.15, 1.92)]
MM_ONLY = (150.0, 1.60)  # an SZ decrement off the optical images (0.6 deg square)


def _tan(pixel_arcsec: float, n: int, crpix_shift: tuple[int, int] = (0, 0)) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [(n + 1) / 2.0 - crpix_shift[0], (n + 1) / 2.0 - crpix_shift[1]]
    w.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0]
    return w.to_header()


def _blobs(
    header: fits.Header, n: int, sigma_arcsec: float, amp: float, where=tuple(CLUSTERS)
) -> np.ndarray:
    w = WCS(header)
    yy, xx = np.mgrid[0:n, 0:n]
    ra, dec = w.pixel_to_world_values(xx, yy)
    out = np.zeros((n, n))
    for cra, cdec in where:
        d2 = ((ra - cra) * np.cos(np.radians(DEC0))) ** 2 + (dec - cdec) ** 2
        out += amp * np.exp(-0.5 * d2 * 3600.0**2 / sigma_arcsec**2)
    return out


def _write(path: Path, data: np.ndarray, header: fits.Header, cards: dict) -> Path:
    header = header.copy()
    for key, value in cards.items():
        header[key] = value
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(path)
    return path


N_OPT = 360  # 6" pixels: 0.6 deg


def write_sky(root: Path, mosaic: bool = False, seed: int = 12) -> dict[str, list[Path]]:
    """The seeded sky: mm (2 bands), optical (g, r, i; one file or 4 overlapping ones), X-ray."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {"mm": [], "optical": [], "xray": []}
    h_mm = _tan(30.0, 160)
    for name, freq, beam in (("f090", 90.0, 2.0), ("f150", 150.0, 1.4)):
        data = rng.normal(0, 20.0, (160, 160)) - _blobs(h_mm, 160, 60.0, 80.0, (*CLUSTERS, MM_ONLY))
        cards = {"FREQ": freq, "BEAMFWHM": beam, "BUNIT": "uK_CMB", "BANDNAME": name}
        out["mm"].append(_write(root / f"mm_{name}.fits", data, h_mm, cards))
    h_opt = _tan(6.0, N_OPT)
    for band, amp in (("g", 2.0), ("r", 6.0), ("i", 8.0)):
        data = rng.normal(0, 0.05, (N_OPT, N_OPT)) + _blobs(h_opt, N_OPT, 20.0, amp)
        cards = {"FILTER": band, "BUNIT": "nanomaggy", "PSFFWHM": 1.0}
        if not mosaic:
            out["optical"].append(_write(root / f"opt_{band}.fits", data, h_opt, cards))
            continue
        # 4 overlapping pieces of the same grid (whole-pixel CRPIX shifts), 200 px each
        for k, (y0, x0) in enumerate(((0, 0), (0, 160), (160, 0), (160, 160))):
            piece = data[y0 : y0 + 200, x0 : x0 + 200]
            header = h_opt.copy()
            header["CRPIX1"] -= x0
            header["CRPIX2"] -= y0
            out["optical"].append(_write(root / f"opt_{band}_{k}.fits", piece, header, cards))
    h_x = _tan(30.0, 96)
    rate = 0.02 + _blobs(h_x, 96, 40.0, 1.5)
    counts = rng.poisson(rate * 100.0).astype(np.float32)
    cards = {"E_MIN": 0.5, "E_MAX": 2.0, "BUNIT": "count", "EXPOSURE": 100.0, "PSFFWHM": 20.0}
    out["xray"].append(_write(root / "xray.fits", counts, h_x, cards))
    return out


class TwoLayerFinder(Finder):
    """X-ray local maxima above a count threshold, scored with the r-band light around them."""

    name = "twolayer"
    version = "0.1"
    score_kind = "score"
    margin_arcmin = 3.0
    requires = (LayerRequirement("optical", bands=("g", "r", "i")), LayerRequirement("xray"))

    def find(self, tile):
        assert set(tile.layers) == {"optical", "xray"}  # only its own layers
        xray, optical = tile.layer("xray"), tile.layer("optical")
        c = np.nan_to_num(xray.pixels[0], nan=-1.0)
        ny, nx = c.shape
        pad = np.pad(c, 1, constant_values=-1.0)
        neigh = np.max(
            [
                pad[1 + dy : 1 + dy + ny, 1 + dx : 1 + dx + nx]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if (dy, dx) != (0, 0)
            ],
            axis=0,
        )
        y, x = np.nonzero((c >= 40) & (c > neigh))
        ra, dec = xray.wcs.pixel_to_world_values(x, y)
        ra, dec = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
        score = c[y, x] + self._light(optical, ra, dec)
        return candidate_table(
            finder=self.name,
            score_kind=self.score_kind,
            ra=ra,
            dec=dec,
            score=score,
            tile_id=tile.tile_id,
        )

    @staticmethod
    def _light(optical, ra, dec):
        r = optical.pixels[optical.band_index("r")]
        ox, oy = optical.wcs.world_to_pixel_values(ra, dec)
        out = np.zeros(len(ra))
        for k, (px, py) in enumerate(
            zip(np.round(ox).astype(int), np.round(oy).astype(int), strict=True)
        ):
            box = r[max(py - 5, 0) : py + 6, max(px - 5, 0) : px + 6]
            out[k] = float(np.nansum(box)) if box.size else 0.0
        return out


class XCounts(Estimator):
    """Counts in a 2' cutout around each candidate, from the cutout provider."""

    name = "xcounts"
    version = "0.1"
    requires = (LayerRequirement("xray"),)
    columns = (plugin_field("xcounts_sum", pa.float64(), "count", "X-ray counts in 2'"),)

    def estimate(self, table, sky):
        values = []
        for ra, dec in zip(table["ra"].to_pylist(), table["dec"].to_pylist(), strict=True):
            cut = sky.cutout("xray", ra, dec, 2.0)
            assert cut.shape[0] <= 6 and cut.shape[1] <= 6  # a cutout, not the sky
            values.append(float(np.nansum(cut.pixels[0])))
        return table.append_column(self.columns[0], pa.array(values, pa.float64()))


class _Plugin:
    @hookimpl
    def clusterfw_register_finders(self, register):
        register(TwoLayerFinder)

    @hookimpl
    def clusterfw_register_estimators(self, register):
        register(XCounts)


@pytest.fixture
def cli(monkeypatch, capsys):
    """``clusterfw`` in this process, with the test plugin: returns (rc, stdout, stderr)."""
    from clusterfw.core import cli as cli_mod
    from clusterfw.core.plugins import Registry, get_plugin_manager

    registry = Registry(get_plugin_manager(extra_plugins=[_Plugin()]))
    monkeypatch.setattr(cli_mod, "cli_registry", lambda: registry)

    def call(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            cli_mod.cli.main([str(a) for a in args])
            rc = 0
        except SystemExit as exc:
            rc = int(exc.code or 0)
        out, err = capsys.readouterr()
        return rc, out, err

    return call


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    root = tmp_path_factory.mktemp("layers_sky")
    return {"one": write_sky(root / "one"), "mosaic": write_sky(root / "mosaic", mosaic=True)}


def _files(paths: dict[str, list[Path]]) -> list[Path]:
    return [*paths["mm"], *paths["optical"], *paths["xray"]]


def _core(table: pa.Table) -> pa.Table:
    cols = [c for c in table.column_names if c not in ("tile_id", "candidate_id")]
    order = np.lexsort((table["dec"].to_numpy(), table["ra"].to_numpy()))
    return table.select(cols).take(pa.array(order))


def _tile_count(paths: list[Path], tile: float) -> int:
    from clusterfw.core.pipeline import check_plugins, plan_jobs
    from clusterfw.core.plugins import Registry, get_plugin_manager
    from clusterfw.core.runner import read_inputs

    registry = Registry(get_plugin_manager(extra_plugins=[_Plugin()]))
    layered, _ = read_inputs(registry, paths, {}, {})
    finder = TwoLayerFinder()
    return len(plan_jobs(layered, [finder], check_plugins(layered, [finder]), tile))


def test_two_layer_finder_same_catalogue_for_any_tiling_workers_and_mosaic(sky, cli, tmp_path):
    files = _files(sky["one"])
    counts = {t: _tile_count(files, t) for t in (900.0, 55.0, 14.0)}
    assert counts[900.0] == 1 and 4 <= counts[55.0] < counts[14.0] and counts[14.0] >= 16, counts
    tables = {}
    for tile in counts:
        for workers in (1, 2):
            out = tmp_path / f"t{tile:g}_w{workers}.parquet"
            rc, _, err = cli(
                "run",
                *files,
                "-f",
                "twolayer",
                "--tile-size",
                tile,
                "--workers",
                workers,
                "-q",
                "--out",
                out,
            )
            assert rc == 0, err
            tables[(tile, workers)] = _core(pq.read_table(out))
    first = tables[(900.0, 1)]
    assert 4 <= first.num_rows <= 12, first.num_rows  # the 5 clusters, maybe a noise peak
    for key, table in tables.items():
        assert table.equals(first), key
    # the planted clusters are found within 1' (a Poisson tie between neighbouring pixels can
    # hide one peak from this strict local-maximum test finder)
    ra, dec = first["ra"].to_numpy(), first["dec"].to_numpy()
    found = [
        np.min(np.hypot((ra - cra) * np.cos(np.radians(cdec)), dec - cdec)) < 1 / 60
        for cra, cdec in CLUSTERS
    ]
    assert sum(found) >= 4, found
    out = tmp_path / "mosaic.parquet"
    rc, _, err = cli(
        "run", *_files(sky["mosaic"]), "-f", "twolayer", "--tile-size", 55.0, "-q", "--out", out
    )
    assert rc == 0, err
    assert _core(pq.read_table(out)).equals(first)


def test_tile_grid_gives_pixel_box_cores_and_the_same_catalogue(sky, cli, tmp_path):
    """``--tile-grid mm``: cores are boxes of the mm grid, not HEALPix cells, the optical
    mosaic is read over less sky (box + margin), and the catalogue is the default one."""
    from clusterfw.core.layers.jobs import BoxCore
    from clusterfw.core.pipeline import check_plugins, plan_jobs
    from clusterfw.core.plugins import Registry, get_plugin_manager
    from clusterfw.core.runner import read_inputs

    tables = {}
    for grid in (None, "mm"):
        for name in ("one", "mosaic"):
            out = tmp_path / f"{name}_{grid}.parquet"
            extra = ["--tile-grid", grid] if grid else []
            rc, _, err = cli(
                "run", *_files(sky[name]), "-f", "twolayer", "--tile-size", 55.0, *extra,
                "-q", "--out", out,
            )  # fmt: skip
            assert rc == 0, err
            tables[(name, grid)] = _core(pq.read_table(out))
    first = tables[("one", None)]
    assert first.num_rows >= 4
    for key, table in tables.items():
        assert table.equals(first), key
    registry = Registry(get_plugin_manager(extra_plugins=[_Plugin()]))
    layered, _ = read_inputs(registry, _files(sky["mosaic"]), {}, {})
    finder = TwoLayerFinder()
    layers = check_plugins(layered, [finder])
    boxes = plan_jobs(layered, [finder], layers, 55.0, "mm")
    cells = plan_jobs(layered, [finder], layers, 55.0)
    assert all(isinstance(j.core, BoxCore) for j in boxes)
    assert not any(isinstance(j.core, BoxCore) for j in cells)
    from clusterfw.core.layers.cutout import resample_grid

    def optical_pixels(jobs):
        return sum(np.prod(resample_grid(j.region("optical"), 0.01)[1:]) for j in jobs)

    assert optical_pixels(boxes) < 0.8 * optical_pixels(cells)


def test_tile_grid_smaller_than_the_other_layers_warns(sky, cli, tmp_path):
    """The X-ray image (48') as the grid of an 80' mm sky: the positions outside it are in no
    tile, and the run warns (one line through the command line's warning hook); the mm grid
    itself gives no warning."""
    import warnings

    out = tmp_path / "x.parquet"
    with pytest.warns(UserWarning, match=r"^--tile-grid xray: \d+% of the other layers' "
                      r"footprint lies outside 'xray''s grid and is not searched$"):  # fmt: skip
        rc, _, err = cli("run", *_files(sky["one"]), "-f", "twolayer", "--tile-grid", "xray",
                         "-q", "--out", out)  # fmt: skip
    assert rc == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        rc, _, err = cli("run", *_files(sky["one"]), "-f", "twolayer", "--tile-grid", "mm",
                         "-q", "--out", tmp_path / "m.parquet")  # fmt: skip
    assert rc == 0, err


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ("sz", "--tile-grid: no layer named or of kind 'sz' (layers: mm, optical, xray)"),
        ("optical", "--tile-grid: layer 'optical' is a Mosaic, not one flat image with a single "
         "pixel grid"),
    ],
)  # fmt: skip
def test_tile_grid_refused_in_one_line(sky, cli, tmp_path, grid, expected):
    out = tmp_path / "bad.parquet"
    rc, stdout, err = cli(
        "run", *_files(sky["mosaic"]), "-f", "twolayer", "--tile-grid", grid, "--out", out
    )
    assert (rc, stdout) == (2, ""), err
    assert not out.exists()
    assert err.strip().splitlines() == [f"clusterfw: error: {expected}"]


def test_mf_and_two_layer_finder_with_cutout_estimator(sky, cli, tmp_path):
    out = tmp_path / "both.parquet"
    rc, _, err = cli(
        "run",
        *_files(sky["one"]),
        "-f",
        "mf",
        "-f",
        "twolayer",
        "-e",
        "xcounts",
        "--tile-size",
        900.0,
        "-q",
        "--out",
        out,
    )
    assert rc == 0, err
    table = pq.read_table(out)
    assert set(table["finder"].to_pylist()) == {"mf", "twolayer"}
    counts = table["xcounts_sum"].to_numpy()
    mine = table.filter(pa.compute.equal(table["finder"], "twolayer"))
    assert np.all(mine["xcounts_sum"].to_numpy() >= 40)  # a peak of >= 40 counts is inside
    assert np.all(np.isfinite(counts))


def test_combined_catalogue_records_coverage(sky, cli, tmp_path):
    """Where the optical layer has no data, twolayer's score is null and it is not covered."""
    out = tmp_path / "comb.parquet"
    rc, _, err = cli(
        "run",
        *_files(sky["one"]),
        "-f",
        "mf",
        "-f",
        "twolayer",
        "-c",
        "rankprod",
        "--tile-size",
        900.0,
        "-q",
        "--out",
        out,
    )
    assert rc == 0, err
    table = pq.read_table(out)
    mf_cov = np.array(table["mf_covered"].to_pylist())
    tl_cov = np.array(table["twolayer_covered"].to_pylist())
    assert mf_cov.all()  # the mm maps cover the whole union of the layers here
    ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
    outside = (np.abs(ra - RA0) > 0.3) | (np.abs(dec - DEC0) > 0.3)  # off the optical images
    assert outside.any()
    assert not tl_cov[outside].any() and tl_cov[~outside].all()
    scores = np.array(table["twolayer_score"].to_pylist(), dtype=float)
    assert np.isnan(scores[~tl_cov]).all()
    near = np.hypot(ra - MM_ONLY[0], dec - MM_ONLY[1]) < 2 / 60
    assert near.any() and not tl_cov[near].any()  # the mm-only cluster: twolayer not covered


def test_finder_layer_missing_refused_before_work(sky, cli, tmp_path):
    out = tmp_path / "o.parquet"
    rc, stdout, err = cli(
        "run", *sky["one"]["mm"], *sky["one"]["optical"], "-f", "twolayer", "--out", out
    )
    assert rc == 2 and stdout == "" and not out.exists()
    assert err.strip() == (
        "clusterfw: error: twolayer: needs a 'xray' layer; the inputs have none "
        "(layers: mm (mm), optical (optical))"
    )
    rc, _, err = cli(
        "run",
        *sky["one"]["mm"],
        *sky["one"]["optical"][:2],
        *sky["one"]["xray"],
        "-f",
        "twolayer",
        "--out",
        out,
    )
    assert rc == 2 and not out.exists()
    assert err.strip() == (
        "clusterfw: error: twolayer: 'optical' layer 'optical' lacks band(s) i (has g, r)"
    )


def _bad(cli, tmp_path, files, expected):
    out = tmp_path / "bad.parquet"
    rc, stdout, err = cli("run", *files, "-f", "twolayer", "--out", out)
    assert (rc, stdout) == (2, ""), err
    assert not out.exists()
    assert err.strip().splitlines() == [f"clusterfw: error: {expected}"]


def test_bad_optical_and_xray_inputs_one_line(sky, cli, tmp_path):
    one = sky["one"]
    h = _tan(6.0, 50)
    data = np.ones((50, 50))
    no_filter = _write(tmp_path / "nofilter.fits", data, h, {"BUNIT": "nanomaggy"})
    _bad(
        cli,
        tmp_path,
        [*one["optical"], no_filter, *one["xray"]],
        f"{no_filter}: missing FILTER header keyword (u, g, r, i, z or y)",
    )
    furlong = _write(tmp_path / "furlong.fits", data, h, {"FILTER": "z", "BUNIT": "furlong"})
    _bad(
        cli,
        tmp_path,
        [*one["optical"], furlong, *one["xray"]],
        f"{furlong}: unknown BUNIT 'furlong' for an optical image (expected nanomaggy, or "
        "count with MAGZERO)",
    )
    xcards = {"E_MIN": 0.5, "E_MAX": 2.0, "BUNIT": "count"}
    jy = _write(tmp_path / "xjy.fits", data, h, {**xcards, "BUNIT": "Jy", "EXPOSURE": 10.0})
    _bad(
        cli,
        tmp_path,
        [*one["optical"], jy],
        f"{jy}: unknown BUNIT 'Jy' for an X-ray image (expected count)",
    )
    no_exp = _write(tmp_path / "noexp.fits", data, h, xcards)
    _bad(
        cli,
        tmp_path,
        [*one["optical"], no_exp],
        f"{no_exp}: no exposure: neither an EXPOSURE image extension nor an EXPOSURE keyword",
    )


def test_mosaic_files_disagreeing_on_filter(sky, cli, tmp_path):
    pieces = [p for p in sky["mosaic"]["optical"] if "_r_" in p.name]
    wrong = tmp_path / "opt_r_wrong.fits"
    with fits.open(pieces[1]) as hdul:
        header = hdul[0].header.copy()
        header["FILTER"] = "i"
        fits.PrimaryHDU(hdul[0].data, header).writeto(wrong)
    rc, stdout, err = cli(
        "run",
        pieces[0],
        wrong,
        *sky["one"]["xray"],
        "-f",
        "twolayer",
        "--header",
        "*opt_r_*:BANDNAME=r",
        "--out",
        tmp_path / "o.parquet",
    )
    assert (rc, stdout) == (2, "")
    line = err.strip()
    assert line.startswith(f"clusterfw: error: {wrong}: ") and "filter" in line.lower(), line
    assert len(err.strip().splitlines()) == 1


def test_layer_without_overlap(sky, cli, tmp_path):
    far = fits.Header()
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [30.0, -40.0]
    w.wcs.crpix = [25.5, 25.5]
    w.wcs.cdelt = [-30 / 3600, 30 / 3600]
    far = w.to_header()
    xray = _write(
        tmp_path / "far_xray.fits",
        np.ones((50, 50)),
        far,
        {"E_MIN": 0.5, "E_MAX": 2.0, "BUNIT": "count", "EXPOSURE": 10.0},
    )
    _bad(
        cli,
        tmp_path,
        [*sky["one"]["optical"], xray],
        f"{xray}: layer 'xray' (1 file(s)) has no overlap with the other layers (optical)",
    )


def test_header_option_malformed(sky, cli, tmp_path):
    rc, stdout, err = cli(
        "run", *sky["one"]["mm"], "--header", "FILTER", "--out", tmp_path / "o.parquet"
    )
    assert (rc, stdout) == (2, "")
    assert err.strip() == "clusterfw: error: --header: 'FILTER' must look like [GLOB:]KEY=VALUE"


def test_header_override_sets_the_filter(sky, cli, tmp_path):
    """An optical file without FILTER runs once --header gives it one (for its glob only)."""
    one = sky["one"]
    r = next(p for p in one["optical"] if p.name == "opt_r.fits")
    bare = tmp_path / "bare_r.fits"
    with fits.open(r) as hdul:
        header = hdul[0].header.copy()
        del header["FILTER"]
        fits.PrimaryHDU(hdul[0].data, header).writeto(bare)
    files = [p for p in one["optical"] if p != r]
    out = tmp_path / "o.parquet"
    rc, _, err = cli(
        "run",
        *files,
        bare,
        *one["xray"],
        "-f",
        "twolayer",
        "--header",
        "*bare_r.fits:FILTER=r",
        "-q",
        "--out",
        out,
    )
    assert rc == 0, err
    assert pq.read_table(out).num_rows >= 4


def test_core_does_not_import_the_simulator():
    """clusterfw/core depends on nothing above it (AST check of every module)."""
    import ast

    root = Path(__file__).resolve().parents[2] / "clusterfw" / "core"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value.startswith("clusterfw.sim") else []
            for name in names:
                if name == "clusterfw.sim" or name.startswith("clusterfw.sim."):
                    offenders.append(f"{path.relative_to(root.parent.parent)}: {name}")
    assert offenders == [], offenders


def test_demo_sky_comes_through_the_hook():
    from clusterfw.core.plugins import Registry

    demo = Registry().demo_inputs()
    assert demo is not None and len(demo) == 3
    assert all(Path(p).name.startswith("demo_f") for p in demo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_healpix_run_from_files_equals_the_in_memory_sky(cli, tmp_path):
    """A HEALPix map read per tile job gives the catalogue of the whole map held in memory."""
    import healpy as hp

    from clusterfw.core.fits_io import read_healpix_fits, write_healpix_sky_fits
    from clusterfw.core.pipeline import run_pipeline
    from clusterfw.core.sky import Band, HealpixSky
    from clusterfw.plugins.finders.mf.finder import MatchedFilterFinder

    nside = 512
    rng = np.random.default_rng(3)
    disc = hp.query_disc(nside, hp.ang2vec(60.0, -40.0, lonlat=True), np.radians(4.0))
    maps = np.full((2, hp.nside2npix(nside)), hp.UNSEEN)
    maps[:, disc] = rng.normal(0, 30.0, (2, disc.size))
    bands = (Band("f095", 95.0, 2.2, 30.0), Band("f150", 150.0, 1.4, 30.0))
    paths = write_healpix_sky_fits(HealpixSky(maps, bands), tmp_path, prefix="hp")
    # white noise: a low threshold so that enough peaks are compared (35 above 2.8; 4 above 3.5
    # since mf tapers its filter at the HEALPix Nyquist)
    old = run_pipeline(read_healpix_fits(paths), [MatchedFilterFinder({"snr_min": 2.8})])
    out = tmp_path / "new.parquet"
    rc, _, err = cli("run", *paths, "-f", "mf", "-o", "mf.snr_min=2.8", "-q", "--out", out)
    assert rc == 0, err
    new = pq.read_table(out)
    assert old.num_rows > 20
    for name in ("ra", "dec", "score", "tile_id", "candidate_id", "y_c", "mf_snr_rms"):
        assert new.column(name).to_pylist() == old.column(name).to_pylist(), name


def test_compressed_optical_and_xray_give_the_same_catalogue(sky, cli, tmp_path, monkeypatch):
    """Optical as RICE ``.fits.fz`` (lossless for these integer-valued copies) and X-ray as
    ``.fits.gz`` are sorted into their layers and read per tile like plain files."""
    import gzip

    monkeypatch.setenv("CLUSTERFW_CACHE_DIR", str(tmp_path / "cache"))
    one = sky["one"]
    plain, packed = [], []
    for path in one["optical"]:
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            data = np.round(hdul[0].data * 1000.0).astype(np.int32)  # integers: RICE is exact
        header["BUNIT"] = "count"
        header["MAGZERO"] = 22.5 + 2.5 * np.log10(1000.0)  # count -> nanomaggy: / 1000
        p = tmp_path / path.name
        fits.PrimaryHDU(data, header).writeto(p)
        plain.append(p)
        fz = tmp_path / (path.stem + ".fits.fz")
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header, "RICE_1")]).writeto(fz)
        packed.append(fz)
    gz = tmp_path / "xray.fits.gz"
    gz.write_bytes(gzip.compress(one["xray"][0].read_bytes()))
    outs = []
    for files in ([*plain, *one["xray"]], [*packed, gz]):
        out = tmp_path / f"c{len(outs)}.parquet"
        rc, _, err = cli("run", *files, "-f", "twolayer", "--tile-size", 55.0, "-q", "--out", out)
        assert rc == 0, err
        outs.append(_core(pq.read_table(out)))
    assert outs[0].num_rows >= 4
    assert outs[1].equals(outs[0])
