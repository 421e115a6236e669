"""Optical renderer speed: the numpy/scipy painter against GalSim on the same catalogue.

    python benchmarks/optical_render_speed.py [--size 0.1] [--preset des] [--seed 7]

Draws one field's catalogue (members of two halos, field galaxies, stars), then renders the r
band (no noise) twice: with :func:`clusterfw.sim.optical.field.render_band` (intrinsic Sérsic
stamps + one overlap-add FFT convolution with the Moffat PSF) and with GalSim (``pip install
galsim``: each galaxy ``Convolve(Sersic ⊗ shear, Moffat)`` drawn on its own stamp with
``drawImage(method='auto')``, each star a Moffat). Prints seconds per deg² per band for both
and the pixel difference between the two images in units of the preset's sky noise.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from clusterfw.sim.optical import OpticalFootprint, get_preset, render_optical
from clusterfw.sim.optical.field import render_band
from clusterfw.sim.optical.figures import demo_halo
from clusterfw.sim.optical.render import mag_to_nanomaggies


def galsim_render(f, band: str) -> np.ndarray:
    """The noise-free image of ``band`` drawn object by object with GalSim."""
    import galsim

    fp = f.footprint
    ny, nx = fp.shape
    pix = f.preset.pixel_arcsec
    image = galsim.ImageF(nx, ny, scale=pix)
    psf = galsim.Moffat(beta=f.preset.psf_beta, fwhm=f.psf_fwhm_arcsec[band], trunc=0)
    gsp = galsim.GSParams(folding_threshold=5e-3, maximum_fft_size=8192)
    g = f.galaxies
    x, y = fp.to_pixel(g["ra"].to_numpy(), g["dec"].to_numpy())
    flux = mag_to_nanomaggies(g[f"mag_{band}"].to_numpy())
    for k in range(g.num_rows):
        n = float(g["sersic_n"][k].as_py())
        re = max(float(g["r_e_arcsec"][k].as_py()), 0.02)
        prof = galsim.Sersic(n=n, half_light_radius=re, flux=float(flux[k]), gsparams=gsp)
        q = float(g["axis_ratio"][k].as_py())
        beta = (90.0 + float(g["position_angle"][k].as_py())) * galsim.degrees
        prof = prof.shear(q=q, beta=beta)
        obj = galsim.Convolve(prof, psf, gsparams=gsp)
        _draw(image, obj, x[k], y[k])
    s = f.stars
    x, y = fp.to_pixel(s["ra"].to_numpy(), s["dec"].to_numpy())
    flux = mag_to_nanomaggies(s[f"mag_{band}"].to_numpy())
    for k in range(s.num_rows):
        _draw(image, psf.withFlux(float(flux[k])), x[k], y[k])
    return image.array.copy()


def _draw(image, obj, x: float, y: float) -> None:
    import galsim

    ix, iy = int(np.rint(x)), int(np.rint(y))
    offset = galsim.PositionD(x - ix, y - iy)
    n = obj.getGoodImageSize(image.scale) | 1  # odd: the centre pixel is the object's pixel
    stamp = obj.drawImage(nx=n, ny=n, scale=image.scale, offset=offset)
    stamp.setCenter(ix + 1, iy + 1)  # GalSim is 1-based
    b = stamp.bounds & image.bounds
    if b.isDefined():
        image[b] += stamp[b]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=0.1, help="field side, deg")
    ap.add_argument("--preset", default="des")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    p = get_preset(a.preset)
    fp = OpticalFootprint.from_center(150.0, 2.0, a.size, p.pixel_arcsec)
    f = render_optical(demo_halo(), fp, p, a.seed, bands=("r",), render=False, noise=False)
    area = fp.area_deg2
    print(f"{p.name}: {fp.shape} pixels, {f.galaxies.num_rows} galaxies, {f.stars.num_rows} stars")
    t0 = time.perf_counter()
    img_np = render_band(f, "r", fp, 0)
    t1 = time.perf_counter()
    img_gs = galsim_render(f, "r")
    t2 = time.perf_counter()
    sig = f.sigma_pixel("r")
    d = (img_np - img_gs) / sig
    print(f"numpy/scipy: {(t1 - t0) / area:8.1f} s per deg² per band")
    print(f"GalSim     : {(t2 - t1) / area:8.1f} s per deg² per band")
    print(
        f"difference / sky sigma: rms {d.std():.3f}, max |d| {np.abs(d).max():.1f}, "
        f"total flux ratio {img_np.sum() / img_gs.sum():.4f}"
    )


if __name__ == "__main__":
    main()
