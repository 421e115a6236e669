"""Simulation parameters (pydantic models, serialised as JSON into the truth catalogues)."""

from __future__ import annotations

import math
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BandSpec(BaseModel):
    """One instrument band: name, centre frequency, Gaussian beam and white-noise depth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    freq_ghz: float = Field(gt=0)
    beam_fwhm_arcmin: float = Field(gt=0)
    noise_uk_arcmin: float = Field(ge=0)


def spt3g_bands() -> list[BandSpec]:
    """SPT-3G-like defaults: 95/150/220 GHz, beams 1.6'/1.2'/1.0', 2.8/2.6/6.6 µK-arcmin."""
    return [
        BandSpec(name="f095", freq_ghz=95.0, beam_fwhm_arcmin=1.6, noise_uk_arcmin=2.8),
        BandSpec(name="f150", freq_ghz=150.0, beam_fwhm_arcmin=1.2, noise_uk_arcmin=2.6),
        BandSpec(name="f220", freq_ghz=220.0, beam_fwhm_arcmin=1.0, noise_uk_arcmin=6.6),
    ]


class Components(BaseModel):
    """Which sky components to include (all in µK_CMB)."""

    model_config = ConfigDict(extra="forbid")

    cmb: bool = True
    tsz: bool = True
    ksz: bool = True
    radio: bool = True
    dusty: bool = True
    cluster_sources: bool = True
    unresolved_sources: bool = True
    cib_clustered: bool = True
    galactic_dust: bool = False
    noise: bool = True
    one_over_f: bool = False
    scan_filter: bool = False


class SourcePopulation(BaseModel):
    """Broken power-law source counts ``dN/dS`` at a reference frequency, per steradian.

    ``S_b^{5/2} dN/dS(S_b) = euclid_norm`` (Jy^1.5 sr⁻¹); slope ``-beta_faint`` below the break
    ``s_break_jy`` and ``-beta_bright`` above. Sources brighter than ``s_min_jy`` are drawn one by
    one; the fainter ones are added as a Gaussian (Poisson, white) background of the same power.
    Fluxes scale as ``S ∝ ν^α`` with ``α ~ N(alpha_mean, alpha_std)`` per source.
    """

    model_config = ConfigDict(extra="forbid")

    ref_freq_ghz: float
    euclid_norm: float
    s_break_jy: float
    beta_faint: float
    beta_bright: float
    s_min_jy: float
    s_max_jy: float
    alpha_mean: float
    alpha_std: float


def radio_population() -> SourcePopulation:
    """Radio (synchrotron) sources at 150 GHz: falling spectra, ~1.6 deg⁻² above 6 mJy.

    Poisson power of the sources below 6 mJy is D_3000 ≈ 1.4 µK² at 150 GHz, as measured by SPT.
    """
    return SourcePopulation(
        ref_freq_ghz=150.0,
        euclid_norm=12.0,
        s_break_jy=0.1,
        beta_faint=1.9,
        beta_bright=2.5,
        s_min_jy=5e-4,
        s_max_jy=2.0,
        alpha_mean=-0.6,
        alpha_std=0.3,
    )


def dusty_population() -> SourcePopulation:
    """Dusty star-forming galaxies at 220 GHz: rising spectra (α ≈ 3.3).

    Poisson power of the sources below 20 mJy is D_3000 ≈ 60 µK² at 220 GHz and ≈ 7 µK² at
    150 GHz, close to the SPT measurements.
    """
    return SourcePopulation(
        ref_freq_ghz=220.0,
        euclid_norm=40.0,
        s_break_jy=8e-3,
        beta_faint=2.5,
        beta_bright=3.4,
        s_min_jy=1e-3,
        s_max_jy=1.0,
        alpha_mean=3.3,
        alpha_std=0.3,
    )


#: Pressure-profile families (:mod:`clusterfw.sim.profiles`); ``a10`` is the default.
ProfileFamily = Literal["a10", "planck13", "mcdonald14", "battaglia12", "beta"]
PROFILE_FAMILIES: tuple[ProfileFamily, ...] = (
    "a10",
    "planck13",
    "mcdonald14",
    "battaglia12",
    "beta",
)


class ProfileSpec(BaseModel):
    """Which pressure profile the halos get, and its concentration randomisation.

    Every family is normalised to the same ``Y500`` (spherical Compton-Y inside R500, from the
    Y500–M500 relation), so only the *shape* of the SZ signal changes with the family.

    ``family``
        ``a10`` (Arnaud et al. 2010 GNFW, default), ``planck13`` (Planck 2013 Int. V GNFW),
        ``mcdonald14`` (McDonald et al. 2014 SPT-cluster GNFW; the z < 0.6 and z ≥ 0.6 fits),
        ``battaglia12`` (Battaglia et al. 2012 AGN-feedback model: mass- and
        redshift-dependent core radius and outer slope) or ``beta`` (isothermal β-model
        ``P ∝ (1 + (r/r_c)²)^(-3β/2)`` with ``beta`` and ``rc_r500`` below).
    ``mix``
        When given, every halo draws its family uniformly from these (``family`` is then
        ignored): a per-halo (per-cutout) mixture of profiles in one sky.
    ``c500_scale``, ``c500_scatter_ln``
        Concentration randomisation: the profile's concentration (``c500`` of a GNFW,
        ``1/x_c`` of Battaglia, ``1/r_c`` of the β-model) is multiplied by ``c500_scale``
        times a per-halo lognormal factor of width ``c500_scatter_ln``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: ProfileFamily = "a10"
    mix: tuple[ProfileFamily, ...] = ()
    c500_scale: float = Field(1.0, gt=0.0, le=10.0)
    c500_scatter_ln: float = Field(0.0, ge=0.0, le=1.0)
    beta: float = Field(2.0 / 3.0, gt=1.0 / 3.0, le=3.0, description="β-model slope")
    rc_r500: float = Field(0.2, gt=0.0, le=5.0, description="β-model core radius / R500")

    @property
    def is_default(self) -> bool:
        """True for the plain A10 profile without concentration changes."""
        return (
            self.family == "a10"
            and not self.mix
            and self.c500_scale == 1.0
            and self.c500_scatter_ln == 0.0
        )


class SimConfig(BaseModel):
    """Physics and instrument parameters shared by flat patches and HEALPix skies.

    Masses are in Msun (no h). Defaults follow the issue: SPT-3G-like bands, Tinker08 halos above
    M500c = 3e13 Msun at 0 < z < 3, Arnaud et al. (2010) GNFW profiles with the A10 Y500–M500
    relation and 0.2 lognormal scatter.
    """

    model_config = ConfigDict(extra="forbid")

    bands: list[BandSpec] = Field(default_factory=spt3g_bands)
    components: Components = Field(default_factory=Components)

    # halos
    m500c_min: float = Field(3e13, ge=10**12.9, description="mass floor, M500c in Msun")
    z_min: float = Field(0.0, ge=0.0)
    z_max: float = Field(3.0, le=3.0)
    abundance_boost: float = Field(
        1.0, ge=1.0, description="multiply the halo abundance above boost_m500c_min (training)"
    )
    boost_m500c_min: float = 1e14

    # tSZ: E(z)^-2/3 D_A^2 Y500 = 10^y500_log10_norm h70^-1 (M500 h70 / 3e14 Msun)^y500_slope Mpc^2
    y500_log10_norm: float = math.log10(2.925e-5 * 0.6145)
    y500_slope: float = 1.78
    y500_scatter_ln: float = Field(0.2, ge=0.0, description="lognormal scatter of Y500 (σ ln Y)")
    profile_rmax_r500: float = Field(5.0, gt=1.0, description="profile truncation radius / R500")
    profile: ProfileSpec = Field(default_factory=ProfileSpec)
    ellipticity: bool = False
    axis_ratio_min: float = Field(0.6, gt=0.0, le=1.0)

    # kSZ
    v_rms_kms: float = Field(300.0, ge=0.0, description="1-D halo velocity dispersion at z=0")

    # point sources
    radio: SourcePopulation = Field(default_factory=radio_population)
    dusty: SourcePopulation = Field(default_factory=dusty_population)
    cluster_radio_per_halo: float = Field(
        0.15, ge=0.0, description="mean radio members of an M500c = 2e14 halo (∝ M500c (1+z))"
    )
    cluster_dusty_per_halo: float = Field(
        0.3, ge=0.0, description="mean dusty members of an M500c = 2e14 halo (∝ M500c (1+z)^2)"
    )
    cluster_radio_radius_r500: float = 0.15
    cluster_dusty_radius_r500: float = 0.5
    cib_clustered_d3000_uk2: float = Field(
        25.0, ge=0.0, description="clustered-CIB D_ℓ at ℓ=3000, 220 GHz, ∝ ℓ^0.8"
    )

    # galactic dust (modified blackbody, D_ℓ ∝ ℓ^-0.42)
    dust_d80_uk2: float = Field(20.0, ge=0.0, description="dust D_ℓ at ℓ=80 and 220 GHz, µK²")
    dust_beta: float = 1.6
    dust_temp_k: float = 19.6

    # noise and filtering
    ell_knee: float = Field(1000.0, gt=0.0)
    alpha_knee: float = Field(3.5, gt=0.0)
    scan_filter_ell: float = Field(300.0, gt=0.0)

    # named setting (clusterfw.sim.settings) these parameters were drawn from, and its draws
    setting: str = Field("default", description="named setting the parameters were drawn from")
    setting_draws: dict[str, float | str] = Field(
        default_factory=dict, description="the setting's random draws (informational)"
    )

    @classmethod
    def from_setting(cls, name: str, rng: Any, **fields: Any) -> Self:
        """Parameters of the named setting, drawn with ``rng`` on top of ``fields``.

        Parameters
        ----------
        name : str
            A name of :data:`clusterfw.sim.settings.SETTINGS` (``default``, ``randomised``,
            ``battaglia_hiradio``).
        rng : int, numpy.random.SeedSequence or numpy.random.Generator
            Seed of the draw (see :func:`clusterfw.sim.settings.setting_rng`): the same seed
            gives the same parameters, and the draw does not disturb a simulation started from
            the same seed or Generator.
        **fields
            Base parameters (geometry, components …) the setting modifies.

        Returns
        -------
        SimConfig
            The same class, with ``setting`` and ``setting_draws`` filled in.
        """
        from clusterfw.sim.settings import apply_setting

        return apply_setting(cls(**fields), name, rng)

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if self.z_max <= self.z_min:
            raise ValueError("z_max must exceed z_min")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"band names must be unique, got {names}")
        return self


class PatchConfig(SimConfig):
    """A flat-sky patch: geometry plus every :class:`SimConfig` parameter.

    The patch is ``size_deg`` wide (and ``height_deg`` high, default square) on square pixels of
    ``pixel_arcmin``, projected with ``CAR`` (reference point at the centre, so pixels are square
    and true-scale there) or ``TAN`` about (``ra_deg``, ``dec_deg``). Signals are simulated on a
    grid padded by ``pad_fraction`` on each side, then cropped, so the maps are not periodic.
    """

    size_deg: float = Field(2.0, gt=0.0)
    height_deg: float | None = Field(None, gt=0.0)
    pixel_arcmin: float = Field(0.25, gt=0.0)
    projection: Literal["CAR", "TAN"] = "CAR"
    ra_deg: float = 60.0
    dec_deg: float = Field(-45.0, ge=-80.0, le=80.0)
    pad_fraction: float = Field(0.1, ge=0.0, le=1.0)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the map."""
        nx = max(1, int(round(self.size_deg * 60.0 / self.pixel_arcmin)))
        height = self.height_deg if self.height_deg is not None else self.size_deg
        ny = max(1, int(round(height * 60.0 / self.pixel_arcmin)))
        return ny, nx


class HealpixConfig(SimConfig):
    """A full-sky HEALPix simulation at ``nside`` (RING). Mass floor defaults higher (1e14)."""

    nside: int = Field(512, ge=16)
    m500c_min: float = Field(1e14, ge=10**12.9)
    lmax: int | None = None

    @model_validator(mode="after")
    def _flat_only(self) -> HealpixConfig:
        if not self.profile.is_default:
            raise ValueError(
                "pressure-profile families other than a10 are flat-patch only (HEALPix paints A10)"
            )
        return self
