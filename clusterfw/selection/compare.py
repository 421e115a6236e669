"""A selection function against a catalogue's measured completeness (``evaluate --selfn``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import stats

from clusterfw.core.errors import InputError
from clusterfw.selection.api import interpolate_completeness
from clusterfw.selection.outputs import _cells
from clusterfw.selection.table import overall


def compare_cells(
    selfn: pa.Table, m500c: np.ndarray, z: np.ndarray, detected: np.ndarray
) -> dict[str, Any]:
    """Measured vs predicted completeness of true halos in the selection function's cells.

    Each halo's predicted probability is the selection function interpolated at its (M500c, z)
    (:func:`~clusterfw.selection.api.interpolate_completeness`). Per cell: ``n`` halos, ``k``
    detected, ``Σp`` expected, variance ``Σp(1−p) + (n σ_cell)²`` (binomial scatter plus the
    selection function's own error), and ``χ² = Σ (k − Σp)² / var`` over cells with variance.

    Returns
    -------
    dict
        ``cells`` (list of per-cell dicts), ``chi2``, ``dof``, ``chi2_per_dof``, ``p_value``.
    """
    whole = overall(selfn)
    m_edges, z_edges, _, err, _ = _cells(whole)
    m500c = np.asarray(m500c, float)
    z = np.asarray(z, float)
    detected = np.asarray(detected, bool)
    im = np.searchsorted(m_edges, m500c, side="right") - 1
    iz = np.searchsorted(z_edges, z, side="right") - 1
    nm, nz = m_edges.size - 1, z_edges.size - 1
    ok = (im >= 0) & (im < nm) & (iz >= 0) & (iz < nz)
    p = interpolate_completeness(selfn, m500c[ok], z[ok])
    good = np.isfinite(p)
    cell = (im * nz + iz)[ok][good]
    p = p[good]
    det = detected[ok][good]
    n = np.bincount(cell, minlength=nm * nz).astype(float)
    k = np.bincount(cell, weights=det.astype(float), minlength=nm * nz)
    psum = np.bincount(cell, weights=p, minlength=nm * nz)
    var = np.bincount(cell, weights=p * (1 - p), minlength=nm * nz)
    var = var + (n * np.nan_to_num(err.ravel())) ** 2
    use = (n > 0) & (var > 1e-9)
    chi2 = float(np.sum((k[use] - psum[use]) ** 2 / var[use]))
    dof = int(use.sum())
    cells = []
    for i in range(nm * nz):
        a, b = divmod(i, nz)
        cells.append(
            {
                "m500c_lo": float(m_edges[a]),
                "m500c_hi": float(m_edges[a + 1]),
                "z_lo": float(z_edges[b]),
                "z_hi": float(z_edges[b + 1]),
                "n_true": int(n[i]),
                "detected": int(k[i]),
                "predicted": float(psum[i]),
                "sigma": float(math.sqrt(var[i])),
            }
        )
    return {
        "cells": cells,
        "chi2": chi2,
        "dof": dof,
        "chi2_per_dof": chi2 / dof if dof else float("nan"),
        "p_value": float(stats.chi2.sf(chi2, dof)) if dof else float("nan"),
    }


def truth_m500c(truth: Any, path: Path) -> np.ndarray:
    """The truth catalogue's ``m500c`` column (the selection function's mass).

    Raises
    ------
    InputError
        When the truth catalogue has no ``m500c`` column.
    """
    cols = getattr(truth, "columns", {}) or {}
    if "m500c" in cols:
        return np.asarray(cols["m500c"], dtype=float)
    if getattr(truth, "mass_col", None) == "m500c":
        return np.asarray(truth.mass, dtype=float)
    raise InputError(str(path), "no m500c column: the selection function's mass is M500c")


def report_lines(doc: dict[str, Any], label: str) -> list[str]:
    """Terminal lines of :func:`compare_cells`."""
    lines = [
        f"selection function {label}: chi2/dof = {doc['chi2']:.2f}/{doc['dof']} "
        f"(p = {doc['p_value']:.3g}) over cells with halos",
        f"{'M500c range [Msun]':<22}{'z range':<12}{'true':>6}{'found':>7}{'predicted':>11}",
    ]
    for c in doc["cells"]:
        if c["n_true"]:
            lines.append(
                f"{c['m500c_lo']:.2e}-{c['m500c_hi']:.2e}  {c['z_lo']:.2f}-{c['z_hi']:.2f}  "
                f"{c['n_true']:>6}{c['detected']:>7}{c['predicted']:>8.1f} ± {c['sigma']:.1f}"
            )
    return lines


def plot_selfn_vs_measured(selfn: pa.Table, doc: dict[str, Any], path: Path) -> Path:
    """Completeness against M500c per redshift cell: the selection function (lines, 1σ band)
    and the catalogue's measured completeness of true halos (points, binomial errors)."""
    from clusterfw.selection.outputs import _plt, _save

    plt = _plt()
    m_edges, z_edges, comp, err, _ = _cells(overall(selfn))
    mc = np.sqrt(m_edges[1:] * m_edges[:-1])
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    nz = z_edges.size - 1
    for iz in range(nz):
        color = f"C{iz}"
        ax.plot(
            mc, comp[:, iz], color=color, label=f"selfn {z_edges[iz]:.2f}-{z_edges[iz + 1]:.2f}"
        )
        ax.fill_between(
            mc, comp[:, iz] - err[:, iz], comp[:, iz] + err[:, iz], color=color, alpha=0.2
        )
        cells = [c for c in doc["cells"] if c["z_lo"] == z_edges[iz] and c["n_true"]]
        if cells:
            x = np.array([math.sqrt(c["m500c_lo"] * c["m500c_hi"]) for c in cells])
            n = np.array([c["n_true"] for c in cells], float)
            f = np.array([c["detected"] for c in cells]) / n
            e = np.sqrt(np.maximum(f * (1 - f), 1.0 / n) / n)
            ax.errorbar(
                x * 1.03,
                f,
                yerr=e,
                color=color,
                ls="none",
                marker="s",
                ms=4,
                capsize=2,
                label=f"measured {z_edges[iz]:.2f}-{z_edges[iz + 1]:.2f}",
            )
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("M500c [Msun]")
    ax.set_ylabel("completeness")
    ax.set_title(f"chi2/dof = {doc['chi2']:.1f}/{doc['dof']}, p = {doc['p_value']:.2g}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def evaluate_selfn(
    selfn_path: Path,
    table: pa.Table,
    truth: Any,
    truth_path: Path,
    radius_arcmin: float,
    evaluation: Any,
    plots_dir: Path | None,
) -> dict[str, Any]:
    """What ``clusterfw evaluate --selfn FILE`` adds: the comparison lines and figure.

    A true halo counts as detected when a row with ``is_cluster`` true lies within the matching
    radius (the decision the selection function describes); a catalogue without ``is_cluster``
    decisions uses the evaluation's threshold on its first score column.
    """
    import click

    from clusterfw.selection.injection import match_recovered
    from clusterfw.selection.table import read_table

    selfn = read_table(Path(selfn_path))
    m500c = truth_m500c(truth, truth_path)
    decided = "is_cluster" in table.column_names and table.column("is_cluster").null_count < (
        table.num_rows
    )
    if decided:
        detected, _ = match_recovered(table, truth.ra, truth.dec, radius_arcmin)
        how = "is_cluster"
    else:
        detected = np.asarray(evaluation.halo_detected, bool)
        how = f"{evaluation.score_column} >= {evaluation.threshold:.4g}"
    doc = compare_cells(selfn, m500c, truth.z, detected)
    for line in report_lines(doc, f"{selfn_path} vs detections ({how})"):
        click.echo(line)
    if plots_dir is not None:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        out = plot_selfn_vs_measured(selfn, doc, Path(plots_dir) / "eval_selfn.png")
        click.echo(f"wrote {out}", err=True)
    return doc
