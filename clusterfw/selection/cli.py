"""``clusterfw selfn``: the selection function of a run, by injection or (``mf``) analytically.

The command takes every option of ``clusterfw run`` (its parameters are copied from the ``run``
command, so options added there are accepted here too) and its own options below.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import click

from clusterfw.core.cli import FiniteFloat
from clusterfw.core.cli import run as run_command

#: ``run`` parameters that do not carry over to the per-round runs (reset to their default).
PER_ROUND_DEFAULTS = ("checkpoint", "resume")
_OWN_RUN_NAMES = {"out"}


def _run_params() -> list[click.Parameter]:
    out = []
    for p in run_command.params:
        if p.name in _OWN_RUN_NAMES:
            continue
        q = copy.copy(p)
        if q.name == "checkpoint" and isinstance(q, click.Option):
            q.help = (
                "Folder of the injection rounds: a rerun with the same arguments resumes after "
                "the last finished round (and may add rounds)."
            )
        out.append(q)
    return out


@click.command(
    "selfn",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("selfn.parquet"),
    show_default=True,
    help="Completeness table (.parquet or .fits).",
)
@click.option(
    "--method",
    type=click.Choice(["injection", "analytic"]),
    default="injection",
    show_default=True,
    help="Source injection (any finders) or the analytic path (mf alone).",
)
@click.option(
    "--mass-grid",
    default="1e14:1e15:6",
    show_default=True,
    help="M500c cells: LO:HI:N (N log-spaced bins) or edges E0,E1,... (Msun).",
)
@click.option(
    "--z-grid",
    default="0.1:1.1:4",
    show_default=True,
    help="Redshift cells: LO:HI:N or edges E0,E1,...",
)
@click.option(
    "--precision",
    type=FiniteFloat(min=0.0, min_open=True, max=0.5),
    default=0.05,
    show_default=True,
    help="Stop when every cell's 1-sigma Wilson half-width is below this.",
)
@click.option(
    "--max-rounds",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Most injection rounds.",
)
@click.option(
    "--per-round",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Most clusters injected per round (fewer when the map is full).",
)
@click.option(
    "--max-density",
    type=FiniteFloat(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Most clusters injected per deg² per round (dense bright injections bias a noise "
    "covariance measured from the maps, as mf's).",
)
@click.option(
    "--min-per-cell",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Injections every cell gets at least.",
)
@click.option(
    "--min-separation",
    type=FiniteFloat(min=0.0, min_open=True),
    default=10.0,
    show_default=True,
    help="Least distance between injected clusters, arcmin.",
)
@click.option(
    "--edge",
    type=FiniteFloat(min=0.0),
    default=10.0,
    show_default=True,
    help="Least distance of an injection from the map edge and masked pixels, arcmin.",
)
@click.option(
    "--match-radius",
    type=FiniteFloat(min=0.0, min_open=True),
    default=None,
    help="Recovery radius, arcmin (default: the calibration's, else 1).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--y-scatter",
    type=FiniteFloat(min=0.0),
    default=None,
    help="Lognormal scatter of Y500 at fixed mass (default: the simulator's, 0.2).",
)
@click.option(
    "--ym-norm",
    type=FiniteFloat(),
    default=None,
    help="log10 norm of the A10-form Y-M relation (default: the simulator's).",
)
@click.option(
    "--ym-slope",
    type=FiniteFloat(),
    default=None,
    help="Slope of the Y-M relation (default: the simulator's, 1.78).",
)
@click.option("--ksz/--no-ksz", default=True, show_default=True, help="Inject kSZ too.")
@click.option(
    "--opt-bias-dof",
    type=FiniteFloat(min=0.0),
    default=3.0,
    show_default=True,
    help="Analytic path: free parameters of the peak search (position, scale) in the "
    "optimisation bias <SNR>^2 = SNR_true^2 + dof.",
)
@click.option(
    "--per-tile/--no-per-tile", default=True, show_default=True, help="Also write per-tile rows."
)
@click.option(
    "--mass-limit-map",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the per-tile mass limit (FITS, the maps' WCS) here.",
)
@click.option(
    "--limit-completeness",
    type=FiniteFloat(min=0.0, min_open=True, max=1.0, max_open=True),
    default=0.9,
    show_default=True,
    help="Completeness of the mass-limit map and contour.",
)
@click.option(
    "--limit-z",
    type=FiniteFloat(min=0.0),
    default=0.5,
    show_default=True,
    help="Redshift of the mass-limit map.",
)
@click.option(
    "--injections",
    "injections_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write every injected cluster (Parquet).",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write completeness-vs-mass and 90% contour PNGs here.",
)
def selfn(**kwargs: Any) -> None:
    """Selection function of `clusterfw run` on INPUT maps: completeness on an (M500c, z) grid.

    Model clusters are injected into copies of the maps (never the files themselves), the
    finders and combiner run exactly as `clusterfw run` would, and a cluster counts as
    recovered when a catalogue row above the calibration's threshold lies within the match
    radius. `--method analytic` (mf alone) computes it from the filter's noise instead.
    """
    from clusterfw.core.atomic import check_writable, refuse_overwrite
    from clusterfw.core.catalog_io import read_catalogue
    from clusterfw.core.cli import _parse_headers, _parse_options, _split_values, cli_registry
    from clusterfw.core.errors import ClusterfwError
    from clusterfw.core.runner import RunRequest
    from clusterfw.selection.grid import parse_grid
    from clusterfw.selection.model import ScalingModel
    from clusterfw.selection.run import SelfnOutputs, measure

    run_names = [p.name for p in _run_params()]
    run_kwargs = {k: kwargs[k] for k in run_names if k in kwargs}
    out: Path = kwargs["out"]
    if out.suffix.lower() not in (".parquet", ".fits"):
        raise ClusterfwError(f"--out: {out}: must end in .parquet or .fits")
    for opt, path, suffixes in (
        ("--mass-limit-map", kwargs["mass_limit_map"], (".fits",)),
        ("--injections", kwargs["injections_out"], (".parquet",)),
    ):
        if path is not None and path.suffix.lower() not in suffixes:
            raise ClusterfwError(f"{opt}: {path}: must end in {' or '.join(suffixes)}")
    grid = parse_grid(kwargs["mass_grid"], kwargs["z_grid"])
    model_kw = {
        k: v
        for k, v in (
            ("y500_scatter_ln", kwargs["y_scatter"]),
            ("y500_log10_norm", kwargs["ym_norm"]),
            ("y500_slope", kwargs["ym_slope"]),
        )
        if v is not None
    }
    model = ScalingModel(ksz=kwargs["ksz"], **model_kw)
    inputs = list(run_kwargs.get("inputs") or ())
    outputs = [out, kwargs["mass_limit_map"], kwargs["injections_out"]]
    refuse_overwrite([*inputs, run_kwargs.get("calibration")], [o for o in outputs if o])
    for o in outputs:
        if o is not None:
            check_writable(o)
    if kwargs["plots_dir"] is not None:
        refuse_overwrite([*inputs], [kwargs["plots_dir"]])
        check_writable(kwargs["plots_dir"], folder=True)
    request = RunRequest(
        inputs=[Path(p) for p in inputs],
        finders=list(run_kwargs.get("finders") or ()) or ["mf"],
        combiner=run_kwargs.get("combiner"),
        estimators=list(run_kwargs.get("estimators") or ()),
        options=_parse_options(run_kwargs.get("options") or ()),
        out=Path("catalogue.parquet"),
        calibration=run_kwargs.get("calibration"),
        overrides={
            k: _split_values(run_kwargs.get(k) or ()) for k in ("freq", "beam", "bunit", "noise")
        },
        header_overrides=_parse_headers(run_kwargs.get("headers") or ()),
        tile_size_arcmin=run_kwargs.get("tile_size", 240.0),
        workers=run_kwargs.get("workers", 1),
        quiet=True,
    )
    defaults = {p.name: p.default for p in _run_params()}

    def run_catalogue(paths: list[Path], cat: Path, calibration: Path | None) -> Any:
        kw = dict(run_kwargs)
        kw.update(inputs=tuple(paths), out=cat, quiet=True, calibration=calibration)
        for name in PER_ROUND_DEFAULTS:
            if name in kw:
                kw[name] = defaults.get(name)
        with contextlib.redirect_stdout(io.StringIO()):
            run_command.callback(**kw)  # type: ignore[misc]
        return read_catalogue(cat)

    quiet = bool(run_kwargs.get("quiet"))
    result = measure(
        request,
        method=kwargs["method"],
        grid=grid,
        model=model,
        run_catalogue=run_catalogue,
        registry=cli_registry(),
        precision=kwargs["precision"],
        max_rounds=kwargs["max_rounds"],
        per_round=kwargs["per_round"],
        min_per_cell=kwargs["min_per_cell"],
        min_separation_arcmin=kwargs["min_separation"],
        edge_arcmin=kwargs["edge"],
        match_radius_arcmin=kwargs["match_radius"],
        seed=kwargs["seed"],
        max_density=kwargs["max_density"],
        opt_bias_dof=kwargs["opt_bias_dof"],
        per_tile=kwargs["per_tile"],
        state_dir=run_kwargs.get("checkpoint"),
        run_key=json.dumps(
            {k: v for k, v in run_kwargs.items() if k not in ("inputs", "quiet", "checkpoint")},
            default=str,
            sort_keys=True,
        ),
        log=None if quiet else (lambda m: click.echo(f"selfn: {m}", err=True)),
    )
    written = SelfnOutputs(
        table=out,
        mass_limit_map=kwargs["mass_limit_map"],
        limit_completeness=kwargs["limit_completeness"],
        limit_z=kwargs["limit_z"],
        injections=kwargs["injections_out"],
        plots_dir=kwargs["plots_dir"],
    ).write(result)
    if not quiet:
        click.echo(result.summary())
    for p in written:
        click.echo(f"wrote {p}", err=True)


selfn.params = _run_params() + selfn.params
