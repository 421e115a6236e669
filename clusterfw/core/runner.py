"""What ``clusterfw run`` does, as a library call: resolve plugins, read the sky, run, write."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from clusterfw.core.atomic import check_writable, refuse_overwrite
from clusterfw.core.catalog_io import catalogue_format, write_catalogue
from clusterfw.core.errors import ClusterfwError, InputError, PluginError
from clusterfw.core.executors import get_executor
from clusterfw.core.pipeline import run_pipeline
from clusterfw.core.plugins import Registry
from clusterfw.core.provenance import plugin_record, provenance_metadata, with_provenance
from clusterfw.core.sky import HealpixSky, Sky


@dataclass
class RunRequest:
    """Everything ``clusterfw run`` was asked to do."""

    inputs: list[Path]
    finders: list[str]
    combiner: str | None = None
    estimators: list[str] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: Path = Path("catalogue.parquet")
    calibration: Path | None = None
    overrides: dict[str, list[str]] = field(default_factory=dict)
    tile_size_arcmin: float = 240.0
    workers: int = 1
    quiet: bool = False


def check_request(request: RunRequest) -> None:
    """Refuse a request that cannot succeed, before any work.

    Checks the output name (suffix, writable place, not an input of the run), the tile size
    (a finite number of arcmin > 0) and the number of workers (>= 1).

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        Naming the option or file at fault.
    """
    catalogue_format(request.out)
    tile = request.tile_size_arcmin
    if not isinstance(tile, (int, float)) or not math.isfinite(tile) or tile <= 0:
        raise ClusterfwError(f"--tile-size: must be a finite number of arcmin > 0, got {tile}")
    if not isinstance(request.workers, int) or request.workers < 1:
        raise ClusterfwError(f"--workers: must be an integer >= 1, got {request.workers}")
    refuse_overwrite([*request.inputs, request.calibration], [request.out])
    check_writable(request.out)


MAX_TILES = 20_000


def check_tile_count(sky: Sky | HealpixSky, tile_size_arcmin: float) -> int:
    """The approximate number of tiles of ``sky``; refuse more than :data:`MAX_TILES`.

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        Naming ``--tile-size`` when the tiles would be too many (a tile size far below the
        map's extent, e.g. ``--tile-size 1e-6``, would otherwise run for hours).
    """
    if isinstance(sky, HealpixSky):
        import numpy as np

        from clusterfw.core.tiling import healpix_core_order

        order = healpix_core_order(tile_size_arcmin)
        valid = float(np.mean(np.all(np.isfinite(sky.maps), axis=0))) if sky.maps.size else 0.0
        n = int(math.ceil(valid * 12 * 4**order))
    else:
        pix = sky.pixel_scale_arcmin
        block = max(int(round(tile_size_arcmin / pix)), 1)
        ny, nx = sky.shape
        n = math.ceil(ny / block) * math.ceil(nx / block)
    if n > MAX_TILES:
        raise ClusterfwError(
            f"--tile-size: {tile_size_arcmin:g} arcmin cuts this sky into about {n} tiles "
            f"(at most {MAX_TILES}); use larger tiles"
        )
    return n


def instantiate(registry: Registry, kind: str, name: str, options: dict[str, Any]) -> Any:
    """Build a plugin instance, validating ``options`` against its ``Options`` model."""
    cls: Any = registry.get(kind, name)
    try:
        return cls(cls.Options(**options))
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PluginError(f"bad option for {kind} {name!r}: {problems}") from None


def read_sky(
    registry: Registry, inputs: list[Path], overrides: dict[str, list[str]]
) -> Sky | HealpixSky:
    """Read the input maps with the first reader (by name) that recognises them."""
    for path in inputs:
        if not Path(path).exists():
            raise InputError(str(path), "file not found")
        if Path(path).is_dir():
            raise InputError(str(path), "is a directory, not a map file")
    for name in registry.names("reader"):
        reader = registry.get("reader", name)()
        if reader.can_read(inputs):
            return reader.read(inputs, overrides)
    from clusterfw.core.fits_io import is_fits_file

    if not is_fits_file(Path(inputs[0])):
        raise InputError(str(inputs[0]), "not a FITS file (and no installed reader recognises it)")
    raise InputError(str(inputs[0]), "no installed reader recognises this file")


def load_calibration(path: Path | None, want_default: bool) -> Any | None:
    """The user's calibration file, else the shipped default when a combiner needs one."""
    if path is None and not want_default:
        return None
    try:
        from clusterfw.core.evaluation import calibration as calib
    except ImportError:
        if path is not None:
            raise InputError(str(path), "calibration support is not installed") from None
        return None
    if path is not None:
        return calib.load_calibration(path)
    return calib.default_calibration()


def execute_run(request: RunRequest, registry: Registry | None = None) -> pa.Table:
    """Run the pipeline for ``request`` and write the catalogue atomically.

    Returns
    -------
    pyarrow.Table
        The catalogue written to ``request.out``.
    """
    registry = registry or Registry()
    check_request(request)
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
    estimators = [
        instantiate(registry, "estimator", n, request.options.get(n, {}))
        for n in request.estimators
    ]
    calibration = load_calibration(request.calibration, want_default=combiner is not None)

    if request.inputs:
        sky = read_sky(registry, request.inputs, request.overrides)
        source = ", ".join(str(p) for p in request.inputs)
    else:
        from clusterfw.sim import demo_sky

        sky = demo_sky()[0]
        source = "built-in demo sky"
    check_tile_count(sky, request.tile_size_arcmin)
    progress = None if request.quiet else _tqdm_progress(f"{'+'.join(request.finders)} tiles")
    executor = get_executor(request.workers)
    finished = False
    try:
        table = run_pipeline(
            sky,
            finders,
            combiner,
            estimators,
            calibration,
            executor,
            request.tile_size_arcmin,
            progress,
        )
        finished = True
    finally:
        if finished:
            executor.shutdown()
        else:  # interrupted or failed: drop queued tiles, stop the workers now
            executor.cancel()
    records = (
        [plugin_record("finder", f, registry.info("finder", f.name).distribution) for f in finders]
        + (
            [
                plugin_record(
                    "combiner", combiner, registry.info("combiner", combiner.name).distribution
                )
            ]
            if combiner
            else []
        )
        + [
            plugin_record("estimator", e, registry.info("estimator", e.name).distribution)
            for e in estimators
        ]
    )
    table = with_provenance(
        table, provenance_metadata(records, sky.inputs, extra={"source": source})
    )
    write_catalogue(table, request.out)
    if not request.quiet:
        print_summary(table, request.out, source)
    return table


def _tqdm_progress(desc: str) -> Callable[[Iterable[Any], int], Iterable[Any]]:
    from tqdm import tqdm

    def wrap(iterable: Iterable[Any], total: int) -> Iterable[Any]:
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit="tile",
            file=sys.stderr,
            leave=False,
            disable=None,
        )

    return wrap


def print_summary(table: pa.Table, out: Path, source: str, top: int = 10) -> None:
    """Print the number of candidates and the best ones to stdout."""
    import click

    decided = ""
    if "is_cluster" in table.column_names:
        flags = table.column("is_cluster").to_pylist()
        if any(f is not None for f in flags):
            decided = f", {sum(f is True for f in flags)} above the calibrated threshold"
    click.echo(f"{table.num_rows} candidates{decided} from {source} -> {out}")
    if not table.num_rows:
        return
    order = pc.sort_indices(table, sort_keys=[("score", "descending")])
    best = table.take(order[:top])
    kind = best.column("score_kind")[0].as_py()
    extra = [c for c in best.column_names if c.endswith("_score")]
    header = f"{'candidate_id':<24} {'ra':>10} {'dec':>10} {kind:>12} " + " ".join(
        f"{c:>14}" for c in extra
    )
    click.echo(header)
    rows = best.to_pylist()
    for row in rows:
        cols = " ".join(f"{row[c] if row[c] is not None else float('nan'):>14.3f}" for c in extra)
        click.echo(
            f"{row['candidate_id']:<24} {row['ra']:>10.4f} {row['dec']:>10.4f} "
            f"{row['score']:>12.3f} {cols}"
        )
