"""The run pipeline: tiles → finders → (forced scores) → combiner → estimators → one table.

Every step is a plain call on a plain value; the CLI is a thin layer over :func:`run_pipeline`.

Plugin contracts
----------------
Each plugin's output is checked where it comes back, and a broken contract is a
:class:`~clusterfw.core.errors.PluginError` whose one-line message names the plugin:

- a finder's ``find`` must return a ``pyarrow.Table`` that passes
  :func:`~clusterfw.core.schema.validate_candidates` (required columns and types, finite
  positions and scores, unique ids, prefixed extra columns) with ``finder`` set to its name;
  its ``score_at`` must return one score per position;
- a combiner's ``combine`` must return a valid candidate table with ``<finder>_score`` for every
  input finder; each finder's ``flags`` are carried into it as ``<finder>_flags`` (added here from
  ``<finder>_candidate_id`` when the combiner did not add them);
- an estimator's ``estimate`` must return the table it got, rows in the same order
  (``candidate_id`` unchanged), no column dropped, and exactly the ``columns`` it declares added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import (
    ClusterfwError,
    ForcedScoringUnsupported,
    PluginError,
    SchemaError,
)
from clusterfw.core.executors import InProcessExecutor, TileExecutor
from clusterfw.core.layers.model import Layer, LayerBand, LayerSky, MmBand
from clusterfw.core.layers.requirements import (
    LayerRequirement,
    check_requirements,
    matching_layers,
)
from clusterfw.core.plugin_api import Combiner, Estimator, Finder
from clusterfw.core.schema import (
    concat_candidates,
    empty_candidates,
    finder_flags_field,
    plugin_field,
    required_columns,
    validate_candidates,
)
from clusterfw.core.sky import Band, HealpixCore, HealpixSky, PixelBoxCore, Sky, Tile

AnySky = Sky | HealpixSky | LayerSky

if TYPE_CHECKING:
    from clusterfw.core.checkpoint import Checkpoint
    from clusterfw.core.layers.cutout import LayerCutout
    from clusterfw.core.layers.jobs import TileJob


@dataclass
class TileResult:
    """What one tile job returns: each finder's candidates and every finder's forced scores
    at every candidate position found in the tile (by any finder)."""

    tile_id: int
    tables: dict[str, pa.Table]
    forced: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    covered: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


def covered(tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Whether every layer of ``tile`` has data (a finite pixel in every band) at each position.

    The nearest pixel of each layer is looked at; a position outside a layer's cutout is not
    covered.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    ok = np.ones(ra.shape, dtype=bool)
    cutouts = list(tile.layers.values()) or [tile.layer("mm")]
    for cutout in cutouts:
        if ra.size == 0:
            break
        x, y = cutout.wcs.world_to_pixel_values(ra, dec)
        ix = np.floor(np.asarray(x) + 0.5)
        iy = np.floor(np.asarray(y) + 0.5)
        ny, nx = cutout.shape
        inside = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (iy >= 0) & (ix < nx) & (iy < ny)
        has = np.zeros(ra.shape, dtype=bool)
        idx = np.flatnonzero(inside)
        has[idx] = cutout.valid[iy[idx].astype(int), ix[idx].astype(int)]
        ok &= has
    return ok


def _forced_scores(finder: Finder, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``finder``'s scores at the positions; NaN (no data) where its layers do not cover them."""
    if ra.size == 0:
        return np.zeros(0, dtype=np.float64)
    if tile.layers:
        where = covered(tile, ra, dec)
        if not where.all():
            out = np.full(ra.shape, np.nan)
            if where.any():
                out[where] = _forced_scores_all(finder, tile, ra[where], dec[where])
            return out
    return _forced_scores_all(finder, tile, ra, dec)


def _forced_scores_all(finder: Finder, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    try:
        raw = finder.score_at(tile, ra, dec)
    except ForcedScoringUnsupported:
        return np.full(ra.size, np.nan)
    try:
        out = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise PluginError(
            f"finder {finder.name!r}: score_at returned {type(raw).__name__}, not numbers"
        ) from None
    if out.shape != ra.shape:
        raise PluginError(
            f"finder {finder.name!r}: score_at returned shape {out.shape} for {ra.size} positions"
        )
    return out


def _type_name(obj: object) -> str:
    return type(obj).__module__.split(".")[0] + "." + type(obj).__qualname__


def check_finder_output(finder: Finder, table: object) -> pa.Table:
    """``table`` if it is a valid candidate table of ``finder``, else :class:`PluginError`.

    Parameters
    ----------
    finder : Finder
    table : object
        What ``finder.find`` returned.

    Raises
    ------
    PluginError
        ``finder 'x': find returned ...: <problem>`` on one line.
    """
    name = finder.name
    if not isinstance(table, pa.Table):
        raise PluginError(
            f"finder {name!r}: find returned {_type_name(table)}, not a pyarrow.Table "
            "(build it with clusterfw.core.schema.candidate_table)"
        )
    try:
        validate_candidates(table, prefixes=(name,))
    except SchemaError as exc:
        raise PluginError(f"finder {name!r}: find returned an invalid table: {exc}") from None
    if table.num_rows:
        got = {str(v) for v in table.column("finder").unique().to_pylist()}
        if got != {name}:
            raise PluginError(
                f"finder {name!r}: find returned rows with finder {sorted(got)}, not [{name!r}]"
            )
    return table


def run_tile(finders: Sequence[Finder], tile: Tile | Sequence[Tile], forced: bool) -> TileResult:
    """Run every finder on one tile, keep core candidates, and optionally force-score them.

    Parameters
    ----------
    finders : sequence of Finder
    tile : Tile, or sequence of Tile
        The tile, or one view of it per finder (each holding only that finder's layers).
    forced : bool
        Also compute each finder's score at the positions found by all finders in this tile
        (NaN where the finder's layers have no data).
    """
    views = [tile] * len(finders) if isinstance(tile, Tile) else list(tile)
    tables = {}
    for finder, view in zip(finders, views, strict=True):
        table = check_finder_output(finder, _find(finder, view))
        if table.num_rows:
            keep = view.in_core(table.column("ra").to_numpy(), table.column("dec").to_numpy())
            table = table.filter(pa.array(keep))
        tables[finder.name] = table
    result = TileResult(views[0].tile_id, tables)
    if forced and len(finders) > 1:
        ra = np.concatenate([t.column("ra").to_numpy() for t in tables.values()])
        dec = np.concatenate([t.column("dec").to_numpy() for t in tables.values()])
        for finder, view in zip(finders, views, strict=True):
            result.forced[finder.name] = (ra, dec, _forced_scores(finder, view, ra, dec))
            result.covered[finder.name] = (ra, dec, covered(view, ra, dec))
    return result


def _find(finder: Finder, tile: Tile) -> object:
    """``finder.find(tile)``; an unexpected exception becomes one line naming tile and cause.

    Errors that are already user-facing (:class:`ClusterfwError`) pass unchanged.
    """
    try:
        return finder.find(tile)
    except ClusterfwError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin failure is reported, not a traceback
        lines = str(exc).strip().splitlines()
        cause = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise PluginError(f"tile {tile.tile_id}: finder {finder.name!r} failed ({cause})") from None


# --------------------------------------------------------------------------- tile jobs
def _as_band(facts: Any) -> Any:
    if isinstance(facts, MmBand):
        return Band(facts.name, facts.freq_ghz, facts.beam_fwhm_arcmin, facts.noise_uk_arcmin)
    return facts


def _finite(pixels: np.ndarray) -> np.ndarray:
    """Non-finite pixels as NaN, in place for a float32 cutout (fresh from read_cutout: a
    second tile-sized array would double the peak memory of a large optical tile)."""
    finite = np.isfinite(pixels)
    if finite.all():
        return pixels
    if pixels.dtype == np.float32 and pixels.flags.writeable:
        np.copyto(pixels, np.float32(np.nan), where=~finite)
        return pixels
    return np.where(finite, pixels, np.float32(np.nan)).astype(np.float32, copy=False)


def _tile_core(job: TileJob) -> PixelBoxCore | HealpixCore:
    from clusterfw.core.layers.jobs import BoxCore
    from clusterfw.core.tiling import portable_wcs

    core = job.core
    if isinstance(core, BoxCore):
        return PixelBoxCore(portable_wcs(core.wcs), core.y0, core.y1, core.x0, core.x1)
    return HealpixCore(core.order, core.ipix)


def read_job_layers(job: TileJob, names: Sequence[str]) -> dict[str, LayerCutout]:
    """Cutouts of the named layers over the job's core plus each layer's margin.

    Non-finite pixels are NaN (masked), as in the whole-map readers.
    """
    from dataclasses import replace

    from clusterfw.core.layers.cutout import read_cutout
    from clusterfw.core.layers.footprint import TanRegion
    from clusterfw.core.layers.pixelisation import HealpixMap
    from clusterfw.core.tiling import portable_wcs

    out = {}
    for name in names:
        layer, region = job.layer(name), job.region(name)
        grid = None
        if isinstance(layer.pixelisation, HealpixMap) and isinstance(region, TanRegion):
            # sample the map at the pixel centres of the WCS the finder sees (pickle-stable)
            wcs, ny, nx = region.grid(layer.pixelisation.cutout_pixel_arcmin)
            grid = (portable_wcs(wcs), ny, nx)
        cutout = read_cutout(layer, region, None, grid)
        # the grid's WCS is already round-tripped (idempotent): not again (~40 ms a tile)
        wcs_out = cutout.wcs if grid is not None and cutout.wcs is grid[0] else None
        out[name] = replace(
            cutout,
            pixels=_finite(cutout.pixels),
            wcs=wcs_out if wcs_out is not None else portable_wcs(cutout.wcs),
        )
    return out


def tile_from_cutouts(
    tile_id: int, core: PixelBoxCore | HealpixCore, cutouts: Mapping[str, LayerCutout]
) -> Tile:
    """The :class:`Tile` a finder sees: its primary layer (the first ``mm`` one, else the
    first) as ``maps``/``wcs``/``bands``, and every cutout in ``layers``."""
    primary = next((c for c in cutouts.values() if c.kind == "mm"), None)
    if primary is None:
        primary = next(iter(cutouts.values()))
    bands = tuple(_as_band(b) for b in primary.bands)
    return Tile(
        tile_id,
        primary.pixels,
        primary.wcs,
        bands,
        core,
        dict(cutouts),
        native_pixel_arcmin=primary.native_pixel_arcmin,
    )


def run_tile_job(
    finders: Sequence[Finder],
    job: TileJob,
    finder_layers: Sequence[Sequence[str]],
    forced: bool,
) -> TileResult:
    """One tile job: read the layers the finders need (each once), run every finder on a tile
    holding only its own layers, keep core candidates, optionally force-score them."""
    needed = list(dict.fromkeys(n for names in finder_layers for n in names))
    cutouts = read_job_layers(job, needed)
    core = _tile_core(job)
    views = [
        tile_from_cutouts(job.tile_id, core, {n: cutouts[n] for n in names})
        for names in finder_layers
    ]
    return run_tile(finders, views, forced)


def plugin_layers(
    plugin_name: str, requirements: Sequence[LayerRequirement], sky: LayerSky
) -> tuple[str, ...]:
    """The layers of ``sky`` a plugin uses: for each requirement, the first matching layer.

    Raises
    ------
    PluginError
        One line naming the plugin and the missing layer or band (before any work).
    """
    check_requirements(plugin_name, requirements, sky)
    names = [found[0] for req in requirements if (found := matching_layers(req, sky))]
    return tuple(dict.fromkeys(names))


def _in_memory_layer_sky(sky: Sky | HealpixSky) -> LayerSky:
    """What an in-memory sky offers, as a layer list (for the requirement check only)."""
    bands = tuple(
        LayerBand(MmBand(b.name, b.freq_ghz, b.beam_fwhm_arcmin, b.noise_uk_arcmin), ())
        for b in sky.bands
    )
    return LayerSky((Layer("mm", "mm", bands, None),))  # type: ignore[arg-type]


def check_plugins(
    sky: AnySky, finders: Sequence[Finder], estimators: Sequence[Estimator] = ()
) -> list[tuple[str, ...]]:
    """Check every finder's and estimator's ``requires`` against ``sky``; each finder's layers.

    Raises
    ------
    PluginError
        ``<plugin>: needs a 'optical' layer; ...`` on one line, before any work.
    """
    layered = sky if isinstance(sky, LayerSky) else _in_memory_layer_sky(sky)
    out = [plugin_layers(f.name, f.requires, layered) for f in finders]
    for estimator in estimators:
        plugin_layers(estimator.name, estimator.requires, layered)
    return out


def plan_jobs(
    sky: LayerSky,
    finders: Sequence[Finder],
    finder_layers: Sequence[Sequence[str]],
    tile_size_arcmin: float,
    tile_grid: str | None = None,
) -> list[TileJob]:
    """Tile jobs over the layers the finders use, each layer with the largest margin asked.

    ``tile_grid``: a flat layer of ``sky`` whose pixel grid the cores are boxes of (see
    :func:`~clusterfw.core.layers.jobs.plan_tile_jobs`).
    """
    from clusterfw.core.layers.jobs import plan_tile_jobs

    margins: dict[str, float] = {}
    for finder, names in zip(finders, finder_layers, strict=True):
        for name in names:
            margins[name] = max(margins.get(name, 0.0), float(finder.margin_arcmin))
    return plan_tile_jobs(sky, margins, tile_size_arcmin, reference=tile_grid)


class CutoutProvider:
    """Cutouts of a layered sky around positions: what estimators get instead of a whole sky.

    Parameters
    ----------
    sky : LayerSky
    """

    def __init__(self, sky: LayerSky) -> None:
        self.sky = sky

    @property
    def layers(self) -> tuple[str, ...]:
        """Names of the layers."""
        return self.sky.names

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input files."""
        return self.sky.inputs

    def cutout(
        self,
        layer: str,
        ra: float,
        dec: float,
        size_arcmin: float,
        bands: Sequence[str] | None = None,
    ) -> LayerCutout:
        """A square cutout of side ``size_arcmin`` around (ra, dec), at the layer's resolution.

        Parameters
        ----------
        layer : str
            A layer name, or a kind (the first layer of that kind).
        ra, dec : float
            Centre, degrees.
        size_arcmin : float
        bands : sequence of str, optional

        Returns
        -------
        LayerCutout
            Only the pixels of the cutout are read.
        """
        from clusterfw.core.layers.cutout import read_cutout
        from clusterfw.core.layers.footprint import TanRegion

        name = layer if layer in self.sky else None
        if name is None:
            kinds = self.sky.of_kind(layer)
            if not kinds:
                raise KeyError(f"no layer or layer kind {layer!r} (layers: {self.layers})")
            name = kinds[0].name
        region = TanRegion(float(ra), float(dec), float(size_arcmin) / 2.0)
        return read_cutout(self.sky[name], region, bands)


class ForcedScoreLookup:
    """A :data:`~clusterfw.core.plugin_api.ForcedScorer` over the tiles of a run.

    Positions reported by any finder were scored in their tile job and are looked up; any
    other position is scored on demand in the tile whose core contains it. ``tiles`` are
    :class:`Tile` objects (in-memory skies) or :class:`~clusterfw.core.layers.jobs.TileJob`
    descriptions, read again on demand (then ``finder_layers`` gives each finder's layers).
    """

    def __init__(
        self,
        finders: Sequence[Finder],
        tiles: Sequence[Tile] | Sequence[TileJob],
        results: Iterable[TileResult],
        finder_layers: Sequence[Sequence[str]] | None = None,
    ) -> None:
        self._finders = {f.name: f for f in finders}
        self._layers = dict(zip([f.name for f in finders], finder_layers or [], strict=False))
        self._tiles: list[Tile | TileJob] = list(tiles)
        self._known: dict[str, dict[tuple[float, float], float]] = {f.name: {} for f in finders}
        self._covered: dict[str, dict[tuple[float, float], bool]] = {f.name: {} for f in finders}
        for result in results:
            for name, (ra, dec, scores) in result.forced.items():
                keys = zip(ra.tolist(), dec.tolist(), strict=True)
                self._known[name].update(zip(keys, scores.tolist(), strict=True))
            for name, (ra, dec, mask) in result.covered.items():
                keys = zip(ra.tolist(), dec.tolist(), strict=True)
                self._covered[name].update(zip(keys, mask.tolist(), strict=True))

    def coverage(self, finder_name: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Whether ``finder_name``'s layers have data at each position (False outside every
        tile core)."""
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        known = self._covered[finder_name]
        keys = list(zip(ra.tolist(), dec.tolist(), strict=True))
        out = np.array([known.get(k, False) for k in keys], dtype=bool)
        todo = np.flatnonzero([k not in known for k in keys])
        for tile in self._tiles:
            if todo.size == 0:
                break
            inside = tile.in_core(ra[todo], dec[todo])
            if inside.any():
                idx = todo[inside]
                view = tile if isinstance(tile, Tile) else self._view(finder_name, tile)
                out[idx] = covered(view, ra[idx], dec[idx])
                todo = todo[~inside]
        return out

    def __call__(self, finder_name: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        if finder_name not in self._finders:
            raise PluginError(f"forced scoring asked for unknown finder {finder_name!r}")
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        known = self._known[finder_name]
        keys = list(zip(ra.tolist(), dec.tolist(), strict=True))
        out = np.array([known.get(k, np.nan) for k in keys], dtype=np.float64)
        missing = np.array([k not in known for k in keys], dtype=bool)
        if missing.any():
            finder = self._finders[finder_name]
            todo = np.flatnonzero(missing)
            for tile in self._tiles:
                if todo.size == 0:
                    break
                inside = tile.in_core(ra[todo], dec[todo])
                if inside.any():
                    idx = todo[inside]
                    view = tile if isinstance(tile, Tile) else self._view(finder_name, tile)
                    out[idx] = _forced_scores(finder, view, ra[idx], dec[idx])
                    todo = todo[~inside]
        return out

    @property
    def finder_names(self) -> tuple[str, ...]:
        """The finders of the run, in order."""
        return tuple(self._finders)

    def _view(self, finder_name: str, job: TileJob) -> Tile:
        names = self._layers[finder_name]
        return tile_from_cutouts(job.tile_id, _tile_core(job), read_job_layers(job, names))


def tiles_for(
    sky: Sky | HealpixSky, finders: Sequence[Finder], tile_size_arcmin: float
) -> list[Tile]:
    """Tiles with the largest margin any of ``finders`` asks for."""
    margin = max((f.margin_arcmin for f in finders), default=10.0)
    return sky.tiles(tile_size_arcmin=tile_size_arcmin, margin_arcmin=margin)


def run_pipeline(
    sky: AnySky,
    finders: Sequence[Finder],
    combiner: Combiner | None = None,
    estimators: Sequence[Estimator] = (),
    calibration: Any | None = None,
    executor: TileExecutor | None = None,
    tile_size_arcmin: float = 240.0,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
    checkpoint: Checkpoint | None = None,
    tile_grid: str | None = None,
) -> pa.Table:
    """Find, combine and characterise clusters on a sky.

    Parameters
    ----------
    sky : LayerSky, Sky or HealpixSky
        A layered sky (files read per tile job, see :mod:`clusterfw.core.layers`) or a sky
        held in memory (simulations, tests), cut into tiles as before.
    finders : sequence of Finder
        At least one; each finder's ``requires`` is checked against ``sky`` before any work.
    combiner : Combiner, optional
        Merges the finders' tables; without one, the tables are concatenated.
    estimators : sequence of Estimator
        Applied in order to the final table.
    calibration : object, optional
        Passed to the combiner and used to add ``is_cluster``.
    executor : TileExecutor, optional
        Maps tile jobs; in-process by default.
    tile_size_arcmin : float
        Tile core size.
    progress : callable, optional
        ``progress(iterable, total)`` wrapper (e.g. tqdm) for the tile loop.
    checkpoint : Checkpoint, optional
        Tiles it holds are loaded instead of run; every tile run is saved to it (atomically)
        as soon as its result is back, so a killed run resumes where it stopped.
    tile_grid : str, optional
        For a layered sky: the flat layer whose pixel grid the tile cores are boxes of,
        instead of the automatic choice (see :func:`plan_jobs`).

    Returns
    -------
    pyarrow.Table
        A validated candidate table.
    """
    if not finders:
        raise PluginError("at least one finder is needed")
    names = [f.name for f in finders]
    if len(set(names)) != len(names):
        raise PluginError(f"finder listed twice: {names}")
    executor = executor or InProcessExecutor()
    finder_layers = check_plugins(sky, finders, estimators)
    want_forced = combiner is not None and len(finders) > 1
    tiles: Sequence[Tile] | Sequence[TileJob]
    fn: Callable[..., TileResult]
    fixed: tuple[list[Any], ...]
    if isinstance(sky, LayerSky):
        tiles = plan_jobs(sky, finders, finder_layers, tile_size_arcmin, tile_grid)
        fn, fixed = run_tile_job, ([finder_layers], [want_forced])
    else:
        tiles = tiles_for(sky, finders, tile_size_arcmin)
        fn, fixed = run_tile, ([want_forced],)
    n = len(tiles)
    stored: dict[int, TileResult] = {}
    if checkpoint is not None:
        checkpoint.start(n)
        stored = {i: checkpoint.load(i) for i in checkpoint.finished()}
    todo = [i for i in range(n) if i not in stored]
    k = len(todo)
    args: list[list[Any]] = [[finders] * k, [tiles[i] for i in todo]]
    args += [value * k for value in fixed]
    unordered = getattr(executor, "map_unordered", None)
    pairs: Iterable[tuple[int, TileResult]] = (
        unordered(fn, *args) if unordered is not None else enumerate(executor.map(fn, *args))
    )
    if checkpoint is not None:
        pairs = _saving(checkpoint, todo, pairs)
    computed = dict(progress(pairs, k) if progress else pairs)
    by_index = dict(stored)
    by_index.update((todo[j], result) for j, result in computed.items())
    if len(by_index) != n:  # pragma: no cover - an executor that lost results
        raise RuntimeError(f"the executor returned {len(computed)} of {k} tile results")
    results = [by_index[i] for i in range(n)]
    tables: dict[str, pa.Table] = {}
    for finder in finders:
        parts = [r.tables[finder.name] for r in results]
        tables[finder.name] = (
            concat_candidates(parts) if parts else empty_candidates(finder.name, finder.score_kind)
        )
    if combiner is not None:
        forced = ForcedScoreLookup(finders, tiles, results, finder_layers) if want_forced else None
        table = combiner.combine(tables, forced, calibration)
        table = check_combiner_output(combiner, tables, table)
        if forced is not None:
            table = add_coverage(table, forced)
    else:
        table = concat_candidates(list(tables.values()))
        table = _apply_single_calibration(table, finders, calibration)
    view: Any = CutoutProvider(sky) if isinstance(sky, LayerSky) else sky
    for estimator in estimators:
        table = check_estimator_output(estimator, table, estimator.estimate(table, view))
    plugin_names = (*names, *([combiner.name] if combiner else []), *(e.name for e in estimators))
    validate_candidates(table, prefixes=plugin_names)
    return table


def _saving(
    checkpoint: Checkpoint, indices: Sequence[int], pairs: Iterable[tuple[int, TileResult]]
) -> Iterator[tuple[int, TileResult]]:
    """Save each ``(j, result)`` to ``checkpoint`` as tile ``indices[j]`` as it arrives."""
    for j, result in pairs:
        checkpoint.save(indices[j], result)
        yield j, result


def finder_covered_field(finder: str) -> pa.Field:
    """The ``<finder>_covered`` field of a combined table (bool)."""
    return plugin_field(
        f"{finder}_covered",
        pa.bool_(),
        "",
        f"whether finder {finder}'s layers have data at the candidate (false: not covered, "
        "so its score there is null — no data, not a non-detection)",
        "meta.code",
    )


def add_coverage(table: pa.Table, forced: ForcedScoreLookup) -> pa.Table:
    """Append ``<finder>_covered`` for every finder of the run (unless the combiner did)."""
    ra = table.column("ra").to_numpy()
    dec = table.column("dec").to_numpy()
    for name in forced.finder_names:
        col = f"{name}_covered"
        if col not in table.column_names:
            mask = forced.coverage(name, ra, dec)
            table = table.append_column(finder_covered_field(name), pa.array(mask, pa.bool_()))
    return table


def check_combiner_output(
    combiner: Combiner, tables: Mapping[str, pa.Table], result: object
) -> pa.Table:
    """Check a combiner's output and carry each finder's ``flags`` as ``<finder>_flags``.

    Parameters
    ----------
    combiner : Combiner
    tables : mapping of str to pyarrow.Table
        The finder tables it was given.
    result : object
        What ``combiner.combine`` returned.

    Returns
    -------
    pyarrow.Table
        ``table``, with ``<finder>_flags`` added for every finder whose table has ``flags`` when
        the combiner left it out but kept ``<finder>_candidate_id``.

    Raises
    ------
    PluginError
        ``combiner 'x': ...`` on one line.
    """
    name = combiner.name
    if not isinstance(result, pa.Table):
        raise PluginError(
            f"combiner {name!r}: combine returned {_type_name(result)}, not a pyarrow.Table"
        )
    table: pa.Table = result
    missing = [c for c in required_columns() if c not in table.column_names]
    missing += [f"{f}_score" for f in tables if f"{f}_score" not in table.column_names]
    if missing:
        raise PluginError(
            f"combiner {name!r}: combine returned a table without the required "
            f"column(s) {', '.join(missing)}"
        )
    for f, t in tables.items():
        col = f"{f}_flags"
        if "flags" in t.column_names and col not in table.column_names:
            ids = f"{f}_candidate_id"
            if ids in table.column_names:
                table = table.append_column(finder_flags_field(f), _flags_by_id(t, table[ids]))
    try:
        validate_candidates(table, prefixes=(name, *tables))
    except SchemaError as exc:
        raise PluginError(f"combiner {name!r}: combine returned an invalid table: {exc}") from None
    return table


def _flags_by_id(finder_table: pa.Table, ids: pa.ChunkedArray) -> pa.Array:
    lookup = dict(
        zip(
            finder_table.column("candidate_id").to_pylist(),
            finder_table.column("flags").to_pylist(),
            strict=True,
        )
    )
    return pa.array(
        [lookup.get(i) if i is not None else None for i in ids.to_pylist()], pa.uint32()
    )


def check_estimator_output(estimator: Estimator, before: pa.Table, after: object) -> pa.Table:
    """Check that an estimator returned ``before`` with exactly its declared columns appended.

    Raises
    ------
    PluginError
        ``estimator 'x': ...`` on one line: not a table, rows dropped, added or reordered
        (``candidate_id`` compared), columns dropped, or added columns other than declared.
    """
    name = estimator.name
    if not isinstance(after, pa.Table):
        raise PluginError(
            f"estimator {name!r}: estimate returned {_type_name(after)}, not a pyarrow.Table"
        )
    if after.num_rows != before.num_rows:
        raise PluginError(
            f"estimator {name!r}: estimate returned {after.num_rows} rows for "
            f"{before.num_rows} (it must not drop or add rows)"
        )
    dropped = [c for c in before.column_names if c not in after.column_names]
    if dropped:
        raise PluginError(f"estimator {name!r}: estimate dropped column(s) {', '.join(dropped)}")
    if not after.column("candidate_id").equals(before.column("candidate_id")):
        raise PluginError(
            f"estimator {name!r}: estimate reordered or changed the rows "
            "(candidate_id differs; keep the rows in the order given)"
        )
    added = set(after.column_names) - set(before.column_names)
    declared = {f.name for f in estimator.columns}
    if added != declared:
        raise PluginError(
            f"estimator {name!r} added columns {sorted(added)} but declares {sorted(declared)}"
        )
    return after


def _apply_single_calibration(
    table: pa.Table, finders: Sequence[Finder], calibration: Any | None
) -> pa.Table:
    """Add ``is_cluster`` from per-finder thresholds when a calibration is given."""
    if calibration is None or "is_cluster" in table.column_names:
        return table
    from clusterfw.core.schema import schema_field

    finder_col = table.column("finder").to_pylist()
    score = table.column("score").to_numpy()
    thresholds = {f.name: calibration.threshold(f.name) for f in finders}
    decision = [
        None if thresholds[name] is None else bool(score[i] >= thresholds[name])
        for i, name in enumerate(finder_col)
    ]
    return table.append_column(schema_field("is_cluster"), pa.array(decision, pa.bool_()))
