"""Soft X-ray (0.5–2 keV) counts images of a simulated universe: eROSITA-like and XMM-like.

What is in a counts image
-------------------------
* **Clusters**: projected β-models ``S(θ) ∝ (1 + (θ/θ_c)²)^(−3β+1/2)`` with ``β = 2/3`` and
  ``r_c = 0.15 R500`` (typical of X-ray surface-brightness fits, e.g. the ``r_c ≈ 0.1–0.2 R500``
  of REXCESS / XXL cluster models), truncated at ``5 R500`` in projection. Each cluster is
  normalised so that the luminosity inside the *sphere* of R500 is the halo's ``lx500``
  (rest-frame 0.5–2 keV, :mod:`clusterfw.sim.observables`); the flux in the observed band is
  ``L K(z, T) / (4π D_L²)`` with the bremsstrahlung K-correction of
  :func:`clusterfw.sim.observables.k_correction`. The projected cylinder out to 5 R500 holds
  :func:`beta_cylinder_to_sphere` (1.19) times the R500 sphere.
* **AGN**: point sources with the Georgakakis et al. (2008, MNRAS 388, 1205) 0.5–2 keV
  ``dN/dS``, a broken power law ``K (S/1e-14)^-β₁`` below ``S_b`` and ``∝ S^-β₂`` above, with
  ``K = 1.51e16 deg⁻² (erg s⁻¹ cm⁻²)⁻¹``, ``β₁ = 1.58``, ``β₂ = 2.50``, ``S_b = 1.04e-14``
  (≈100 deg⁻² above 1e-14). Fainter sources are part of the sky background.
* **Background**: a vignetted sky (cosmic X-ray background + Galactic foreground) and an
  unvignetted particle background, both in counts s⁻¹ arcmin⁻² for the whole instrument.
* **Exposure**: eROSITA's survey depth is nearly uniform (the scan averages the vignetting), so
  the eROSITA-like preset has a uniform exposure; the XMM-like preset tiles the field with
  pointings (XXL-like: 10 ks each, centres every 25', FOV radius 15') with a linear vignetting
  ``1 − 0.037 r/arcmin`` (≈0.45 at 15' in the soft band).
* **PSF**: a circular Gaussian of the preset's FWHM (the survey-averaged eROSITA PSF, ≈30", and the
  on-axis XMM EPIC PSF, ≈6"); real PSFs have broader (King) wings — not modelled.
* **Counts**: Poisson draws of ``exposure × ECF × (PSF ⊗ flux) + background``; the energy
  conversion factor (counts s⁻¹ per erg s⁻¹ cm⁻²) is one number per preset (order of the eFEDS
  0.5–2 keV value, 1.07e12, for eROSITA's seven telescopes; pn + 2 MOS for XMM).

The background levels and ECFs are representative, not calibrated: see docs/sim-universe.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import scipy.fft as sfft
from astropy.wcs import WCS
from pydantic import BaseModel, ConfigDict, Field
from scipy import integrate, special

from clusterfw.core.errors import ClusterfwError
from clusterfw.sim.footprint import Footprint, world_to_pixel
from clusterfw.sim.observables import flux_500
from clusterfw.sim.sources import deposit_cic

ARCSEC_PER_ARCMIN = 60.0


class XrayPreset(BaseModel):
    """An X-ray survey: pixels, PSF, exposure, background, energy conversion and cluster model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pixel_arcsec: float = Field(gt=0)
    psf_fwhm_arcsec: float = Field(gt=0)
    exposure_s: float = Field(gt=0, description="nominal exposure (per pointing for 'pointings')")
    ecf: float = Field(gt=0, description="counts/s per erg/s/cm2 in the band")
    sky_bkg: float = Field(ge=0, description="vignetted sky background, counts/s/arcmin2")
    particle_bkg: float = Field(ge=0, description="unvignetted particle background, cts/s/arcmin2")
    exposure_mode: Literal["uniform", "pointings"] = "uniform"
    pointing_spacing_arcmin: float = Field(25.0, gt=0)
    fov_radius_arcmin: float = Field(15.0, gt=0)
    vignetting_per_arcmin: float = Field(0.037, ge=0)
    agn_s_min: float = Field(gt=0, description="faintest AGN drawn, erg/s/cm2 (0.5-2 keV)")
    agn_s_max: float = Field(1e-11, gt=0)
    beta: float = Field(2.0 / 3.0, gt=0.5)
    rc_r500: float = Field(0.15, gt=0)
    rmax_r500: float = Field(5.0, gt=1)
    e_min: float = 0.5
    e_max: float = 2.0


XRAY_PRESETS: dict[str, XrayPreset] = {
    "erosita": XrayPreset(
        name="erosita",
        pixel_arcsec=4.0,
        psf_fwhm_arcsec=30.0,
        exposure_s=2000.0,
        ecf=1.07e12,
        sky_bkg=2.0e-3,
        particle_bkg=0.6e-3,
        agn_s_min=3e-16,
    ),
    "xmm": XrayPreset(
        name="xmm",
        pixel_arcsec=2.5,
        psf_fwhm_arcsec=6.0,
        exposure_s=10000.0,
        ecf=1.2e12,
        sky_bkg=2.5e-3,
        particle_bkg=2.0e-3,
        exposure_mode="pointings",
        agn_s_min=5e-17,
    ),
}

# Georgakakis et al. (2008) 0.5-2 keV counts
G08_K = 1.51e16  # deg^-2 (erg s^-1 cm^-2)^-1
G08_SREF = 1e-14
G08_BETA1 = 1.58
G08_BETA2 = 2.50
G08_SBREAK = 1.04e-14


def get_preset(preset: str | XrayPreset) -> XrayPreset:
    """A preset by name (``erosita``, ``xmm``) or the object itself."""
    if isinstance(preset, XrayPreset):
        return preset
    if preset not in XRAY_PRESETS:
        raise ClusterfwError(
            f"--preset: unknown X-ray preset {preset!r} (choose from {', '.join(XRAY_PRESETS)})"
        )
    return XRAY_PRESETS[preset]


@dataclass
class XrayField:
    """A rendered X-ray layer.

    Attributes
    ----------
    counts : numpy.ndarray
        ``(ny, nx)`` int32 Poisson counts.
    exposure : numpy.ndarray
        ``(ny, nx)`` float32 effective (vignetted) exposure, s.
    background : numpy.ndarray
        ``(ny, nx)`` float32 expected background counts per pixel (sky + particle).
    model : numpy.ndarray
        ``(ny, nx)`` float32 expected total counts (the Poisson mean).
    wcs : astropy.wcs.WCS
    preset : XrayPreset
    agn : pyarrow.Table
        ``ra``, ``dec`` (deg), ``flux`` (erg/s/cm², observed 0.5–2 keV).
    cluster_counts : numpy.ndarray
        Expected counts of each halo (same order as the halo table), exposure at its centre.
    """

    counts: np.ndarray
    exposure: np.ndarray
    background: np.ndarray
    model: np.ndarray
    wcs: WCS
    preset: XrayPreset
    agn: pa.Table
    cluster_counts: np.ndarray


# --- AGN ------------------------------------------------------------------------------------


def agn_cumulative_counts(s: np.ndarray | float) -> np.ndarray:
    """G08 ``N(>S)`` per deg² (0.5–2 keV), ``S`` in erg s⁻¹ cm⁻²."""
    s = np.asarray(s, dtype=float)
    k, sr, b1, b2, sb = G08_K, G08_SREF, G08_BETA1, G08_BETA2, G08_SBREAK
    # bright part above max(S, Sb)
    c2 = k * (sb / sr) ** (b2 - b1)
    hi = np.maximum(s, sb)
    n_bright = c2 * sr / (b2 - 1.0) * (hi / sr) ** (1.0 - b2)
    lo = np.minimum(s, sb)
    n_faint = k * sr / (b1 - 1.0) * ((lo / sr) ** (1.0 - b1) - (sb / sr) ** (1.0 - b1))
    return n_bright + n_faint


def sample_agn_fluxes(
    rng: np.random.Generator, area_deg2: float, s_min: float, s_max: float
) -> np.ndarray:
    """Poisson number and fluxes of AGN between ``s_min`` and ``s_max`` over ``area_deg2``."""
    n_lo = float(agn_cumulative_counts(s_min))
    n_hi = float(agn_cumulative_counts(s_max))
    n = rng.poisson((n_lo - n_hi) * area_deg2)
    # invert N(>S) numerically on a fine log grid (monotone)
    grid = np.geomspace(s_min, s_max, 4096)
    cum = agn_cumulative_counts(grid)
    u = n_hi + rng.random(n) * (n_lo - n_hi)
    return np.exp(np.interp(u, cum[::-1], np.log(grid[::-1])))


# --- clusters -------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def beta_cylinder_to_sphere(beta: float, rc_r500: float, rmax_r500: float) -> float:
    """Projected β-model flux inside ``rmax R500`` over the luminosity in the R500 sphere.

    The emissivity ``(1 + r²/r_c²)^(−3β)`` projects (along an infinite line of sight) to
    ``√π Γ(3β−½)/Γ(3β) r_c (1 + R²/r_c²)^(−3β+½)``.
    """
    x500 = 1.0 / rc_r500
    sph, _ = integrate.quad(lambda x: 4.0 * np.pi * x * x * (1 + x * x) ** (-3 * beta), 0, x500)
    proj = math.sqrt(math.pi) * special.gamma(3 * beta - 0.5) / special.gamma(3 * beta)
    xt = rmax_r500 / rc_r500
    cyl, _ = integrate.quad(
        lambda x: 2.0 * np.pi * x * proj * (1 + x * x) ** (-3 * beta + 0.5), 0, xt, limit=200
    )
    return cyl / sph


def paint_beta_models(
    flux_map: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    theta500_pix: np.ndarray,
    total_flux: np.ndarray,
    beta: float,
    rc_r500: float,
    rmax_r500: float,
    max_radius_pix: int = 3000,
) -> None:
    """Add truncated projected β-model stamps (pixel sums = ``total_flux``) to ``flux_map``."""
    ny, nx = flux_map.shape
    expo = -3.0 * beta + 0.5
    for i in range(x.size):
        rad = int(min(np.ceil(rmax_r500 * theta500_pix[i]) + 1, max_radius_pix))
        xc, yc = float(x[i]), float(y[i])
        ix0, iy0 = int(np.floor(xc)) - rad, int(np.floor(yc)) - rad
        if ix0 >= nx or iy0 >= ny or ix0 + 2 * rad + 2 <= 0 or iy0 + 2 * rad + 2 <= 0:
            continue
        dx = np.arange(ix0, ix0 + 2 * rad + 2) - xc
        dy = np.arange(iy0, iy0 + 2 * rad + 2) - yc
        r = np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2) / theta500_pix[i]
        stamp = np.where(r <= rmax_r500, (1.0 + (r / rc_r500) ** 2) ** expo, 0.0)
        total = stamp.sum()
        if total <= 0:
            continue
        stamp *= total_flux[i] / total
        sy0, sx0 = max(0, -iy0), max(0, -ix0)
        sy1, sx1 = min(stamp.shape[0], ny - iy0), min(stamp.shape[1], nx - ix0)
        flux_map[iy0 + sy0 : iy0 + sy1, ix0 + sx0 : ix0 + sx1] += stamp[sy0:sy1, sx0:sx1]


# --- exposure, PSF --------------------------------------------------------------------------


def exposure_maps(preset: XrayPreset, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Vignetted and unvignetted exposure maps (s) of a footprint gridded at the preset's pixels.

    ``uniform``: both equal ``exposure_s`` everywhere. ``pointings``: pointings every
    ``pointing_spacing_arcmin`` (grid centred on the map), each adding ``exposure_s × V(r)``
    (``V = 1 − vignetting_per_arcmin r``) inside ``fov_radius_arcmin``; the unvignetted map adds
    ``exposure_s`` inside each FOV.
    """
    ny, nx = shape
    if preset.exposure_mode == "uniform":
        flat = np.full(shape, preset.exposure_s)
        return flat, flat.copy()
    pix_arcmin = preset.pixel_arcsec / ARCSEC_PER_ARCMIN
    step = preset.pointing_spacing_arcmin / pix_arcmin

    def centres(n: int) -> np.ndarray:
        k = int(math.floor((n / 2.0) / step))
        return (n - 1) / 2.0 + step * np.arange(-k - 1, k + 2)

    vig = np.zeros(shape)
    flat = np.zeros(shape)
    yy = np.arange(ny)[:, None]
    xx = np.arange(nx)[None, :]
    rfov = preset.fov_radius_arcmin
    for cy in centres(ny):
        for cx in centres(nx):
            r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) * pix_arcmin
            inside = r < rfov
            if not inside.any():
                continue
            v = np.clip(1.0 - preset.vignetting_per_arcmin * r, 0.0, 1.0)
            vig += np.where(inside, preset.exposure_s * v, 0.0)
            flat += np.where(inside, preset.exposure_s, 0.0)
    return vig, flat


def gaussian_convolve(image: np.ndarray, fwhm_pix: float) -> np.ndarray:
    """Convolve with a unit-sum circular Gaussian (FFT on a zero-padded grid: no wrap-around)."""
    ny, nx = image.shape
    pad = int(math.ceil(2.5 * fwhm_pix)) + 2
    nyp = sfft.next_fast_len(ny + 2 * pad, real=True)
    nxp = sfft.next_fast_len(nx + 2 * pad, real=True)
    sigma = fwhm_pix / math.sqrt(8.0 * math.log(2.0))
    fk = sfft.rfft2(image, s=(nyp, nxp), workers=-1)
    uy = sfft.fftfreq(nyp)[:, None]
    ux = sfft.rfftfreq(nxp)[None, :]
    fk *= np.exp(-2.0 * np.pi**2 * sigma**2 * (uy**2 + ux**2))
    # the zero padding (≥ 2.5 FWHM) sits after the image, so nothing wraps around; light
    # spread beyond the map edge is lost, as on a detector edge
    return sfft.irfft2(fk, s=(nyp, nxp), workers=-1)[:ny, :nx].copy()


# --- rendering ------------------------------------------------------------------------------


def _column(halos: pa.Table, name: str) -> np.ndarray:
    return np.asarray(halos.column(name).to_numpy(zero_copy_only=False), dtype=float)


def cluster_flux_map(
    halos: pa.Table, footprint: Footprint, preset: str | XrayPreset
) -> tuple[np.ndarray, np.ndarray]:
    """The halos' β-model flux map (erg/s/cm² per pixel, before the PSF) and expected counts.

    Deterministic given the halos (no random numbers): :func:`render_xray` can reuse it for
    several draws of the AGN, background and counts of the same sky (``clusters=``).

    Returns
    -------
    flux_map : numpy.ndarray
        ``(ny, nx)`` float64.
    cluster_counts : numpy.ndarray
        Expected counts of each halo, exposure at its centre.
    """
    p = get_preset(preset)
    wcs, shape = footprint.wcs(p.pixel_arcsec)
    ny, nx = shape
    pix_arcmin = p.pixel_arcsec / ARCSEC_PER_ARCMIN
    flux_map = np.zeros(shape)
    n_halo = halos.num_rows
    cluster_counts = np.zeros(n_halo)
    if n_halo:
        vig, _ = exposure_maps(p, shape)
        names = set(halos.column_names)
        if "fx500" in names:
            fx = _column(halos, "fx500")
        elif "lx500" in names:
            fx = flux_500(_column(halos, "lx500"), _column(halos, "z"), _column(halos, "t_kev"))
        else:
            raise ClusterfwError("--halos: the halo table has neither lx500 nor fx500")
        x, y = world_to_pixel(wcs, _column(halos, "ra"), _column(halos, "dec"))
        th_pix = _column(halos, "theta500_arcmin") / pix_arcmin
        total = fx * beta_cylinder_to_sphere(p.beta, p.rc_r500, p.rmax_r500)
        paint_beta_models(flux_map, x, y, th_pix, total, p.beta, p.rc_r500, p.rmax_r500)
        ix = np.clip(np.round(x).astype(np.int64), 0, nx - 1)
        iy = np.clip(np.round(y).astype(np.int64), 0, ny - 1)
        cluster_counts = total * p.ecf * vig[iy, ix]
    return flux_map, cluster_counts


def render_xray(
    halos: pa.Table,
    footprint: Footprint,
    preset: str | XrayPreset,
    rng: np.random.Generator,
    clusters: tuple[np.ndarray, np.ndarray] | None = None,
) -> XrayField:
    """Render a 0.5–2 keV counts image of ``halos`` over ``footprint``.

    Parameters
    ----------
    halos : pyarrow.Table
        Needs ``ra``, ``dec``, ``z``, ``theta500_arcmin``, ``t_kev`` and ``lx500`` (erg/s) — or
        ``fx500`` (observed flux inside R500), which wins when present.
    footprint : Footprint
    preset : str or XrayPreset
        ``erosita`` or ``xmm`` (see :data:`XRAY_PRESETS`).
    rng : numpy.random.Generator
        The layer's stream: AGN first, then the Poisson counts.
    clusters : tuple of numpy.ndarray, optional
        :func:`cluster_flux_map` of the same halos, footprint and preset (computed when not
        given); the result is the same either way.

    Returns
    -------
    XrayField
    """
    p = get_preset(preset)
    wcs, shape = footprint.wcs(p.pixel_arcsec)
    ny, nx = shape
    pix_arcmin = p.pixel_arcsec / ARCSEC_PER_ARCMIN

    # clusters
    if clusters is None:
        clusters = cluster_flux_map(halos, footprint, p)
    flux_map = clusters[0].copy()
    cluster_counts = clusters[1]
    vig, flat = exposure_maps(p, shape)

    # AGN
    area = ny * nx * (pix_arcmin / 60.0) ** 2
    s = sample_agn_fluxes(rng, area, p.agn_s_min, p.agn_s_max)
    ax = rng.uniform(-0.5, nx - 0.5, s.size)
    ay = rng.uniform(-0.5, ny - 0.5, s.size)
    if s.size:
        flux_map += deposit_cic(shape, ax, ay, s)[0]
    ara, adec = wcs.pixel_to_world_values(ax, ay) if s.size else (np.zeros(0), np.zeros(0))
    agn = pa.table(
        {
            "ra": pa.array(np.asarray(ara) % 360.0, pa.float64()),
            "dec": pa.array(np.asarray(adec), pa.float64()),
            "flux": pa.array(s, pa.float64()),
        }
    )

    # expected counts and Poisson draw
    src = gaussian_convolve(flux_map, p.psf_fwhm_arcsec / p.pixel_arcsec)
    np.maximum(src, 0.0, out=src)  # FFT round-off
    pix_area = pix_arcmin**2
    background = (p.sky_bkg * vig + p.particle_bkg * flat) * pix_area
    model = src * p.ecf * vig + background
    counts = rng.poisson(model).astype(np.int32)
    return XrayField(
        counts,
        vig.astype(np.float32),
        background.astype(np.float32),
        model.astype(np.float32),
        wcs,
        p,
        agn,
        cluster_counts,
    )


def write_xray(field: XrayField, directory: str | Path, prefix: str = "xray") -> dict[str, Path]:
    """Write the counts image (``<prefix>_<Emin>-<Emax>keV.fits``) and the AGN truth, atomically.

    The FITS follows docs INPUTS (X-ray layer): integer primary image, ``BUNIT='count'``,
    ``E_MIN``/``E_MAX`` (keV), ``PSFFWHM`` (arcsec), ``EXPOSURE`` image extension (s) and a
    ``BACKGROUND`` extension (expected counts per pixel).

    Returns
    -------
    dict
        ``image`` and ``agn`` paths.
    """
    from astropy.io import fits

    from clusterfw.core.atomic import write_atomic
    from clusterfw.core.catalog_io import write_table_atomic

    p = field.preset
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = field.wcs.celestial.to_header()
    header["BUNIT"] = ("count", "photon counts")
    header["E_MIN"] = (p.e_min, "[keV] band lower edge")
    header["E_MAX"] = (p.e_max, "[keV] band upper edge")
    header["PSFFWHM"] = (p.psf_fwhm_arcsec, "[arcsec] Gaussian PSF FWHM")
    header["INSTRUME"] = (p.name, "clusterfw simulated X-ray preset")
    header["ECF"] = (p.ecf, "counts/s per erg/s/cm2 in the band")
    header["SIMULATE"] = (True, "clusterfw simulated image")
    prim = fits.PrimaryHDU(field.counts.astype(np.int32), header=header)
    ehdr = field.wcs.celestial.to_header()
    ehdr["BUNIT"] = ("s", "effective (vignetted) exposure")
    exp_hdu = fits.ImageHDU(field.exposure.astype(np.float32), header=ehdr, name="EXPOSURE")
    bhdr = field.wcs.celestial.to_header()
    bhdr["BUNIT"] = ("count", "expected background counts per pixel")
    bkg_hdu = fits.ImageHDU(field.background.astype(np.float32), header=bhdr, name="BACKGROUND")
    hdul = fits.HDUList([prim, exp_hdu, bkg_hdu])
    name = f"{prefix}_{p.e_min:g}-{p.e_max:g}keV.fits"
    image = write_atomic(directory / name, lambda tmp: hdul.writeto(tmp, overwrite=True))
    agn = write_table_atomic(field.agn, directory / "truth_agn.parquet")
    return {"image": image, "agn": agn}


def preset_summary(preset: XrayPreset) -> dict[str, Any]:
    """JSON-able description of a preset (stored in the universe metadata)."""
    return preset.model_dump()
