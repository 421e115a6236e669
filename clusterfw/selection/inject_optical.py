"""Injections into optical images and stellar-mass maps: the simulator's cluster members.

An injected cluster of mass ``M500c`` at redshift ``z`` (its Y500 drawn by
:func:`clusterfw.selection.model.draw_clusters`) gets, as every halo of
:func:`clusterfw.sim.universe.simulate_universe`:

* a **richness** λ from the simulator's λ–M500c relation (Saro et al. 2015,
  :func:`clusterfw.sim.observables.richness_median`) with its lognormal scatter, drawn jointly
  with the cluster's Y scatter through the observables' correlation matrix
  (:func:`clusterfw.sim.observables.correlated_deviates`; ``corr_y_richness``, 0 by default);
* **member galaxies** from :func:`clusterfw.sim.optical.members.sample_members` (BCG,
  red-sequence and blue members on the halo's projected NFW profile inside R_λ, with M200c and
  c200c from :func:`clusterfw.sim.halos.convert_m500c`; halos with λ < 3 get none, as in
  :func:`clusterfw.sim.optical.render_optical`), drawn once per cluster and painted into every
  optical band (the same galaxies, each band's magnitudes) on the band file's own pixel grid
  with the renderer's Sérsic painter (:func:`clusterfw.sim.optical.render.paint_sersic`),
  convolved with the file's Moffat PSF (``PSFFWHM``, ``PSFBETA`` or β = 3) and converted to the
  file's units (nanomaggies, or counts through ``MAGZERO``); members are drawn to
  ``MAGLIM(r) + 1`` (the renderer's ``faint_margin``), the file's 10σ depth ``MAGLIM`` or, when
  the header lacks it, the depth measured from the image's own pixel noise; no noise is added
  (the renderer's images are background-limited: source photon noise is left out);
* a **stellar mass** ``M*_central(M200c, z) + 6e10 Msun × λ``
  (:func:`clusterfw.sim.observables.draw_observables`), painted as the simulator's projected NFW
  truncated at R200c (:func:`clusterfw.sim.ymap.paint_nfw`) into ``stellar_mass`` maps, in Msun
  per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import ClusterfwError
from clusterfw.selection.model import ModelClusters, ScalingModel

#: members are drawn to the r-band depth plus this margin (the optical presets' ``faint_margin``)
FAINT_MARGIN = 1.0
#: halos poorer than this get no members (:func:`clusterfw.sim.optical.render_optical`)
RICHNESS_FLOOR = 3.0
#: Moffat β when the file gives none (the optical presets' ``psf_beta``)
DEFAULT_PSF_BETA = 3.0


class OpticalInjectionError(ClusterfwError):
    """An optical or stellar-mass file lacks what injections need (one line)."""


@dataclass
class OpticalFacts:
    """What turns member galaxies into pixels of one optical image (its own grid)."""

    wcs: Any
    shape: tuple[int, int]
    pixel_arcsec: float
    filter: str
    psf_fwhm_arcsec: float
    psf_beta: float
    maglim: float  # 10σ point-source depth, AB mag
    maglim_from: str  # "MAGLIM" or "pixel noise"


@dataclass
class StellarMassFacts:
    """The grid of one stellar-mass map (Msun per pixel after the file's scale)."""

    wcs: Any
    shape: tuple[int, int]
    pixel_arcmin: float


def depth_from_noise(data: np.ndarray, kernel: np.ndarray) -> float:
    """The 10σ point-source AB depth of an image in nanomaggies from its own pixel noise.

    The inverse of :func:`clusterfw.sim.optical.render.sigma_pixel`: ``σ_pix`` is the robust
    (MAD) scatter of the finite pixels, ``f_10 = 10 σ_pix √N_eff`` with ``N_eff`` the PSF's
    effective number of pixels, ``MAGLIM = 22.5 − 2.5 log10 f_10``.
    """
    from clusterfw.sim.optical import render as rnd

    vals = np.asarray(data, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size < 16:
        raise ValueError("too few finite pixels")
    sigma = 1.4826 * float(np.median(np.abs(vals - np.median(vals))))
    if not sigma > 0:
        raise ValueError("no pixel noise")
    f10 = 10.0 * sigma * math.sqrt(rnd.effective_pixels(kernel))
    return 22.5 - 2.5 * math.log10(f10)


def optical_facts(f: Any, filter_name: str) -> OpticalFacts:
    """The injection facts of one optical band file (``PSFFWHM`` required).

    Parameters
    ----------
    f : ImageFile
        The band's file (``path``, ``hdu``, ``scale``, ``wcs``, ``shape``, ``pixel_arcmin``).
    filter_name : str
        The band's filter (``g``, ``r``, ...).

    Raises
    ------
    OpticalInjectionError
        Without ``PSFFWHM``, or without ``MAGLIM`` and a measurable pixel noise.
    """
    from astropy.io import fits

    from clusterfw.sim.optical import render as rnd

    path = Path(f.path)
    pix = float(f.pixel_arcmin) * 60.0
    with fits.open(path, memmap=False) as hdul:
        hdr = hdul[f.hdu].header
        psf = hdr.get("PSFFWHM")
        if psf is None or not float(psf) > 0:
            raise OpticalInjectionError(
                f"{path}: optical image without a positive PSFFWHM keyword (arcsec); "
                "injections need the seeing"
            )
        beta = float(hdr.get("PSFBETA", DEFAULT_PSF_BETA))
        if "MAGLIM" in hdr:
            maglim, source = float(hdr["MAGLIM"]), "MAGLIM"
        else:
            kern = rnd.moffat_kernel(float(psf) / pix, beta)
            data = np.asarray(hdul[f.hdu].data, dtype=np.float64) * float(f.scale)
            try:
                maglim, source = depth_from_noise(data, kern), "pixel noise"
            except ValueError as exc:
                raise OpticalInjectionError(
                    f"{path}: optical image without MAGLIM and its depth cannot be measured "
                    f"from the pixels ({exc}); injections need the depth"
                ) from None
    return OpticalFacts(
        f.wcs, tuple(f.shape), pix, str(filter_name), float(psf), beta, maglim, source
    )


def stellar_facts(f: Any) -> StellarMassFacts:
    """The injection facts of one stellar-mass map file."""
    return StellarMassFacts(f.wcs, tuple(f.shape), float(f.pixel_arcmin))


@dataclass
class ClusterGalaxies:
    """The optical side of a batch of injected clusters.

    Attributes
    ----------
    richness : numpy.ndarray
        λ of each cluster.
    m200c, c200c : numpy.ndarray
        NFW mass and concentration (Msun; Duffy et al. 2008).
    mstar_total : numpy.ndarray
        Stellar mass of each cluster, Msun.
    members : dict of numpy.ndarray
        Member galaxies (the columns of :func:`clusterfw.sim.optical.members.sample_members`,
        ``halo_id`` the cluster's index, ``mag_<filter>`` AB); empty without optical bands.
    richness_members : numpy.ndarray
        Red members with L ≥ 0.2 L* inside R_λ, BCG included, per cluster (0 below the floor).
    """

    richness: np.ndarray
    m200c: np.ndarray
    c200c: np.ndarray
    mstar_total: np.ndarray
    members: dict[str, np.ndarray]
    richness_members: np.ndarray


def draw_richness(
    clusters: ModelClusters, model: ScalingModel, rng: np.random.Generator
) -> np.ndarray:
    """λ of each cluster: the simulator's λ–M relation and scatter, correlated with the
    cluster's Y deviate as in :func:`clusterfw.sim.observables.draw_observables`."""
    from clusterfw.sim import observables as obs

    cfg = obs.ObservablesConfig()
    n = len(clusters)
    if model.y500_scatter_ln > 0:
        eps_y = np.log(clusters.y500_sr / clusters.y500_median_sr) / model.y500_scatter_ln
    else:
        eps_y = rng.standard_normal(n)
    dev = obs.correlated_deviates(eps_y, rng, cfg.correlation())
    lam_med = obs.richness_median(clusters.m500c, clusters.z, cfg)
    return lam_med * np.exp(cfg.sigma_ln_richness * dev[1])


def draw_galaxies(
    clusters: ModelClusters,
    ra: np.ndarray,
    dec: np.ndarray,
    model: ScalingModel,
    rng: np.random.Generator,
    filters: tuple[str, ...] = (),
    r_faint: float = 24.0,
) -> ClusterGalaxies:
    """Richness, stellar mass and (with ``filters``) member galaxies of injected clusters.

    Parameters
    ----------
    clusters : ModelClusters
    ra, dec : numpy.ndarray
        Cluster centres, deg.
    model : ScalingModel
    rng : numpy.random.Generator
    filters : tuple of str
        Filters of the optical bands (no members are drawn when empty).
    r_faint : float
        Faintest r magnitude of the members drawn.
    """
    from clusterfw.sim import halos as halo_mod
    from clusterfw.sim import observables as obs
    from clusterfw.sim.optical import members as mem

    lam = draw_richness(clusters, model, rng)
    conv = halo_mod.convert_m500c(clusters.m500c, clusters.z)
    m200, c200 = np.asarray(conv["m200c"], float), np.asarray(conv["c200c"], float)
    cfg = obs.ObservablesConfig()
    mstar = obs.moster13_central_mstar(m200, clusters.z) + cfg.mstar_per_member * lam
    n = len(clusters)
    counted = np.zeros(n, dtype=np.int64)
    members: dict[str, np.ndarray] = {}
    if filters:
        rich = np.flatnonzero(lam >= RICHNESS_FLOOR)
        bands = tuple(dict.fromkeys((*filters, "r")))
        halos = pa.table(
            {
                "halo_id": pa.array(rich.astype(np.int64)),
                "ra": pa.array(np.asarray(ra, float)[rich]),
                "dec": pa.array(np.asarray(dec, float)[rich]),
                "z": pa.array(clusters.z[rich]),
                "m200c": pa.array(m200[rich]),
                "c200c": pa.array(c200[rich]),
                "richness": pa.array(lam[rich]),
            }
        )
        members, n_counted = mem.sample_members(halos, rng, float(r_faint), bands)
        counted[rich] = n_counted
    return ClusterGalaxies(lam, m200, c200, mstar, members, counted)


def render_members(facts: OpticalFacts, members: dict[str, np.ndarray]) -> np.ndarray:
    """The member galaxies in one optical image (nanomaggies on the file's grid, no noise).

    Each cluster's members are painted (intrinsic Sérsic profiles, the renderer's stamps and
    truncation down to 5 % of the pixel noise) on a canvas around them that extends past the
    image by the PSF's reach, convolved with the file's Moffat PSF, and cropped to the image.
    """
    from clusterfw.sim.optical import render as rnd
    from clusterfw.sim.optical.field import THRESHOLD_SIGMA

    ny, nx = facts.shape
    out = np.zeros((ny, nx), dtype=np.float64)
    if not members or members["ra"].size == 0:
        return out
    pix = facts.pixel_arcsec
    kern = rnd.moffat_kernel(facts.psf_fwhm_arcsec / pix, facts.psf_beta)
    sigma = rnd.sigma_pixel(facts.maglim, kern)
    kh = kern.shape[0] // 2
    x_all, y_all = facts.wcs.world_to_pixel_values(members["ra"], members["dec"])
    x_all, y_all = np.asarray(x_all, float), np.asarray(y_all, float)
    re_all = members["r_e_arcsec"] / pix
    q_all = members["axis_ratio"]
    reach_all = np.minimum(8.0 * re_all / np.sqrt(q_all), 512.0) + 2.0
    flux_all = rnd.mag_to_nanomaggies(members[f"mag_{facts.filter}"])
    hid = members["halo_id"]
    for h in np.unique(hid):
        sel = np.flatnonzero(hid == h)
        x, y = x_all[sel], y_all[sel]
        reach = reach_all[sel]
        x0 = int(math.floor(np.min(x - reach))) - kh
        x1 = int(math.ceil(np.max(x + reach))) + kh + 1
        y0 = int(math.floor(np.min(y - reach))) - kh
        y1 = int(math.ceil(np.max(y + reach))) + kh + 1
        cx0, cx1 = max(x0, 0), min(x1, nx)
        cy0, cy1 = max(y0, 0), min(y1, ny)
        if cx1 <= cx0 or cy1 <= cy0:
            continue  # the cluster's galaxies all lie off this image
        canvas = np.zeros((1, y1 - y0, x1 - x0), dtype=np.float32)
        rnd.paint_sersic(
            canvas,
            x - x0,
            y - y0,
            flux_all[sel][None, :],
            re_all[sel],
            members["sersic_n"][sel],
            q_all[sel],
            members["position_angle"][sel],
            threshold=THRESHOLD_SIGMA * sigma,
        )
        conv = rnd.convolve_psf(canvas[0], kern)
        out[cy0:cy1, cx0:cx1] += conv[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out


def render_stellar_mass(
    facts: StellarMassFacts,
    clusters: ModelClusters,
    ra: np.ndarray,
    dec: np.ndarray,
    galaxies: ClusterGalaxies,
) -> np.ndarray:
    """The clusters' stellar mass on one stellar-mass map's grid (Msun per pixel): projected
    NFW truncated at θ200 (:func:`clusterfw.sim.ymap.paint_nfw`, pixel sums = ``mstar_total``)."""
    from clusterfw.sim.ymap import paint_nfw

    image = np.zeros(facts.shape)
    x, y = facts.wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
    ratio = (galaxies.m200c / clusters.m500c * 500.0 / 200.0) ** (1.0 / 3.0)
    th200_pix = clusters.theta500_arcmin * ratio / facts.pixel_arcmin
    paint_nfw(
        image,
        np.asarray(x, float),
        np.asarray(y, float),
        th200_pix,
        galaxies.c200c,
        galaxies.mstar_total,
    )
    return image


def faint_limit(optical: list[OpticalFacts]) -> float:
    """The faintest r magnitude to draw members to: ``MAGLIM(r) + 1`` (the renderer's rule),
    or, without an r image, the deepest band's ``MAGLIM + 2`` (r − i ≲ 1 for members)."""
    r = [o.maglim for o in optical if o.filter == "r"]
    if r:
        return max(r) + FAINT_MARGIN
    return max(o.maglim for o in optical) + FAINT_MARGIN + 1.0
