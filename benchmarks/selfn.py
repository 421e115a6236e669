"""Selection-function benchmarks and acceptance experiments (``clusterfw selfn``).

Sub-commands (run from the repository root, clusterfw[sim] installed; every run in the
background on shared machines, e.g. ``nohup nice -n 10 python benchmarks/selfn.py accept ...``):

``accept``
    Simulates ``--skies`` flat skies with truth (``clusterfw simulate mm``), measures the injection
    selection function of a finder set on the first sky, runs the same finders on every sky, and
    compares the measured completeness of the true halos in (M500c, z) cells with the prediction
    (the selection function interpolated at each halo): ``chi2 = sum (k - sum p)^2 / (sum p(1-p)
    + (n sigma_c)^2)`` over cells, with its p-value.
``analytic``
    Analytic ``mf`` path against injection on one sky: |difference| in cells with completeness
    between 10 % and 90 %, and the analytic path's wall time.
``speed``
    Injections per second on a ``--size``² map (e.g. ``--size 10``: 100 deg²) and the time to
    reach ±``--target`` (1σ Wilson half-width) in every cell above 50 % completeness. With
    ``--measure-target`` the injection rounds run (``--precision`` = ``--target`` for every cell,
    the library's own stopping rule, at most ``--rounds``) and the round at which every cell
    above 50 % first reached the target is reported with its measured wall time, CPU time
    (process and children), injections per second and the load average; ``--state-dir`` keeps
    a checkpoint (a rerun resumes). Without it, the time is extrapolated from a few rounds and
    the binomial variance (n = p(1-p)/target² per cell).
``snr``
    Diagnostic of the analytic ``mf`` path on the injections of a checkpointed run
    (``--state-dir`` of an ``analytic``/``speed`` run on the same sky, one tile): each injected
    cluster's noise-free ζ from the analytic filter response of its θ500 and Y; the measured
    SNR of the recovered ones over √(ζ² + 3) in ζ bins, with the ratio the analytic path
    predicts (``predicted``: the cluster's own signal in a data-estimated covariance,
    :mod:`clusterfw.selection.selfpower`; 1 with the noise model), and the clusters missed at
    ζ ≥ 7 and ≥ 10 against the merging table's prediction (``--merge-positions``; the table
    of the analytic path, envelope footprints and own-signal ζ). ``--mf-noise model`` for runs
    made with ``-o mf.noise=model``.

Every sub-command prints a JSON document (and writes it with ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def simulate(workdir: Path, seed: int, size: float) -> Path:
    """A simulated sky (cached): ``clusterfw simulate mm --size SIZE --seed SEED``."""
    out = workdir / f"sky{seed}"
    if not (out / "truth_halos.parquet").exists():
        subprocess.run(
            [
                "clusterfw",
                "simulate",
                "mm",
                "--out",
                str(out),
                "--size",
                str(size),
                "--seed",
                str(seed),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def maps_of(sky: Path) -> list[Path]:
    """The band maps of a simulated sky."""
    return sorted(sky.glob("sim_*.fits"))


def request(args: argparse.Namespace, inputs: list[Path], out: Path, calibration=None):
    """The RunRequest of the finder set under test."""
    from clusterfw.core.runner import RunRequest

    return RunRequest(
        inputs=inputs,
        finders=list(args.finder),
        combiner=args.combine,
        out=out,
        calibration=calibration,
        tile_size_arcmin=args.tile_size,
        quiet=True,
    )


def calibration_file(args: argparse.Namespace, work: Path) -> Path:
    """The calibration selfn uses for the finder set (the shipped default), as a file."""
    from clusterfw.core.plugins import Registry
    from clusterfw.core.runner import instantiate
    from clusterfw.selection.api import resolve_calibration

    reg = Registry()
    finders = [instantiate(reg, "finder", n, {}) for n in args.finder]
    comb = instantiate(reg, "combiner", args.combine, {}) if args.combine else None
    cal, _ = resolve_calibration(None, finders, comb)
    path = work / f"calibration_{'+'.join(args.finder)}_{args.combine}.json"
    cal.save(path)
    return path


def measure_selfn(
    args: argparse.Namespace, inputs: list[Path], method: str = "injection", log=None
):
    """The selection function of the finder set on ``inputs``."""
    from clusterfw.selection.grid import parse_grid
    from clusterfw.selection.run import measure

    grid = parse_grid(args.mass_grid, args.z_grid)
    cal = None
    if getattr(args, "mf_threshold", None) is not None:
        cal = Path(args.workdir) / f"calibration_mf_{args.mf_threshold:g}.json"
        doc = json.loads(calibration_file(args, Path(args.workdir)).read_text())
        doc["finders"]["mf"]["threshold"] = args.mf_threshold
        cal.write_text(json.dumps(doc))
    return measure(
        request(args, inputs, Path("unused.parquet"), cal),
        method,
        grid,
        precision=args.precision,
        max_rounds=args.rounds,
        per_round=args.per_round,
        min_separation_arcmin=args.min_separation,
        edge_arcmin=args.edge,
        seed=args.seed,
        max_density=args.max_density,
        log=log or (lambda m: print(f"[selfn] {m}", file=sys.stderr, flush=True)),
        state_dir=Path(args.state_dir) if getattr(args, "state_dir", None) else None,
    )


def truth_completeness(args, skies, table, label: str) -> dict:
    """Measured vs predicted completeness of the true halos in the grid's cells."""
    import pyarrow.parquet as pq
    from astropy.io import fits
    from astropy.wcs import WCS
    from scipy import stats

    from clusterfw.core.catalog_io import read_catalogue
    from clusterfw.core.runner import execute_run
    from clusterfw.selection.api import interpolate_completeness
    from clusterfw.selection.grid import parse_grid
    from clusterfw.selection.inject import InjectionTarget, allowed_pixels
    from clusterfw.selection.injection import match_recovered
    from clusterfw.selection.table import overall

    grid = parse_grid(args.mass_grid, args.z_grid)
    t = overall(table)
    err_cell = np.asarray(t.column("completeness_err").to_numpy(zero_copy_only=False), float)
    k = np.zeros(grid.n_cells)
    p_sum = np.zeros(grid.n_cells)
    var = np.zeros(grid.n_cells)
    n = np.zeros(grid.n_cells)
    for sky in skies:
        cat_path = sky / f"{label}_calibrated.parquet"
        legacy = sky / f"{label}.parquet"  # an uncalibrated run of one finder: add is_cluster
        if not cat_path.exists() and legacy.exists() and len(args.finder) == 1:
            from clusterfw.core.catalog_io import write_catalogue
            from clusterfw.core.evaluation.calibration import load_calibration
            from clusterfw.core.pipeline import _apply_single_calibration

            cal = load_calibration(calibration_file(args, Path(args.workdir)))
            old = read_catalogue(legacy)
            if "is_cluster" not in old.column_names:
                finder = type("F", (), {"name": args.finder[0]})()
                write_catalogue(_apply_single_calibration(old, [finder], cal), cat_path)
        if not cat_path.exists():
            cal = calibration_file(args, Path(args.workdir))
            execute_run(request(args, maps_of(sky), cat_path, cal))
        cat = read_catalogue(cat_path)
        truth = pq.read_table(sky / "truth_halos.parquet").to_pydict()
        m, z = np.asarray(truth["m500c"]), np.asarray(truth["z"])
        ra, dec = np.asarray(truth["ra"]), np.asarray(truth["dec"])
        with fits.open(maps_of(sky)[0]) as hdul:
            data = hdul[0].data
            wcs = WCS(hdul[0].header).celestial
        target = InjectionTarget(wcs, data.shape, abs(wcs.wcs.cdelt[1]) * 60.0)
        target.valid = np.isfinite(data)
        allowed = allowed_pixels(target, args.edge)
        x, y = wcs.world_to_pixel_values(ra, dec)
        ix, iy = np.round(x).astype(int), np.round(y).astype(int)
        inside = (ix >= 0) & (iy >= 0) & (ix < data.shape[1]) & (iy < data.shape[0])
        ok = np.zeros(m.size, bool)
        ok[inside] = allowed[iy[inside], ix[inside]]
        cell = grid.cell_index(m, z)
        ok &= cell >= 0
        det, _ = match_recovered(cat, ra[ok], dec[ok], args.match_radius)
        p = interpolate_completeness(table, m[ok], z[ok])
        c = cell[ok]
        np.add.at(n, c, 1)
        np.add.at(k, c, det.astype(float))
        np.add.at(p_sum, c, p)
        np.add.at(var, c, p * (1 - p))
    var_tot = var + (n * np.nan_to_num(err_cell)) ** 2
    use = (n > 0) & (var_tot > 1e-6)
    chi2 = float(np.sum((k[use] - p_sum[use]) ** 2 / var_tot[use]))
    dof = int(use.sum())
    # the same with the binomial scatter alone (the selection function taken as exact)
    use_b = (n > 0) & (var > 1e-6)
    chi2_b = float(np.sum((k[use_b] - p_sum[use_b]) ** 2 / var[use_b]))
    dof_b = int(use_b.sum())
    nm, nz = grid.shape
    cells = []
    for i in range(grid.n_cells):
        im, iz = divmod(i, nz)
        cells.append(
            {
                "m500c": [float(grid.m_edges[im]), float(grid.m_edges[im + 1])],
                "z": [float(grid.z_edges[iz]), float(grid.z_edges[iz + 1])],
                "n_true": int(n[i]),
                "detected": int(k[i]),
                "predicted": round(float(p_sum[i]), 3),
                "sigma": round(float(math.sqrt(var_tot[i])), 3),
            }
        )
    return {
        "chi2": chi2,
        "dof": dof,
        "chi2_per_dof": chi2 / dof if dof else float("nan"),
        "p_value": float(stats.chi2.sf(chi2, dof)) if dof else float("nan"),
        "chi2_binomial_only": chi2_b,
        "dof_binomial_only": dof_b,
        "p_value_binomial_only": float(stats.chi2.sf(chi2_b, dof_b)) if dof_b else float("nan"),
        "cells": cells,
    }


def cmd_accept(args: argparse.Namespace) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    skies = [simulate(work, args.first_seed + i, args.size) for i in range(args.skies)]
    label = "+".join(args.finder) + (f"_{args.combine}" if args.combine else "")
    from clusterfw.selection.table import read_table, write_table

    saved = work / f"selfn_{label}.parquet"
    doc = {
        "experiment": "accept",
        "finder_set": label,
        "skies": [str(s) for s in skies],
        "selfn_sky": str(skies[0]),
        "size_deg": args.size,
    }
    if args.reuse and saved.exists():
        table = read_table(saved)
        doc["selfn_table"] = f"{saved} (reused)"
        doc.update(json.loads(table.schema.metadata[b"clusterfw.selfn_injections"]))
    else:
        t0 = time.perf_counter()
        res = measure_selfn(args, maps_of(skies[0]))
        table = res.table
        write_table(table, saved)
        doc.update(
            {
                "selfn_table": str(saved),
                "injected": res.injection.n,
                "rounds": res.injection.rounds,
                "selfn_seconds": round(time.perf_counter() - t0, 1),
                "injections_per_second": round(res.injection.n / res.injection.seconds, 3),
            }
        )
    doc.update(truth_completeness(args, skies, table, label))
    return doc


def cmd_analytic(args: argparse.Namespace) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sky = simulate(work, args.first_seed, args.size)
    args.finder, args.combine = ["mf"], None
    t0 = time.perf_counter()
    ana = measure_selfn(args, maps_of(sky), "analytic")
    t_ana = time.perf_counter() - t0
    inj = measure_selfn(args, maps_of(sky), "injection")
    from clusterfw.selection.table import overall, write_table

    write_table(ana.table, work / "selfn_mf_analytic.parquet")
    write_table(inj.table, work / "selfn_mf_injection.parquet")
    a = overall(ana.table).to_pydict()
    b = overall(inj.table).to_pydict()
    rows, diffs, pulls = [], [], []
    for i in range(len(a["completeness"])):
        ca, cb, eb = a["completeness"][i], b["completeness"][i], b["completeness_err"][i]
        rows.append(
            {
                "m500c": [a["m500c_lo"][i], a["m500c_hi"][i]],
                "z": [a["z_lo"][i], a["z_hi"][i]],
                "analytic": round(ca, 4),
                "injection": round(cb, 4),
                "injection_err": round(eb, 4),
                "n_injected": b["n_injected"][i],
            }
        )
        if 0.1 <= cb <= 0.9:
            diffs.append(abs(ca - cb))
            pulls.append((ca - cb) / max(eb, 1e-9))
    return {
        "experiment": "analytic",
        "sky": str(sky),
        "analytic_seconds": round(t_ana, 2),
        "injected": inj.injection.n,
        "cells_10_90": len(diffs),
        "max_abs_diff_10_90": max(diffs) if diffs else None,
        "mean_abs_diff_10_90": float(np.mean(diffs)) if diffs else None,
        "rms_pull_10_90": float(np.sqrt(np.mean(np.square(pulls)))) if pulls else None,
        "cells": rows,
    }


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def reached_target(cell, rec, n_cells: int, target: float) -> tuple[bool, int, float]:
    """Whether every cell whose completeness is >= 0.5 has a 1σ Wilson half-width <= target.

    Returns ``(reached, cells_above_50, worst_half_width)``; a grid without such a cell has not
    reached it.
    """
    from clusterfw.selection.grid import wilson_interval

    n = np.bincount(np.asarray(cell, np.int64), minlength=n_cells)
    k = np.bincount(np.asarray(cell, np.int64), weights=np.asarray(rec, float), minlength=n_cells)
    _, lo, hi = wilson_interval(k, n)
    frac = np.where(n > 0, k / np.maximum(n, 1), 0.0)
    above = (n > 0) & (frac >= 0.5)
    if not above.any():
        return False, 0, float("nan")
    half = (hi - lo)[above] / 2.0
    return bool(np.all(half <= target)), int(above.sum()), float(half.max())


def cmd_speed(args: argparse.Namespace) -> dict:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sky = simulate(work, args.first_seed, args.size)
    args.finder = args.finder or ["mf"]
    if args.measure_target:
        args.precision = args.target
    marks: list[dict] = []  # per round: wall, CPU and load average when its log line came
    w0, c0 = time.perf_counter(), _cpu_seconds()

    def log(msg: str) -> None:
        print(f"[selfn] {msg}", file=sys.stderr, flush=True)
        if msg.startswith("round "):
            marks.append(
                {
                    "round": int(msg.split()[1].rstrip(":")),
                    "wall_s": time.perf_counter() - w0,
                    "cpu_s": _cpu_seconds() - c0,
                    "load1": os.getloadavg()[0],
                }
            )

    res = measure_selfn(args, maps_of(sky), log=log)
    wall = time.perf_counter() - w0
    cpu = _cpu_seconds() - c0
    from clusterfw.selection.table import overall

    t = overall(res.table).to_pydict()
    inj = res.injection
    rate = inj.n / inj.seconds
    per_round = inj.n / max(inj.rounds, 1)
    sec_per_round = inj.seconds / max(inj.rounds, 1)
    doc = {
        "experiment": "speed",
        "sky": str(sky),
        "area_deg2": args.size**2,
        "cpu_count": os.cpu_count(),
        "finders": args.finder,
        "mass_grid": args.mass_grid,
        "z_grid": args.z_grid,
        "max_density": args.max_density,
        "injected": inj.n,
        "rounds": inj.rounds,
        "injections_per_round": round(per_round, 1),
        "seconds_per_round": round(sec_per_round, 2),
        "injections_per_second": round(rate, 3),
        "baseline_seconds": round(inj.baseline_seconds, 2),
        "target": args.target,
        "wall_seconds_this_process": round(wall, 1),
        "cpu_seconds_this_process": round(cpu, 1),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cells": [
            {
                "m500c": [t["m500c_lo"][i], t["m500c_hi"][i]],
                "z": [t["z_lo"][i], t["z_hi"][i]],
                "completeness": t["completeness"][i],
                "err": t["completeness_err"][i],
                "n": t["n_injected"][i],
            }
            for i in range(len(t["completeness"]))
        ],
    }
    if marks:
        doc["load1_per_round"] = {
            "min": round(min(m["load1"] for m in marks), 2),
            "median": round(float(np.median([m["load1"] for m in marks])), 2),
            "max": round(max(m["load1"] for m in marks), 2),
        }
    if args.measure_target:
        cols = inj.columns
        n_cells = len(t["completeness"])
        first = None
        for r in range(1, inj.rounds + 1):
            sel = cols["round"] <= r
            ok, n_above, worst = reached_target(
                cols["cell"][sel], cols["recovered"][sel], n_cells, args.target
            )
            if ok:
                first = {
                    "round": r,
                    "injected": int(sel.sum()),
                    "cells_above_50": n_above,
                    "worst_half_width": round(worst, 4),
                }
                break
        doc["target_reached"] = first
        if first is not None:
            mark = next((m for m in marks if m["round"] == first["round"]), None)
            if mark is not None:  # the rounds of this process (not of a resumed checkpoint)
                doc["target_reached"].update(
                    {
                        "wall_seconds_incl_baseline": round(mark["wall_s"], 1),
                        "cpu_seconds_incl_baseline": round(mark["cpu_s"], 1),
                    }
                )
        ok, n_above, worst = reached_target(cols["cell"], cols["recovered"], n_cells, args.target)
        doc["end"] = {"reached": ok, "cells_above_50": n_above, "worst_half_width": worst}
        doc["rounds_log"] = [
            {k: (round(v, 2) if isinstance(v, float) else v) for k, v in m.items()} for m in marks
        ]
    else:
        needed = []
        for c in t["completeness"]:
            if c is not None and np.isfinite(c) and c >= 0.5:
                needed.append(max(c * (1 - c), 0.0) / args.target**2)
        n_cells = len(t["completeness"])
        # every cell gets the injections of the neediest cell above 50 % (rounds spread evenly)
        n_total = (max(needed) if needed else 0.0) * n_cells
        rounds = math.ceil(n_total / per_round) if per_round else 0
        doc.update(
            {
                "cells_above_50": len(needed),
                "injections_to_target_extrapolated": int(n_total),
                "rounds_to_target_extrapolated": rounds,
                "hours_to_target_extrapolated": round(rounds * sec_per_round / 3600.0, 3),
            }
        )
    return doc


def cmd_snr(args: argparse.Namespace) -> dict:
    from clusterfw.core.runner import RunRequest
    from clusterfw.selection import analytic as an
    from clusterfw.selection.api import prepare
    from clusterfw.sim import sz

    if not args.state_dir:
        raise SystemExit("snr: give --state-dir (the checkpoint of an injection run)")
    state = json.loads((Path(args.state_dir) / "selfn_state.json").read_text())
    c = {
        k: np.asarray([np.nan if v is None else v for v in vals], float)
        for k, vals in state["columns"].items()
    }
    sky = simulate(Path(args.workdir), args.first_seed, args.size)
    opts = {"mf": {"noise": args.mf_noise}}
    prep = prepare(
        RunRequest(
            inputs=maps_of(sky),
            finders=["mf"],
            options=opts,
            tile_size_arcmin=args.tile_size,
            quiet=True,
        )
    )
    views = an._tile_views(prep)
    if len(views) != 1:
        raise SystemExit("snr: the sky must be one tile (raise --tile-size)")
    job, tile = views[0] if isinstance(views[0], tuple) else (views[0], views[0])
    finder = prep.finders[0]
    res = finder.filter_tile(tile)
    k, counts, q, q_ksz = an.tile_noise_weights(finder, tile)
    sigma = np.asarray(res.sigma_y, float)
    theta = c["theta500_arcmin"]
    per_y = an.snr_per_y(finder, sigma, k, counts, q, theta, q_ksz, an.Blending.RADII)[0]
    prof = sz.projected_profile(5.0)
    zeta = per_y * c["y500"] * prof.i_rmax / prof.i1
    threshold = args.mf_threshold if args.mf_threshold is not None else 7.1
    rec = c["recovered"] > 0.5
    pred = np.sqrt(zeta**2 + 3.0)
    # the cluster's own signal in the data-estimated covariance (clusterfw.selection.selfpower)
    from clusterfw.selection.selfpower import table_for_tile

    factor = np.ones_like(zeta)
    table = table_for_tile(finder, tile, k, counts, q)
    if table is not None:
        factor = table.factor(zeta[:, None], theta)[:, 0]
    zeta_eff = zeta * factor
    doc: dict = {
        "experiment": "snr",
        "sky": str(sky),
        "n": int(rec.size),
        "recovered": int(rec.sum()),
    }
    for lo, hi in ((7, 10), (10, 15), (15, 25), (25, 1e9), (10, 1e9)):
        sel = rec & (zeta >= lo) & (zeta < hi)
        r = c["score"][sel] / pred[sel]
        doc[f"ratio_zeta_{lo}_{hi:g}"] = {
            "n": int(sel.sum()),
            "mean": round(float(np.mean(r)), 4) if sel.any() else None,
            "sem": round(float(np.std(r) / np.sqrt(sel.sum())), 4) if sel.any() else None,
            "predicted": (
                round(float(np.mean(np.sqrt(zeta_eff[sel] ** 2 + 3.0) / pred[sel])), 4)
                if sel.any()
                else None
            ),
        }
    merge = an.tile_merge_table(
        finder,
        tile,
        res,
        (sigma, k, counts, q),
        threshold,
        args.match_radius,
        n_pos=args.merge_positions,
    )
    lost = merge.lost(zeta_eff[:, None], theta)[:, 0]
    p_det = an.completeness_from_snr(zeta_eff, threshold, 3.0) * (1.0 - lost)
    for lo in (7.0, 10.0):
        sel = zeta >= lo
        doc[f"zeta_ge_{lo:g}"] = {
            "n": int(sel.sum()),
            "missed": int((~rec[sel]).sum()),
            "predicted_missed_merging": round(float(lost[sel].sum()), 1),
            "predicted_missed": round(float((1.0 - p_det[sel]).sum()), 1),
        }
    doc["all"] = {
        "missed": int((~rec).sum()),
        "predicted_missed": round(float((1 - p_det).sum()), 1),
    }
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["accept", "analytic", "speed", "snr"])
    p.add_argument("--workdir", default="scratch/selfn_bench")
    p.add_argument("--finder", action="append", default=[])
    p.add_argument("--combine", default=None)
    p.add_argument("--skies", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=7001)
    p.add_argument("--size", type=float, default=1.0)
    p.add_argument("--tile-size", type=float, default=240.0)
    p.add_argument("--mass-grid", default="1e14:8e14:3")
    p.add_argument("--z-grid", default="0.1:1.1:2")
    p.add_argument("--precision", type=float, default=0.05)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--per-round", type=int, default=100)
    p.add_argument("--min-separation", type=float, default=10.0)
    p.add_argument("--edge", type=float, default=10.0)
    p.add_argument("--max-density", type=float, default=1.0)
    p.add_argument("--match-radius", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, default=0.02)
    p.add_argument(
        "--mf-threshold",
        type=float,
        default=None,
        help="fix the mf threshold (the shipped default calibration's, with this threshold)",
    )
    p.add_argument(
        "--measure-target",
        action="store_true",
        help="speed: inject until every cell reaches --target (measured, not extrapolated)",
    )
    p.add_argument("--state-dir", default=None, help="checkpoint folder of the injection rounds")
    p.add_argument("--mf-noise", default="data", choices=["data", "model"], help="snr: mf noise")
    p.add_argument("--merge-positions", type=int, default=300, help="snr: merging positions")
    p.add_argument("--json", default=None)
    p.add_argument("--reuse", action="store_true", help="reuse a saved selfn table (accept)")
    args = p.parse_args(argv)
    if args.what == "accept" and not args.finder:
        args.finder = ["mf"]
    commands = {"accept": cmd_accept, "analytic": cmd_analytic, "speed": cmd_speed, "snr": cmd_snr}
    doc = commands[args.what](args)
    text = json.dumps(doc, indent=1, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
