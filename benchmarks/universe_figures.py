"""Figures of docs/sim-universe.md: one cluster in X-ray and y, and the scaling relations.

Run: ``python benchmarks/universe_figures.py [--out docs/img]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def cluster_views(out: Path) -> Path:
    from clusterfw.sim.config import PatchConfig
    from clusterfw.sim.footprint import world_to_pixel
    from clusterfw.sim.universe import (
        UniverseConfig,
        _render,
        sample_universe_halos,
        universe_streams,
    )

    cfg = UniverseConfig(patch=PatchConfig(size_deg=0.5, abundance_boost=30.0), layers=["xray"])
    halos, fp = sample_universe_halos(cfg, 7)
    i = int(np.argmax(halos.column("m500c").to_numpy()))
    row = {c: halos.column(c)[i].as_py() for c in ("ra", "dec", "z", "m500c", "theta500_arcmin")}
    _, rngs = universe_streams(7)
    panels = []
    for layer, preset in (
        ("xray", "erosita"),
        ("xray", "xmm"),
        ("ymap", "act"),
        ("ymap", "planck"),
    ):
        c = cfg.model_copy(update={f"{layer}_preset": preset})
        f = _render(layer, halos, fp, c, rngs[layer])
        img = f.counts if layer == "xray" else f.y
        sig = f.model - f.background if layer == "xray" else f.y_signal
        pix = (f.preset.pixel_arcsec / 60) if layer == "xray" else f.preset.pixel_arcmin
        x, y = world_to_pixel(f.wcs, np.array([row["ra"]]), np.array([row["dec"]]))
        half = int(round(6.0 / pix))
        cx, cy = int(round(x[0])), int(round(y[0]))
        sl = (slice(max(cy - half, 0), cy + half), slice(max(cx - half, 0), cx + half))
        panels.append((f"{layer} ({preset})", img[sl], pix, sig[sl]))
    fig, axes = plt.subplots(1, 4, figsize=(15, 4))
    for ax, (title, cut, pix, sig) in zip(axes, panels, strict=True):
        ext = [
            -cut.shape[1] * pix / 2,
            cut.shape[1] * pix / 2,
            -cut.shape[0] * pix / 2,
            cut.shape[0] * pix / 2,
        ]
        im = ax.imshow(cut, origin="lower", extent=ext, cmap="magma")
        if sig.max() > 0:  # noiseless signal at 10, 30 and 60% of its peak
            ax.contour(
                sig,
                levels=sig.max() * np.array([0.1, 0.3, 0.6]),
                extent=ext,
                colors="cyan",
                linewidths=0.7,
            )
        ax.set_title(title)
        ax.set_xlabel("arcmin")
        fig.colorbar(im, ax=ax, shrink=0.8, label="counts" if "xray" in title else "Compton-y")
    fig.suptitle(
        f"one halo: M500c = {row['m500c']:.2e} Msun, z = {row['z']:.2f}, "
        f"θ500 = {row['theta500_arcmin']:.1f}'"
    )
    fig.tight_layout()
    path = out / "universe_cluster_xray_y.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def scaling_relations(out: Path) -> Path:
    from clusterfw.sim.config import PatchConfig
    from clusterfw.sim.universe import UniverseConfig, sample_universe_halos

    cfg = UniverseConfig(patch=PatchConfig(size_deg=6.0, pixel_arcmin=1.0, m500c_min=5e13))
    halos, _ = sample_universe_halos(cfg, 3)
    t = {c: halos.column(c).to_numpy() for c in halos.column_names}
    m = t["m500c"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, col, label in (
        (axes[0], "y500", "Y500 [arcmin²]"),
        (axes[1], "richness", "richness λ"),
        (axes[2], "lx500", "L_X(0.5–2 keV) [erg/s]"),
    ):
        ax.scatter(m, t[col], s=3, c=t["z"], cmap="viridis", alpha=0.6)
        order = np.argsort(m)
        ax.plot(m[order], t[f"{col}_median"][order], "k.", ms=1, alpha=0.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("M500c [Msun]")
        ax.set_ylabel(label)
    ax = axes[3]
    ax.scatter(t["dln_y"], t["dln_lx"], s=3, alpha=0.4, label="ln Y vs ln L_X")
    ax.scatter(t["dln_y"], t["dln_richness"], s=3, alpha=0.4, label="ln Y vs ln λ")
    r_yx = np.corrcoef(t["dln_y"], t["dln_lx"])[0, 1]
    r_yl = np.corrcoef(t["dln_y"], t["dln_richness"])[0, 1]
    ax.set_title(f"deviates: r(Y,Lx)={r_yx:.2f}, r(Y,λ)={r_yl:.2f}", fontsize=10)
    ax.set_xlabel("Δln Y")
    ax.set_ylabel("Δln L_X, Δln λ")
    ax.legend(markerscale=4)
    fig.suptitle(f"{halos.num_rows} halos of a 36 deg² universe (colour: z; dots: the medians)")
    fig.tight_layout()
    path = out / "universe_scaling_relations.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(cluster_views(args.out))
    print(scaling_relations(args.out))


if __name__ == "__main__":
    main()
