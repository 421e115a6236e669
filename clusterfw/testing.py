"""A kit for plugin authors: seeded small skies and contract checks for pytest.

Use it in a plugin's own tests::

    from clusterfw.testing import check_finder_contract, small_mm_sky

    def test_contract():
        check_finder_contract(MyFinder, small_mm_sky(seed=1))

Every check raises :class:`ContractError` (an ``AssertionError``, so pytest shows it as a test
failure) with one line naming the plugin and the broken rule, and returns a
:class:`ContractReport` of what it measured when everything holds.

- :func:`small_mm_sky`: a seeded three-band millimetre sky (SPT-3G-like bands, µK_CMB) with its
  truth, simulated by :mod:`clusterfw.sim` when installed, else a pure-numpy sky of white noise and
  beam-smoothed Gaussian decrements;
- :func:`check_finder_contract`: schema, core rule, tiling invariance, ``score_at`` at a detection,
  bad-option errors;
- :func:`check_combiner_contract`: schema and required columns, ``<finder>_score`` per finder,
  ``finder``/``tile_id``, its calibration round trip;
- :func:`check_estimator_contract`: declared columns only, rows kept in order, prefix rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import ClusterfwError, ForcedScoringUnsupported, PluginError

if TYPE_CHECKING:
    from clusterfw.core.plugin_api import Combiner, Estimator, Finder
    from clusterfw.core.sky import Sky

BAD_OPTION = "__clusterfw_testing_no_such_option__"


class ContractError(AssertionError):
    """A plugin broke a contract; the message names the plugin and the rule, on one line."""


@dataclass(frozen=True)
class TestSky:
    """A small seeded sky and its truth.

    Attributes
    ----------
    sky : Sky
        Three bands (``f095``, ``f150``, ``f220``), µK_CMB, NaN-free.
    truth : pyarrow.Table
        ``ra``, ``dec`` (deg), ``z`` and ``m500c`` (Msun) of the clusters painted in.
    seed : int
    simulated : bool
        Made by :mod:`clusterfw.sim` (else the pure-numpy fallback).
    """

    __test__ = False  # not a pytest test class

    sky: Sky
    truth: pa.Table
    seed: int
    simulated: bool


def small_mm_sky(
    seed: int = 0, size_deg: float = 1.0, pixel_arcmin: float = 0.5, simulator: bool = True
) -> TestSky:
    """A small seeded three-band millimetre sky with its truth.

    Parameters
    ----------
    seed : int
        The same seed gives the same maps.
    size_deg : float
        Side of the square patch (centred on RA 60°, Dec -45°).
    pixel_arcmin : float
        Pixel side.
    simulator : bool
        Use :func:`clusterfw.sim.simulate_patch` (CMB, tSZ/kSZ halos, point sources, noise) when
        it is installed; False (or no simulator) gives the pure-numpy sky: white noise of
        8/6/20 µK·arcmin and 12 per deg² beam-smoothed Gaussian decrements (-60 to -240 µK at
        150 GHz, sigma 0.5'-1.5'), scaled by the tSZ spectrum in the other bands.

    Returns
    -------
    TestSky
    """
    if simulator:
        try:
            from clusterfw.sim import PatchConfig, simulate_patch
        except ImportError:
            pass
        else:
            res = simulate_patch(PatchConfig(size_deg=size_deg, pixel_arcmin=pixel_arcmin), seed)
            truth = res.halos.select(["ra", "dec", "z", "m500c"])
            return TestSky(sky=res.sky, truth=truth, seed=seed, simulated=True)
    return _numpy_sky(seed, size_deg, pixel_arcmin)


def _numpy_sky(seed: int, size_deg: float, pixel_arcmin: float) -> TestSky:
    from astropy.wcs import WCS
    from scipy import ndimage

    from clusterfw.core.sky import Band, Sky

    rng = np.random.default_rng(seed)
    n = max(16, int(round(size_deg * 60.0 / pixel_arcmin)))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    wcs.wcs.crval = [60.0, 0.0]
    wcs.wcs.cdelt = [-pixel_arcmin / 60.0, pixel_arcmin / 60.0]
    wcs.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0 + 45.0 / (pixel_arcmin / 60.0)]
    bands = (
        Band("f095", 95.0, 1.6, 8.0),
        Band("f150", 150.0, 1.2, 6.0),
        Band("f220", 220.0, 1.0, 20.0),
    )
    tsz = {"f095": 1.55, "f150": 1.0, "f220": -0.05}  # relative to 150 GHz (non-relativistic)
    n_cl = max(4, int(round(12 * size_deg**2)))
    edge = int(6.0 / pixel_arcmin)
    x = rng.uniform(edge, n - 1 - edge, n_cl)
    y = rng.uniform(edge, n - 1 - edge, n_cl)
    amp = -rng.uniform(60.0, 240.0, n_cl)
    core_arcmin = rng.uniform(0.5, 1.5, n_cl)
    yy, xx = np.mgrid[0:n, 0:n]
    profile = np.zeros((n, n))
    for xi, yi, a, rc in zip(x, y, amp, core_arcmin, strict=True):
        r2 = ((xx - xi) ** 2 + (yy - yi) ** 2) * pixel_arcmin**2
        profile += a * np.exp(-0.5 * r2 / rc**2)
    maps = np.empty((3, n, n), dtype=np.float32)
    for k, b in enumerate(bands):
        sigma_pix = b.beam_fwhm_arcmin / np.sqrt(8 * np.log(2)) / pixel_arcmin
        signal = ndimage.gaussian_filter(tsz[b.name] * profile, sigma_pix)
        noise = rng.normal(0.0, float(b.noise_uk_arcmin or 0.0) / pixel_arcmin, (n, n))
        maps[k] = (signal + noise).astype(np.float32)
    ra, dec = wcs.pixel_to_world_values(x, y)
    truth = pa.table(
        {
            "ra": pa.array(np.asarray(ra) % 360.0),
            "dec": pa.array(np.asarray(dec)),
            "z": pa.array(rng.uniform(0.2, 1.2, n_cl)),
            "m500c": pa.array(3e14 * (amp / -100.0) ** 1.5),
        }
    )
    return TestSky(sky=Sky(maps, wcs, bands), truth=truth, seed=seed, simulated=False)


@dataclass
class ContractReport:
    """What a contract check measured (for the plugin's own assertions or a printout)."""

    plugin: str
    checks: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)


def _fail(kind: str, name: str, rule: str) -> ContractError:
    return ContractError(f"{kind} {name!r}: {rule}")


def _instance(obj: Any, base: Any, options: Mapping[str, Any] | None) -> Any:
    if isinstance(obj, type):
        if not issubclass(obj, base):
            raise ContractError(f"{obj!r} is not a {base.__name__} subclass")
        return obj(dict(options or {}))
    if not isinstance(obj, base):
        raise ContractError(f"{obj!r} is not a {base.__name__}")
    return obj


def _check_class_basics(cls: Any, kind: str, report: ContractReport) -> None:
    from clusterfw.core.plugin_api import PluginOptions
    from clusterfw.core.plugins import check_plugin_class

    name = getattr(cls, "name", None)
    try:
        check_plugin_class(cls, _base_of(kind))
    except PluginError as exc:
        raise ContractError(f"{kind} {name!r}: {exc}") from None
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, PluginOptions)):
        raise _fail(kind, str(name), "Options must be a PluginOptions subclass")
    try:
        cls({BAD_OPTION: 1})
    except PluginError as exc:
        if BAD_OPTION not in str(exc) or "\n" in str(exc):
            raise _fail(
                kind, str(name), f"the unknown-option error does not name it: {exc}"
            ) from None
    except Exception as exc:
        raise _fail(
            kind, str(name), f"an unknown option raised {type(exc).__name__}, not PluginError"
        ) from None
    else:
        raise _fail(kind, str(name), f"accepted the unknown option {BAD_OPTION!r}")
    report.checks.append("name and options (an unknown option is a one-line PluginError)")


def _base_of(kind: str) -> type:
    from clusterfw.core.plugin_api import PLUGIN_KINDS

    return PLUGIN_KINDS[kind]


def check_finder_contract(
    finder: type[Finder] | Finder,
    sky: TestSky | Sky | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    tile_size_arcmin: float | None = None,
    position_tol_arcmin: float = 0.5,
    score_rtol: float = 0.3,
    min_matched: float = 0.9,
    score_at_rtol: float = 0.05,
) -> ContractReport:
    """Check a finder against the contract clusterfw relies on.

    Parameters
    ----------
    finder : Finder class or instance
        A class is instantiated with ``options``.
    sky : TestSky or Sky, optional
        Default: ``small_mm_sky(seed=0)``.
    options : mapping, optional
        Options for a finder class.
    tile_size_arcmin : float, optional
        Core size of the split run; default: half the sky's smaller side (four tiles).
    position_tol_arcmin, score_rtol, min_matched : float
        Tiling invariance: at least ``min_matched`` of the brighter half (score at or above the
        median) of the candidates of the one-tile run have a candidate of the four-tile run
        within ``position_tol_arcmin`` whose score agrees to ``score_rtol``, and the other way
        round. Candidates near the detection threshold may come and go; a finder that measures
        the noise in each tile (``mf`` with ``noise="data"``) sees its scores change by tens of
        percent with the tiling, hence the default ``score_rtol``; tighten it for a finder whose
        scores do not depend on the tile.
    score_at_rtol : float
        ``score_at`` at each detection must give its score within this relative tolerance.

    Returns
    -------
    ContractReport

    Raises
    ------
    ContractError
        Naming the finder and the rule it broke.

    Notes
    -----
    The rules: (1) a ``name`` that is a Python identifier and an ``Options`` model that turns an
    unknown option into a one-line :class:`~clusterfw.core.errors.PluginError`; (2) ``find``
    returns a valid candidate table (:func:`~clusterfw.core.schema.validate_candidates`, finder
    name, finite positions) on every tile; (3) the core rule: every row lies in the tile's core;
    (4) tiling invariance, as above; (5) when :meth:`Finder.supports_forced_scoring`, ``score_at``
    at its own detections equals their scores, one float per position.
    """
    from clusterfw.core.pipeline import check_finder_output, run_pipeline, tiles_for
    from clusterfw.core.plugin_api import Finder

    f = _instance(finder, Finder, options)
    cls = type(f)
    report = ContractReport(plugin=f.name)
    _check_class_basics(cls, "finder", report)
    the_sky = _sky_of(sky)
    ny, nx = the_sky.maps.shape[-2:]
    side = min(ny, nx) * the_sky.pixel_scale_arcmin
    split = tile_size_arcmin if tile_size_arcmin is not None else side / 2.0 + 1e-6
    whole = 4.0 * max(ny, nx) * the_sky.pixel_scale_arcmin

    # (2) and (3): every tile of the split run
    tiles = tiles_for(the_sky, [f], split)
    if len(tiles) < 2:
        raise ContractError(f"finder {f.name!r}: the sky is too small for a split run")
    n_rows = 0
    for tile in tiles:
        try:
            table = check_finder_output(f, f.find(tile))
        except PluginError as exc:
            raise ContractError(str(exc)) from None
        if table.num_rows:
            ra = table.column("ra").to_numpy()
            dec = table.column("dec").to_numpy()
            out = ~tile.in_core(ra, dec)
            if out.any():
                raise _fail(
                    "finder",
                    f.name,
                    f"core rule: {int(out.sum())} of {table.num_rows} candidates of tile "
                    f"{tile.tile_id} lie outside its core (filter with tile.in_core)",
                )
        n_rows += table.num_rows
    report.checks.append(f"schema and core rule on {len(tiles)} tiles")

    # (4) tiling invariance
    one = run_pipeline(the_sky, [f], tile_size_arcmin=whole)
    four = run_pipeline(the_sky, [f], tile_size_arcmin=split)
    frac_a = _matched_fraction(_bright(one), four, position_tol_arcmin, score_rtol)
    frac_b = _matched_fraction(_bright(four), one, position_tol_arcmin, score_rtol)
    report.numbers.update(
        n_one_tile=float(one.num_rows),
        n_split=float(four.num_rows),
        matched_one_in_split=frac_a,
        matched_split_in_one=frac_b,
    )
    if min(frac_a, frac_b) < min_matched:
        raise _fail(
            "finder",
            f.name,
            f"tiling invariance: 1 tile gives {one.num_rows} candidates and {len(tiles)} tiles "
            f"{four.num_rows}; only {min(frac_a, frac_b):.0%} of the brighter half agree within "
            f"{position_tol_arcmin}' and rtol {score_rtol} (need {min_matched:.0%}; is "
            "margin_arcmin large enough?)",
        )
    report.checks.append(
        f"tiling invariance ({one.num_rows} vs {four.num_rows} candidates, "
        f"{min(frac_a, frac_b):.1%} matched)"
    )

    # (5) forced scoring at detections
    if cls.supports_forced_scoring() and one.num_rows:
        (tile,) = tiles_for(the_sky, [f], whole)
        ra = one.column("ra").to_numpy()
        dec = one.column("dec").to_numpy()
        try:
            got = np.asarray(f.score_at(tile, ra, dec), dtype=np.float64)
        except ForcedScoringUnsupported:
            raise _fail(
                "finder", f.name, "overrides score_at but raised ForcedScoringUnsupported"
            ) from None
        if got.shape != ra.shape:
            raise _fail(
                "finder", f.name, f"score_at returned shape {got.shape} for {ra.size} positions"
            )
        want = one.column("score").to_numpy().astype(np.float64)
        rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-12)
        report.numbers["score_at_max_rel_error"] = float(np.nanmax(rel))
        bad = ~(rel <= score_at_rtol)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(
                "finder",
                f.name,
                f"score_at at its own detection {one.column('candidate_id')[i].as_py()} gives "
                f"{got[i]:.6g}, find gave {want[i]:.6g} (rtol {score_at_rtol}; {int(bad.sum())} "
                f"of {ra.size} differ)",
            )
        report.checks.append(f"score_at at {ra.size} detections (rtol {score_at_rtol})")
    return report


def _sky_of(sky: TestSky | Sky | None) -> Sky:
    if sky is None:
        return small_mm_sky(0).sky
    return sky.sky if isinstance(sky, TestSky) else sky


def _bright(table: pa.Table) -> pa.Table:
    """Rows scoring at or above the median score."""
    if table.num_rows == 0:
        return table
    s = table.column("score").to_numpy()
    return table.filter(pa.array(s >= np.median(s)))


def _matched_fraction(a: pa.Table, b: pa.Table, tol_arcmin: float, rtol: float) -> float:
    """Fraction of ``a``'s rows with a row of ``b`` within ``tol_arcmin`` and score rtol."""
    if a.num_rows == 0:
        return 1.0 if b.num_rows == 0 else 0.0
    if b.num_rows == 0:
        return 0.0
    from clusterfw.core.evaluation.matching import pairs_within

    i, j, _ = pairs_within(
        a.column("ra").to_numpy(),
        a.column("dec").to_numpy(),
        b.column("ra").to_numpy(),
        b.column("dec").to_numpy(),
        tol_arcmin,
    )
    sa = a.column("score").to_numpy().astype(np.float64)[i]
    sb = b.column("score").to_numpy().astype(np.float64)[j]
    ok = np.abs(sa - sb) <= rtol * np.maximum(np.abs(sa), np.abs(sb)) + 1e-12
    return float(np.unique(i[ok]).size / a.num_rows)


def check_combiner_contract(
    combiner: type[Combiner] | Combiner,
    tables: Mapping[str, pa.Table] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    forced: Any = None,
    calibration: Any = None,
) -> ContractReport:
    """Check a combiner against the contract clusterfw relies on.

    Parameters
    ----------
    combiner : Combiner class or instance
    tables : mapping of str to pyarrow.Table, optional
        Finder tables to combine; default: two toy finders' tables on a synthetic patch
        (:mod:`clusterfw.core.evaluation.synthetic`), with their forced scorer.
    options : mapping, optional
        Options for a combiner class.
    forced : callable, optional
        ``forced(finder, ra, dec)``; with the default tables, their forced scorer.
    calibration : optional
        Passed to ``combine``.

    Returns
    -------
    ContractReport

    Raises
    ------
    ContractError

    Notes
    -----
    The rules: name and options as for finders; ``combine`` returns a valid candidate table (the
    same check as ``clusterfw run``) with ``finder`` set to the combiner's name, ``tile_id`` -1 and
    ``<finder>_score`` for every input finder; it does not modify its inputs; ``calibrate`` (when
    overridden) returns a JSON-ready section or None, and ``default_calibration`` a
    :class:`~clusterfw.core.evaluation.calibration.Calibration` or None.
    """
    import json

    from clusterfw.core.evaluation.calibration import Calibration
    from clusterfw.core.pipeline import check_combiner_output
    from clusterfw.core.plugin_api import Combiner

    c = _instance(combiner, Combiner, options)
    report = ContractReport(plugin=c.name)
    _check_class_basics(type(c), "combiner", report)
    if tables is None:
        tables, forced = _toy_tables()
    before = {n: t.to_pydict() for n, t in tables.items()}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = check_combiner_output(c, tables, c.combine(dict(tables), forced, calibration))
        except PluginError as exc:
            raise ContractError(str(exc)) from None
    if any(tables[n].to_pydict() != before[n] for n in tables):
        raise _fail("combiner", c.name, "combine modified an input table")
    if out.num_rows:
        finders = set(out.column("finder").unique().to_pylist())
        if finders != {c.name}:
            raise _fail("combiner", c.name, f"rows have finder {sorted(finders)}, not its name")
        tiles = set(out.column("tile_id").unique().to_pylist())
        if tiles != {-1}:
            raise _fail("combiner", c.name, f"tile_id is {sorted(tiles)}, not -1")
    report.numbers["n_rows"] = float(out.num_rows)
    report.checks.append(f"combine: {out.num_rows} rows from {len(tables)} finders")
    default = type(c).default_calibration()
    if default is not None and not isinstance(default, Calibration):
        raise _fail("combiner", c.name, "default_calibration must return a Calibration or None")
    if type(c).calibrate is not Combiner.calibrate:
        section = _toy_calibration_section(c, tables, out)
        try:
            json.dumps(Calibration(combiners={c.name: section}).to_dict(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise _fail(
                "combiner", c.name, f"calibrate returned a section that is not JSON: {exc}"
            ) from None
        report.checks.append("calibrate returns a JSON section")
    return report


def _toy_tables() -> tuple[dict[str, pa.Table], Any]:
    from clusterfw.core.evaluation.synthetic import (
        PatchGeometry,
        ToyFinder,
        cnn_like_response,
        forced_scorer,
        mf_like_response,
        synthetic_truth,
    )

    geom = PatchGeometry(ra0=10.0, dec0=-1.0, size_deg=1.0, pix_arcmin=0.5)
    truth = synthetic_truth(geom, 7)
    finders = {
        "toya": ToyFinder("toya", geom, truth, mf_like_response, 71),
        "toyb": ToyFinder("toyb", geom, truth, cnn_like_response, 72),
    }
    return {n: f.find() for n, f in finders.items()}, forced_scorer(finders)


def _toy_calibration_section(c: Combiner, tables: Mapping[str, pa.Table], out: pa.Table) -> Any:
    from clusterfw.core.evaluation.calibration import calibrate, combined_finders
    from clusterfw.core.evaluation.matching import Truth

    if not combined_finders(out.column_names):
        return None
    truth = Truth.from_table(
        {
            "ra": out.column("ra").to_numpy(),
            "dec": out.column("dec").to_numpy(),
            "z": np.full(out.num_rows, 0.5),
            "mvir": np.full(out.num_rows, 5e14),
        }
    )
    try:
        cal = calibrate([(out, truth)], combiners=[c])
    except ClusterfwError as exc:
        raise ContractError(str(exc)) from None
    return cal.section(c.name)


def check_estimator_contract(
    estimator: type[Estimator] | Estimator,
    table: pa.Table | None = None,
    sky: TestSky | Sky | None = None,
    *,
    options: Mapping[str, Any] | None = None,
) -> ContractReport:
    """Check an estimator against the contract clusterfw relies on.

    Parameters
    ----------
    estimator : Estimator class or instance
    table : pyarrow.Table, optional
        Candidates to estimate; default: the truth positions of ``sky`` as a candidate table.
    sky : TestSky or Sky, optional
        Default: ``small_mm_sky(seed=0)``.
    options : mapping, optional
        Options for an estimator class.

    Returns
    -------
    ContractReport

    Raises
    ------
    ContractError

    Notes
    -----
    The rules: name and options as for finders; ``columns`` are fields named ``<name>_...`` with
    unit and description metadata; ``estimate`` returns the table it was given, rows in the same
    order, with exactly those columns appended (the same check as ``clusterfw run``), and the
    result is a valid candidate table.
    """
    from clusterfw.core.errors import SchemaError
    from clusterfw.core.pipeline import check_estimator_output
    from clusterfw.core.plugin_api import Estimator
    from clusterfw.core.schema import candidate_table, validate_candidates

    e = _instance(estimator, Estimator, options)
    report = ContractReport(plugin=e.name)
    _check_class_basics(type(e), "estimator", report)
    for f in e.columns:
        meta = f.metadata or {}
        if not f.name.startswith(e.name + "_"):
            raise _fail("estimator", e.name, f"column {f.name!r} lacks the prefix {e.name + '_'!r}")
        if b"unit" not in meta or b"description" not in meta:
            raise _fail("estimator", e.name, f"column {f.name!r} lacks unit/description metadata")
    test_sky = sky if isinstance(sky, TestSky) else None
    the_sky = _sky_of(sky)
    if table is None:
        truth = (test_sky or small_mm_sky(0)).truth if sky is None or test_sky else None
        if truth is None:
            raise ContractError("give a table when sky is a plain Sky")
        table = candidate_table(
            finder="truth",
            score_kind="snr",
            ra=truth.column("ra").to_numpy(),
            dec=truth.column("dec").to_numpy(),
            score=np.linspace(10.0, 4.0, truth.num_rows),
        )
    try:
        out = check_estimator_output(e, table, e.estimate(table, the_sky))
        validate_candidates(out, prefixes=None)
    except PluginError as exc:
        raise ContractError(str(exc)) from None
    except SchemaError as exc:
        raise _fail("estimator", e.name, f"estimate returned an invalid table: {exc}") from None
    report.numbers["n_rows"] = float(out.num_rows)
    report.checks.append(f"estimate: {len(e.columns)} columns on {out.num_rows} rows")
    return report


__all__ = [
    "ContractError",
    "ContractReport",
    "TestSky",
    "check_combiner_contract",
    "check_estimator_contract",
    "check_finder_contract",
    "small_mm_sky",
]
