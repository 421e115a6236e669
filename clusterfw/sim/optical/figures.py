"""The figure of docs/sim-optical.md: a gri colour composite of a simulated cluster field.

Run ``python -m clusterfw.sim.optical.figures [OUT.png]``; it renders an SDSS-like 15'×15' and a
DES-like field around a single 5e14 Msun halo at z = 0.25 and composes i, r, g as R, G, B with
the asinh stretch of Lupton et al. (2004, PASP 116, 133;
:func:`astropy.visualization.make_lupton_rgb`).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from clusterfw.sim import cosmology as cosmo
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
    fig, axes = plt.subplots(2, 2, figsize=(10, 10.6))
    for col, name in enumerate(("sdss", "des")):
        p = get_preset(name)
        fp = OpticalFootprint.from_center(150.0, 2.0, 0.25, p.pixel_arcsec)
        f = render_optical(halos, fp, p, seed)
        rgb = gri_composite(f, stretch=0.3 if name == "sdss" else 0.15)
        lam = float(f.halos["richness"][0].as_py())
        r_lam = float(f.halos["r_lambda_mpc"][0].as_py())
        theta_pix = np.degrees(r_lam / float(cosmo.angular_diameter_distance(0.25))) * 3600.0
        x0, y0 = (float(v[0]) for v in fp.to_pixel(np.array([150.0]), np.array([2.0])))
        ax = axes[0, col]
        ax.imshow(rgb, origin="lower", interpolation="lanczos")
        ax.add_patch(
            plt.Circle((x0, y0), theta_pix / p.pixel_arcsec, fill=False, ec="w", ls="--", lw=0.6)
        )
        ax.set_title(
            f"{name.upper()}-like gri, 15'×15', R_λ dashed\n"
            f"M500c = 5e14 Msun, z = 0.25, λ = {lam:.0f}",
            fontsize=10,
        )
        half = int(120.0 / p.pixel_arcsec)  # 4' × 4' around the centre
        ys = slice(int(y0) - half, int(y0) + half)
        xs = slice(int(x0) - half, int(x0) + half)
        axes[1, col].imshow(rgb[ys, xs], origin="lower", interpolation="lanczos")
        axes[1, col].set_title(f"centre, 4'×4' ({p.pixel_arcsec}\"/pixel)", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=80, format="png")
    plt.close(fig)
    # a 256-colour palette keeps the noisy composite small in the repository
    from PIL import Image

    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=256).save(out, optimize=True)
    return out


if __name__ == "__main__":
    print(make_figure(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
