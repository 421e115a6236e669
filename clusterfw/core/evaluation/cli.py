"""``clusterfw evaluate`` and ``clusterfw calibrate`` (click commands; heavy imports inside)."""

from __future__ import annotations

from pathlib import Path

import click

_DUPLICATES = click.Choice(["false_positive", "ignore"])


def _selection_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--duplicates", type=_DUPLICATES, default="false_positive",
                     show_default=True,
                     help="Further candidates on an already-found cluster: false positives, "
                          "or ignored.")(f)
    f = click.option("--radius", default=1.0, show_default=True, type=float,
                     help="Matching radius, arcmin (largest halo within it).")(f)
    f = click.option("--z-min", default=0.25, show_default=True, type=float,
                     help="Redshift cut of a true cluster.")(f)
    f = click.option("--mass-col", default="mvir", show_default=True,
                     help="Truth mass column used for the cut.")(f)
    f = click.option("--mass-min", default=2e14, show_default=True, type=float,
                     help="Mass cut of a true cluster, Msun.")(f)
    return f


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
@click.option("--truth", "truth_path", required=True, type=click.Path(path_type=Path),
              help="Truth halo catalogue (Parquet, FITS, CSV, ECSV, npz) with ra, dec, z, mass.")
@_selection_options
@click.option("--score", "scores", multiple=True,
              help="Score column(s) to evaluate (repeatable). Default: score, plus every "
                   "<finder>_score of a combined catalogue.")
@click.option("--threshold", type=float, default=None,
              help="Threshold on the first score column for the curves and maps "
                   "(default: its F1-best threshold).")
@click.option("--cutout", type=float, default=None,
              help="Also give the cutout-level confusion matrix (DeepSZ Table 1) for square "
                   "cutouts of this size, arcmin.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Write the full evaluation as JSON here.")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path), default=None,
              help="Write PNG figures into this directory.")
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
) -> None:
    """Match CATALOGUE to truth halos; report purity, completeness and F1."""
    from clusterfw.core.errors import InputError
    from clusterfw.core.evaluation.calibration import combined_finders
    from clusterfw.core.evaluation.io import read_table, write_json_atomic
    from clusterfw.core.evaluation.matching import read_truth
    from clusterfw.core.evaluation.metrics import evaluate as run_evaluation

    table = read_table(catalogue)
    truth = read_truth(truth_path, mass_col=mass_col)
    cols = list(scores) or ["score"] + [f + "_score" for f in combined_finders(table.column_names)]
    for c in cols:
        if c not in table.column_names:
            raise InputError(str(catalogue), f"no column {c!r} to evaluate")
    results = {}
    for k, col in enumerate(cols):
        results[col] = run_evaluation(
            table, truth, score_column=col, mass_min=mass_min, z_min=z_min,
            radius_arcmin=radius, duplicates=duplicates,  # type: ignore[arg-type]
            threshold=threshold if k == 0 else None, cutout_arcmin=cutout,
        )
    click.echo(f"{catalogue}: {table.num_rows} candidates; {results[cols[0]].curve.n_true} true "
               f"clusters ({mass_col} >= {mass_min:.3g}, z >= {z_min:g}) within {radius:g}'")
    click.echo(f"{'score column':<22}{'threshold':>11}{'TP':>6}{'FP':>6}{'FN':>6}"
               f"{'purity':>8}{'compl.':>8}{'F1':>7}")
    for col, ev in results.items():
        rows = [("F1-best", ev.best_threshold, ev.best)]
        if ev.threshold_source == "given":
            rows.append(("given", ev.threshold, ev.at_threshold))
        if col == cols[0] and ev.is_cluster is not None:
            rows.append(("is_cluster", float("nan"), ev.is_cluster))
        for what, t, c in rows:
            name = f"{col} [{what}]"
            click.echo(f"{name:<22}{t:>11.4g}{c.tp:>6}{c.fp:>6}{c.fn:>6}"
                       f"{c.purity:>8.3f}{c.completeness:>8.3f}{c.f1:>7.3f}")
        if ev.cutouts is not None:
            m = ev.cutouts["at_threshold"]["matrix"]
            click.echo(f"  cutouts {ev.cutouts['cutout_arcmin']:g}': TP {m['tp']} FP {m['fp']} "
                       f"FN {m['fn']} TN {m['tn']}")
    if json_out is not None:
        doc = {
            "catalogue": str(catalogue),
            "truth": str(truth_path),
            "command": _command_line(),
            "selection": results[cols[0]].selection,
            "results": {col: ev.to_dict() for col, ev in results.items()},
        }
        write_json_atomic(doc, json_out)
        click.echo(f"wrote {json_out}", err=True)
    if plots_dir is not None:
        from clusterfw.core.evaluation.plots import plot_all

        for p in plot_all(results, plots_dir):
            click.echo(f"wrote {p}", err=True)


@click.command()
@click.argument("catalogues", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--truth", "truths", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Truth catalogue: once for all catalogues, or once per catalogue in order.")
@_selection_options
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Calibration file to write (JSON).")
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
    from clusterfw.core.errors import ClusterfwError
    from clusterfw.core.evaluation.calibration import calibrate as make_calibration
    from clusterfw.core.evaluation.io import read_table
    from clusterfw.core.evaluation.matching import read_truth

    if len(truths) not in (1, len(catalogues)):
        raise ClusterfwError(f"give --truth once, or once per catalogue ({len(catalogues)})")
    truth_paths = list(truths) * len(catalogues) if len(truths) == 1 else list(truths)
    cache: dict[Path, object] = {}
    inputs = []
    for cat, tp in zip(catalogues, truth_paths, strict=True):
        if tp not in cache:
            cache[tp] = read_truth(tp, mass_col=mass_col)
        inputs.append((read_table(cat), cache[tp]))
    cal = make_calibration(
        inputs, labels=[(str(c), str(t)) for c, t in zip(catalogues, truth_paths, strict=True)],
        mass_min=mass_min, z_min=z_min, radius_arcmin=radius, duplicates=duplicates,
        command=_command_line(),
    )
    cal.save(out)
    for name, e in cal.finders.items():
        m = e["metrics"]
        click.echo(f"{name:<10} threshold {e['threshold']!s:<12.8} F1 {m['f1']:.3f} "
                   f"(purity {m['purity']:.3f}, completeness {m['completeness']:.3f})")
    for cname, entries in cal.combiners.items():
        for key, e in entries.items():
            m = e["metrics"]
            th = e.get("thresholds", e.get("threshold"))
            click.echo(f"{cname}[{key}] threshold {th} F1 {m['f1']:.3f} "
                       f"(purity {m['purity']:.3f}, completeness {m['completeness']:.3f})")
    click.echo(f"wrote {out}", err=True)
