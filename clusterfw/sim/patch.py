"""Flat-sky patch simulation: :func:`simulate_patch` and :func:`write_patch`.

All signals are generated on a padded grid (so the cropped maps are not periodic), summed per
band in Fourier space, convolved with the band's Gaussian beam, cropped, and given instrument
noise. Randomness comes from one :class:`numpy.random.Generator`, split with
:meth:`~numpy.random.Generator.spawn` into a fixed set of streams (one per component), so that
switching one component off leaves the realisation of the others unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.fft as sfft
from astropy.wcs import WCS

from clusterfw.core.sky import Band, Sky
from clusterfw.sim import halos as halo_mod
from clusterfw.sim import profiles, sz
from clusterfw.sim.cmb import cmb_fourier, gaussian_field_fourier, white_noise_fourier
from clusterfw.sim.config import PatchConfig, SimConfig
from clusterfw.sim.cosmology import TCMB_K
from clusterfw.sim.instrument import (
    ARCMIN,
    beam_transfer,
    ell_grid,
    jy_per_sr_to_uk,
    modified_blackbody,
    one_over_f_noise_fourier,
    scan_filter,
    tsz_uk_per_y,
)
from clusterfw.sim.sources import (
    deposit_cic,
    poisson_cl_below,
    sample_fluxes,
    sample_fluxes_n,
    scale_fluxes,
)
from clusterfw.sim.truth import halo_table, sim_metadata, source_table

STREAMS = (
    "cmb",
    "halos",
    "halo_props",
    "radio",
    "dusty",
    "members",
    "background",
    "cib",
    "dust",
    "noise",
    "red_noise",
    "spare",
)
C_KMS = 299792.458
#: Per-halo GNFW shape columns added to the halo truth when the profile is not the default A10.
PROFILE_COLUMNS: dict[str, str] = {
    "profile_c500": "GNFW concentration of the halo's pressure shape (x = r/R500)",
    "profile_gamma": "GNFW inner slope",
    "profile_alpha": "GNFW transition sharpness",
    "profile_beta": "GNFW outer slope",
}


@dataclass
class SimResult:
    """The output of :func:`simulate_patch`.

    Attributes
    ----------
    sky : clusterfw.core.sky.Sky
        The band maps (µK_CMB, float32) with their WCS and bands.
    halos : pyarrow.Table
        Halo truth (see :data:`clusterfw.sim.truth.HALO_COLUMNS`); the config is in the schema
        metadata under ``clusterfw.sim_config``.
    sources : pyarrow.Table
        Point-source truth, fluxes in mJy per band.
    config : PatchConfig
    ymap : numpy.ndarray or None
        Unsmoothed Compton-y map ``(ny, nx)`` float32 (tSZ only).
    components : dict
        Unsmoothed component maps (``cmb``, ``ksz``, ``sources_<band>``, ``noise_<band>`` …),
        only when requested with ``keep_components=True``.
    seed : int or None
        The integer seed, when the simulation was started from one.
    """

    sky: Sky
    halos: pa.Table
    sources: pa.Table
    config: PatchConfig
    ymap: np.ndarray | None = None
    components: dict[str, np.ndarray] = field(default_factory=dict)
    seed: int | None = None


def as_generator(rng_or_seed: Any) -> tuple[np.random.Generator, int | None]:
    """A Generator from a seed (int), a SeedSequence, or a Generator (returned as is)."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed, None
    if rng_or_seed is None:
        raise ValueError("give a seed or a numpy.random.Generator (simulations are reproducible)")
    if isinstance(rng_or_seed, np.random.SeedSequence):
        return np.random.default_rng(rng_or_seed), None
    seed = int(rng_or_seed)
    return np.random.default_rng(seed), seed


def spawn_streams(rng: np.random.Generator) -> dict[str, np.random.Generator]:
    """Split ``rng`` into the fixed, named component streams."""
    return dict(zip(STREAMS, rng.spawn(len(STREAMS)), strict=True))


def patch_wcs(config: PatchConfig) -> WCS:
    """The celestial WCS of a patch: ``CAR`` or ``TAN`` with the reference point at the centre.

    North is up and east to the left; the pixels are ``pixel_arcmin`` squares at the centre.
    """
    ny, nx = config.shape
    w = WCS(naxis=2)
    p = config.projection
    w.wcs.ctype = [f"RA---{p}", f"DEC--{p}"]
    w.wcs.crval = [config.ra_deg % 360.0, config.dec_deg]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.cdelt = [-config.pixel_arcmin / 60.0, config.pixel_arcmin / 60.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w


def _pad(n: int, fraction: float, margin: int) -> int:
    return sfft.next_fast_len(n + 2 * (int(math.ceil(fraction * n)) + margin), real=True)


def sample_halo_catalogue(
    config: SimConfig,
    streams: dict[str, np.random.Generator],
    area_sr: float,
    nx: int,
    ny: int,
    pixel_arcmin: float,
) -> dict[str, np.ndarray]:
    """Masses, redshifts, positions (pixels) and SZ properties of the halos of a patch."""
    rng = streams["halos"]
    m500, z = halo_mod.sample_m500c_z(
        rng,
        area_sr,
        config.m500c_min,
        config.z_min,
        config.z_max,
        config.abundance_boost,
        config.boost_m500c_min,
    )
    n = m500.size
    x = rng.uniform(-0.5, nx - 0.5, n)
    y = rng.uniform(-0.5, ny - 0.5, n)
    props = streams["halo_props"]
    eps = props.standard_normal(n)
    v_unit = props.standard_normal(n)
    q = props.uniform(config.axis_ratio_min, 1.0, n)
    pa_rad = props.uniform(0.0, np.pi, n)
    conv = halo_mod.convert_m500c(m500, z)
    th500 = sz.theta500_rad(m500, z)
    y_med = sz.y500_scaling(m500, z, config.y500_log10_norm, config.y500_slope)
    y500 = y_med * np.exp(config.y500_scatter_ln * eps)
    t_kev = sz.temperature_kev(m500, z)
    v_los = v_unit * halo_mod.velocity_dispersion_kms(z, config.v_rms_kms)
    if not config.ellipticity:
        q = np.ones(n)
        pa_rad = np.zeros(n)
    extra: dict[str, np.ndarray] = {}
    if config.profile.is_default:
        y0 = sz.central_y(y500, th500, sz.projected_profile(config.profile_rmax_r500))
    else:
        # drawn after every default draw, so the other halo properties stay the same
        spec = config.profile
        c_factor = (
            np.exp(spec.c500_scatter_ln * props.standard_normal(n))
            if spec.c500_scatter_ln > 0
            else None
        )
        family_index = props.integers(len(spec.mix), size=n) if spec.mix else None
        group, shapes = profiles.halo_shapes(spec, m500, z, conv["m200c"], c_factor, family_index)
        y0 = np.empty(n)
        for k, shape in enumerate(shapes):
            sel = group == k
            table = profiles.projected_table(shape, config.profile_rmax_r500)
            y0[sel] = y500[sel] * profiles.y0_over_y500(table, th500[sel])
        for name in PROFILE_COLUMNS:
            attr = name.removeprefix("profile_")
            extra[name] = np.array([getattr(s, attr) for s in shapes], dtype=float)[group]
    return {
        **extra,
        "halo_id": np.arange(n, dtype=np.int64),
        "x_pix": x,
        "y_pix": y,
        "z": z,
        "m500c": m500,
        "m200c": conv["m200c"],
        "mvir": conv["mvir"],
        "c200c": conv["c200c"],
        "r500_mpc": halo_mod.r500_mpc(m500, z),
        "theta500_arcmin": th500 / ARCMIN,
        "theta500_rad": th500,
        "y500_sr": y500,
        "y500": sz.arcmin2(y500),
        "y500_median": sz.arcmin2(y_med),
        "y0": y0,
        "t_kev": t_kev,
        "v_los": v_los,
        "axis_ratio": q,
        "position_angle": np.degrees(pa_rad),
        "position_angle_rad": pa_rad,
        # kSZ: ΔT = -T_CMB (v/c) τ, with τ = y m_e c² / kT (isothermal)
        "ksz_uk_per_y": -TCMB_K * 1e6 * (v_los / C_KMS) * sz.ME_C2_KEV / t_kev,
    }


def sample_sources(
    config: SimConfig,
    streams: dict[str, np.random.Generator],
    area_sr: float,
    nx: int,
    ny: int,
    pixel_arcmin: float,
    halos: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Field radio and dusty sources plus cluster members; positions in map pixels."""
    comp = config.components
    freqs = [b.freq_ghz for b in config.bands]
    parts: list[dict[str, np.ndarray]] = []
    for code, name, enabled in ((0, "radio", comp.radio), (1, "dusty", comp.dusty)):
        if not enabled:
            continue
        pop = getattr(config, name)
        rng = streams[name]
        flux = sample_fluxes(rng, pop, area_sr, pop.s_min_jy)
        n = flux.size
        alpha = rng.normal(pop.alpha_mean, pop.alpha_std, n)
        parts.append(
            {
                "x_pix": rng.uniform(-0.5, nx - 0.5, n),
                "y_pix": rng.uniform(-0.5, ny - 0.5, n),
                "population": np.full(n, code),
                "halo_id": np.full(n, -1, dtype=np.int64),
                "spectral_index": alpha,
                "flux": scale_fluxes(flux, alpha, pop.ref_freq_ghz, freqs),
            }
        )
    if comp.cluster_sources and halos["m500c"].size:
        rng = streams["members"]
        m, z = halos["m500c"], halos["z"]
        th_pix = halos["theta500_arcmin"] / pixel_arcmin
        for code, name, lam, radius in (
            (
                2,
                "radio",
                config.cluster_radio_per_halo * (m / 2e14) * (1 + z),
                config.cluster_radio_radius_r500,
            ),
            (
                3,
                "dusty",
                config.cluster_dusty_per_halo * (m / 2e14) * (1 + z) ** 2,
                config.cluster_dusty_radius_r500,
            ),
        ):
            pop = getattr(config, name)
            counts = rng.poisson(lam)
            host = np.repeat(np.arange(m.size), counts)
            n = host.size
            flux = sample_fluxes_n(rng, pop, n, pop.s_min_jy) if n else np.zeros(0)
            alpha = rng.normal(pop.alpha_mean, pop.alpha_std, n)
            r = radius * th_pix[host] * np.sqrt(-2.0 * np.log1p(-rng.random(n)))
            phi = rng.uniform(0.0, 2.0 * np.pi, n)
            x = halos["x_pix"][host] + r * np.cos(phi)
            y = halos["y_pix"][host] + r * np.sin(phi)
            inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
            parts.append(
                {
                    "x_pix": x[inside],
                    "y_pix": y[inside],
                    "population": np.full(inside.sum(), code),
                    "halo_id": halos["halo_id"][host][inside],
                    "spectral_index": alpha[inside],
                    "flux": scale_fluxes(flux, alpha, pop.ref_freq_ghz, freqs)[:, inside],
                }
            )
    if not parts:
        return {
            "x_pix": np.zeros(0),
            "y_pix": np.zeros(0),
            "population": np.zeros(0, dtype=np.int8),
            "halo_id": np.zeros(0, dtype=np.int64),
            "spectral_index": np.zeros(0),
            "flux": np.zeros((len(freqs), 0)),
            "source_id": np.zeros(0, dtype=np.int64),
        }
    out = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
    out["source_id"] = np.arange(out["x_pix"].size, dtype=np.int64)
    return out


def profile_groups(
    config: SimConfig, halos: dict[str, np.ndarray]
) -> list[tuple[slice | np.ndarray, sz.ProjectedProfile]]:
    """Halos that share a pressure shape, with its projected table.

    The default A10 profile gives one group of all halos (``slice(None)``); other families give
    one group per distinct (quantised) shape, read from the ``profile_*`` halo columns.
    """
    if config.profile.is_default:
        return [(slice(None), sz.projected_profile(config.profile_rmax_r500))]
    params = np.stack([halos[name] for name in PROFILE_COLUMNS], axis=1)
    distinct, group = np.unique(params, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    return [
        (
            np.flatnonzero(group == k),
            profiles.projected_table(
                profiles.GNFWShape(*map(float, row)), config.profile_rmax_r500
            ),
        )
        for k, row in enumerate(distinct)
    ]


def add_profile_columns(table: pa.Table, halos: dict[str, np.ndarray]) -> pa.Table:
    """Append the per-halo GNFW shape columns (:data:`PROFILE_COLUMNS`) to a halo truth table."""
    from clusterfw.core.schema import plugin_field

    for name, desc in PROFILE_COLUMNS.items():
        table = table.append_column(
            plugin_field(name, pa.float64(), "", desc), pa.array(halos[name], pa.float64())
        )
    return table


def _cib_cl(d3000: float):
    def cl(ell: np.ndarray) -> np.ndarray:
        ell = np.maximum(ell, 50.0)
        return d3000 * 2.0 * np.pi / (ell * (ell + 1.0)) * (ell / 3000.0) ** 0.8

    return cl


def _dust_cl(d80: float):
    def cl(ell: np.ndarray) -> np.ndarray:
        ell = np.maximum(ell, 20.0)
        return d80 * 2.0 * np.pi / (ell * (ell + 1.0)) * (ell / 80.0) ** -0.42

    return cl


def simulate_patch(
    config: PatchConfig | None = None,
    rng_or_seed: Any = 0,
    *,
    keep_components: bool = False,
    keep_ymap: bool = True,
) -> SimResult:
    """Simulate a multi-band millimetre sky patch with its truth catalogues.

    Parameters
    ----------
    config : PatchConfig, optional
        Geometry, components and physics (defaults: 2°×2° at 0.25', SPT-3G-like bands).
    rng_or_seed : int or numpy.random.Generator
        The single source of randomness. The same seed gives bit-identical maps.
    keep_components : bool
        Also return the unsmoothed component maps in ``result.components``.
    keep_ymap : bool
        Return the unsmoothed Compton-y map (default True).

    Returns
    -------
    SimResult

    Examples
    --------
    >>> from clusterfw.sim import PatchConfig, simulate_patch
    >>> res = simulate_patch(PatchConfig(size_deg=0.5), 1)
    >>> res.sky.maps.shape
    (3, 120, 120)
    """
    cfg = config if config is not None else PatchConfig()
    rng, seed = as_generator(rng_or_seed)
    streams = spawn_streams(rng)
    comp = cfg.components
    ny, nx = cfg.shape
    pix = cfg.pixel_arcmin
    pix_sr = (pix * ARCMIN) ** 2
    area_sr = ny * nx * pix_sr
    max_beam = max(b.beam_fwhm_arcmin for b in cfg.bands)
    margin = int(math.ceil(6.0 * max_beam / pix)) + 4
    nyp, nxp = _pad(ny, cfg.pad_fraction, margin), _pad(nx, cfg.pad_fraction, margin)
    oy, ox = (nyp - ny) // 2, (nxp - nx) // 2
    wcs = patch_wcs(cfg)
    freqs = [b.freq_ghz for b in cfg.bands]
    nb = len(freqs)

    # --- halos and SZ ------------------------------------------------------------------
    halos = sample_halo_catalogue(cfg, streams, area_sr, nx, ny, pix)
    ywork = np.zeros((nyp, nxp)) if (comp.tsz or comp.ksz) else None
    kwork = np.zeros((nyp, nxp)) if comp.ksz else None
    if ywork is not None and halos["m500c"].size:
        for sel, table in profile_groups(cfg, halos):
            sz.paint_halos(
                ywork,
                kwork,
                halos["x_pix"][sel] + ox,
                halos["y_pix"][sel] + oy,
                halos["theta500_rad"][sel] / (pix * ARCMIN),
                halos["y500_sr"][sel],
                halos["ksz_uk_per_y"][sel],
                pix_sr,
                table,
                halos["axis_ratio"][sel] if cfg.ellipticity else None,
                halos["position_angle_rad"][sel] if cfg.ellipticity else None,
            )

    # --- point sources ----------------------------------------------------------------
    srcs = sample_sources(cfg, streams, area_sr, nx, ny, pix, halos)
    to_uk = np.array([jy_per_sr_to_uk(f) for f in freqs]) / pix_sr  # µK per Jy in a pixel
    if srcs["x_pix"].size:
        work = deposit_cic(
            (nyp, nxp), srcs["x_pix"] + ox, srcs["y_pix"] + oy, srcs["flux"] * to_uk[:, None]
        )
    else:
        work = np.zeros((nb, 1, 1))
    components: dict[str, np.ndarray] = {}
    if keep_components and srcs["x_pix"].size:
        for b, band in enumerate(cfg.bands):
            components[f"sources_{band.name}"] = work[b, oy : oy + ny, ox : ox + nx].astype(
                np.float32
            )

    # unresolved sources: white Gaussian background with the Poisson power below s_min
    backgrounds: list[tuple[np.ndarray, np.ndarray]] = []  # (rfft2 of field, µK per band)
    if comp.unresolved_sources:
        rng_bg = streams["background"]
        for name, enabled in (("radio", comp.radio), ("dusty", comp.dusty)):
            pop = getattr(cfg, name)
            field_k = white_noise_fourier(rng_bg, nyp, nxp)
            if not enabled:
                continue
            cl_ref = poisson_cl_below(pop, pop.s_min_jy)  # Jy^2 / sr
            amps = np.array(
                [
                    math.sqrt(cl_ref / pix_sr)
                    * (f / pop.ref_freq_ghz) ** pop.alpha_mean
                    * float(jy_per_sr_to_uk(f))
                    for f in freqs
                ]
            )
            backgrounds.append((field_k, amps))
    y_k = sfft.rfft2(ywork, workers=-1) if (comp.tsz and ywork is not None) else None
    k_k = sfft.rfft2(kwork, workers=-1) if kwork is not None else None
    crop = (slice(oy, oy + ny), slice(ox, ox + nx))
    ymap = ywork[crop].astype(np.float32) if (keep_ymap and ywork is not None) else None
    if keep_components and kwork is not None:
        components["ksz"] = kwork[crop].astype(np.float32)
    del ywork, kwork

    # --- Fourier-space components --------------------------------------------------------
    cmb_k = cmb_fourier(streams["cmb"], nyp, nxp, pix) if comp.cmb else None
    cib_k = None
    if comp.cib_clustered and comp.dusty and cfg.cib_clustered_d3000_uk2 > 0:
        cib_k = gaussian_field_fourier(
            streams["cib"], nyp, nxp, pix, _cib_cl(cfg.cib_clustered_d3000_uk2)
        )
    dust_k = None
    if comp.galactic_dust and cfg.dust_d80_uk2 > 0:
        dust_k = gaussian_field_fourier(streams["dust"], nyp, nxp, pix, _dust_cl(cfg.dust_d80_uk2))
    if keep_components:
        for name, fk in (("cmb", cmb_k), ("cib_clustered_220", cib_k), ("dust_220", dust_k)):
            if fk is not None:
                components[name] = sfft.irfft2(fk, s=(nyp, nxp), workers=-1)[crop].astype(
                    np.float32
                )

    ell, ell_x, _ = ell_grid(nyp, nxp, pix)
    filt = scan_filter(ell_x, cfg.scan_filter_ell) if comp.scan_filter else None
    uk220 = float(jy_per_sr_to_uk(220.0))
    maps = np.empty((nb, ny, nx), dtype=np.float32)
    # cloud-in-cell deposit = convolution with a 1-pixel triangle: divide its window out, so
    # point sources sit at their exact sub-pixel positions with exactly the band's beam
    uy = sfft.fftfreq(nyp)[:, None]
    ux = sfft.rfftfreq(nxp)[None, :]
    cic_window = (np.sinc(uy) * np.sinc(ux)) ** 2
    has_sources = srcs["x_pix"].size > 0
    for b, band in enumerate(cfg.bands):
        f = band.freq_ghz
        if has_sources:
            fk = sfft.rfft2(work[b], workers=-1) / cic_window
        else:
            fk = np.zeros((nyp, nxp // 2 + 1), dtype=np.complex128)
        for bg_k, amps in backgrounds:
            fk += amps[b] * bg_k
        if y_k is not None:
            fk += float(tsz_uk_per_y(f)) * y_k
        if k_k is not None:
            fk += k_k
        if cmb_k is not None:
            fk += cmb_k
        if cib_k is not None:
            fk += cib_k * ((f / 220.0) ** cfg.dusty.alpha_mean * float(jy_per_sr_to_uk(f)) / uk220)
        if dust_k is not None:
            ratio = float(
                modified_blackbody(f, cfg.dust_beta, cfg.dust_temp_k)
                / modified_blackbody(220.0, cfg.dust_beta, cfg.dust_temp_k)
            )
            fk += dust_k * (ratio * float(jy_per_sr_to_uk(f)) / uk220)
        fk *= beam_transfer(ell, band.beam_fwhm_arcmin)
        if filt is not None:
            fk *= filt
        sky_b = sfft.irfft2(fk, s=(nyp, nxp), workers=-1)[oy : oy + ny, ox : ox + nx]
        if comp.noise:
            noise = _noise_map(cfg, streams, band, ny, nx)
            if keep_components:
                components[f"noise_{band.name}"] = noise.astype(np.float32)
            sky_b = sky_b + noise
        maps[b] = sky_b
    del work

    # --- truth tables ----------------------------------------------------------------
    ra, dec = wcs.pixel_to_world_values(halos["x_pix"], halos["y_pix"])
    halos["ra"], halos["dec"] = np.asarray(ra) % 360.0, np.asarray(dec)
    sra, sdec = wcs.pixel_to_world_values(srcs["x_pix"], srcs["y_pix"])
    srcs["ra"], srcs["dec"] = np.asarray(sra) % 360.0, np.asarray(sdec)
    halo_tab, src_tab, bands = truth_and_bands(cfg, seed, halos, srcs)
    if not cfg.profile.is_default:
        halo_tab = add_profile_columns(halo_tab, halos)
    sky = Sky(maps, wcs, bands)
    return SimResult(sky, halo_tab, src_tab, cfg, ymap, components, seed)


def truth_and_bands(
    cfg: SimConfig, seed: Any, halos: dict[str, np.ndarray], srcs: dict[str, Any]
) -> tuple[pa.Table, pa.Table, tuple[Band, ...]]:
    """Truth tables (halos, sources with ``ra``/``dec`` set) and the bands of a simulation."""
    meta_json = cfg.model_dump_json()
    halo_tab = halo_table(halos, sim_metadata(meta_json, seed, "halos"))
    srcs["flux_mjy"] = srcs["flux"] * 1e3
    src_tab = source_table(
        srcs, [b.name for b in cfg.bands], sim_metadata(meta_json, seed, "sources")
    )
    noise = cfg.components.noise
    bands = tuple(
        Band(b.name, b.freq_ghz, b.beam_fwhm_arcmin, b.noise_uk_arcmin if noise else None)
        for b in cfg.bands
    )
    return halo_tab, src_tab, bands


def _noise_map(
    cfg: PatchConfig,
    streams: dict[str, np.random.Generator],
    band: Any,
    ny: int,
    nx: int,
) -> np.ndarray:
    comp = cfg.components
    pix = cfg.pixel_arcmin
    white = streams["noise"].standard_normal((ny, nx)) * (band.noise_uk_arcmin / pix)
    if not (comp.one_over_f or comp.scan_filter):
        return white
    nk = sfft.rfft2(white, workers=-1)
    if comp.one_over_f:
        nk += one_over_f_noise_fourier(
            streams["red_noise"], ny, nx, pix, band.noise_uk_arcmin, cfg.ell_knee, cfg.alpha_knee
        )
    if comp.scan_filter:
        _, ell_x, _ = ell_grid(ny, nx, pix)
        nk *= scan_filter(ell_x, cfg.scan_filter_ell)
    return sfft.irfft2(nk, s=(ny, nx), workers=-1)


def write_patch(result: SimResult, directory: str | Path, prefix: str = "sim") -> dict[str, Any]:
    """Write a simulated patch: one FITS per band, the y map, and the truth catalogues.

    Files: ``<prefix>_<band>.fits`` (``FREQ``, ``BEAMFWHM``, ``BUNIT='uK_CMB'``, ``NOISE``),
    ``truth_ymap.fits`` (unsmoothed Compton-y, if kept), ``truth_halos.parquet`` and
    ``truth_sources.parquet`` (zstd; the simulation parameters are in the schema metadata under
    ``clusterfw.sim_config``). Every file is written atomically.

    Parameters
    ----------
    result : SimResult
    directory : str or Path
        Created if missing.
    prefix : str
        File-name prefix of the band maps.

    Returns
    -------
    dict
        ``maps`` (list of Path), ``halos``, ``sources`` and ``ymap`` (Path or None).
    """
    from clusterfw.core.catalog_io import write_table_atomic
    from clusterfw.core.fits_io import write_flat_sky_fits

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    maps = write_flat_sky_fits(result.sky, directory, prefix)
    ypath = None
    if result.ymap is not None:
        ypath = write_ymap_fits(result.ymap, result.sky.wcs, directory / "truth_ymap.fits")
    halos = write_table_atomic(result.halos, directory / "truth_halos.parquet")
    sources = write_table_atomic(result.sources, directory / "truth_sources.parquet")
    return {"maps": maps, "halos": halos, "sources": sources, "ymap": ypath}


def write_ymap_fits(ymap: np.ndarray, wcs: WCS, path: Path) -> Path:
    """Write a Compton-y map (dimensionless, ``BUNIT='y'``) with its WCS, atomically."""
    from astropy.io import fits

    from clusterfw.core.atomic import write_atomic

    header = wcs.celestial.to_header()
    header["BUNIT"] = ("y", "Compton-y, unsmoothed (truth)")
    hdu = fits.PrimaryHDU(np.asarray(ymap, dtype=np.float32), header=header)
    return write_atomic(Path(path), lambda tmp: hdu.writeto(tmp, overwrite=True))
