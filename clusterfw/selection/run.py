"""The whole of ``clusterfw selfn``: measure a selection function and write its outputs."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import ClusterfwError
from clusterfw.core.plugins import Registry
from clusterfw.core.runner import RunRequest
from clusterfw.selection.api import (
    PreparedRun,
    injection_table,
    prepare,
    request_runner,
    resolve_calibration,
    run_provenance,
    selection_radius,
)
from clusterfw.selection.grid import MassRedshiftGrid
from clusterfw.selection.injection import (
    InjectionResult,
    InjectionSettings,
    RunCatalogue,
    run_injection,
)
from clusterfw.selection.model import ScalingModel
from clusterfw.selection.table import overall


@dataclass
class SelfnResult:
    """A measured selection function.

    Attributes
    ----------
    table : pyarrow.Table
        The completeness table (:mod:`clusterfw.selection.table`).
    prepared : PreparedRun
    method : str
    injection : InjectionResult or None
    seconds : float
        Wall time of the measurement.
    """

    table: pa.Table
    prepared: PreparedRun
    method: str
    injection: InjectionResult | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Lines for the terminal: the whole-map completeness per cell."""
        t = overall(self.table)
        lines = []
        if self.injection is not None:
            inj = self.injection
            rate = inj.n / inj.seconds if inj.seconds > 0 else float("nan")
            lines.append(
                f"{inj.n} clusters injected in {inj.rounds} rounds ({rate:.2f} per second), "
                f"{int(inj.columns['recovered'].sum())} recovered"
            )
        else:
            lines.append(f"analytic selection function in {self.seconds:.1f} s")
        lines.append(f"{'M500c range [Msun]':<22}{'z range':<12}{'completeness':>14}{'n':>6}")
        for row in t.to_pylist():
            c = row["completeness"]
            e = row["completeness_err"]
            text = "     -" if c is None or not np.isfinite(c) else f"{c:.3f} ± {e:.3f}"
            lines.append(
                f"{row['m500c_lo']:.2e}-{row['m500c_hi']:.2e}  "
                f"{row['z_lo']:.2f}-{row['z_hi']:.2f}  {text:>16}{row['n_injected']:>6}"
            )
        return "\n".join(lines)


def measure(
    request: RunRequest,
    method: str,
    grid: MassRedshiftGrid,
    model: ScalingModel | None = None,
    run_catalogue: RunCatalogue | None = None,
    registry: Registry | None = None,
    precision: float = 0.05,
    max_rounds: int = 20,
    per_round: int = 100,
    min_per_cell: int = 10,
    min_separation_arcmin: float = 10.0,
    edge_arcmin: float = 10.0,
    match_radius_arcmin: float | None = None,
    seed: int = 0,
    max_density: float = 1.0,
    opt_bias_dof: float = 3.0,
    per_tile: bool = True,
    log: Callable[[str], None] | None = None,
    state_dir: Path | None = None,
    run_key: str = "",
) -> SelfnResult:
    """Measure the selection function of ``request`` (see ``clusterfw selfn --help``).

    Parameters
    ----------
    request : RunRequest
        The run whose catalogue the selection function describes.
    method : {"injection", "analytic"}
    grid : MassRedshiftGrid
    model : ScalingModel, optional
        Injected clusters' scaling relation (default: the simulator's).
    run_catalogue : callable, optional
        One run on other inputs; default :func:`~clusterfw.selection.api.request_runner`.
    state_dir : Path, optional
        Checkpoint folder of the injection rounds (a rerun resumes; see
        :func:`~clusterfw.selection.injection.run_injection`).
    run_key : str
        The run's options as text (part of the checkpoint's key).

    Returns
    -------
    SelfnResult
    """
    import time

    t0 = time.perf_counter()
    model = model or ScalingModel()
    registry = registry or Registry()
    if method not in ("injection", "analytic"):
        raise ClusterfwError(f"--method: unknown method {method!r}")
    if method == "analytic" and (request.finders != ["mf"] or request.combiner):
        raise ClusterfwError(
            f"--method analytic: the analytic path is for the mf finder alone, not "
            f"{'+'.join(request.finders)}"
            f"{' with ' + request.combiner if request.combiner else ''} (use --method injection)"
        )
    if request.calibration is not None:  # a file without the threshold: refused before any work
        from types import SimpleNamespace

        resolve_calibration(
            request.calibration,
            [SimpleNamespace(name=n) for n in request.finders],
            SimpleNamespace(name=request.combiner) if request.combiner else None,
        )
    prepared = prepare(request, registry)
    cal, label = resolve_calibration(request.calibration, prepared.finders, prepared.combiner)
    radius = match_radius_arcmin or selection_radius(cal)
    settings = InjectionSettings(
        grid=grid,
        model=model,
        precision=precision,
        max_rounds=max_rounds,
        per_round=per_round,
        min_per_cell=min_per_cell,
        min_separation_arcmin=min_separation_arcmin,
        edge_arcmin=edge_arcmin,
        match_radius_arcmin=radius,
        seed=seed,
        max_density=max_density,
    )
    if method == "analytic":
        from clusterfw.selection.analytic import analytic_selection

        threshold = float(cal.threshold("mf"))
        table = analytic_selection(
            prepared,
            grid,
            model,
            threshold,
            opt_bias_dof=opt_bias_dof,
            per_tile=per_tile,
            edge_arcmin=edge_arcmin,
            provenance=run_provenance(
                prepared,
                "analytic",
                settings,
                {
                    "selfn_threshold": threshold,
                    "selfn_calibration": label,
                    "selfn_opt_bias_dof": opt_bias_dof,
                },
            ),
        )
        return SelfnResult(table, prepared, "analytic", None, time.perf_counter() - t0)
    from clusterfw.selection.inject import build_target

    target = build_target(prepared.sky, prepared.finders, prepared.finder_layers)
    runner = run_catalogue or request_runner(request, registry)
    with tempfile.TemporaryDirectory(prefix="clusterfw-selfn-") as tmp:
        cal_path = request.calibration
        if cal_path is None:
            cal_path = Path(tmp) / "calibration.json"
            cal.save(cal_path)
        result = run_injection(
            prepared.inputs,
            target,
            prepared.tiles,
            runner,
            settings,
            calibration=cal_path,
            calibration_label=label,
            log=log,
            workdir=Path(tmp),
            state_dir=state_dir,
            run_key=run_key
            or repr((request.finders, request.combiner, request.options, request.overrides)),
        )
    prov = run_provenance(
        prepared,
        "injection",
        settings,
        {
            "selfn_calibration": label,
            "selfn_settings": {
                "precision": precision,
                "max_rounds": max_rounds,
                "per_round": per_round,
                "min_per_cell": min_per_cell,
                "min_separation_arcmin": min_separation_arcmin,
                "edge_arcmin": edge_arcmin,
                "match_radius_arcmin": radius,
                "seed": seed,
                "max_density_per_deg2": max_density,
            },
            "selfn_injections": {
                "n": result.n,
                "rounds": result.rounds,
                "seconds": round(result.seconds, 3),
                "baseline_detections": result.baseline_detections,
            },
        },
    )
    table = injection_table(result, prov, per_tile)
    return SelfnResult(table, prepared, "injection", result, time.perf_counter() - t0)


@dataclass
class SelfnOutputs:
    """Where the results go (None: not written)."""

    table: Path
    mass_limit_map: Path | None = None
    limit_completeness: float = 0.9
    limit_z: float = 0.5
    injections: Path | None = None
    plots_dir: Path | None = None

    def write(self, result: SelfnResult) -> list[Path]:
        """Write every requested output atomically; the paths written."""
        from clusterfw.selection.table import write_table

        written = [write_table(result.table, self.table)]
        if self.injections is not None and result.injection is not None:
            from clusterfw.core.catalog_io import write_table_atomic

            log = result.injection.injections_table()
            log = log.replace_schema_metadata(result.table.schema.metadata)
            written.append(write_table_atomic(log, self.injections))
        if self.mass_limit_map is not None:
            from clusterfw.selection.outputs import write_mass_limit_map

            written.append(
                write_mass_limit_map(
                    result, self.mass_limit_map, self.limit_completeness, self.limit_z
                )
            )
        if self.plots_dir is not None:
            from clusterfw.selection.outputs import plot_selection

            written.extend(plot_selection(result.table, self.plots_dir, self.limit_completeness))
        return written
