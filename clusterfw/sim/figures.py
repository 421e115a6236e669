"""The figures of ``docs/simulator.md`` (``python -m clusterfw.sim.figures docs/img``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def make_figures(outdir: str | Path, seed: int = 2021) -> list[Path]:
    """Write ``sim_bands.png``, ``sim_cluster.png`` and ``sim_spectrum.png`` to ``outdir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clusterfw.sim.cmb import lensed_cl_tt
    from clusterfw.sim.config import PatchConfig
    from clusterfw.sim.instrument import beam_transfer
    from clusterfw.sim.patch import simulate_patch
    from clusterfw.sim.spectra import power_spectrum

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    cfg = PatchConfig(size_deg=2.0)
    res = simulate_patch(cfg, seed, keep_components=True)
    paths = []

    # 1. the three bands
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
    ext = [cfg.size_deg / 2, -cfg.size_deg / 2, -cfg.size_deg / 2, cfg.size_deg / 2]
    for ax, band, m in zip(axes, res.sky.bands, res.sky.maps, strict=True):
        im = ax.imshow(m, origin="lower", cmap="RdBu_r", vmin=-250, vmax=250, extent=ext)
        ax.set_title(f"{band.name}: {band.freq_ghz:g} GHz, {band.beam_fwhm_arcmin}' beam")
        ax.set_xlabel("Δx [deg]")
    axes[0].set_ylabel("Δy [deg]")
    fig.colorbar(im, ax=axes, shrink=0.8, label="µK_CMB")
    paths.append(outdir / "sim_bands.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    # 2. the most massive cluster, close up, in each band and in Compton-y
    h = res.halos.to_pydict()
    ny, nx = cfg.shape
    ok = [
        i
        for i in range(len(h["halo_id"]))
        if 40 < h["x_pix"][i] < nx - 40 and 40 < h["y_pix"][i] < ny - 40
    ]
    i = max(ok, key=lambda k: h["m500c"][k])
    x, y = int(round(h["x_pix"][i])), int(round(h["y_pix"][i]))
    sl = (slice(y - 40, y + 40), slice(x - 40, x + 40))
    fig, axes = plt.subplots(1, 4, figsize=(15, 4), constrained_layout=True)
    for ax, band, m in zip(axes[:3], res.sky.bands, res.sky.maps, strict=True):
        ax.imshow(m[sl], origin="lower", cmap="RdBu_r", vmin=-150, vmax=150, extent=[-10, 10] * 2)
        ax.set_title(band.name)
        ax.set_xlabel("arcmin")
    axes[3].imshow(res.ymap[sl], origin="lower", cmap="magma", extent=[-10, 10] * 2)
    axes[3].set_title("Compton-y (unsmoothed)")
    fig.suptitle(
        f"halo {h['halo_id'][i]}: M500c = {h['m500c'][i]:.2e} Msun, z = {h['z'][i]:.2f}, "
        f"θ500 = {h['theta500_arcmin'][i]:.1f}', Y500 = {h['y500'][i]:.1e} arcmin²"
    )
    paths.append(outdir / "sim_cluster.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    # 3. power spectra: band maps against camb x beam^2 + noise
    edges = np.geomspace(200, 20000, 40)
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    for b, band in enumerate(res.sky.bands):
        ell, cl = power_spectrum(res.sky.maps[b].astype(float), cfg.pixel_arcmin, edges)
        ax.loglog(ell, ell * (ell + 1) * cl / (2 * np.pi), "o", ms=3, label=f"{band.name} map")
        noise = (band.noise_uk_arcmin * np.pi / 10800) ** 2
        model = lensed_cl_tt(ell) * beam_transfer(ell, band.beam_fwhm_arcmin) ** 2 + noise
        ax.loglog(ell, ell * (ell + 1) * model / (2 * np.pi), "-", lw=1, color=f"C{b}")
    ell, cl = power_spectrum(res.components["cmb"].astype(float), cfg.pixel_arcmin, edges)
    ax.loglog(ell, ell * (ell + 1) * cl / (2 * np.pi), "k.", ms=3, label="CMB component")
    lt = np.arange(200, 20000)
    ax.loglog(lt, lt * (lt + 1) * lensed_cl_tt(lt) / (2 * np.pi), "k-", lw=0.8, label="camb")
    ax.set_xlabel("ℓ")
    ax.set_ylabel("ℓ(ℓ+1)C_ℓ/2π [µK²]")
    ax.set_ylim(1e-1, 1e4)
    ax.legend(fontsize=8)
    ax.set_title("2°×2° patch; lines: camb × B_ℓ² + white noise (no SZ/sources)")
    paths.append(outdir / "sim_spectrum.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


if __name__ == "__main__":
    for p in make_figures(sys.argv[1] if len(sys.argv) > 1 else "docs/img"):
        print(p)
