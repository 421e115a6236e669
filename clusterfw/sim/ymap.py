"""Compton-y maps of a simulated universe (a chosen survey's beam and noise) and stellar mass.

The y map paints the same halos with the same Arnaud et al. (2010) profiles and the same
(scattered) ``Y500`` as the millimetre maps (:func:`clusterfw.sim.sz.paint_halos`), on the layer's
own pixels, convolves with the survey's Gaussian beam and adds white noise of depth
``noise_y_arcmin`` (the y equivalent of µK-arcmin: the per-pixel rms is
``noise_y_arcmin / pixel_arcmin``). Real component-separated maps also carry CMB/CIB residuals and
correlated noise — not modelled. Presets:

* ``planck``: 10' beam (the MILCA/NILC y maps of Planck 2015 XXII), 1' pixels, 2e-5 y·arcmin
  (≈ 2e-6 rms in a beam), giving the ~1e-6 y-map noise level of the Planck maps at high latitude;
* ``act``: 1.6' beam (ACT DR4/DR6 y maps), 0.5' pixels, 1e-5 y·arcmin.

The **stellar-mass map** (for mass estimators trained on multi-tracer images, Yan et al. 2020)
is a **toy**: each halo's ``mstar_total`` (:func:`clusterfw.sim.observables.draw_observables`:
Moster+13 central + a fixed stellar mass per richness unit) spread as a projected NFW profile
(``c200c`` of the halo) truncated at R200c, in Msun per pixel, no beam, no noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from astropy.wcs import WCS
from pydantic import BaseModel, ConfigDict, Field

from clusterfw.core.errors import ClusterfwError
from clusterfw.sim import sz
from clusterfw.sim.footprint import Footprint, world_to_pixel
from clusterfw.sim.instrument import ARCMIN
from clusterfw.sim.xray import gaussian_convolve


class YmapPreset(BaseModel):
    """A Compton-y survey: pixel, Gaussian beam FWHM and white-noise depth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pixel_arcmin: float = Field(gt=0)
    beam_fwhm_arcmin: float = Field(gt=0)
    noise_y_arcmin: float = Field(ge=0, description="white-noise depth, y x arcmin")
    profile_rmax_r500: float = Field(5.0, gt=1.0)


YMAP_PRESETS: dict[str, YmapPreset] = {
    "planck": YmapPreset(
        name="planck", pixel_arcmin=1.0, beam_fwhm_arcmin=10.0, noise_y_arcmin=2e-5
    ),
    "act": YmapPreset(name="act", pixel_arcmin=0.5, beam_fwhm_arcmin=1.6, noise_y_arcmin=1e-5),
    # CMB-S4-like wide survey: ~4x deeper in y than the ACT-like preset (order of magnitude).
    "s4": YmapPreset(name="s4", pixel_arcmin=0.5, beam_fwhm_arcmin=1.4, noise_y_arcmin=2.5e-6),
    # A deep, high-resolution y map (CMB-HD-like, 20x deeper than ACT-like): the regime where
    # the intrinsic Y-M scatter, not the map noise, limits y masses of 1e14 Msun clusters.
    "deep": YmapPreset(name="deep", pixel_arcmin=0.5, beam_fwhm_arcmin=1.0, noise_y_arcmin=5e-7),
}


def get_preset(preset: str | YmapPreset) -> YmapPreset:
    """A preset by name (``planck``, ``act``, ``s4``, ``deep``) or the object itself."""
    if isinstance(preset, YmapPreset):
        return preset
    if preset not in YMAP_PRESETS:
        raise ClusterfwError(
            f"--preset: unknown y-map preset {preset!r} (choose from {', '.join(YMAP_PRESETS)})"
        )
    return YMAP_PRESETS[preset]


@dataclass
class YmapField:
    """A rendered y layer: beam-convolved noisy y, the noiseless beamed y, stellar mass, WCS."""

    y: np.ndarray
    y_signal: np.ndarray
    stellar_mass: np.ndarray | None
    wcs: WCS
    preset: YmapPreset


def _col(halos: pa.Table, name: str) -> np.ndarray:
    return np.asarray(halos.column(name).to_numpy(zero_copy_only=False), dtype=float)


def nfw_projected_shape(x: np.ndarray) -> np.ndarray:
    """Projected NFW surface-density shape ``Σ(X)``, ``X = R/r_s`` (Bartelmann 1996)."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape, 1.0 / 3.0)
    lo = x < 1.0 - 1e-6
    hi = x > 1.0 + 1e-6
    xl = x[lo]
    out[lo] = (1.0 - 2.0 / np.sqrt(1.0 - xl**2) * np.arctanh(np.sqrt((1 - xl) / (1 + xl)))) / (
        xl**2 - 1.0
    )
    xh = x[hi]
    out[hi] = (1.0 - 2.0 / np.sqrt(xh**2 - 1.0) * np.arctan(np.sqrt((xh - 1) / (1 + xh)))) / (
        xh**2 - 1.0
    )
    return out


def paint_nfw(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    theta200_pix: np.ndarray,
    c200: np.ndarray,
    total: np.ndarray,
    max_radius_pix: int = 2000,
) -> None:
    """Add projected NFW stamps truncated at θ200 (pixel sums = ``total``) to ``image``."""
    ny, nx = image.shape
    for i in range(x.size):
        rad = int(min(np.ceil(theta200_pix[i]) + 1, max_radius_pix))
        xc, yc = float(x[i]), float(y[i])
        ix0, iy0 = int(np.floor(xc)) - rad, int(np.floor(yc)) - rad
        if ix0 >= nx or iy0 >= ny or ix0 + 2 * rad + 2 <= 0 or iy0 + 2 * rad + 2 <= 0:
            continue
        dx = np.arange(ix0, ix0 + 2 * rad + 2) - xc
        dy = np.arange(iy0, iy0 + 2 * rad + 2) - yc
        r = np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2)
        rs = theta200_pix[i] / c200[i]
        stamp = np.where(r <= theta200_pix[i], nfw_projected_shape(np.maximum(r, 0.25) / rs), 0.0)
        s = stamp.sum()
        if s <= 0:
            continue
        stamp *= total[i] / s
        sy0, sx0 = max(0, -iy0), max(0, -ix0)
        sy1, sx1 = min(stamp.shape[0], ny - iy0), min(stamp.shape[1], nx - ix0)
        image[iy0 + sy0 : iy0 + sy1, ix0 + sx0 : ix0 + sx1] += stamp[sy0:sy1, sx0:sx1]


def render_ymap(
    halos: pa.Table,
    footprint: Footprint,
    preset: str | YmapPreset,
    rng: np.random.Generator,
    *,
    stellar_mass: bool = True,
) -> YmapField:
    """Render the Compton-y map (and the toy stellar-mass map) of ``halos`` over ``footprint``.

    Parameters
    ----------
    halos : pyarrow.Table
        ``ra``, ``dec``, ``theta500_arcmin``, ``y500`` (arcmin²); ``axis_ratio`` and
        ``position_angle`` when present; ``mstar_total``, ``m500c``, ``m200c``, ``c200c`` for
        the stellar mass.
    footprint : Footprint
    preset : str or YmapPreset
    rng : numpy.random.Generator
        The layer's stream (white noise).
    stellar_mass : bool
        Also paint the stellar-mass map (needs ``mstar_total``).
    """
    p = get_preset(preset)
    pix_arcsec = p.pixel_arcmin * 60.0
    wcs, shape = footprint.wcs(pix_arcsec)
    ymap = np.zeros(shape)
    mstar_map = np.zeros(shape) if stellar_mass else None
    names = set(halos.column_names)
    if halos.num_rows:
        x, y = world_to_pixel(wcs, _col(halos, "ra"), _col(halos, "dec"))
        th_rad = _col(halos, "theta500_arcmin") * ARCMIN
        q = _col(halos, "axis_ratio") if "axis_ratio" in names else None
        pa_rad = np.radians(_col(halos, "position_angle")) if "position_angle" in names else None
        sz.paint_halos(
            ymap,
            None,
            x,
            y,
            th_rad / (p.pixel_arcmin * ARCMIN),
            _col(halos, "y500") * ARCMIN**2,
            None,
            (p.pixel_arcmin * ARCMIN) ** 2,
            sz.projected_profile(p.profile_rmax_r500),
            q,
            pa_rad,
        )
        if mstar_map is not None:
            if "mstar_total" not in names:
                raise ClusterfwError("--halos: the halo table has no mstar_total column")
            ratio = (_col(halos, "m200c") / _col(halos, "m500c") * 500.0 / 200.0) ** (1 / 3)
            th200_pix = _col(halos, "theta500_arcmin") * ratio / p.pixel_arcmin
            paint_nfw(mstar_map, x, y, th200_pix, _col(halos, "c200c"), _col(halos, "mstar_total"))
    signal = gaussian_convolve(ymap, p.beam_fwhm_arcmin / p.pixel_arcmin)
    noise = rng.standard_normal(shape) * (p.noise_y_arcmin / p.pixel_arcmin)
    return YmapField(
        (signal + noise).astype(np.float32),
        signal.astype(np.float32),
        None if mstar_map is None else mstar_map.astype(np.float32),
        wcs,
        p,
    )


def write_ymap(
    field: YmapField, directory: str | Path, prefix: str = "ymap"
) -> dict[str, Path | None]:
    """Write ``<prefix>.fits`` (``BUNIT='Compton-y'``, ``BEAMFWHM`` arcmin, ``NOISE`` y·arcmin).

    The stellar-mass map is written separately (:func:`write_stellar_mass`), into its own folder,
    so that a reader given ``ymap/*.fits`` sees only y maps.
    """
    from astropy.io import fits

    from clusterfw.core.atomic import write_atomic

    p = field.preset
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = field.wcs.celestial.to_header()
    header["BUNIT"] = ("Compton-y", "dimensionless Compton-y")
    header["BEAMFWHM"] = (p.beam_fwhm_arcmin, "[arcmin] Gaussian beam FWHM")
    header["NOISE"] = (p.noise_y_arcmin, "[y arcmin] white-noise depth")
    header["INSTRUME"] = (p.name, "clusterfw simulated y-map preset")
    header["SIMULATE"] = (True, "clusterfw simulated image")
    hdu = fits.PrimaryHDU(field.y, header=header)
    path = write_atomic(directory / f"{prefix}.fits", lambda tmp: hdu.writeto(tmp, overwrite=True))
    return {"ymap": path}


def write_stellar_mass(field: YmapField, directory: str | Path) -> Path | None:
    """Write the toy stellar-mass map as ``stellar_mass.fits`` (``BUNIT='solMass'`` per pixel)."""
    if field.stellar_mass is None:
        return None
    from astropy.io import fits

    from clusterfw.core.atomic import write_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = field.wcs.celestial.to_header()
    header["BUNIT"] = ("solMass", "stellar mass per pixel (toy)")
    header["LAYER"] = ("stellar_mass", "clusterfw simulated tracer map")
    header["SIMULATE"] = (True, "clusterfw simulated image")
    hdu = fits.PrimaryHDU(field.stellar_mass, header=header)
    return write_atomic(
        directory / "stellar_mass.fits", lambda tmp: hdu.writeto(tmp, overwrite=True)
    )
