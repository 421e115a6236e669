"""Figures of the xray finder's docs: example test candidates (true and false positives, missed
clusters) with their optical and X-ray cutouts, from the shipped weights.

Usage::

    python benchmarks/xray_figures.py --data DIR_OF_CANDIDATES --out docs/img

(``DIR`` holds the ``cand_3_*.npz`` test candidates of ``clusterfw train xray``.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> Path:
    """Write ``xray_examples.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clusterfw.core.atomic import write_atomic
    from clusterfw.plugins.finders.xray import data as xdata
    from clusterfw.plugins.finders.xray.finder import _Net, shipped_weights
    from clusterfw.plugins.finders.xray.train import augment_batch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    d = xdata.load_candidates(sorted(a.data.glob("cand_3_*.npz")))
    summary = json.loads((shipped_weights() / "summary.json").read_text())
    task = summary["config"].get("label", "mass")
    d["label"], d["kind"] = xdata.task_labels(d, task)
    net = _Net(shipped_weights(), "both")
    thr = float(net.meta["threshold_balanced"])
    idx = np.arange(d["label"].size)
    c, b, o = augment_batch(d, idx, np.random.default_rng(0), False, net.scales)
    p = net.probability(c, b, o)
    lab = d["label"] == 1
    rng = np.random.default_rng(a.seed)
    miss = "missed cluster" if task == "mass" else "missed group/cluster"
    groups = {
        "true positive": np.flatnonzero(lab & (p >= thr)),
        "false positive": np.flatnonzero(~lab & (p >= thr)),
        miss: np.flatnonzero(lab & (p < thr)),
    }
    kinds = ("fluctuation", "AGN", "group", "cluster")
    fig, axes = plt.subplots(3, 6, figsize=(13, 6.8))
    for r, (name, sel) in enumerate(groups.items()):
        pick = rng.choice(sel, size=min(3, sel.size), replace=False) if sel.size else []
        for k in range(3):
            ax_o, ax_x = axes[r, 2 * k], axes[r, 2 * k + 1]
            for ax in (ax_o, ax_x):
                ax.set_xticks([])
                ax.set_yticks([])
            if k >= len(pick):
                ax_o.axis("off")
                ax_x.axis("off")
                continue
            j = int(pick[k])
            rgb = np.arcsinh(np.moveaxis(o[j, ::-1], 0, -1) / (3 * net.scales[::-1]))
            rgb = np.clip((rgb - np.percentile(rgb, 5)) / np.ptp(rgb), 0, 1)
            ax_o.imshow(rgb, origin="lower")
            ax_x.imshow(np.arcsinh(c[j]), origin="lower", cmap="magma")
            m = d["halo_m500c"][j]
            mass = f"M={m:.1e}" if np.isfinite(m) else "no halo"
            ax_o.set_title(f"{name}\np={p[j]:.2f}", fontsize=8)
            ax_x.set_title(f"{kinds[d['kind'][j]]}, {mass}", fontsize=8)
    fig.suptitle(
        f"xray classifier (X-ray + optical, label task '{task}') on held-out candidates; "
        f"threshold p ≥ {thr:.2f}; "
        "left: g,r,i; right: 0.5–2 keV counts (4.3' at 8\")",
        fontsize=9,
    )
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "xray_examples.png"
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    return path


if __name__ == "__main__":
    print(main())
