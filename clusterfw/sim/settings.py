"""Named simulator settings: fixed or randomised parameter sets for training and held-out tests.

A *setting* turns a base :class:`~clusterfw.sim.config.SimConfig` into the parameters of one sky
(one patch, or one group of training cutouts) by drawing from its ranges:

``default``
    Today's simulator, unchanged (no draw).
``randomised``
    The training mixture. Per sky: profile family uniform in {``a10``, ``planck13``, ``beta``}
    — or, with probability 0.5, drawn halo by halo from the three (so the cutouts of one sky
    differ) — with the concentration scaled by a log-uniform factor in [0.75, 1.33] and a per-halo
    lognormal concentration scatter in [0, 0.25] (β-model: β in [0.6, 0.9], r_c/R500 in
    [0.1, 0.35]; skies with β-model halos truncate every profile at 2–3 R500); Y–M
    normalisation ×[0.8, 1.2], σ_lnY in [0.1, 0.3];
    ellipticity on, minimum axis ratio in [0.5, 0.8]; kSZ on with probability 0.75
    (v_rms in [200, 400] km/s); radio and dusty count amplitudes (and the clustered CIB)
    ×[0.5, 2] log-uniform; spectral-index means shifted by ±0.3 and widths in [0.2, 0.4];
    cluster-member rates ×[0, 3]; per band, white noise ×[0.7, 1.3] and beam FWHM
    ×[0.85, 1.15]. The CMB realisation is random per seed, as always.
``battaglia_hiradio``
    The held-out setting that the mixture never draws: Battaglia et al. (2012) AGN-feedback
    profiles (mass- and redshift-dependent shapes) and another radio-source model — steeper
    counts (faint/bright slopes 2.1/2.9 instead of 1.9/2.5, which ``randomised`` never changes),
    flat spectra α ~ N(−0.2, 0.45) (outside ``randomised``'s means −0.9…−0.3) and twice the
    cluster radio members of the default (0.3 per 2e14 halo). Its instrument, Y–M, ellipticity,
    kSZ and dusty-source draws use the ``randomised`` ranges, so only the profile family and the
    radio model are unseen.

Draws come from :func:`setting_rng`, which derives an independent stream from the simulation's
seed without consuming it: ``simulate_patch(PatchConfig.from_setting(name, seed), seed)`` is
reproducible, and the sky realisation (CMB, halo positions …) of a seed is the same under every
setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from clusterfw.sim.config import BandSpec, ProfileFamily, ProfileSpec, SimConfig

C = TypeVar("C", bound=SimConfig)

#: Spawn-key salt of the setting stream (far beyond any ``spawn`` index a simulation uses).
SETTING_SALT = 0x5E771E5

#: Profile families ``randomised`` draws from; ``battaglia12`` is held out.
RANDOMISED_FAMILIES: tuple[ProfileFamily, ...] = ("a10", "planck13", "beta")

#: Ranges of ``randomised`` (documented above; tests check draws stay inside them).
RANGES: dict[str, tuple[float, float]] = {
    "c500_scale": (0.75, 1.0 / 0.75),
    "c500_scatter_ln": (0.0, 0.25),
    "beta_model_beta": (0.6, 0.9),
    "beta_model_rc_r500": (0.1, 0.35),
    "beta_model_rmax_r500": (2.0, 3.0),
    "ym_norm_factor": (0.8, 1.2),
    "sigma_lny": (0.1, 0.3),
    "axis_ratio_min": (0.5, 0.8),
    "v_rms_kms": (200.0, 400.0),
    "radio_amp": (0.5, 2.0),
    "dusty_amp": (0.5, 2.0),
    "cib_amp": (0.5, 2.0),
    "radio_alpha_shift": (-0.3, 0.3),
    "radio_alpha_std": (0.2, 0.4),
    "dusty_alpha_shift": (-0.3, 0.3),
    "dusty_alpha_std": (0.2, 0.4),
    "member_radio_factor": (0.0, 3.0),
    "member_dusty_factor": (0.0, 3.0),
    "noise_factor": (0.7, 1.3),
    "beam_factor": (0.85, 1.15),
}
KSZ_PROBABILITY = 0.75
#: Probability that a ``randomised`` sky mixes the families halo by halo (else one per sky).
PER_HALO_PROBABILITY = 0.5


def setting_rng(rng_or_seed: Any) -> np.random.Generator:
    """An independent Generator for a setting's draws, derived without consuming the input.

    Parameters
    ----------
    rng_or_seed : int, numpy.random.SeedSequence or numpy.random.Generator
        The seed a simulation is started from. For a Generator, its SeedSequence is extended by
        the spawn key :data:`SETTING_SALT` (no state of the Generator is used or changed, so
        ``simulate_patch(cfg, g)`` gives the same sky before and after).

    Returns
    -------
    numpy.random.Generator
    """
    if isinstance(rng_or_seed, np.random.Generator):
        seq = rng_or_seed.bit_generator.seed_seq
        if not isinstance(seq, np.random.SeedSequence):
            raise ValueError("the Generator must be seeded from a SeedSequence (default_rng)")
    elif isinstance(rng_or_seed, np.random.SeedSequence):
        seq = rng_or_seed
    elif rng_or_seed is None:
        raise ValueError("give a seed or a numpy.random.Generator (settings are reproducible)")
    else:
        seq = np.random.SeedSequence(int(rng_or_seed))
    child = np.random.SeedSequence(
        seq.entropy, spawn_key=(*seq.spawn_key, SETTING_SALT), pool_size=seq.pool_size
    )
    return np.random.default_rng(child)


def _u(rng: np.random.Generator, key: str) -> float:
    lo, hi = RANGES[key]
    return float(rng.uniform(lo, hi))


def _log_u(rng: np.random.Generator, key: str) -> float:
    lo, hi = RANGES[key]
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _nuisance(cfg: SimConfig, rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Draws shared by ``randomised`` and the held-out setting (all but profile and radio)."""
    draws: dict[str, Any] = {}
    draws["ym_norm_factor"] = _u(rng, "ym_norm_factor")
    draws["sigma_lny"] = _u(rng, "sigma_lny")
    draws["axis_ratio_min"] = _u(rng, "axis_ratio_min")
    draws["ksz"] = "on" if rng.random() < KSZ_PROBABILITY else "off"
    draws["v_rms_kms"] = _u(rng, "v_rms_kms")
    draws["dusty_amp"] = _log_u(rng, "dusty_amp")
    draws["cib_amp"] = _log_u(rng, "cib_amp")
    draws["dusty_alpha_shift"] = _u(rng, "dusty_alpha_shift")
    draws["dusty_alpha_std"] = _u(rng, "dusty_alpha_std")
    draws["member_dusty_factor"] = _u(rng, "member_dusty_factor")
    bands = []
    for band in cfg.bands:
        fn = draws[f"noise_factor_{band.name}"] = _u(rng, "noise_factor")
        fb = draws[f"beam_factor_{band.name}"] = _u(rng, "beam_factor")
        bands.append(
            BandSpec(
                name=band.name,
                freq_ghz=band.freq_ghz,
                beam_fwhm_arcmin=band.beam_fwhm_arcmin * fb,
                noise_uk_arcmin=band.noise_uk_arcmin * fn,
            )
        )
    dusty = cfg.dusty.model_copy(
        update={
            "euclid_norm": cfg.dusty.euclid_norm * draws["dusty_amp"],
            "alpha_mean": cfg.dusty.alpha_mean + draws["dusty_alpha_shift"],
            "alpha_std": draws["dusty_alpha_std"],
        }
    )
    comps = cfg.components.model_copy(update={"ksz": cfg.components.ksz and draws["ksz"] == "on"})
    fields = {
        "bands": bands,
        "components": comps,
        "y500_log10_norm": cfg.y500_log10_norm + math.log10(draws["ym_norm_factor"]),
        "y500_scatter_ln": draws["sigma_lny"],
        "ellipticity": True,
        "axis_ratio_min": draws["axis_ratio_min"],
        "v_rms_kms": draws["v_rms_kms"],
        "dusty": dusty,
        "cib_clustered_d3000_uk2": cfg.cib_clustered_d3000_uk2 * draws["cib_amp"],
        "cluster_dusty_per_halo": cfg.cluster_dusty_per_halo * draws["member_dusty_factor"],
    }
    return fields, draws


def _randomised(cfg: SimConfig, rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    draws: dict[str, Any] = {}
    family = RANDOMISED_FAMILIES[int(rng.integers(len(RANDOMISED_FAMILIES)))]
    per_halo = bool(rng.random() < PER_HALO_PROBABILITY)
    draws["profile"] = "mix" if per_halo else family
    draws["c500_scale"] = _log_u(rng, "c500_scale")
    draws["c500_scatter_ln"] = _u(rng, "c500_scatter_ln")
    beta = _u(rng, "beta_model_beta")
    rc = _u(rng, "beta_model_rc_r500")
    rmax = _u(rng, "beta_model_rmax_r500")
    fields: dict[str, Any] = {}
    if per_halo or family == "beta":
        draws.update(beta_model_beta=beta, beta_model_rc_r500=rc, beta_model_rmax_r500=rmax)
        fields["profile_rmax_r500"] = rmax
    spec = ProfileSpec(
        family=family,
        mix=RANDOMISED_FAMILIES if per_halo else (),
        beta=beta,
        rc_r500=rc,
        c500_scale=draws["c500_scale"],
        c500_scatter_ln=draws["c500_scatter_ln"],
    )
    fields["profile"] = spec
    draws["radio_amp"] = _log_u(rng, "radio_amp")
    draws["radio_alpha_shift"] = _u(rng, "radio_alpha_shift")
    draws["radio_alpha_std"] = _u(rng, "radio_alpha_std")
    draws["member_radio_factor"] = _u(rng, "member_radio_factor")
    fields["radio"] = cfg.radio.model_copy(
        update={
            "euclid_norm": cfg.radio.euclid_norm * draws["radio_amp"],
            "alpha_mean": cfg.radio.alpha_mean + draws["radio_alpha_shift"],
            "alpha_std": draws["radio_alpha_std"],
        }
    )
    fields["cluster_radio_per_halo"] = cfg.cluster_radio_per_halo * draws["member_radio_factor"]
    nuisance, more = _nuisance(cfg, rng)
    return {**fields, **nuisance}, {**draws, **more}


#: The held-out radio model of ``battaglia_hiradio``.
HIRADIO = {
    "beta_faint": 2.1,
    "beta_bright": 2.9,
    "alpha_mean": -0.2,
    "alpha_std": 0.45,
    "member_radio_factor": 2.0,
}


def _battaglia_hiradio(
    cfg: SimConfig, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    fields: dict[str, Any] = {"profile": ProfileSpec(family="battaglia12")}
    fields["radio"] = cfg.radio.model_copy(
        update={k: HIRADIO[k] for k in ("beta_faint", "beta_bright", "alpha_mean", "alpha_std")}
    )
    fields["cluster_radio_per_halo"] = cfg.cluster_radio_per_halo * HIRADIO["member_radio_factor"]
    nuisance, draws = _nuisance(cfg, rng)
    return {**fields, **nuisance}, {"profile": "battaglia12", **draws}


def _default(cfg: SimConfig, rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    return {}, {}


#: name -> (description, draw function ``(base config, rng) -> (field updates, draws)``).
SETTINGS: dict[
    str,
    tuple[str, Callable[[SimConfig, np.random.Generator], tuple[dict[str, Any], dict[str, Any]]]],
] = {
    "default": ("today's simulator (A10 profiles, fixed parameters)", _default),
    "randomised": (
        "training mixture: profile family, concentration, Y-M, sources, members, noise, beams",
        _randomised,
    ),
    "battaglia_hiradio": (
        "held out: Battaglia+12 profiles and a steeper, flat-spectrum radio model",
        _battaglia_hiradio,
    ),
}


def apply_setting(config: C, name: str, rng_or_seed: Any) -> C:
    """Draw the named setting's parameters on top of ``config``.

    Parameters
    ----------
    config : SimConfig
        Base parameters (geometry, components, bands …); a ``PatchConfig`` stays a
        ``PatchConfig``.
    name : str
        A key of :data:`SETTINGS`.
    rng_or_seed : int, numpy.random.SeedSequence or numpy.random.Generator
        Passed through :func:`setting_rng` (the simulation's own seed may be used).

    Returns
    -------
    SimConfig
        A validated copy with ``setting = name`` and the draws in ``setting_draws``. ``default``
        returns ``config`` unchanged except for ``setting``.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r} (choose from {', '.join(SETTINGS)})")
    if name == "default":
        return config.model_copy(update={"setting": "default", "setting_draws": {}})
    rng = setting_rng(rng_or_seed)
    fields, draws = SETTINGS[name][1](config, rng)
    data = config.model_dump()
    data.update({k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in fields.items()})
    data["bands"] = [b.model_dump() if hasattr(b, "model_dump") else b for b in data["bands"]]
    data["setting"] = name
    data["setting_draws"] = {k: (v if isinstance(v, str) else float(v)) for k, v in draws.items()}
    return type(config).model_validate(data)
