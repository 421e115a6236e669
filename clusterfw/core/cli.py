"""The ``clusterfw`` command line.

Errors that are the user's input (:class:`~clusterfw.core.errors.ClusterfwError`, click usage
errors) print one line and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import signal
import sys
import threading
import warnings
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click

from clusterfw.core.errors import ClusterfwError, PluginError

if TYPE_CHECKING:
    from clusterfw.core.plugins import Registry


#: Operating-system errors that are the user's environment (a path, permissions, a full disk),
#: printed as one line naming the file when no clusterfw code turned them into a user error.
_USER_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENOTDIR", "EISDIR", "EEXIST", "ENOENT",
        "ENAMETOOLONG", "ELOOP", "EFBIG", "EXDEV", "ENXIO", "ETXTBSY",
    )
    if hasattr(errno, name)
)  # fmt: skip


class Stopped(BaseException):
    """Raised in the main process by SIGINT (Ctrl-C) or SIGTERM; the CLI exits ``128 + signum``.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` on the way
    swallows it; temporary files are removed by the ``finally`` clauses it passes through.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        """``128 + signum`` (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum

    @property
    def message(self) -> str:
        """The one line printed."""
        return "interrupted" if self.signum == signal.SIGINT else "terminated"


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


class FiniteFloat(click.ParamType):
    """A finite float (no NaN, no infinity) within optional bounds; the error names the option.

    Parameters
    ----------
    min, max : float, optional
        Bounds.
    min_open, max_open : bool
        Exclude the bound itself.
    """

    name = "number"

    def __init__(
        self,
        min: float | None = None,
        max: float | None = None,
        min_open: bool = False,
        max_open: bool = False,
    ) -> None:
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Parse ``value``; fail with one line when it is not a finite number in range."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value}", param, ctx)
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            self.fail(
                f"must be {'>' if self.min_open else '>='} {self.min:g}, got {value}", param, ctx
            )
        if self.max is not None and (number > self.max or (self.max_open and number == self.max)):
            self.fail(
                f"must be {'<' if self.max_open else '<='} {self.max:g}, got {value}", param, ctx
            )
        return number


def _param_label(param: click.Parameter | None) -> str | None:
    if param is None:
        return None
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return (param.name or "").upper() or None


def usage_line(exc: click.UsageError) -> str:
    """A click usage error as the one line clusterfw prints (``<option>: <problem>``)."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        label = _param_label(exc.param) or exc.param_hint
        if isinstance(label, (list, tuple)):
            label = " / ".join(label)
        if label:
            return f"{label}: {exc.message}"
    return " ".join(exc.format_message().split())


@functools.lru_cache(maxsize=1)
def cli_registry() -> Registry:
    """The registry of this CLI process (built once, on first use)."""
    from clusterfw.core.plugins import Registry

    return Registry()


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    click.echo(f"clusterfw: warning: {message}", err=True)


class ClusterfwGroup(click.Group):
    """A click group that turns user errors into one-line messages (exit code 2).

    Exit codes: 0 success, 2 a user error (bad input, option or output path), 130 interrupted
    (SIGINT, Ctrl-C), 143 terminated (SIGTERM), 1 an internal error (a bug: rerun with
    ``--debug`` for the traceback).
    """

    def invoke(self, ctx: click.Context) -> Any:  # noqa: D102
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # before click turns it into Abort (and prints a blank line)
            raise Stopped(signal.SIGINT) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        argv = sys.argv[1:] if not args else args[0]
        debug = "--debug" in (argv or [])
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_stopped)
        try:
            main: Any = super().main
            return main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except Stopped as exc:
            click.echo(f"clusterfw: {exc.message}", err=True)
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("clusterfw: interrupted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            click.echo(f"clusterfw: error: {usage_line(exc)}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"clusterfw: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except ClusterfwError as exc:
            if debug:
                raise
            text = " ".join(str(exc).split())
            click.echo(f"clusterfw: error: {text}", err=True)
            sys.exit(2)
        except OSError as exc:
            if debug or exc.errno not in _USER_ERRNOS or not exc.filename:
                if debug:
                    raise
                _internal_error(exc)
            click.echo(f"clusterfw: error: {exc.filename}: {exc.strerror}", err=True)
            sys.exit(2)
        except Exception as exc:
            if debug:
                raise
            _internal_error(exc)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _internal_error(exc: BaseException) -> NoReturn:
    first = str(exc).strip().splitlines()
    click.echo(
        f"clusterfw: internal error: {type(exc).__name__}: {first[0] if first else ''} "
        "(rerun with --debug for the traceback)",
        err=True,
    )
    sys.exit(1)


@click.group(cls=ClusterfwGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="clusterfw")
def cli(debug: bool) -> None:
    """clusterfw: find galaxy clusters with interchangeable finders, combiners and estimators."""


def _parse_options(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``("mf.snr_min=4", ...)`` → ``{"mf": {"snr_min": 4}}`` (values JSON-decoded if possible)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        plugin, dot, option = key.partition(".")
        if not sep or not dot or not plugin or not option:
            raise PluginError(f"option {pair!r} must look like plugin.key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(plugin, {})[option] = value
    return out


def _split_values(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--finder", "-f", "finders", multiple=True, help="Finder to run (repeatable).")
@click.option("--combine", "-c", "combiner", default=None, help="Combiner merging the finders.")
@click.option("--estimate", "-e", "estimators", multiple=True, help="Estimator (repeatable).")
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="PLUGIN.KEY=VALUE",
    help="Plugin option, validated against the plugin's options (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("catalogue.parquet"),
    show_default=True,
    help="Output catalogue (.parquet, .fits, .csv, .ecsv; .hats: a HATS catalogue folder, "
    "the hats extra).",
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    default=None,
    help="Calibration file from `clusterfw calibrate` (adds is_cluster).",
)
@click.option("--freq", multiple=True, help="Band frequencies in GHz (per file, or one).")
@click.option("--beam", multiple=True, help="Beam FWHMs in arcmin (per file, or one).")
@click.option("--bunit", multiple=True, help="Map units: uK_CMB, K_CMB, Jy/sr (per file, or one).")
@click.option("--noise", multiple=True, help="White-noise depths in uK-arcmin (per file, or one).")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="[GLOB:]KEY=VALUE",
    help="Header keyword of the optical, X-ray and y-map inputs (all, or those matching GLOB); "
    "KIND, LAYER, BANDNAME and HDU too (repeatable).",
)
@click.option(
    "--tile-size",
    type=FiniteFloat(min=0.0, min_open=True),
    default=240.0,
    show_default=True,
    help="Tile core size, arcmin.",
)
@click.option(
    "--tile-grid",
    default=None,
    metavar="LAYER",
    help="Make the tile cores pixel boxes of this flat layer's grid (a layer name or kind, "
    "e.g. mm) instead of HEALPix cells: smaller cutouts of the other layers per core. "
    "Positions outside that layer are not searched.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes for the tile loop (with --dask: Dask worker processes).",
)
@click.option(
    "--dask",
    "use_dask",
    is_flag=True,
    help="Run the tiles on a Dask LocalCluster of --workers processes (the dask extra).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run the tiles on the Dask cluster whose scheduler is at ADDRESS (tcp://host:port).",
)
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of per-tile results: a rerun with the same arguments skips finished tiles.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def run(
    inputs: tuple[Path, ...],
    finders: tuple[str, ...],
    combiner: str | None,
    estimators: tuple[str, ...],
    options: tuple[str, ...],
    out: Path,
    calibration: Path | None,
    freq: tuple[str, ...],
    beam: tuple[str, ...],
    bunit: tuple[str, ...],
    noise: tuple[str, ...],
    headers: tuple[str, ...],
    tile_size: float,
    tile_grid: str | None,
    workers: int,
    use_dask: bool,
    scheduler: str | None,
    checkpoint: Path | None,
    quiet: bool,
) -> None:
    """Find clusters in INPUT maps (one FITS per band); no INPUT runs on the demo sky."""
    from clusterfw.core.runner import RunRequest, execute_run

    overrides = {
        "freq": _split_values(freq),
        "beam": _split_values(beam),
        "bunit": _split_values(bunit),
        "noise": _split_values(noise),
    }
    request = RunRequest(
        inputs=list(inputs),
        finders=list(finders) or ["mf"],
        combiner=combiner,
        estimators=list(estimators),
        options=_parse_options(options),
        out=out,
        calibration=calibration,
        overrides=overrides,
        header_overrides=_parse_headers(headers),
        tile_size_arcmin=tile_size,
        tile_grid=tile_grid,
        workers=workers,
        quiet=quiet,
        dask=use_dask,
        scheduler=scheduler,
        checkpoint=checkpoint,
    )
    execute_run(request, cli_registry())


def _parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    """``--header [GLOB:]KEY=VALUE`` pairs as the overrides of ``sort_into_layers``."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.rpartition(":")[2].strip():
            raise ClusterfwError(f"--header: {item!r} must look like [GLOB:]KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List the installed plugins with their versions, distributions and options."""
    entries: list[dict[str, Any]] = []
    for info in cli_registry().all():
        fields: dict[str, dict[str, Any]] = {}
        cls: Any = info.cls
        for key, f in cls.Options.model_fields.items():
            default = None if f.is_required() else f.get_default(call_default_factory=True)
            fields[key] = {
                "default": default,
                "type": getattr(f.annotation, "__name__", str(f.annotation)),
                "description": f.description or "",
            }
        entries.append(
            {
                "name": info.name,
                "kind": info.kind,
                "version": getattr(cls, "version", "0"),
                "distribution": info.distribution,
                "plugin": info.plugin,
                "options": fields,
            }
        )
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=str))
        return
    for e in entries:
        opts = ", ".join(f"{k}={v['default']!r}" for k, v in e["options"].items())
        click.echo(
            f"{e['kind']:<9} {e['name']:<12} {e['version']:<8} {e['distribution']:<22} {opts}"
        )


@cli.command()
@click.argument("catalogue", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(catalogue: Path, as_json: bool) -> None:
    """Show a catalogue's schema (with units), provenance and row count.

    CATALOGUE is a Parquet file or a HATS catalogue folder (``--out x.hats``).

    Given a calibration file (``.json``): its thresholds and each combiner's section (the
    weights of ``stack``).
    """
    import pyarrow as pa

    from clusterfw.core.catalog_io import provenance, read_catalogue

    if catalogue.suffix.lower() == ".json":
        from clusterfw.core.evaluation.calibration import describe_calibration, load_calibration

        cal = load_calibration(catalogue)
        if as_json:
            doc = cal.to_dict()
            for entry in doc["finders"].values():
                entry.pop("reference", None)  # the knots: thousands of numbers
            click.echo(json.dumps(doc, indent=2))
        else:
            click.echo("\n".join(describe_calibration(cal)))
        return
    table = read_catalogue(catalogue)
    columns = []
    for f in table.schema:
        meta = f.metadata or {}
        dtype = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        columns.append(
            {
                "name": f.name,
                "type": f"dictionary<{dtype}>" if dtype is not f.type else str(dtype),
                "unit": meta.get(b"unit", b"").decode(),
                "description": meta.get(b"description", b"").decode(),
            }
        )
    prov = provenance(table)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": str(catalogue),
                    "rows": table.num_rows,
                    "columns": columns,
                    "provenance": prov,
                },
                indent=2,
                default=str,
            )
        )
        return
    click.echo(f"{catalogue}: {table.num_rows} rows, {len(columns)} columns")
    click.echo("columns:")
    for c in columns:
        unit = f"[{c['unit']}]" if c["unit"] else ""
        click.echo(f"  {c['name']:<22} {c['type']:<28} {unit:<10} {c['description'][:60]}")
    click.echo("provenance:")
    for key, value in prov.items():
        text = json.dumps(value) if not isinstance(value, str) else value
        click.echo(f"  {key}: {text if len(text) < 300 else text[:297] + '...'}")


@cli.command()
@click.argument("catalogue", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
def export(catalogue: Path, output: Path) -> None:
    """Convert a Parquet CATALOGUE to OUTPUT (.fits, .csv, .ecsv) for TOPCAT and astropy."""
    from clusterfw.core.atomic import check_writable, refuse_overwrite
    from clusterfw.core.catalog_io import catalogue_format, read_catalogue, write_catalogue

    catalogue_format(output)
    refuse_overwrite([catalogue], [output])
    check_writable(output)
    write_catalogue(read_catalogue(catalogue), output)
    click.echo(f"wrote {output}", err=True)


def _add_optional_commands(group: click.Group) -> None:
    """Core commands living in other modules, then plugin-provided commands.

    ``simulate`` comes from the simulator's plugin (``clusterfw.sim.demo``), through the
    ``clusterfw_register_commands`` hook: the core does not import the simulator.
    """
    import importlib

    for module, names in (
        ("clusterfw.core.evaluation.cli", ("evaluate", "calibrate")),
        ("clusterfw.selection.cli", ("selfn",)),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for name in names:
            command = getattr(mod, name, None)
            if isinstance(command, click.Command):
                group.add_command(command, name)
    cli_registry().commands(group)


def main() -> None:
    """Entry point of the ``clusterfw`` script."""
    warnings.showwarning = _one_line_warning
    _add_optional_commands(cli)
    cli.main(prog_name="clusterfw")
