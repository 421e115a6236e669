"""Full-sky HEALPix simulation (RING ordering), for full-sky runs and HEALPix reader tests.

The CMB is drawn as spherical-harmonic coefficients from the same camb spectrum, halos are
Poisson-sampled over the sphere and painted with ``healpy.query_disc`` stamps of the same GNFW
profile, point sources are deposited in their pixels, and each band is beam-smoothed in harmonic
space (``healpy.almxfl`` with a Gaussian ``B_ℓ``). Galactic dust, 1/f noise and the scan filter
are flat-patch only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.sky import HealpixSky
from clusterfw.sim import sz
from clusterfw.sim.cmb import lensed_cl_tt, synthesize_alm
from clusterfw.sim.config import HealpixConfig
from clusterfw.sim.instrument import ARCMIN, jy_per_sr_to_uk, tsz_uk_per_y
from clusterfw.sim.patch import (
    as_generator,
    sample_halo_catalogue,
    sample_sources,
    spawn_streams,
    truth_and_bands,
)
from clusterfw.sim.sources import poisson_cl_below


@dataclass
class HealpixResult:
    """Output of :func:`simulate_healpix`: the sky, truth tables, config and y map."""

    sky: HealpixSky
    halos: pa.Table
    sources: pa.Table
    config: HealpixConfig
    ymap: np.ndarray | None = None
    seed: int | None = None


def _paint_healpix(
    nside: int,
    ymap: np.ndarray,
    kmap: np.ndarray | None,
    ra: np.ndarray,
    dec: np.ndarray,
    halos: dict[str, np.ndarray],
    profile: sz.ProjectedProfile,
) -> None:
    import healpy as hp

    pix_sr = hp.nside2pixarea(nside)
    vecs = hp.ang2vec(ra, dec, lonlat=True)
    y_total = halos["y500_sr"] * profile.i_rmax / profile.i1
    for i in range(ra.size):
        th500 = halos["theta500_rad"][i]
        radius = profile.rmax * th500
        pix = hp.query_disc(nside, vecs[i], radius + hp.nside2resol(nside), inclusive=False)
        if pix.size == 0:
            pix = np.array([hp.vec2pix(nside, *vecs[i])])
        pv = np.asarray(hp.pix2vec(nside, pix)).T
        ang = np.arccos(np.clip(pv @ vecs[i], -1.0, 1.0))
        stamp = profile(ang / th500)
        total = stamp.sum()
        if total <= 0:
            stamp = np.ones(1)
            pix = np.array([hp.vec2pix(nside, *vecs[i])])
            total = 1.0
        stamp = stamp * (y_total[i] / (total * pix_sr))
        ymap[pix] += stamp
        if kmap is not None:
            kmap[pix] += stamp * halos["ksz_uk_per_y"][i]


def simulate_healpix(config: HealpixConfig | None = None, rng_or_seed: Any = 0) -> HealpixResult:
    """Simulate a full-sky multi-band HEALPix map with truth catalogues.

    Parameters
    ----------
    config : HealpixConfig, optional
        ``nside``, components and physics (mass floor 1e14 Msun by default: a full sky holds
        ~400 000 such halos).
    rng_or_seed : int or numpy.random.Generator

    Returns
    -------
    HealpixResult
        ``sky`` is a :class:`~clusterfw.core.sky.HealpixSky` (RING, µK_CMB). Halo and source
        ``x_pix``/``y_pix`` columns hold the RING pixel index and 0.
    """
    import healpy as hp

    cfg = config if config is not None else HealpixConfig()
    rng, seed = as_generator(rng_or_seed)
    streams = spawn_streams(rng)
    comp = cfg.components
    nside = cfg.nside
    npix = hp.nside2npix(nside)
    lmax = cfg.lmax or 3 * nside - 1
    pix_sr = hp.nside2pixarea(nside)
    freqs = [b.freq_ghz for b in cfg.bands]

    # positions drawn uniformly on the sphere, via a unit "patch" of 4π sr
    halos = sample_halo_catalogue(cfg, streams, 4.0 * np.pi, 1, 1, 1.0)
    n = halos["m500c"].size
    u = streams["halos"].random((2, n))
    hra, hdec = 360.0 * u[0], np.degrees(np.arcsin(2.0 * u[1] - 1.0))
    ymap = np.zeros(npix) if (comp.tsz or comp.ksz) else None
    kmap = np.zeros(npix) if comp.ksz else None
    if ymap is not None and n:
        _paint_healpix(
            nside, ymap, kmap, hra, hdec, halos, sz.projected_profile(cfg.profile_rmax_r500)
        )
    # members are drawn by sample_sources as pixel offsets (1 "pixel" = 1 arcmin) from their
    # host, which sits at the centre of a huge virtual grid; they are then moved onto the sphere
    big = 10**9
    halos["x_pix"] = np.full(n, big / 2.0)
    halos["y_pix"] = np.full(n, big / 2.0)
    srcs = sample_sources(cfg, streams, 4.0 * np.pi, big, big, 1.0, halos)
    ns = srcs["x_pix"].size
    us = streams["spare"].random((2, ns))
    sra, sdec = 360.0 * us[0], np.degrees(np.arcsin(2.0 * us[1] - 1.0))
    member = srcs["halo_id"] >= 0
    if member.any():
        host = srcs["halo_id"][member]
        dx = (srcs["x_pix"][member] - big / 2.0) / 60.0
        dy = (srcs["y_pix"][member] - big / 2.0) / 60.0
        sdec[member] = np.clip(hdec[host] + dy, -90.0, 90.0)
        cosd = np.maximum(np.cos(np.radians(sdec[member])), 1e-3)
        sra[member] = (hra[host] - dx / cosd) % 360.0
    halos["x_pix"] = hp.ang2pix(nside, hra, hdec, lonlat=True).astype(float)
    halos["y_pix"] = np.zeros(n)
    spix = hp.ang2pix(nside, sra, sdec, lonlat=True)
    to_uk = np.array([jy_per_sr_to_uk(f) for f in freqs]) / pix_sr

    cl = lensed_cl_tt(np.arange(lmax + 1))
    cmb_alm = synthesize_alm(streams["cmb"], cl, lmax) if comp.cmb else None
    bg = []
    if comp.unresolved_sources:
        for name, enabled in (("radio", comp.radio), ("dusty", comp.dusty)):
            white = streams["background"].standard_normal(npix)
            if enabled:
                bg.append((getattr(cfg, name), white))
    maps = np.empty((len(freqs), npix), dtype=np.float32)
    for b, band in enumerate(cfg.bands):
        f = band.freq_ghz
        real = np.zeros(npix)
        if ns:
            real += np.bincount(spix, weights=srcs["flux"][b] * to_uk[b], minlength=npix)
        for pop, white in bg:
            amp = (
                np.sqrt(poisson_cl_below(pop, pop.s_min_jy) / pix_sr)
                * (f / pop.ref_freq_ghz) ** pop.alpha_mean
                * float(jy_per_sr_to_uk(f))
            )
            real += amp * white
        if comp.tsz and ymap is not None:
            real += float(tsz_uk_per_y(f)) * ymap
        if kmap is not None:
            real += kmap
        alm = hp.map2alm(real, lmax=lmax, iter=1)
        if cmb_alm is not None:
            alm = alm + cmb_alm
        alm = hp.almxfl(alm, hp.gauss_beam(band.beam_fwhm_arcmin * ARCMIN, lmax=lmax))
        out = hp.alm2map(alm, nside, lmax=lmax)
        if comp.noise:
            sigma = band.noise_uk_arcmin / hp.nside2resol(nside, arcmin=True)
            out = out + streams["noise"].standard_normal(npix) * sigma
        maps[b] = out

    halos["ra"], halos["dec"] = hra, hdec
    srcs["ra"], srcs["dec"] = sra, sdec
    srcs["x_pix"], srcs["y_pix"] = spix.astype(float), np.zeros(ns)
    halo_tab, src_tab, bands = truth_and_bands(cfg, seed, halos, srcs)
    return HealpixResult(
        HealpixSky(maps, bands),
        halo_tab,
        src_tab,
        cfg,
        None if ymap is None else ymap.astype(np.float32),
        seed,
    )


def write_healpix(result: HealpixResult, directory: str | Path, prefix: str = "sim") -> dict:
    """Write HEALPix band maps (``FREQ``/``BEAMFWHM``/``BUNIT``/``NOISE``) and truth tables."""
    from clusterfw.core.catalog_io import write_table_atomic
    from clusterfw.core.fits_io import write_healpix_sky_fits

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    maps = write_healpix_sky_fits(result.sky, directory, prefix)
    halos = write_table_atomic(result.halos, directory / "truth_halos.parquet")
    sources = write_table_atomic(result.sources, directory / "truth_sources.parquet")
    return {"maps": maps, "halos": halos, "sources": sources, "ymap": None}
