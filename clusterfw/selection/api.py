"""``clusterfw selfn`` as library calls: prepare a run, resolve its threshold, measure, tabulate."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import ClusterfwError, PluginError
from clusterfw.core.plugins import Registry
from clusterfw.core.runner import RunRequest
from clusterfw.selection.injection import InjectionResult, RunCatalogue
from clusterfw.selection.table import build_table, counts_rows


@dataclass
class PreparedRun:
    """What ``clusterfw run`` would run on: plugins, sky, each finder's layers, tiles."""

    request: RunRequest
    inputs: list[Path]
    finders: list[Any]
    combiner: Any | None
    sky: Any
    input_files: tuple[Any, ...]
    finder_layers: list[tuple[str, ...]]
    tiles: list[Any]


def prepare(request: RunRequest, registry: Registry | None = None) -> PreparedRun:
    """Instantiate the plugins of ``request``, read its sky (pixels stay on disk), plan tiles.

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        Whatever ``clusterfw run`` would refuse (one line).
    """
    from clusterfw.core.pipeline import check_plugins, plan_jobs, tiles_for
    from clusterfw.core.runner import check_tile_count, instantiate, read_inputs

    registry = registry or Registry()
    if not request.finders:
        raise PluginError("at least one finder is needed")
    selected = set(request.finders) | set(request.estimators)
    if request.combiner:
        selected.add(request.combiner)
    for plugin in request.options:
        if plugin not in selected:
            raise PluginError(f"option given for {plugin!r}, which is not used in this run")
    finders = [
        instantiate(registry, "finder", n, request.options.get(n, {})) for n in request.finders
    ]
    combiner = (
        instantiate(
            registry, "combiner", request.combiner, request.options.get(request.combiner, {})
        )
        if request.combiner
        else None
    )
    inputs = [Path(p) for p in request.inputs]
    if not inputs:
        demo = registry.demo_inputs()
        if demo is None:
            raise ClusterfwError(
                "no input maps given, and no installed plugin provides the demo sky "
                "(install clusterfw[sim])"
            )
        inputs = [Path(p) for p in demo]
    sky, files = read_inputs(registry, inputs, request.overrides, request.header_overrides)
    layers = check_plugins(sky, finders)
    check_tile_count(sky, request.tile_size_arcmin)
    from clusterfw.core.layers.model import LayerSky

    if isinstance(sky, LayerSky):
        tiles: list[Any] = list(plan_jobs(sky, finders, layers, request.tile_size_arcmin))
    else:
        tiles = list(tiles_for(sky, finders, request.tile_size_arcmin))
    return PreparedRun(request, inputs, finders, combiner, sky, files, layers, tiles)


def resolve_calibration(
    path: Path | None, finders: list[Any], combiner: Any | None
) -> tuple[Any, str]:
    """The calibration whose threshold defines "recovered", and how to name it in messages.

    ``path`` when given; else the combiner's default calibration; else (single finders) the
    first installed combiner's default calibration holding a threshold for every finder.

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        ``--calibration: <file>: no threshold for ...`` when the calibration has no threshold
        for the finder set (one line, exit 2).
    """
    from clusterfw.core.evaluation import calibration as calib

    names = [f.name for f in finders]
    if path is not None:
        cal = calib.load_calibration(path)
        label = str(path)
    elif combiner is not None:
        cal = calib.default_calibration(combiner)
        label = f"default calibration of combiner {combiner.name!r} ({cal.source})"
    else:
        found = None
        for comb in calib.installed_combiners():
            own = calib.default_calibration(comb)
            if all(own.threshold(n) is not None for n in names):
                found = own
                break
        if found is None:
            raise ClusterfwError(
                f"--calibration: no installed default calibration has a threshold for "
                f"{'+'.join(names)}; give --calibration FILE (from clusterfw calibrate)"
            )
        cal = found
        label = f"default calibration ({cal.source})"
    if combiner is None:
        for n in names:
            if cal.threshold(n) is None:
                raise ClusterfwError(f"--calibration: {label}: no threshold for finder {n!r}")
    else:
        section = cal.section(combiner.name)
        if section is None or isinstance(section, Mapping):
            entry = cal.combiner_entry(combiner.name, names)
            has = entry is not None and (
                entry.get("threshold") is not None
                or any(v is not None for v in (entry.get("thresholds") or {}).values())
            )
            if not has:
                key = calib.finder_set_key(names)
                raise ClusterfwError(
                    f"--calibration: {label}: no {combiner.name} threshold for finder set {key}"
                )
    return cal, label


def selection_radius(calibration: Any, default: float = 1.0) -> float:
    """The calibration's match radius (``selection.radius_arcmin``), else ``default``."""
    sel = getattr(calibration, "meta", {}).get("selection") or {}
    r = sel.get("radius_arcmin") if isinstance(sel, Mapping) else None
    return float(r) if isinstance(r, (int, float)) and r > 0 else default


def request_runner(request: RunRequest, registry: Registry | None = None) -> RunCatalogue:
    """``run_catalogue`` through :func:`clusterfw.core.runner.execute_run` on copies of
    ``request`` (other inputs, output and calibration; quiet)."""
    from clusterfw.core.runner import execute_run

    def run_catalogue(inputs: list[Path], out: Path, calibration: Path | None) -> pa.Table:
        req = dataclasses.replace(
            request, inputs=list(inputs), out=Path(out), calibration=calibration, quiet=True
        )
        return execute_run(req, registry)

    return run_catalogue


def injection_table(
    result: InjectionResult, provenance: Mapping[str, Any], per_tile: bool = True
) -> pa.Table:
    """The completeness table of an injection run: whole-map rows, then one block per tile."""
    grid = result.grid
    n, k = result.counts()
    parts = [counts_rows(grid, None, n, k)]
    if per_tile:
        for tile in sorted(set(result.columns["tile"].tolist()) - {-1}):
            nt, kt = result.counts(int(tile))
            parts.append(counts_rows(grid, int(tile), nt, kt))
    return build_table(parts, provenance)


def run_provenance(
    prepared: PreparedRun, method: str, settings: Any, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Provenance of a selection function: the run it stands for, the settings, the inputs."""
    import sys
    from dataclasses import asdict
    from datetime import UTC, datetime

    import clusterfw
    from clusterfw.core.provenance import plugin_record

    req = prepared.request
    plugins = [plugin_record("finder", f) for f in prepared.finders]
    if prepared.combiner is not None:
        plugins.append(plugin_record("combiner", prepared.combiner))
    doc: dict[str, Any] = {
        "version": clusterfw.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "selfn_method": method,
        "plugins": plugins,
        "inputs": [asdict(i) for i in prepared.input_files],
        "run": {
            "finders": req.finders,
            "combiner": req.combiner,
            "options": req.options,
            "tile_size_arcmin": req.tile_size_arcmin,
            "calibration": None if req.calibration is None else str(req.calibration),
        },
        "selfn_grid": settings.grid.to_dict(),
        "selfn_model": settings.model.model_dump(mode="json"),
    }
    doc.update(extra or {})
    return doc


def log_to(stream: Callable[[str], None] | None) -> Callable[[str], None]:
    """A logger (no-op without a stream)."""
    return stream or (lambda _m: None)


def interpolate_completeness(table: pa.Table, m500c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Completeness at (M500c, z) from a table's whole-map rows: linear in (ln M, z) between
    the cells' centres, extrapolated linearly from the outer centres to the grid's edges
    (clipped to [0, 1]); NaN outside the grid.

    A cell's completeness is its average over log-uniform masses, i.e. the value near its
    centre; halos between a centre and the grid edge (where the steep mass function puts most
    of them) get the extrapolated value, not the centre's.
    """
    from scipy.interpolate import RegularGridInterpolator

    from clusterfw.selection.table import overall

    t = overall(table)
    m_lo = np.unique(t.column("m500c_lo").to_numpy())
    m_hi = np.unique(t.column("m500c_hi").to_numpy())
    z_lo = np.unique(t.column("z_lo").to_numpy())
    z_hi = np.unique(t.column("z_hi").to_numpy())
    lm = np.log(np.sqrt(m_lo * m_hi))
    zc = 0.5 * (z_lo + z_hi)
    c = np.full((lm.size, zc.size), np.nan)
    im = np.searchsorted(m_lo, t.column("m500c_lo").to_numpy())
    iz = np.searchsorted(z_lo, t.column("z_lo").to_numpy())
    c[im, iz] = t.column("completeness").to_numpy(zero_copy_only=False)
    m = np.log(np.asarray(m500c, float))
    zz = np.asarray(z, float)
    inside = (m >= np.log(m_lo[0])) & (m <= np.log(m_hi[-1])) & (zz >= z_lo[0]) & (zz <= z_hi[-1])
    axes: list[np.ndarray] = []
    pts: list[np.ndarray] = []
    for centres, values in ((lm, m), (zc, zz)):
        if centres.size == 1:  # one cell along this axis: constant
            centres = np.array([centres[0] - 1.0, centres[0] + 1.0])
        axes.append(centres)
        pts.append(values)
    if lm.size == 1:
        c = np.repeat(c, 2, axis=0)
    if zc.size == 1:
        c = np.repeat(c, 2, axis=1)
    interp = RegularGridInterpolator(tuple(axes), c, bounds_error=False, fill_value=None)
    vals = np.clip(interp(np.column_stack(pts)), 0.0, 1.0)
    return np.where(inside, vals, np.nan)
