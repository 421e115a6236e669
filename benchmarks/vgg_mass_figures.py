"""Estimated vs true mass of a ``clusterfw train vgg_mass`` run (its ``predictions.csv``).

Usage::

    python benchmarks/vgg_mass_figures.py RUN_DIR [--split val] [--out docs/img/vgg_mass.png]

Left: the network's M500c and the Y–M inversion's against the true M500c of the held-out
clusters of one split. Right: ln(M_est / M_true) against the true mass, with the running median
and 16–84 % band of both, and the ±σ_lnY/B floor the simulator's Y–M scatter sets.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--out", type=Path, default=Path("docs/img/vgg_mass.png"))
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in csv.DictReader((a.run / "predictions.csv").open()) if r["split"] == a.split]
    m = np.array([float(r["m500c_true"]) for r in rows])
    cnn = np.array([float(r["m500c_cnn"]) for r in rows])
    ysz = np.array([float(r["m500c_ysz"]) for r in rows])
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.3))
    ax[0].loglog(m, ysz, ".", ms=3, color="0.6", label="Y–M inversion")
    ax[0].loglog(m, cnn, ".", ms=3, color="C0", label="vgg_mass")
    ax[0].plot([1e14, 1e15], [1e14, 1e15], "k-", lw=0.8)
    ax[0].set(xlabel="true M500c [Msun]", ylabel="estimated M500c [Msun]", ylim=(3e13, 3e15))
    ax[0].legend(loc="upper left")
    edges = np.linspace(14.0, 15.0, 9)
    mid = 0.5 * (edges[1:] + edges[:-1])
    for est, col, lab in ((ysz, "0.5", "Y–M inversion"), (cnn, "C0", "vgg_mass")):
        r = np.log(est / m)
        ax[1].plot(np.log10(m), r, ".", ms=2, color=col, alpha=0.4)
        q = np.array(
            [
                np.nanpercentile(r[(np.log10(m) >= lo) & (np.log10(m) < hi)], [16, 50, 84])
                for lo, hi in zip(edges[:-1], edges[1:], strict=True)
            ]
        )
        ax[1].plot(mid, q[:, 1], "-", color=col, lw=2, label=f"{lab}: median, 16–84 %")
        ax[1].fill_between(mid, q[:, 0], q[:, 2], color=col, alpha=0.2)
    floor = 0.2 / 1.78
    ax[1].axhspan(-floor, floor, color="C3", alpha=0.1, label="±σ_lnY/B (Y–M scatter floor)")
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
