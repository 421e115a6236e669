"""Multi-channel cutouts for a mass estimator (Yan et al. 2020; de Andrés et al. 2022).

Each sample is a ``size × size`` arcmin cutout (default 20' on 120 × 120 pixels of 10", as Yan
et al.) centred (within ``offset_arcmin``) on a *target* halo whose M500c and z are drawn

* ``flat`` (default): uniform in log10 M500c over ``m_range`` (1e14–1e15 Msun) and uniform in z
  over ``z_range`` (0.1–1) — the flatter-than-mass-function distribution a regression network
  wants (Yan et al. select up to 200 halos per 0.25 dex mass bin);
* ``mass-function``: the Tinker et al. (2008) abundance ``d²N/(dlog10 M dz)`` restricted to
  the same ranges (steep: most targets sit near the lower mass end).

The line of sight is populated: every halo above ``neighbour_floor`` (3e13 Msun) drawn from the
mass function (0 < z < 3) over the cutout plus ``neighbour_margin_arcmin`` on each side is
rendered too, so neighbours and projections sit in every channel (halos outside the cutout add
their wings). The target and its neighbours get the universe's correlated observables
(:func:`clusterfw.sim.shards.common.halo_table`). Channels, all on the cutout's pixels:

``y``
    Compton-y with the chosen survey's beam and white noise (:mod:`clusterfw.sim.ymap`, preset
    ``act`` or ``planck``; the per-pixel rms is the preset depth / pixel side, so the depth per
    arcmin is the preset's), float32.
``xray_counts``, ``xray_exposure``
    0.5–2 keV Poisson counts (uint16) and the effective exposure (s, float32) of
    :mod:`clusterfw.sim.xray` (preset ``erosita`` or ``xmm``: its PSF, background, AGN and
    ECF), gridded on the cutout's pixels.
``stellar_mass``
    The toy stellar-mass map of the members (Msun per pixel, float32; no noise, no beam).

Settings (``setting``, the names of :mod:`clusterfw.sim.settings`): ``default`` renders every
cutout with the simulator's fixed relations (A10 profile, σ_lnY = 0.2, round halos, the preset's
beam and depth). Any other name draws the setting's parameters **per cutout**
(:func:`clusterfw.sim.settings.apply_setting` on a stream of the sample's own seed), so a
training set does not teach a network one simulator: ``randomised`` gives each cutout a profile
family (A10, Planck13, β-model, or a per-halo mix) with a concentration scale and per-halo
scatter, a Y–M normalisation ×[0.8, 1.2] and σ_lnY in [0.1, 0.3] (the L_X and richness
scatters stay correlated with it), elliptical halos (axis ratio uniform in [q_min, 1], q_min in
[0.5, 0.8], random orientation), and the y map's beam ×[0.85, 1.15] and white noise
×[0.7, 1.3] (the factors drawn for the setting's first band). ``battaglia_hiradio`` gives
Battaglia et al. (2012) profiles with the same nuisance draws (a held-out test set). The draws
are stored as labels: ``ym_norm_factor``, ``sigma_lny``, ``axis_ratio``, ``beam_factor``,
``noise_factor``, ``profile_code`` (0 a10, 1 planck13, 2 beta, 3 per-halo mix, 4 battaglia12).

Labels: the target's ``m500c`` (the regression target), ``z``, ``m200c``, ``y500``, ``lx500``,
``fx500``, ``richness``, ``mstar_total``, ``theta500_arcmin``, the three scatter deviates
``dln_y``, ``dln_richness``, ``dln_lx``, ``xray_model_counts`` (expected counts of the target's
β-model out to 5 R500 at its exposure), its offset from the centre and ``n_neighbours`` (other
halos whose centre falls in the cutout).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from clusterfw.sim.shards.common import (
    check_range,
    draw_mass_redshift,
    halo_table,
    offsets_to_radec,
    require,
    sample_field_halos,
    sample_rng,
    sample_seed,
)

KIND = "mass-cutouts"
LABELS = (
    "m500c",
    "z",
    "m200c",
    "y500",
    "lx500",
    "fx500",
    "richness",
    "mstar_total",
    "theta500_arcmin",
    "dln_y",
    "dln_richness",
    "dln_lx",
)


class MassCutoutConfig(BaseModel):
    """Options of :func:`mass_samples` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size_arcmin: float = 20.0
    npix: int = 120
    m_min: float = 1e14
    m_max: float = 1e15
    z_min: float = 0.1
    z_max: float = 1.0
    mass_distribution: str = "flat"
    neighbour_floor: float = 3e13
    neighbour_margin_arcmin: float = 5.0
    offset_arcmin: float = 0.0
    xray_preset: str = "erosita"
    ymap_preset: str = "act"
    setting: str = "default"
    ra_deg: float = 60.0
    dec_deg: float = -45.0

    def validate_options(self) -> None:
        """One-line errors naming the option, before any work."""
        from clusterfw.sim import xray, ymap

        require(
            math.isfinite(self.size_arcmin) and self.size_arcmin > 0,
            "--size-arcmin",
            f"must be positive (got {self.size_arcmin:g})",
        )
        require(8 <= self.npix <= 1024, "--npix", f"must be 8-1024 (got {self.npix})")
        require(self.size_arcmin <= 600, "--size-arcmin", "at most 600 (10 degrees)")
        check_range("--mass-range", self.m_min, self.m_max)
        require(1e12 <= self.m_min and self.m_max <= 1e16, "--mass-range", "within 1e12-1e16 Msun")
        check_range("--z-range", self.z_min, self.z_max)
        require(self.z_max <= 3.0, "--z-range", "upper end at most 3")
        require(
            self.mass_distribution in ("flat", "mass-function"),
            "--mass-distribution",
            f"choose flat or mass-function (got {self.mass_distribution!r})",
        )
        require(
            math.isfinite(self.neighbour_floor) and self.neighbour_floor >= 10**12.9,
            "--neighbour-floor",
            f"must be at least 10^12.9 Msun (got {self.neighbour_floor:g})",
        )
        require(
            math.isfinite(self.neighbour_margin_arcmin) and self.neighbour_margin_arcmin >= 0,
            "--neighbour-margin",
            "must be >= 0",
        )
        require(
            math.isfinite(self.offset_arcmin) and 0 <= self.offset_arcmin <= self.size_arcmin / 2,
            "--offset-arcmin",
            f"must be between 0 and half the cutout ({self.size_arcmin / 2:g})",
        )
        require(-80 <= self.dec_deg <= 80, "--dec", "must be within -80..80")
        from clusterfw.sim.settings import SETTINGS

        require(
            self.setting in SETTINGS,
            "--setting",
            f"unknown setting {self.setting!r} (choose from {', '.join(SETTINGS)})",
        )
        xray.get_preset(self.xray_preset)
        ymap.get_preset(self.ymap_preset)

    @property
    def pixel_arcmin(self) -> float:
        """Pixel side of every channel."""
        return self.size_arcmin / self.npix


@dataclass
class MassCutout:
    """One rendered cutout: the halos, the X-ray and y fields (full objects, for tests)."""

    halos: pa.Table
    xray: Any
    ymap: Any
    offset_arcmin: tuple[float, float]
    draws: dict[str, float] | None = None


PROFILE_CODES = {"a10": 0, "planck13": 1, "beta": 2, "mix": 3, "battaglia12": 4}


def setting_config(cfg: MassCutoutConfig, seed: int, index: int) -> Any:
    """The :class:`~clusterfw.sim.config.SimConfig` of sample ``index`` (``None``: default)."""
    if cfg.setting == "default":
        return None
    from clusterfw.sim.config import SimConfig
    from clusterfw.sim.settings import apply_setting

    return apply_setting(SimConfig(), cfg.setting, sample_seed(seed, KIND, index, 3))


def _shape_halos(halos: pa.Table, sim: Any, rng: np.random.Generator) -> tuple[pa.Table, list]:
    """Ellipticity columns and profile groups ``[(rows, projected table), ...]`` of ``sim``."""
    from clusterfw.sim import profiles

    n = halos.num_rows
    q = rng.uniform(sim.axis_ratio_min, 1.0, n) if sim.ellipticity else np.ones(n)
    pa_deg = rng.uniform(0.0, 180.0, n) if sim.ellipticity else np.zeros(n)
    halos = halos.set_column(halos.schema.get_field_index("axis_ratio"), "axis_ratio", pa.array(q))
    halos = halos.set_column(
        halos.schema.get_field_index("position_angle"), "position_angle", pa.array(pa_deg)
    )
    spec = sim.profile
    c_factor = np.exp(spec.c500_scatter_ln * rng.standard_normal(n))
    fam = rng.integers(len(spec.mix), size=n) if spec.mix else None
    group, shapes = profiles.halo_shapes(
        spec,
        halos["m500c"].to_numpy(),
        halos["z"].to_numpy(),
        halos["m200c"].to_numpy(),
        c_factor=c_factor,
        family_index=fam,
    )
    groups = [
        (np.flatnonzero(group == k), profiles.projected_table(shp, sim.profile_rmax_r500))
        for k, shp in enumerate(shapes)
    ]
    return halos, groups


def _render_y_groups(
    halos: pa.Table, fp: Any, yp: Any, rng: np.random.Generator, groups: list
) -> Any:
    """:func:`clusterfw.sim.ymap.render_ymap` with a projected profile per group of halos."""
    from clusterfw.sim import sz, ymap
    from clusterfw.sim.footprint import world_to_pixel
    from clusterfw.sim.instrument import ARCMIN
    from clusterfw.sim.xray import gaussian_convolve

    wcs, shape = fp.wcs(yp.pixel_arcmin * 60.0)
    img = np.zeros(shape)
    mstar = np.zeros(shape)
    col = {k: halos[k].to_numpy().astype(float) for k in halos.column_names if k != "halo_id"}
    x, y = world_to_pixel(wcs, col["ra"], col["dec"])
    th_pix = col["theta500_arcmin"] / yp.pixel_arcmin
    pa_rad = np.radians(col["position_angle"])
    for rows, table in groups:
        sz.paint_halos(
            img, None, x[rows], y[rows], th_pix[rows], col["y500"][rows] * ARCMIN**2, None,
            (yp.pixel_arcmin * ARCMIN) ** 2, table, col["axis_ratio"][rows], pa_rad[rows],
        )  # fmt: skip
    ratio = (col["m200c"] / col["m500c"] * 500.0 / 200.0) ** (1 / 3)
    ymap.paint_nfw(mstar, x, y, th_pix * ratio, col["c200c"], col["mstar_total"])
    signal = gaussian_convolve(img, yp.beam_fwhm_arcmin / yp.pixel_arcmin)
    noise = rng.standard_normal(shape) * (yp.noise_y_arcmin / yp.pixel_arcmin)
    return ymap.YmapField(
        (signal + noise).astype(np.float32),
        signal.astype(np.float32),
        mstar.astype(np.float32),
        wcs,
        yp,
    )


def render_mass_cutout(
    cfg: MassCutoutConfig,
    seed: int,
    index: int,
    *,
    xray_preset: Any = None,
    ymap_preset: Any = None,
) -> MassCutout:
    """Render sample ``index`` (the target halo is row 0 of ``halos``).

    ``xray_preset`` / ``ymap_preset`` objects override the named presets (tests use an X-ray
    preset without AGN); their pixels are set to the cutout's.
    """
    from clusterfw.sim import xray, ymap
    from clusterfw.sim.footprint import Footprint

    rng = sample_rng(seed, KIND, index, 0)
    m_t, z_t = draw_mass_redshift(
        rng, 1, (cfg.m_min, cfg.m_max), (cfg.z_min, cfg.z_max), cfg.mass_distribution
    )
    off = rng.uniform(-cfg.offset_arcmin, cfg.offset_arcmin, 2) / 60.0
    side = (cfg.size_arcmin + 2 * cfg.neighbour_margin_arcmin) / 60.0
    m_n, z_n = sample_field_halos(rng, side * side, cfg.neighbour_floor, 1e16, (1e-3, 3.0))
    dx = np.concatenate([off[:1], rng.uniform(-side / 2, side / 2, m_n.size)])
    dy = np.concatenate([off[1:], rng.uniform(-side / 2, side / 2, m_n.size)])
    ra, dec = offsets_to_radec(cfg.ra_deg, cfg.dec_deg, dx, dy)
    sim = setting_config(cfg, seed, index)
    halos = halo_table(
        np.concatenate([m_t, m_n]), np.concatenate([z_t, z_n]), ra, dec, rng, sim=sim
    )
    fp = Footprint(cfg.ra_deg, cfg.dec_deg, cfg.size_arcmin / 60.0, cfg.size_arcmin / 60.0, "TAN")
    xp = xray.get_preset(xray_preset if xray_preset is not None else cfg.xray_preset)
    xp = xp.model_copy(update={"pixel_arcsec": cfg.pixel_arcmin * 60.0})
    yp = ymap.get_preset(ymap_preset if ymap_preset is not None else cfg.ymap_preset)
    yp = yp.model_copy(update={"pixel_arcmin": cfg.pixel_arcmin})
    draws = None
    if sim is None:
        xf = xray.render_xray(halos, fp, xp, sample_rng(seed, KIND, index, 1))
        yf = ymap.render_ymap(halos, fp, yp, sample_rng(seed, KIND, index, 2), stellar_mass=True)
    else:
        d = sim.setting_draws
        band = sim.bands[0].name
        fb, fn = float(d[f"beam_factor_{band}"]), float(d[f"noise_factor_{band}"])
        yp = yp.model_copy(
            update={
                "beam_fwhm_arcmin": yp.beam_fwhm_arcmin * fb,
                "noise_y_arcmin": yp.noise_y_arcmin * fn,
            }
        )
        halos, groups = _shape_halos(halos, sim, sample_rng(seed, KIND, index, 4))
        xf = xray.render_xray(halos, fp, xp, sample_rng(seed, KIND, index, 1))
        yf = _render_y_groups(halos, fp, yp, sample_rng(seed, KIND, index, 2), groups)
        draws = {
            "ym_norm_factor": float(d["ym_norm_factor"]),
            "sigma_lny": float(sim.y500_scatter_ln),
            "axis_ratio": float(halos["axis_ratio"][0].as_py()),
            "beam_factor": fb,
            "noise_factor": fn,
            "profile_code": float(PROFILE_CODES[str(d.get("profile", sim.profile.family))]),
        }
    if xf.counts.shape != (cfg.npix, cfg.npix) or yf.y.shape != (cfg.npix, cfg.npix):
        raise RuntimeError(f"cutout grids {xf.counts.shape}, {yf.y.shape} != npix {cfg.npix}")
    return MassCutout(halos, xf, yf, (float(off[0] * 60.0), float(off[1] * 60.0)), draws)


def pack_mass_cutout(cfg: MassCutoutConfig, cut: MassCutout) -> dict[str, np.ndarray]:
    """The arrays of one sample (channels and labels)."""
    h = cut.halos
    half = cfg.size_arcmin / 2.0
    dra = (h["ra"].to_numpy() - cfg.ra_deg + 180.0) % 360.0 - 180.0
    ddec = h["dec"].to_numpy() - cfg.dec_deg
    inside = (np.abs(dra * math.cos(math.radians(cfg.dec_deg))) * 60 <= half) & (
        np.abs(ddec) * 60 <= half
    )
    counts = cut.xray.counts
    if counts.max(initial=0) > np.iinfo(np.uint16).max:
        raise RuntimeError("X-ray counts exceed uint16")
    out: dict[str, np.ndarray] = {
        "y": cut.ymap.y.astype(np.float32),
        "xray_counts": counts.astype(np.uint16),
        "xray_exposure": cut.xray.exposure.astype(np.float32),
        "stellar_mass": cut.ymap.stellar_mass.astype(np.float32),
    }
    for name in LABELS:
        out[name] = np.asarray(h[name][0].as_py(), dtype=np.float64)
    out["xray_model_counts"] = np.asarray(cut.xray.cluster_counts[0], dtype=np.float64)
    out["offset_arcmin"] = np.asarray(cut.offset_arcmin, dtype=np.float32)
    out["n_neighbours"] = np.asarray(int(inside[1:].sum()), dtype=np.int32)
    for name, value in (cut.draws or {}).items():
        out[name] = np.asarray(value, dtype=np.float64)
    return out


def mass_samples(cfg: MassCutoutConfig, seed: int, n: int) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``n`` packed samples (sample ``i`` depends only on ``seed`` and ``i``)."""
    for i in range(n):
        yield pack_mass_cutout(cfg, render_mass_cutout(cfg, seed, i))
