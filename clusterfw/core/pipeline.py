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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import ForcedScoringUnsupported, PluginError, SchemaError
from clusterfw.core.executors import InProcessExecutor, TileExecutor
from clusterfw.core.plugin_api import Combiner, Estimator, Finder
from clusterfw.core.schema import (
    concat_candidates,
    empty_candidates,
    finder_flags_field,
    required_columns,
    validate_candidates,
)
from clusterfw.core.sky import HealpixSky, Sky, Tile


@dataclass
class TileResult:
    """What one tile job returns: each finder's candidates and every finder's forced scores
    at every candidate position found in the tile (by any finder)."""

    tile_id: int
    tables: dict[str, pa.Table]
    forced: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


def _forced_scores(finder: Finder, tile: Tile, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    if ra.size == 0:
        return np.zeros(0, dtype=np.float64)
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


def run_tile(finders: Sequence[Finder], tile: Tile, forced: bool) -> TileResult:
    """Run every finder on one tile, keep core candidates, and optionally force-score them.

    Parameters
    ----------
    finders : sequence of Finder
    tile : Tile
    forced : bool
        Also compute each finder's score at the positions found by all finders in this tile.
    """
    tables = {}
    for finder in finders:
        table = check_finder_output(finder, finder.find(tile))
        if table.num_rows:
            keep = tile.in_core(table.column("ra").to_numpy(), table.column("dec").to_numpy())
            table = table.filter(pa.array(keep))
        tables[finder.name] = table
    result = TileResult(tile.tile_id, tables)
    if forced and len(finders) > 1:
        ra = np.concatenate([t.column("ra").to_numpy() for t in tables.values()])
        dec = np.concatenate([t.column("dec").to_numpy() for t in tables.values()])
        for finder in finders:
            result.forced[finder.name] = (ra, dec, _forced_scores(finder, tile, ra, dec))
    return result


class ForcedScoreLookup:
    """A :data:`~clusterfw.core.plugin_api.ForcedScorer` over the tiles of a run.

    Positions reported by any finder were scored in their tile job and are looked up; any
    other position is scored on demand in the tile whose core contains it.
    """

    def __init__(
        self, finders: Sequence[Finder], tiles: Sequence[Tile], results: Iterable[TileResult]
    ) -> None:
        self._finders = {f.name: f for f in finders}
        self._tiles = list(tiles)
        self._known: dict[str, dict[tuple[float, float], float]] = {f.name: {} for f in finders}
        for result in results:
            for name, (ra, dec, scores) in result.forced.items():
                keys = zip(ra.tolist(), dec.tolist(), strict=True)
                self._known[name].update(zip(keys, scores.tolist(), strict=True))

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
                    out[idx] = _forced_scores(finder, tile, ra[idx], dec[idx])
                    todo = todo[~inside]
        return out


def tiles_for(
    sky: Sky | HealpixSky, finders: Sequence[Finder], tile_size_arcmin: float
) -> list[Tile]:
    """Tiles with the largest margin any of ``finders`` asks for."""
    margin = max((f.margin_arcmin for f in finders), default=10.0)
    return sky.tiles(tile_size_arcmin=tile_size_arcmin, margin_arcmin=margin)


def run_pipeline(
    sky: Sky | HealpixSky,
    finders: Sequence[Finder],
    combiner: Combiner | None = None,
    estimators: Sequence[Estimator] = (),
    calibration: Any | None = None,
    executor: TileExecutor | None = None,
    tile_size_arcmin: float = 240.0,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> pa.Table:
    """Find, combine and characterise clusters on a sky.

    Parameters
    ----------
    sky : Sky or HealpixSky
    finders : sequence of Finder
        At least one.
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
    tiles = tiles_for(sky, finders, tile_size_arcmin)
    want_forced = combiner is not None and len(finders) > 1
    jobs = executor.map(run_tile, [finders] * len(tiles), tiles, [want_forced] * len(tiles))
    results = list(progress(jobs, len(tiles)) if progress else jobs)
    tables: dict[str, pa.Table] = {}
    for finder in finders:
        parts = [r.tables[finder.name] for r in results]
        tables[finder.name] = (
            concat_candidates(parts) if parts else empty_candidates(finder.name, finder.score_kind)
        )
    if combiner is not None:
        forced = ForcedScoreLookup(finders, tiles, results) if want_forced else None
        table = combiner.combine(tables, forced, calibration)
        table = check_combiner_output(combiner, tables, table)
    else:
        table = concat_candidates(list(tables.values()))
        table = _apply_single_calibration(table, finders, calibration)
    for estimator in estimators:
        table = check_estimator_output(estimator, table, estimator.estimate(table, sky))
    plugin_names = (*names, *([combiner.name] if combiner else []), *(e.name for e in estimators))
    validate_candidates(table, prefixes=plugin_names)
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
