"""Estimated vs true mass of a ``clusterfw train vgg_mass`` run (its ``predictions.csv``).

Usage::

    python benchmarks/vgg_mass_figures.py RUN_DIR [--other RUN_DIR2] [--split test]
        [--out docs/img/vgg_mass.png]

Left: the network's M500c and the Y–M inversion's against the true M500c of the held-out
clusters of one split. Right: ln(M_est / M_true) against the true mass, with the running median
and 16–84 % band of both, and the ± floor the simulator's Y–M scatter sets (read from the run's
``metrics.json``: the std of (ln Y500 − ln Y(M,z))/B of the split's clusters). ``--other``: a
second run (e.g. the multi-channel network) drawn on the same axes.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--other", type=Path, default=None, help="a second run to overlay")
    ap.add_argument("--out", type=Path, default=Path("docs/img/vgg_mass.png"))
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def load(run: Path) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, str]:
        rows = [
            r for r in csv.DictReader((run / "predictions.csv").open()) if r["split"] == a.split
        ]
        net = json.loads((run / "metrics.json").read_text())["network"]
        return (
            rows,
            np.array([float(r["m500c_true"]) for r in rows]),
            np.array([float(r["m500c_cnn"]) for r in rows]),
            np.array([float(r["m500c_ysz"]) for r in rows]),
            "vgg_mass " + ",".join(net["channels"]),
        )

    rows, m, cnn, ysz, name = load(a.run)
    metrics = json.loads((a.run / "metrics.json").read_text())
    floor = float(metrics["evaluation"][a.split].get("ym_scatter_floor", 0.2 / 1.78))
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.3))
    ax[0].loglog(m, ysz, ".", ms=3, color="0.6", label="Y–M inversion")
    ax[0].loglog(m, cnn, ".", ms=3, color="C0", label=name)
    curves = [(ysz, m, "0.5", "Y–M inversion"), (cnn, m, "C0", name)]
    if a.other is not None:
        _, m2, cnn2, _, name2 = load(a.other)
        ax[0].loglog(m2, cnn2, ".", ms=2, color="C1", alpha=0.6, label=name2)
        curves.append((cnn2, m2, "C1", name2))
    ax[0].plot([5e13, 1.6e15], [5e13, 1.6e15], "k-", lw=0.8)
    ax[0].set(xlabel="true M500c [Msun]", ylabel="estimated M500c [Msun]", ylim=(2e13, 4e15))
    ax[0].legend(loc="upper left")
    lo_m = min(float(np.log10(mt.min())) for _, mt, _, _ in curves)
    hi_m = max(float(np.log10(mt.max())) for _, mt, _, _ in curves)
    edges = np.linspace(lo_m, hi_m + 1e-9, 11)
    mid = 0.5 * (edges[1:] + edges[:-1])
    rng = np.random.default_rng(0)
    for est, mt, col, _ in curves:  # points first (at most 3000 per set), the medians on top
        show = rng.permutation(mt.size)[:3000]
        ax[1].plot(
            np.log10(mt[show]), np.log(est[show] / mt[show]), ".", ms=2, color=col, alpha=0.3
        )
    for est, mt, col, lab in curves:
        r = np.log(est / mt)
        q = np.array(
            [
                np.nanpercentile(r[(np.log10(mt) >= lo) & (np.log10(mt) < hi)], [16, 50, 84])
                for lo, hi in zip(edges[:-1], edges[1:], strict=True)
            ]
        )
        ax[1].plot(mid, q[:, 1], "-", color=col, lw=2.5, zorder=5, label=f"{lab}: median, 16–84 %")
        ax[1].plot(mid, q[:, 0], "--", color=col, lw=1.2, zorder=5)
        ax[1].plot(mid, q[:, 2], "--", color=col, lw=1.2, zorder=5)
    ax[1].axhspan(-floor, floor, color="C3", alpha=0.1, label=f"±{floor:.3f} (Y–M scatter floor)")
    ax[1].axhline(0, color="k", lw=0.8)
    ax[1].set(xlabel="log10 true M500c", ylabel="ln(M_est / M_true)", ylim=(-1.2, 1.2))
    ax[1].legend(loc="lower right", fontsize=8)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out} ({len(rows)} {a.split} clusters)")


if __name__ == "__main__":
    main()
