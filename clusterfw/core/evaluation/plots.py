"""PNG figures of evaluations (matplotlib, Agg backend; imported lazily).

Every function takes one or more :class:`~clusterfw.core.evaluation.metrics.Evaluation` objects
keyed by a label (e.g. ``{"mf": ev_mf, "rankprod": ev_rp}``) and writes one PNG atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clusterfw.core.evaluation.metrics import Evaluation


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    from clusterfw.core.atomic import write_atomic

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    out = write_atomic(path, write)
    _plt().close(fig)
    return out


def plot_f1_vs_threshold(evals: Mapping[str, Evaluation], path: str | os.PathLike[str]) -> Path:
    """F1, purity and completeness against the threshold, one panel per evaluation (DeepSZ
    Fig. 5), with the F1-best threshold marked and the score histogram behind."""
    plt = _plt()
    n = len(evals)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.6), squeeze=False)
    for ax, (label, ev) in zip(axes[0], evals.items(), strict=True):
        c = ev.curve
        if c.threshold.size:
            ax.plot(c.threshold, c.f1, color="k", lw=2, label="F1")
            ax.plot(c.threshold, c.purity, color="tab:blue", lw=1, label="purity")
            ax.plot(c.threshold, c.completeness, color="tab:orange", lw=1, label="completeness")
            ax.axvline(
                ev.best_threshold,
                color="tab:red",
                ls="--",
                label=f"best {ev.best_threshold:.3g} (F1 {ev.best.f1:.2f})",
            )
            if ev.threshold_source == "given":
                ax.axvline(
                    ev.threshold, color="tab:green", ls=":", label=f"given {ev.threshold:.3g}"
                )
            ax2 = ax.twinx()
            ax2.hist(c.threshold, bins=40, color="0.85", zorder=0)
            ax2.set_yticks([])
            ax.set_zorder(ax2.get_zorder() + 1)
            ax.patch.set_visible(False)
            if c.threshold.min() > 0 and c.threshold.max() / c.threshold.min() > 20:
                ax.set_xscale("log")  # SNR-like scores with a long tail
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"threshold on {ev.score_column}")
        ax.set_title(label)
        ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel("metric")
    fig.tight_layout()
    return _save(fig, path)


def plot_completeness(evals: Mapping[str, Evaluation], path: str | os.PathLike[str]) -> Path:
    """Completeness against mass (true-cluster redshift cut and all redshifts) and against
    redshift (true-cluster mass cut), at each evaluation's threshold (DeepSZ Fig. 10)."""
    plt = _plt()
    fig, (ax_m, ax_z) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, (label, ev) in enumerate(evals.items()):
        color = f"C{k}"
        for b, ls, suffix in (
            (ev.completeness_vs_mass, "-", ""),
            (ev.completeness_vs_mass_all_z, ":", " (all z)"),
        ):
            mid = np.sqrt(b.edges[1:] * b.edges[:-1])
            ax_m.errorbar(
                mid,
                b.fraction,
                yerr=b.error,
                color=color,
                ls=ls,
                marker="o",
                ms=3,
                capsize=2,
                label=f"{label}{suffix}",
            )
        b = ev.completeness_vs_z
        mid = 0.5 * (b.edges[1:] + b.edges[:-1])
        ax_z.errorbar(
            mid, b.fraction, yerr=b.error, color=color, marker="o", ms=3, capsize=2, label=label
        )
    any_ev = next(iter(evals.values()))
    sel = any_ev.selection
    ax_m.axvline(sel["mass_min"], color="0.5", ls="--")
    ax_m.set_xscale("log")
    ax_m.set_xlabel(f"{sel['mass_col']} [Msun]")
    ax_m.set_ylabel("completeness")
    ax_m.set_title(f"z >= {sel['z_min']:g} (solid), all z (dotted)")
    ax_z.set_xlabel("redshift")
    ax_z.set_title(f"{sel['mass_col']} >= {sel['mass_min']:.3g}")
    for ax in (ax_m, ax_z):
        ax.set_ylim(-0.02, 1.05)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_purity_vs_score(evals: Mapping[str, Evaluation], path: str | os.PathLike[str]) -> Path:
    """Differential purity in score bins and cumulative purity above each threshold."""
    plt = _plt()
    n = len(evals)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.4), squeeze=False)
    for ax, (label, ev) in zip(axes[0], evals.items(), strict=True):
        b = ev.purity_vs_score
        mid = 0.5 * (b.edges[1:] + b.edges[:-1])
        ax.errorbar(mid, b.fraction, yerr=b.error, marker="o", ms=3, capsize=2, label="in bin")
        ax.plot(ev.curve.threshold, ev.curve.purity, color="k", lw=1, label="above threshold")
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel(ev.score_column)
        ax.set_title(label)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("purity")
    fig.tight_layout()
    return _save(fig, path)


def plot_mass_redshift(
    evals: Mapping[str, Evaluation],
    path: str | os.PathLike[str],
    n_z: int = 12,
    n_m: int = 10,
    min_count: int = 3,
) -> Path:
    """Fraction of halos detected in the mass-redshift plane, one panel per evaluation (DeepSZ
    Fig. 12); cells with fewer than ``min_count`` halos are left blank, the true-cluster cuts
    are dashed."""
    plt = _plt()
    n = len(evals)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n + 0.8, 3.8), squeeze=False)
    first = next(iter(evals.values()))
    sel = first.selection
    m = first.halo_mass
    lo = sel["mass_min"] / 4.0
    z_edges = np.linspace(0.0, float(np.nanmax(first.halo_z)) * 1.0001, n_z + 1)
    m_edges = np.geomspace(lo, max(float(np.nanmax(m)) * 1.0001, lo * 10), n_m + 1)
    im = None
    for ax, (label, ev) in zip(axes[0], evals.items(), strict=True):
        tot, _, _ = np.histogram2d(ev.halo_z, ev.halo_mass, bins=[z_edges, m_edges])
        det, _, _ = np.histogram2d(
            ev.halo_z[ev.halo_detected], ev.halo_mass[ev.halo_detected], bins=[z_edges, m_edges]
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(tot >= min_count, det / np.maximum(tot, 1), np.nan)
        im = ax.pcolormesh(z_edges, m_edges, frac.T, cmap="Greens", vmin=0, vmax=1)
        ax.set_yscale("log")
        ax.axhline(sel["mass_min"], color="k", ls="--", lw=1)
        ax.axvline(sel["z_min"], color="k", ls=":", lw=1)
        ax.set_xlabel("redshift")
        ax.set_title(f"{label} (threshold {ev.threshold:.3g})", fontsize=9)
    axes[0][0].set_ylabel(f"{sel['mass_col']} [Msun]")
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), label="fraction detected", fraction=0.03)
    return _save(fig, path)


def plot_all(
    evals: Mapping[str, Evaluation], directory: str | os.PathLike[str], prefix: str = "eval_"
) -> list[Path]:
    """Write the four figures into ``directory``: ``<prefix>f1.png``, ``<prefix>completeness.png``,
    ``<prefix>purity.png``, ``<prefix>mass_z.png``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    return [
        plot_f1_vs_threshold(evals, d / f"{prefix}f1.png"),
        plot_completeness(evals, d / f"{prefix}completeness.png"),
        plot_purity_vs_score(evals, d / f"{prefix}purity.png"),
        plot_mass_redshift(evals, d / f"{prefix}mass_z.png"),
    ]
