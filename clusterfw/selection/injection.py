"""Selection function by source injection, for any finder or combination of finders.

Each round inserts model clusters (:mod:`clusterfw.selection.model`) into copies of the user's
maps (:mod:`clusterfw.selection.inject`) at positions that avoid each other, masked pixels, the
map edges and the real detections of an un-injected baseline run, runs the finders and combiner
exactly as ``clusterfw run`` would (through ``run_catalogue``: the same options and calibration),
and counts an injected cluster as recovered when a catalogue row with ``is_cluster`` true lies
within the match radius. Rounds continue until every (M, z) cell's Wilson interval is narrower
than the requested precision, or the maximum number of rounds is reached.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import ClusterfwError
from clusterfw.selection.grid import MassRedshiftGrid, wilson_interval
from clusterfw.selection.inject import (
    InjectionTarget,
    allowed_pixels,
    choose_positions,
    remove_tree,
    write_injected,
)
from clusterfw.selection.model import ScalingModel, draw_clusters

#: ``run_catalogue(inputs, out, calibration) -> table``: one ``clusterfw run`` on ``inputs``.
RunCatalogue = Callable[[list[Path], Path, Path | None], pa.Table]


@dataclass
class InjectionSettings:
    """What an injection run does (see ``clusterfw selfn --help``)."""

    grid: MassRedshiftGrid
    model: ScalingModel = field(default_factory=ScalingModel)
    precision: float = 0.05
    max_rounds: int = 20
    per_round: int = 100
    min_per_cell: int = 10
    min_separation_arcmin: float = 10.0
    edge_arcmin: float = 10.0
    match_radius_arcmin: float = 1.0
    seed: int = 0
    max_density: float = 1.0


@dataclass
class InjectionResult:
    """Every injected cluster and whether it was recovered.

    Attributes
    ----------
    columns : dict of numpy.ndarray
        ``round``, ``cell``, ``m500c``, ``z``, ``y500`` (arcmin²), ``theta500_arcmin``, ``ra``,
        ``dec``, ``tile``, ``recovered`` (bool), ``score`` (matched row's score, NaN if none).
    grid : MassRedshiftGrid
    rounds : int
    seconds : float
        Wall time of the injected runs (baseline excluded).
    baseline_detections : int
    """

    columns: dict[str, np.ndarray]
    grid: MassRedshiftGrid
    rounds: int = 0
    seconds: float = 0.0
    baseline_detections: int = 0
    baseline_seconds: float = 0.0

    @property
    def n(self) -> int:
        """Number of injected clusters."""
        return int(self.columns["m500c"].size)

    def counts(self, tile: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell (injected, recovered), flat cell order; only ``tile`` when given."""
        cell = self.columns["cell"]
        rec = self.columns["recovered"]
        if tile is not None:
            sel = self.columns["tile"] == tile
            cell, rec = cell[sel], rec[sel]
        n = np.bincount(cell, minlength=self.grid.n_cells)
        k = np.bincount(cell, weights=rec.astype(float), minlength=self.grid.n_cells)
        return n, k.astype(np.int64)

    def injections_table(self) -> pa.Table:
        """The injection log as an Arrow table."""
        return pa.table({k: pa.array(v) for k, v in self.columns.items()})


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.deg2rad(np.asarray(ra, float)), np.deg2rad(np.asarray(dec, float))
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def match_recovered(
    table: pa.Table, ra: np.ndarray, dec: np.ndarray, radius_arcmin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which positions have a row with ``is_cluster`` true within ``radius_arcmin``.

    Returns
    -------
    recovered : numpy.ndarray of bool
    score : numpy.ndarray
        ``score`` of the nearest such row (NaN where none).
    """
    from scipy.spatial import cKDTree

    n = np.asarray(ra).size
    rec = np.zeros(n, dtype=bool)
    score = np.full(n, np.nan)
    if table.num_rows == 0 or n == 0:
        return rec, score
    isc = table.column("is_cluster").fill_null(False).to_numpy(zero_copy_only=False)
    if not isc.any():
        return rec, score
    cra = table.column("ra").to_numpy()[isc]
    cdec = table.column("dec").to_numpy()[isc]
    cscore = table.column("score").to_numpy()[isc]
    chord = 2.0 * math.sin(math.radians(radius_arcmin / 60.0) / 2.0)
    d, j = cKDTree(_unit_vectors(cra, cdec)).query(_unit_vectors(ra, dec), k=1)
    rec = np.asarray(d) <= chord
    score[rec] = cscore[np.asarray(j)[rec]]
    return rec, score


def check_decisions(table: pa.Table, what: str) -> None:
    """Refuse a catalogue whose rows carry no ``is_cluster`` decision (no threshold).

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        ``--calibration: ... has no threshold for ...`` on one line.
    """
    if table.num_rows == 0:
        return
    if "is_cluster" not in table.column_names or table.column("is_cluster").null_count == (
        table.num_rows
    ):
        raise ClusterfwError(
            f"--calibration: {what}: the catalogue has no is_cluster decisions (the calibration "
            "has no threshold for this finder set)"
        )


def tile_of(tiles: Sequence[Any], ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """The ``tile_id`` of the tile whose core holds each position (-1 if none)."""
    out = np.full(np.asarray(ra).size, -1, dtype=np.int64)
    todo = np.arange(out.size)
    for t in tiles:
        if todo.size == 0:
            break
        inside = np.asarray(t.in_core(ra[todo], dec[todo]), dtype=bool)
        out[todo[inside]] = t.tile_id
        todo = todo[~inside]
    return out


def assign_cells(todo: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """The cells of a round's ``n`` injections: round robin over a random order of ``todo``.

    Every cell still needing injections gets ``n // len(todo)`` or one more, and when ``n`` is
    smaller than ``len(todo)`` a random subset of them gets one each (not always the first
    cells of the grid).
    """
    todo = np.asarray(todo, dtype=np.int64)
    if todo.size == 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    order = todo[rng.permutation(todo.size)]
    return order[np.arange(n) % todo.size]


STATE_FILE = "selfn_state.json"


def state_key(inputs: Sequence[Path], settings: InjectionSettings, run_key: str) -> str:
    """What a checkpoint must match: the inputs (path, size, mtime), the run's options and the
    injection settings other than the stopping rules."""
    import hashlib
    import json

    files = []
    for p in inputs:
        st = Path(p).stat()
        files.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    doc = {
        "files": files,
        "run": run_key,
        "grid": settings.grid.to_dict(),
        "model": settings.model.model_dump(mode="json"),
        "per_round": settings.per_round,
        "max_density": settings.max_density,
        "min_separation": settings.min_separation_arcmin,
        "edge": settings.edge_arcmin,
        "radius": settings.match_radius_arcmin,
        "seed": settings.seed,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def read_state(path: Path | None, key: str) -> dict[str, Any] | None:
    """A checkpoint's content when it exists and matches ``key``; None otherwise."""
    import json

    if path is None or not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


def write_state(
    path: Path,
    key: str,
    rounds: int,
    cols: dict[str, list[np.ndarray]],
    rng: np.random.Generator,
    avoid: np.ndarray,
    baseline_seconds: float,
    seconds: float,
) -> None:
    """Save the injections so far (JSON, atomically)."""
    from clusterfw.core.evaluation.io import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {k: (np.concatenate(v).tolist() if v else []) for k, v in cols.items()}
    for k in ("score",):
        columns[k] = [None if not np.isfinite(x) else x for x in columns[k]]
    write_json_atomic(
        {
            "format": "clusterfw.selfn_state",
            "key": key,
            "rounds": rounds,
            "seconds": seconds,
            "baseline_seconds": baseline_seconds,
            "avoid": np.asarray(avoid, float).tolist(),
            "rng": rng.bit_generator.state,
            "columns": columns,
        },
        path,
    )


def run_injection(
    inputs: Sequence[Path],
    target: InjectionTarget,
    tiles: Sequence[Any],
    run_catalogue: RunCatalogue,
    settings: InjectionSettings,
    calibration: Path | None = None,
    calibration_label: str = "calibration",
    log: Callable[[str], None] | None = None,
    workdir: Path | None = None,
    state_dir: Path | None = None,
    run_key: str = "",
) -> InjectionResult:
    """Measure a selection function by injection (see the module docstring).

    Parameters
    ----------
    inputs : sequence of Path
        The run's input files (the injectable ones are replaced by injected copies).
    target : InjectionTarget
    tiles : sequence of TileJob or Tile
        The run's tiles (for the per-tile rows).
    run_catalogue : callable
        ``run_catalogue(inputs, out, calibration) -> table`` (one ``clusterfw run``).
    settings : InjectionSettings
    calibration : Path, optional
        Passed to every run.
    log : callable, optional
        Progress lines.
    workdir : Path, optional
        Where the temporary copies go (a new temporary directory by default, removed after).
    state_dir : Path, optional
        Checkpoint folder: the injections so far are saved there after every round, and a
        rerun with the same inputs, run options (``run_key``) and injection settings resumes
        after the last finished round (the stopping rules, ``--precision``, ``--max-rounds``
        and ``--min-per-cell``, may change: a resumed run can be extended).
    run_key : str
        What identifies the run's options (part of the checkpoint's key).
    """
    say = log or (lambda _msg: None)
    grid = settings.grid
    rng = np.random.default_rng(settings.seed)
    own_tmp = workdir is None
    tmp = Path(tempfile.mkdtemp(prefix="clusterfw-selfn-")) if workdir is None else Path(workdir)
    wcs = target.wcs
    pix = target.pixel_arcmin
    cols: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "round",
            "cell",
            "m500c",
            "z",
            "y500",
            "theta500_arcmin",
            "x_pix",
            "y_pix",
            "ra",
            "dec",
            "tile",
            "recovered",
            "score",
        )
    }
    resolved = {Path(p).resolve(): Path(p) for p in inputs}
    state_file = None if state_dir is None else Path(state_dir) / STATE_FILE
    state_id = state_key(inputs, settings, run_key)
    state = read_state(state_file, state_id)
    try:
        t0 = time.perf_counter()
        if state is None:
            base = run_catalogue(list(inputs), tmp / "baseline.parquet", calibration)
            check_decisions(base, calibration_label)
            avoid = np.zeros((0, 2))
            if base.num_rows:
                isc = base.column("is_cluster").fill_null(False).to_numpy(zero_copy_only=False)
                bx, by = wcs.world_to_pixel_values(
                    base.column("ra").to_numpy()[isc], base.column("dec").to_numpy()[isc]
                )
                avoid = np.column_stack([bx, by])
            base_seconds = time.perf_counter() - t0
            say(f"baseline run: {len(avoid)} detections above threshold ({base_seconds:.1f} s)")
        else:
            avoid = np.asarray(state["avoid"], dtype=float).reshape(-1, 2)
            base_seconds = float(state["baseline_seconds"])
            rng.bit_generator.state = state["rng"]
            for k in cols:
                vals = state["columns"][k]
                if k == "score":
                    vals = [np.nan if v is None else v for v in vals]
                cols[k] = [np.asarray(vals)] if vals else []
            say(f"resumed from {state_file}: {state['rounds']} rounds done")
        allowed = allowed_pixels(target, settings.edge_arcmin)
        if not allowed.any():
            raise ClusterfwError(
                f"--edge: no pixel is {settings.edge_arcmin:g}' from the map edges and masked "
                "pixels; nothing can be injected"
            )
        area_deg2 = float(allowed.sum()) * pix**2 / 3600.0
        n_round = int(max(1, min(settings.per_round, math.floor(settings.max_density * area_deg2))))
        say(f"{area_deg2:.3g} deg² open to injections: up to {n_round} clusters per round")
        n_cell = np.zeros(grid.n_cells, dtype=np.int64)
        k_cell = np.zeros(grid.n_cells, dtype=np.int64)
        rounds = 0
        spent = 0.0
        done = 0
        if state is not None:
            done = int(state["rounds"])
            spent = float(state["seconds"])
            if cols["cell"]:
                cells0 = np.concatenate(cols["cell"]).astype(np.int64)
                rec0 = np.concatenate(cols["recovered"]).astype(bool)
                np.add.at(n_cell, cells0, 1)
                np.add.at(k_cell, cells0, rec0.astype(np.int64))
        rounds = done
        for rounds in range(done + 1, settings.max_rounds + 1):
            _, lo, hi = wilson_interval(k_cell, n_cell)
            need = ((hi - lo) / 2.0 > settings.precision) | (n_cell < settings.min_per_cell)
            if not need.any():
                rounds -= 1
                break
            xy = choose_positions(
                allowed,
                n_round,
                settings.min_separation_arcmin / pix,
                rng,
                avoid,
                2.0 * settings.match_radius_arcmin / pix,
            )
            if len(xy) == 0:
                raise ClusterfwError("--min-separation: no position left for an injection")
            cells = assign_cells(np.flatnonzero(need), len(xy), rng)
            m, z = grid.sample(cells, rng)
            clusters = draw_clusters(m, z, settings.model, rng)
            rdir = tmp / f"round{rounds:04d}"
            t1 = time.perf_counter()
            mapping = write_injected(
                target, clusters, xy, settings.model.profile_rmax_r500, rdir, rng, settings.model
            )
            by_resolved = {p.resolve(): q for p, q in mapping.items()}
            new_inputs = [by_resolved.get(Path(p).resolve(), Path(p)) for p in inputs]
            missing = [p for p in by_resolved if p not in resolved]
            if missing:  # pragma: no cover - the target's files come from the inputs
                raise ClusterfwError(f"{missing[0]}: injected layer file is not an input")
            table = run_catalogue(new_inputs, rdir / "catalogue.parquet", calibration)
            spent += time.perf_counter() - t1
            ra, dec = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
            ra = np.asarray(ra) % 360.0
            dec = np.asarray(dec)
            rec, score = match_recovered(table, ra, dec, settings.match_radius_arcmin)
            remove_tree(rdir)
            np.add.at(n_cell, cells, 1)
            np.add.at(k_cell, cells, rec.astype(np.int64))
            for key, val in (
                ("round", np.full(len(xy), rounds)),
                ("cell", cells),
                ("m500c", m),
                ("z", z),
                ("y500", clusters.y500_sr / (math.pi / 180 / 60) ** 2),
                ("theta500_arcmin", clusters.theta500_arcmin),
                ("x_pix", xy[:, 0]),
                ("y_pix", xy[:, 1]),
                ("ra", ra),
                ("dec", dec),
                ("tile", tile_of(tiles, ra, dec)),
                ("recovered", rec),
                ("score", score),
            ):
                cols[key].append(np.asarray(val))
            if state_file is not None:
                write_state(state_file, state_id, rounds, cols, rng, avoid, base_seconds, spent)
            say(
                f"round {rounds}: {len(xy)} injected, {int(rec.sum())} recovered; "
                f"{int(need.sum())} cells below precision; {spent:.1f} s"
            )
    finally:
        if own_tmp:
            remove_tree(tmp)
    merged = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
    merged["cell"] = merged["cell"].astype(np.int64)
    merged["tile"] = merged["tile"].astype(np.int64)
    merged["round"] = merged["round"].astype(np.int64)
    merged["recovered"] = merged["recovered"].astype(bool)
    return InjectionResult(merged, grid, rounds, spent, len(avoid), base_seconds)
