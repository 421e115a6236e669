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
from clusterfw.core.layers.model import Layer, LayerSky
from clusterfw.core.pipeline import run_pipeline
from clusterfw.core.plugins import Registry
from clusterfw.core.provenance import plugin_record, provenance_metadata, with_provenance
from clusterfw.core.sky import HealpixSky, InputFile, Sky


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
    header_overrides: dict[str, str] = field(default_factory=dict)
    tile_size_arcmin: float = 240.0
    #: A flat layer (name or kind) whose pixel grid the tile cores are boxes of; ``None``:
    #: the automatic choice (the layer's own grid for a single flat layer, else HEALPix cells).
    tile_grid: str | None = None
    workers: int = 1
    quiet: bool = False
    #: Run the tiles on a Dask ``LocalCluster`` of ``workers`` processes.
    dask: bool = False
    #: Address of a running Dask scheduler (``tcp://host:port``); implies Dask.
    scheduler: str | None = None
    #: Folder of per-tile results: a rerun with the same arguments skips finished tiles.
    checkpoint: Path | None = None


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
    if request.scheduler is not None and not str(request.scheduler).strip():
        raise ClusterfwError("--scheduler: empty address (use tcp://host:port)")
    if catalogue_format(request.out) == "hats":
        from clusterfw.core.hats_io import check_hats_output

        check_hats_output(request.out)
    hats = catalogue_format(request.out) == "hats"
    refuse_overwrite(
        [*request.inputs, request.calibration],
        [] if hats else [request.out],
        folders=[request.out] if hats else [],
    )
    check_writable(request.out, folder=hats)
    if request.checkpoint is not None:
        refuse_overwrite([*request.inputs, request.calibration], [], folders=[request.checkpoint])
        if Path(request.checkpoint).resolve() == Path(request.out).resolve():
            raise ClusterfwError(f"--checkpoint: {request.checkpoint} is also the --out path")


MAX_TILES = 20_000


def resolve_tile_grid(sky: Sky | HealpixSky | LayerSky, name: str | None) -> str | None:
    """The layer named by ``--tile-grid`` (a layer name, or a kind with one layer).

    Warns (:class:`UserWarning`) when more than 5 % of the other layers' footprint lies outside
    that layer's: those positions are in no tile.

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        When there is no such layer, the kind is ambiguous, or the layer is not one flat image
        (a mosaic of files or a HEALPix map has no single pixel grid).
    """
    if name is None:
        return None
    if not isinstance(sky, LayerSky):
        raise ClusterfwError("--tile-grid: only for skies read from files")
    from clusterfw.core.layers.pixelisation import FlatImage

    if name in sky:
        chosen = name
    else:
        kind = sky.of_kind(name)
        if len(kind) != 1:
            what = "no layer" if not kind else f"{len(kind)} layers"
            raise ClusterfwError(
                f"--tile-grid: {what} named or of kind {name!r} (layers: {', '.join(sky.names)})"
            )
        chosen = kind[0].name
    layer = sky[chosen]
    if not isinstance(layer.pixelisation, FlatImage):
        raise ClusterfwError(
            f"--tile-grid: layer {chosen!r} is a {type(layer.pixelisation).__name__}, not one "
            "flat image with a single pixel grid"
        )
    if layer.footprint is not None:
        import warnings

        import numpy as np

        others = sky.union_footprint([n for n in sky.names if n != chosen])
        ref = layer.footprint.degrade(min(layer.footprint.order, others.order))
        others = others.degrade(ref.order)
        outside = float(np.mean(~np.isin(others.pixels, ref.pixels))) if len(others) else 0.0
        if outside > 0.05:
            warnings.warn(
                f"--tile-grid {chosen}: {100 * outside:.0f}% of the other layers' footprint lies "
                f"outside {chosen!r}'s grid and is not searched",
                UserWarning,
                stacklevel=2,
            )
    return chosen


def _layer_tile_count(sky: LayerSky, tile_size_arcmin: float, grid: str | None = None) -> int:
    from clusterfw.core.layers.jobs import healpix_core_order
    from clusterfw.core.layers.pixelisation import FlatImage

    if grid is not None or (len(sky) == 1 and isinstance(sky.layers[0].pixelisation, FlatImage)):
        pix = sky[grid].pixelisation if grid is not None else sky.layers[0].pixelisation
        assert isinstance(pix, FlatImage)
        block = max(int(round(tile_size_arcmin / pix.pixel_arcmin)), 1)
        ny, nx = pix.shape
        return math.ceil(ny / block) * math.ceil(nx / block)
    footprint = sky.union_footprint()
    order = healpix_core_order(tile_size_arcmin)
    if order <= footprint.order:
        return len(footprint.degrade(order))
    return len(footprint) * 4 ** (order - footprint.order)


def check_tile_count(
    sky: Sky | HealpixSky | LayerSky, tile_size_arcmin: float, grid: str | None = None
) -> int:
    """The approximate number of tiles of ``sky``; refuse more than :data:`MAX_TILES`.

    Raises
    ------
    clusterfw.core.errors.ClusterfwError
        Naming ``--tile-size`` when the tiles would be too many (a tile size far below the
        map's extent, e.g. ``--tile-size 1e-6``, would otherwise run for hours).
    """
    if isinstance(sky, LayerSky):
        n = _layer_tile_count(sky, tile_size_arcmin, grid)
    elif isinstance(sky, HealpixSky):
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


def _kind_of(path: Path, header_overrides: dict[str, str], readers: list[Any]) -> str:
    """The layer kind the readers give a file from its headers; ``mm`` when they cannot tell.

    A file that is not a regular FITS file, or whose headers cannot be read, is left to the mm
    readers, whose checks name its problem in one line.
    """
    import contextlib
    import io
    import os
    import stat
    import warnings

    from clusterfw.core.layers.reading import is_gzip
    from clusterfw.core.layers.sorting import choose_reader, inspect_file

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "mm"
        with open(path, "rb") as fh:
            if fh.read(9) != b"SIMPLE  =" and not is_gzip(path):
                return "mm"
        sink = io.StringIO()
        with (
            warnings.catch_warnings(record=True),  # the mm readers re-issue what matters
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("always")
            return str(choose_reader(inspect_file(path, header_overrides), readers).kind)
    except Exception:  # noqa: BLE001 - the mm readers report what is wrong with it
        return "mm"


def _read_mm(
    registry: Registry, paths: list[Path], overrides: dict[str, list[str]]
) -> tuple[Layer, tuple[InputFile, ...]] | Sky | HealpixSky:
    """The mm layer (lazy) through the first reader plugin (by name) recognising the files.

    A reader offering ``read_layer`` gives a lazy layer; any other gives a sky in memory.
    """
    for name in registry.names("reader"):
        reader = registry.get("reader", name)()
        if reader.can_read(paths):
            read_layer = getattr(reader, "read_layer", None)
            if read_layer is not None:
                result: tuple[Layer, tuple[InputFile, ...]] = read_layer(paths, overrides)
                return result
            sky: Sky | HealpixSky = reader.read(paths, overrides)
            return sky
    from clusterfw.core.fits_io import is_fits_file

    if not is_fits_file(Path(paths[0])):
        raise InputError(str(paths[0]), "not a FITS file (and no installed reader recognises it)")
    raise InputError(str(paths[0]), "no installed reader recognises this file")


def read_inputs(
    registry: Registry,
    inputs: list[Path],
    overrides: dict[str, list[str]],
    header_overrides: dict[str, str] | None = None,
) -> tuple[LayerSky | Sky | HealpixSky, tuple[InputFile, ...]]:
    """Sort the input files into survey layers; pixels stay on disk (read per tile job).

    Files the layer readers (``clusterfw_register_layer_readers``, by priority) give the
    ``mm`` kind, or cannot place, go to the mm reader plugins (``--freq``/``--beam``/
    ``--bunit``/``--noise``; hardened checks, one line per problem); every other file is
    sorted by :func:`~clusterfw.core.layers.sorting.sort_into_layers` with the
    ``--header [GLOB:]KEY=VALUE`` overrides. Every layer must overlap another.

    Returns
    -------
    sky : LayerSky, or Sky / HealpixSky from a reader plugin that reads whole maps
    inputs : tuple of InputFile
        Every file with its sha256 (for provenance).

    Raises
    ------
    InputError
        One line naming the file and the problem.
    """
    from clusterfw.core.fits_io import sha256_of
    from clusterfw.core.layers.sorting import sort_into_layers

    header_overrides = dict(header_overrides or {})
    for path in inputs:
        if not Path(path).exists():
            raise InputError(str(path), "file not found")
        if Path(path).is_dir():
            raise InputError(str(path), "is a directory, not a map file")
    readers = registry.layer_readers()
    kinds = [_kind_of(Path(p), header_overrides, readers) for p in inputs]
    mm_paths = [Path(p) for p, k in zip(inputs, kinds, strict=True) if k == "mm"]
    others = [Path(p) for p, k in zip(inputs, kinds, strict=True) if k != "mm"]
    layers: list[Layer] = []
    files: list[InputFile] = []
    if mm_paths:
        got = _read_mm(registry, mm_paths, overrides)
        if isinstance(got, Sky | HealpixSky):
            if others:
                raise InputError(
                    str(others[0]),
                    "the mm reader in use holds whole maps and cannot be combined with other "
                    "layers",
                )
            return got, got.inputs
        layers.append(got[0])
        files.extend(got[1])
    elif any(overrides.values()):
        flag = next(k for k, v in overrides.items() if v)
        raise InputError(f"--{flag}", "applies to mm maps, and no input is one")
    if others:
        sorted_sky = sort_into_layers(
            others, header_overrides, readers=readers, check_overlap=False
        )
        for layer in sorted_sky:
            if layer.name in {la.name for la in layers}:
                raise InputError(
                    layer.paths[0], f"layer name {layer.name!r} is already used by the mm maps"
                )
            layers.append(layer)
        files.extend(InputFile(str(p), sha256_of(p), "") for p in others)
    sky = LayerSky(tuple(layers), tuple(str(p) for p in inputs))
    sky.check_overlap()
    return sky, tuple(files)


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
        sky, inputs = read_inputs(
            registry, request.inputs, request.overrides, request.header_overrides
        )
        source = ", ".join(str(p) for p in request.inputs)
    else:
        demo = registry.demo_inputs()
        if demo is None:
            raise ClusterfwError(
                "no input maps given, and no installed plugin provides the demo sky "
                "(install clusterfw[sim])"
            )
        sky, inputs = read_inputs(registry, [Path(p) for p in demo], {}, {})
        source = "built-in demo sky"
    from clusterfw.core.pipeline import check_plugins

    check_plugins(sky, finders, estimators)
    grid = resolve_tile_grid(sky, request.tile_grid)
    check_tile_count(sky, request.tile_size_arcmin, grid)
    checkpoint = None
    if request.checkpoint is not None:
        from clusterfw.core.checkpoint import Checkpoint

        want_forced = combiner is not None and len(finders) > 1
        checkpoint = Checkpoint(
            request.checkpoint, run_fingerprint(request, finders, inputs, want_forced)
        )
        checkpoint.check()
    progress = None if request.quiet else _tqdm_progress(f"{'+'.join(request.finders)} tiles")
    executor = get_executor(request.workers, dask=request.dask, scheduler=request.scheduler)
    link = getattr(executor, "dashboard_link", None)
    if link and not request.quiet:
        print(f"clusterfw: Dask dashboard: {link}", file=sys.stderr)
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
            checkpoint,
            tile_grid=grid,
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
    table = with_provenance(table, provenance_metadata(records, inputs, extra={"source": source}))
    write_catalogue(table, request.out)
    if not request.quiet:
        print_summary(table, request.out, source)
    return table


def run_fingerprint(
    request: RunRequest, finders: list[Any], inputs: Iterable[InputFile], want_forced: bool
) -> dict[str, Any]:
    """What decides a run's tile results, for :class:`~clusterfw.core.checkpoint.Checkpoint`.

    Input files by name, size and sha256 (not by folder or mtime: a copied input resumes);
    each finder's name, version and options; the tile size; band and header overrides;
    whether forced scores are computed (a combiner of several finders); the clusterfw version.
    Combiner, estimators and the output name are not in it: they act after the tiles.
    """
    import os

    import clusterfw

    files = []
    for f in inputs:
        try:
            size = os.stat(f.path).st_size
        except OSError:
            size = None
        files.append({"name": Path(f.path).name, "band": f.band, "size": size, "sha256": f.sha256})
    return {
        "clusterfw": clusterfw.__version__,
        "inputs": files,
        "finders": [
            {
                "name": f.name,
                "version": str(getattr(f, "version", "0")),
                "options": f.options.model_dump(mode="json"),
            }
            for f in finders
        ],
        "forced": bool(want_forced),
        "tile_size_arcmin": float(request.tile_size_arcmin),
        # only when given, so checkpoints made before the option keep their fingerprint
        **({"tile_grid": request.tile_grid} if request.tile_grid is not None else {}),
        "overrides": {k: list(v) for k, v in sorted(request.overrides.items()) if v},
        "header_overrides": dict(sorted(request.header_overrides.items())),
    }


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
