"""Halo observables at fixed mass: Y_SZ, optical richness and X-ray luminosity, jointly scattered.

Every halo of a simulated universe gets three log-normal deviates at fixed mass and redshift,
drawn jointly from a trivariate normal with standard deviations ``σ_lnY``, ``σ_lnλ``, ``σ_lnLx``
and a configurable correlation matrix (order Y, λ, L_X). The mean relations are

* **Y500–M500** — the Arnaud et al. (2010, A&A 517, A92) relation of
  :func:`clusterfw.sim.sz.y500_scaling`, as used by the millimetre simulator; its scatter
  ``σ_lnY`` is :attr:`clusterfw.sim.config.SimConfig.y500_scatter_ln` (0.2 by default, the
  simulation-based value quoted by A10; Planck 2014 XX uses 0.127 in log10 ≈ 0.29 in ln).
* **λ–M500c** — Saro et al. (2015, MNRAS 454, 2305; SPT-SZ clusters in DES SV, redMaPPer):
  ``λ = A_λ (M500c / 3e14 h70⁻¹ Msun)^B_λ ((1+z)/1.6)^C_λ`` with ``A_λ = 76.9``,
  ``B_λ = 1.020``, ``C_λ = 0.29`` and intrinsic scatter ``D_λ = σ_lnλ = 0.20``.
* **L_X–M500** — Vikhlinin et al. (2009, ApJ 692, 1033; 0.5–2 keV, rest frame, core included):
  ``ln L_X = 47.392 + 1.61 ln(M500/Msun) + 1.85 ln E(z) − 0.39 ln(h/0.72)`` (erg/s) with
  ``σ_lnLx = 0.396``; Pratt et al. (2009, A&A 498, 361) find a similar core-included scatter.

The correlation defaults: ``r(Y, L_X) = 0.5`` — both trace the hot-gas content, and
hydrodynamical simulations (Stanek et al. 2010, ApJ 715, 1508) and the XXL bright clusters
(Sereno et al. 2019, arXiv:1906.10455) find positive correlations between gas observables;
``r(Y, λ) = r(λ, L_X) = 0`` — the gas–galaxy correlations measured so far are consistent with zero
or mildly negative (LoCuSS, Mulroy et al. 2019, MNRAS 484, 60; Farahi et al. 2019, Nat. Comm. 10,
2504, ``r(M_gas, M_star) ≈ −0.5`` within R500). Set ``corr_y_richness``/``corr_richness_lx`` to
explore such anti-correlations.

Consistency with the millimetre maps: the mm simulator already drew each halo's ``Y500`` with its
own standard-normal deviate ``ε_Y``. The joint draw here *conditions on that deviate*: with the
correlation matrix factorised as ``C = L Lᵀ`` (Cholesky, Y first, so ``L₀₀ = 1``), the deviates
are ``L (ε_Y, u₁, u₂)`` with fresh ``u₁, u₂`` — their joint distribution is exactly the requested
one, and the mm maps need no change.

The total stellar mass of the members (for the stellar-mass map of the mass estimator) is a
documented **toy**: the Moster, Naab & White (2013, MNRAS 428, 3121) stellar-to-halo relation for
the central galaxy at M200c plus ``mstar_per_member`` (6e10 Msun) per richness unit for the
satellites, so it scatters with λ.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clusterfw.sim import cosmology as cosmo

MPC_CM = 3.0856775814913673e24
OBSERVABLES = ("y", "richness", "lx")


class ObservablesConfig(BaseModel):
    """Scaling relations, scatters and their correlations (defaults: see the module docstring).

    The Y–M relation and ``σ_lnY`` live in :class:`clusterfw.sim.config.SimConfig`
    (``y500_log10_norm``, ``y500_slope``, ``y500_scatter_ln``) so that the mm maps and this
    catalogue share them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # richness: Saro et al. (2015)
    richness_norm: float = Field(76.9, gt=0.0, description="A_lambda at M500c = 3e14/h70")
    richness_slope: float = Field(1.020, description="B_lambda")
    richness_z_slope: float = Field(0.29, description="C_lambda, ((1+z)/1.6)^C")
    sigma_ln_richness: float = Field(0.202, ge=0.0, description="D_lambda")
    # L_X (0.5-2 keV, rest frame): Vikhlinin et al. (2009)
    lx_ln_norm: float = Field(47.392, description="ln L_X [erg/s] at M500 = 1 Msun, E(z)=1")
    lx_slope: float = Field(1.61)
    lx_ez_slope: float = Field(1.85)
    sigma_ln_lx: float = Field(0.396, ge=0.0)
    # correlations of the deviates at fixed mass
    corr_y_richness: float = Field(0.0, ge=-1.0, le=1.0)
    corr_y_lx: float = Field(0.5, ge=-1.0, le=1.0)
    corr_richness_lx: float = Field(0.0, ge=-1.0, le=1.0)
    # toy stellar mass of the members
    mstar_per_member: float = Field(6e10, ge=0.0, description="Msun per richness unit")

    @model_validator(mode="after")
    def _positive_definite(self) -> ObservablesConfig:
        eig = np.linalg.eigvalsh(self.correlation())
        if eig.min() <= 1e-9:
            raise ValueError(
                "the correlation matrix (corr_y_richness, corr_y_lx, corr_richness_lx) is not "
                "positive definite"
            )
        return self

    def correlation(self) -> np.ndarray:
        """The 3×3 correlation matrix of the deviates, order (Y, λ, L_X)."""
        r_yl, r_yx, r_lx = self.corr_y_richness, self.corr_y_lx, self.corr_richness_lx
        return np.array([[1.0, r_yl, r_yx], [r_yl, 1.0, r_lx], [r_yx, r_lx, 1.0]])


def richness_median(m500c: np.ndarray, z: np.ndarray, cfg: ObservablesConfig) -> np.ndarray:
    """Saro+15 mean richness ``A (M500c h70 / 3e14)^B ((1+z)/1.6)^C``."""
    m = np.asarray(m500c, dtype=float) * cosmo.H70 / 3e14
    return (
        cfg.richness_norm
        * m**cfg.richness_slope
        * ((1.0 + np.asarray(z)) / 1.6) ** (cfg.richness_z_slope)
    )


def lx500_median(m500c: np.ndarray, z: np.ndarray, cfg: ObservablesConfig) -> np.ndarray:
    """Vikhlinin+09 mean rest-frame 0.5–2 keV luminosity inside R500, erg/s."""
    ln_l = (
        cfg.lx_ln_norm
        + cfg.lx_slope * np.log(np.asarray(m500c, dtype=float))
        + cfg.lx_ez_slope * np.log(cosmo.efunc(z))
        - 0.39 * math.log(cosmo.H / 0.72)
    )
    return np.exp(ln_l)


def luminosity_distance_cm(z: np.ndarray) -> np.ndarray:
    """Luminosity distance ``D_A (1+z)²`` in cm."""
    z = np.asarray(z, dtype=float)
    return cosmo.angular_diameter_distance(z) * (1.0 + z) ** 2 * MPC_CM


def k_correction(z: np.ndarray, t_kev: np.ndarray, e_min: float = 0.5, e_max: float = 2.0):
    """Observed-band / rest-band luminosity ratio for a bremsstrahlung continuum ``e^(−E/kT)``.

    The observed ``[e_min, e_max]`` band collects the rest-frame band ``[e_min, e_max](1+z)``:
    ``K = ∫_{e_min(1+z)}^{e_max(1+z)} e^{−E/kT} dE / ∫_{e_min}^{e_max} e^{−E/kT} dE``
    (Gaunt factor and lines ignored).
    """
    z = np.asarray(z, dtype=float)
    t = np.asarray(t_kev, dtype=float)
    a, b = e_min / t, e_max / t
    num = np.exp(-a * (1.0 + z)) - np.exp(-b * (1.0 + z))
    return num / (np.exp(-a) - np.exp(-b))


def flux_500(lx500: np.ndarray, z: np.ndarray, t_kev: np.ndarray) -> np.ndarray:
    """Observed 0.5–2 keV flux (erg s⁻¹ cm⁻²) of the luminosity inside R500."""
    return lx500 * k_correction(z, t_kev) / (4.0 * np.pi * luminosity_distance_cm(z) ** 2)


def moster13_central_mstar(m200c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Moster, Naab & White (2013) stellar mass of the central galaxy (Msun), halo mass M200c."""
    a = np.asarray(z, dtype=float) / (1.0 + np.asarray(z, dtype=float))
    m1 = 10.0 ** (11.590 + 1.195 * a)
    norm = 0.0351 - 0.0247 * a
    beta = 1.376 - 0.826 * a
    gamma = 0.608 + 0.329 * a
    m = np.asarray(m200c, dtype=float)
    return 2.0 * norm * m / ((m / m1) ** (-beta) + (m / m1) ** gamma)


def correlated_deviates(
    eps_y: np.ndarray, rng: np.random.Generator, corr: np.ndarray
) -> np.ndarray:
    """Standard-normal deviates ``(3, n)`` with correlation ``corr``, the first row ``eps_y``.

    ``L = cholesky(corr)`` has ``L₀₀ = 1``, so ``L (ε_Y, u₁, u₂)`` keeps the given Y deviate and
    draws the others conditionally on it.
    """
    eps_y = np.asarray(eps_y, dtype=float)
    chol = np.linalg.cholesky(corr)
    u = np.vstack([eps_y, rng.standard_normal((2, eps_y.size))])
    out = chol @ u
    out[0] = eps_y  # exactly, not up to rounding
    return out


def draw_observables(
    halos: dict[str, np.ndarray],
    sigma_ln_y: float,
    cfg: ObservablesConfig,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Richness, L_X, flux and stellar mass of every halo, scattered jointly with its Y.

    Parameters
    ----------
    halos : dict
        Arrays ``m500c``, ``m200c``, ``z``, ``t_kev``, ``y500`` and ``y500_median`` (as made by
        :func:`clusterfw.sim.patch.sample_halo_catalogue` or read from a truth table).
    sigma_ln_y : float
        The Y scatter the halos were drawn with (``SimConfig.y500_scatter_ln``).
    cfg : ObservablesConfig
    rng : numpy.random.Generator
        Consumed for the λ and L_X deviates (and for ``ε_Y`` when ``sigma_ln_y == 0``).

    Returns
    -------
    dict
        The columns of :data:`clusterfw.sim.truth.OBSERVABLE_COLUMNS`.
    """
    m500, z = np.asarray(halos["m500c"], float), np.asarray(halos["z"], float)
    n = m500.size
    dln_y = np.log(np.asarray(halos["y500"], float) / np.asarray(halos["y500_median"], float))
    if sigma_ln_y > 0:
        eps_y = dln_y / sigma_ln_y
        dev = correlated_deviates(eps_y, rng, cfg.correlation())
    else:
        dev = correlated_deviates(rng.standard_normal(n), rng, cfg.correlation())
    dln_lam = cfg.sigma_ln_richness * dev[1]
    dln_lx = cfg.sigma_ln_lx * dev[2]
    lam_med = richness_median(m500, z, cfg)
    lx_med = lx500_median(m500, z, cfg)
    lam = lam_med * np.exp(dln_lam)
    lx = lx_med * np.exp(dln_lx)
    mstar = moster13_central_mstar(np.asarray(halos["m200c"], float), z)
    mstar = mstar + cfg.mstar_per_member * lam
    return {
        "dln_y": dln_y,
        "richness": lam,
        "richness_median": lam_med,
        "dln_richness": dln_lam,
        "lx500": lx,
        "lx500_median": lx_med,
        "dln_lx": dln_lx,
        "fx500": flux_500(lx, z, np.asarray(halos["t_kev"], float)),
        "mstar_total": mstar,
    }
