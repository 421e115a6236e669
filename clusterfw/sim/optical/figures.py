"""The figure of docs/sim-optical.md: a gri colour composite of a simulated cluster field.

Run ``python -m clusterfw.sim.optical.figures [OUT.png]``; it renders an SDSS-like 6'×6' and a
DES-like field around a single 5e14 Msun halo at z = 0.25 and composes i, r, g as R, G, B with
the asinh stretch of Lupton et al. (2004, PASP 116, 133;
:func:`astropy.visualization.make_lupton_rgb`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from clusterfw.sim import halos as halo_mod
from clusterfw.sim.optical.field import OpticalFootprint, render_optical
from clusterfw.sim.optical.presets import get_preset

DEFAULT_OUT = Path(__file__).resolve().parents[3] / "docs" / "img" / "sim_optical_gri.png"


def demo_halo(
    m500c: float = 5e14, z: float = 0.25, ra: float = 150.0, dec: float = 2.0
) -> pa.Table:
    """A one-halo catalogue (NFW conversions of :func:`clusterfw.sim.halos.convert_m500c`)."""
    conv = halo_mod.convert_m500c(np.array([m500c]), np.array([z]))
    return pa.table(
        {
            "halo_id": [0],
            "ra": [ra],
            "dec": [dec],
            "z": [z],
            "m500c": [m500c],
            "m200c": conv["m200c"],
            "c200c": conv["c200c"],
        }
    )


def gri_composite(field_, stretch: float = 0.5, q: float = 8.0) -> np.ndarray:
    """``(ny, nx, 3)`` uint8 RGB of i, r, g (scaled to equal noise-free colour for AB)."""
    from astropy.visualization import make_lupton_rgb

    return make_lupton_rgb(
        field_.images["i"], field_.images["r"], field_.images["g"] * 1.2, stretch=stretch, Q=q
    )


def make_figure(out: Path = DEFAULT_OUT, seed: int = 3) -> Path:
    """Render the SDSS- and DES-like views of the same cluster and save them side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    halos = demo_halo()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
    for ax, name in zip(axes, ("sdss", "des"), strict=True):
        p = get_preset(name)
        fp = OpticalFootprint.from_center(150.0, 2.0, 0.1, p.pixel_arcsec)
        f = render_optical(halos, fp, p, seed)
        rgb = gri_composite(f, stretch=0.4 if name == "sdss" else 0.25)
        ax.imshow(rgb, origin="lower")
        lam = float(f.halos["richness"][0].as_py())
        ax.set_title(
            f"{name.upper()}-like gri, 6'×6': M500c = 5e14, z = 0.25, λ = {lam:.0f}",
            fontsize=10,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(make_figure(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
