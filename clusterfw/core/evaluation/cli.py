"""``clusterfw evaluate`` and ``clusterfw calibrate`` (click commands; heavy imports inside)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from clusterfw.core.cli import FiniteFloat

if TYPE_CHECKING:
    from clusterfw.core.evaluation.matching import Truth

_DUPLICATES = click.Choice(["false_positive", "ignore"])
_F = TypeVar("_F", bound=Callable[..., Any])

#: Smallest ``--cutout`` side, arcmin, and most cutouts over the truth footprint: a 0.001'
#: grid needed 26 GiB before these limits.
MIN_CUTOUT_ARCMIN = 0.5
MAX_CUTOUTS = 50_000_000


def _selection_options(f: _F) -> _F:
    f = click.option(
        "--duplicates",
        type=_DUPLICATES,
        default="false_positive",
        show_default=True,
        help="Further candidates on an already-found cluster: false positives, or ignored.",
    )(f)
    f = click.option(
        "--radius",
        default=1.0,
        show_default=True,
        type=FiniteFloat(min=0.0, min_open=True),
        help="Matching radius, arcmin (largest halo within it).",
    )(f)
    f = click.option(
        "--z-min",
        default=0.25,
        show_default=True,
        type=FiniteFloat(),
        help="Redshift cut of a true cluster.",
    )(f)
    f = click.option(
        "--mass-col", default="mvir", show_default=True, help="Truth mass column used for the cut."
    )(f)
    f = click.option(
        "--mass-min",
        default=2e14,
        show_default=True,
        type=FiniteFloat(min=0.0),
        help="Mass cut of a true cluster, Msun.",
    )(f)
    return f


def check_truth(truth: Truth, path: Path) -> None:
    """Refuse a truth catalogue without halos or with non-finite positions.

    Raises
    ------
    clusterfw.core.errors.InputError
        Naming the truth file and the problem.
    """
    import numpy as np

    from clusterfw.core.errors import InputError

    if len(truth) == 0:
        raise InputError(str(path), "truth catalogue has no halos")
    bad = ~(np.isfinite(truth.ra) & np.isfinite(truth.dec))
    if bad.any():
        raise InputError(
            str(path),
            f"{int(bad.sum())} halos with non-finite ra/dec (first at row {int(np.argmax(bad))})",
        )
    if np.any(np.abs(truth.dec) > 90):
        raise InputError(str(path), "dec outside [-90, 90] degrees")


def cutout_count(truth: Truth, cutout_arcmin: float) -> int:
    """Number of ``cutout_arcmin`` cutouts gridding the truth footprint (as ``evaluate`` does)."""
    import numpy as np

    ra_c = float(np.rad2deg(np.angle(np.mean(np.exp(1j * np.deg2rad(truth.ra))))) % 360.0)
    dec_lo, dec_hi = float(truth.dec.min()), float(truth.dec.max())
    dra = (truth.ra - ra_c + 180.0) % 360.0 - 180.0
    x = dra * np.cos(np.deg2rad(truth.dec)) * 60.0
    nx = max(1, int(np.ceil((float(x.max()) - float(x.min())) / cutout_arcmin)))
    ny = max(1, int(np.ceil((dec_hi - dec_lo) * 60.0 / cutout_arcmin)))
    return nx * ny


def _command_line() -> str:
    """The current command rebuilt from its parsed parameters (every option spelled out)."""
    import shlex

    ctx = click.get_current_context()
    words = ["clusterfw", ctx.info_name or ctx.command.name or ""]
    args: list[str] = []
    for p in ctx.command.params:
        value = ctx.params.get(p.name or "")
        if value is None or value == () or value is False:
            continue
        values = list(value) if isinstance(value, (tuple, list)) else [value]
        if isinstance(p, click.Argument):
            args += [str(v) for v in values]
        elif isinstance(p, click.Option) and p.is_flag:
            words.append(p.opts[-1])
        else:
            for v in values:
                words += [p.opts[-1], f"{v:g}" if isinstance(v, float) else str(v)]
    return shlex.join(words + args)


@click.command()
@click.argument("catalogue", type=click.Path(path_type=Path))
@click.option(
    "--truth",
    "truth_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Truth halo catalogue (Parquet, FITS, CSV, ECSV, npz) with ra, dec, z, mass.",
)
@_selection_options
@click.option(
    "--score",
    "scores",
    multiple=True,
    help="Score column(s) to evaluate (repeatable). Default: score, plus every "
    "<finder>_score of a combined catalogue.",
)
@click.option(
    "--threshold",
    type=FiniteFloat(min=0.0),
    default=None,
    help="Threshold on the first score column for the curves and maps "
    "(default: its F1-best threshold).",
)
@click.option(
    "--cutout",
    type=FiniteFloat(min=MIN_CUTOUT_ARCMIN),
    default=None,
    help="Also give the cutout-level confusion matrix (DeepSZ Table 1) for square "
    "cutouts of this size, arcmin.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the full evaluation as JSON here.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write PNG figures into this directory.",
)
@click.option(
    "--selfn",
    "selfn_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Selection function from `clusterfw selfn`: compare it with the catalogue's measured "
    "completeness of true halos (chi2; and a figure with --plots).",
)
@click.option(
    "--footprint",
    "footprint_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Evaluate only where one of these files (the maps or images the finder ran on; "
    "repeatable) has data: truth halos and candidates elsewhere are left out.",
)
def evaluate(
    catalogue: Path,
    truth_path: Path,
    mass_min: float,
    mass_col: str,
    z_min: float,
    radius: float,
    duplicates: str,
    scores: tuple[str, ...],
    threshold: float | None,
    cutout: float | None,
    json_out: Path | None,
    plots_dir: Path | None,
    selfn_path: Path | None = None,
    footprint_paths: tuple[Path, ...] = (),
) -> None:
    """Match CATALOGUE to truth halos; report purity, completeness and F1."""
    from clusterfw.core.atomic import check_writable, refuse_overwrite
    from clusterfw.core.errors import ClusterfwError, InputError
    from clusterfw.core.evaluation.calibration import combined_finders
    from clusterfw.core.evaluation.io import read_table, write_json_atomic
    from clusterfw.core.evaluation.matching import read_truth
    from clusterfw.core.evaluation.metrics import evaluate as run_evaluation

    refuse_overwrite([catalogue, truth_path, *footprint_paths], [json_out, plots_dir])
    if json_out is not None:
        check_writable(json_out)
    if plots_dir is not None:
        check_writable(plots_dir, folder=True)
    table = read_table(catalogue)
    truth = read_truth(truth_path, mass_col=mass_col)
    check_truth(truth, truth_path)
    footprint: dict[str, Any] | None = None
    if footprint_paths:
        table, truth, footprint = _within_footprint(table, truth, footprint_paths, truth_path)
    if cutout is not None and (n_cut := cutout_count(truth, cutout)) > MAX_CUTOUTS:
        raise ClusterfwError(
            f"--cutout: {cutout:g} arcmin cutouts over the truth footprint make {n_cut} cutouts "
            f"(at most {MAX_CUTOUTS}); use larger cutouts"
        )
    cols = list(scores) or ["score"] + [f + "_score" for f in combined_finders(table.column_names)]
    for c in cols:
        if c not in table.column_names:
            raise InputError(str(catalogue), f"no column {c!r} to evaluate")
    results: dict[str, Any] = {}
    for k, col in enumerate(cols):
        results[col] = run_evaluation(
            table,
            truth,
            score_column=col,
            mass_min=mass_min,
            z_min=z_min,
            radius_arcmin=radius,
            duplicates=duplicates,  # type: ignore[arg-type]
            threshold=threshold if k == 0 else None,
            cutout_arcmin=cutout,
        )
    click.echo(
        f"{catalogue}: {table.num_rows} candidates; {results[cols[0]].curve.n_true} true "
        f"clusters ({mass_col} >= {mass_min:.3g}, z >= {z_min:g}) within {radius:g}'"
    )
    if footprint is not None:
        click.echo(
            f"footprint of {len(footprint_paths)} file(s): {footprint['truth_inside']} of "
            f"{footprint['truth_all']} truth halos and {footprint['candidates_inside']} of "
            f"{footprint['candidates_all']} candidates inside"
        )
    coverage = candidate_coverage(table)
    if coverage:
        click.echo(
            "coverage (share of candidates where a finder's layers have data; a finder's "
            "null score outside it is no data, not a non-detection): "
            + ", ".join(f"{f} {100 * v:.1f} %" for f, v in coverage.items())
        )
    click.echo(
        f"{'score column':<22}{'threshold':>11}{'TP':>6}{'FP':>6}{'FN':>6}"
        f"{'purity':>8}{'compl.':>8}{'F1':>7}"
    )
    for col, ev in results.items():
        rows = [("F1-best", ev.best_threshold, ev.best)]
        if ev.threshold_source == "given":
            rows.append(("given", ev.threshold, ev.at_threshold))
        if col == cols[0] and ev.is_cluster is not None:
            rows.append(("is_cluster", float("nan"), ev.is_cluster))
        for what, t, c in rows:
            name = f"{col} [{what}]"
            click.echo(
                f"{name:<22}{t:>11.4g}{c.tp:>6}{c.fp:>6}{c.fn:>6}"
                f"{c.purity:>8.3f}{c.completeness:>8.3f}{c.f1:>7.3f}"
            )
        if ev.cutouts is not None:
            m = ev.cutouts["at_threshold"]["matrix"]
            click.echo(
                f"  cutouts {ev.cutouts['cutout_arcmin']:g}': TP {m['tp']} FP {m['fp']} "
                f"FN {m['fn']} TN {m['tn']}"
            )
    if json_out is not None:
        doc = {
            "catalogue": str(catalogue),
            "truth": str(truth_path),
            "command": _command_line(),
            "selection": results[cols[0]].selection,
            "coverage": coverage,
            "footprint": footprint,
            "results": {col: ev.to_dict() for col, ev in results.items()},
        }
        write_json_atomic(doc, json_out)
        click.echo(f"wrote {json_out}", err=True)
    if plots_dir is not None:
        from clusterfw.core.evaluation.plots import plot_all

        for p in plot_all(results, plots_dir):
            click.echo(f"wrote {p}", err=True)
    if selfn_path is not None:  # the selection function beside the measured completeness
        from clusterfw.selection.compare import evaluate_selfn

        evaluate_selfn(selfn_path, table, truth, truth_path, radius, results[cols[0]], plots_dir)


def _within_footprint(
    table: Any, truth: Any, paths: tuple[Path, ...], truth_path: Path
) -> tuple[Any, Any, dict[str, Any]]:
    """The candidates and truth halos where one of ``paths`` has data, and the counts."""
    import dataclasses

    import numpy as np
    import pyarrow as pa

    from clusterfw.core.errors import InputError
    from clusterfw.core.evaluation.footprint import footprint_mask

    ra = np.asarray(table.column("ra").to_numpy(zero_copy_only=False), dtype=np.float64)
    dec = np.asarray(table.column("dec").to_numpy(zero_copy_only=False), dtype=np.float64)
    both = footprint_mask(paths, np.concatenate([truth.ra, ra]), np.concatenate([truth.dec, dec]))
    keep_truth, keep_cand = both[: len(truth)], both[len(truth) :]
    if not keep_truth.any():
        raise InputError(str(truth_path), "no truth halo inside the --footprint files")
    n = len(truth)
    inside = dataclasses.replace(
        truth,
        ra=truth.ra[keep_truth],
        dec=truth.dec[keep_truth],
        mass=truth.mass[keep_truth],
        z=truth.z[keep_truth],
        columns={
            k: (v[keep_truth] if np.ndim(v) and len(v) == n else v)
            for k, v in truth.columns.items()
        },
    )
    counts = {
        "files": [str(p) for p in paths],
        "truth_inside": int(keep_truth.sum()),
        "truth_all": n,
        "candidates_inside": int(keep_cand.sum()),
        "candidates_all": int(table.num_rows),
    }
    return table.filter(pa.array(keep_cand)), inside, counts


def candidate_coverage(table: Any) -> dict[str, float]:
    """Share of a combined catalogue's candidates each finder covers (``<finder>_covered``)."""
    out = {}
    for name in table.column_names:
        if name.endswith("_covered") and table.num_rows:
            col = table.column(name).fill_null(False).to_numpy(zero_copy_only=False)
            out[name[: -len("_covered")]] = float(col.mean())
    return out


@click.command()
@click.argument("catalogues", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--truth",
    "truths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Truth catalogue: once for all catalogues, or once per catalogue in order.",
)
@_selection_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Calibration file to write (JSON).",
)
def calibrate(
    catalogues: tuple[Path, ...],
    truths: tuple[Path, ...],
    mass_min: float,
    mass_col: str,
    z_min: float,
    radius: float,
    duplicates: str,
    out: Path,
) -> None:
    """Pick F1-best thresholds on validation CATALOGUES and write a calibration file.

    Single-finder catalogues give that finder's threshold (and, failing a combined catalogue,
    its reference score distribution); combined catalogues (``run --combine ...``) give the
    reference distributions and the rankprod and and thresholds of their finder set.
    """
    from clusterfw.core.atomic import check_writable, refuse_overwrite
    from clusterfw.core.errors import ClusterfwError
    from clusterfw.core.evaluation.calibration import calibrate as make_calibration
    from clusterfw.core.evaluation.io import read_table
    from clusterfw.core.evaluation.matching import read_truth

    if len(truths) not in (1, len(catalogues)):
        raise ClusterfwError(f"give --truth once, or once per catalogue ({len(catalogues)})")
    refuse_overwrite([*catalogues, *truths], [out])
    check_writable(out)
    truth_paths = list(truths) * len(catalogues) if len(truths) == 1 else list(truths)
    cache: dict[Path, Truth] = {}
    inputs = []
    for cat, tp in zip(catalogues, truth_paths, strict=True):
        if tp not in cache:
            cache[tp] = read_truth(tp, mass_col=mass_col)
            check_truth(cache[tp], tp)
        inputs.append((read_table(cat), cache[tp]))
    cal = make_calibration(
        inputs,
        labels=[(str(c), str(t)) for c, t in zip(catalogues, truth_paths, strict=True)],
        mass_min=mass_min,
        z_min=z_min,
        radius_arcmin=radius,
        duplicates=duplicates,
        command=_command_line(),
    )
    cal.save(out)
    from clusterfw.core.evaluation.calibration import calibration_summary

    for line in calibration_summary(cal):  # combiner sections are the combiners' own
        click.echo(line)
    click.echo(f"wrote {out}", err=True)
