"""Model clusters for injection: the simulator's Y500–M500 relation, A10 profile and kSZ.

Every injected cluster of mass ``M500c`` at redshift ``z`` gets, as in
:func:`clusterfw.sim.patch.sample_halo_catalogue`: ``θ500`` from R500 and D_A, ``Y500`` from
:func:`clusterfw.sim.sz.y500_scaling` with lognormal scatter ``σ_lnY``, the A10 (Arnaud et al.
2010) projected pressure profile truncated at ``rmax R500``, and (optionally) a kSZ signal from a
line-of-sight velocity drawn from the simulator's velocity dispersion. The defaults are the
simulator's (:class:`clusterfw.sim.config.SimConfig`), so a selection function measured on a
simulated sky uses the relation that made it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from clusterfw.sim import halos as halo_mod
from clusterfw.sim import sz
from clusterfw.sim.config import SimConfig
from clusterfw.sim.cosmology import TCMB_K
from clusterfw.sim.instrument import ARCMIN

C_KMS = 299792.458
_SIM = SimConfig()


class ScalingModel(BaseModel):
    """The scaling relation and profile of injected clusters (defaults: the simulator's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    y500_log10_norm: float = Field(_SIM.y500_log10_norm, description="A10-form Y–M norm")
    y500_slope: float = Field(_SIM.y500_slope, description="Y–M slope")
    y500_scatter_ln: float = Field(
        _SIM.y500_scatter_ln, ge=0.0, description="lognormal scatter of Y500 at fixed mass"
    )
    profile_rmax_r500: float = Field(_SIM.profile_rmax_r500, gt=1.0)
    ksz: bool = Field(True, description="add kSZ (v_los from the velocity dispersion)")
    v_rms_kms: float = Field(_SIM.v_rms_kms, ge=0.0)


@dataclass
class ModelClusters:
    """Properties of a batch of injected clusters (arrays of one length)."""

    m500c: np.ndarray
    z: np.ndarray
    theta500_arcmin: np.ndarray
    y500_sr: np.ndarray
    y500_median_sr: np.ndarray
    ksz_uk_per_y: np.ndarray

    def __len__(self) -> int:
        return int(self.m500c.size)

    def y_total_sr(self, rmax: float) -> np.ndarray:
        """Compton-Y inside the truncation radius ``rmax R500`` (what a stamp sums to), sr."""
        prof = sz.projected_profile(rmax)
        return self.y500_sr * prof.i_rmax / prof.i1


def median_y500_sr(m500c: np.ndarray, z: np.ndarray, model: ScalingModel) -> np.ndarray:
    """Median Y500 (sr) of the model's relation."""
    return sz.y500_scaling(m500c, z, model.y500_log10_norm, model.y500_slope)


def draw_clusters(
    m500c: np.ndarray, z: np.ndarray, model: ScalingModel, rng: np.random.Generator
) -> ModelClusters:
    """Scatter Y500 (and draw v_los) for clusters of given masses and redshifts."""
    m500c = np.asarray(m500c, dtype=float)
    z = np.asarray(z, dtype=float)
    n = m500c.size
    y_med = median_y500_sr(m500c, z, model)
    y500 = y_med * np.exp(model.y500_scatter_ln * rng.standard_normal(n))
    th = sz.theta500_rad(m500c, z) / ARCMIN
    if model.ksz:
        ksz = -rng.standard_normal(n) * ksz_sigma_uk_per_y(m500c, z, model)
    else:
        ksz = np.zeros(n)
    return ModelClusters(m500c, z, th, y500, y_med, ksz)


def ksz_sigma_uk_per_y(m500c: np.ndarray, z: np.ndarray, model: ScalingModel) -> np.ndarray:
    """1σ of the kSZ signal per unit Compton-y (µK_CMB per y) of clusters of given mass and z.

    ``ΔT_kSZ / y = −T_CMB (v_los / c) m_e c² / kT``, with ``v_los`` Gaussian of the simulator's
    velocity dispersion at ``z`` and ``T(M, z)`` its temperature; zero without ``model.ksz``.
    """
    m500c = np.asarray(m500c, dtype=float)
    z = np.asarray(z, dtype=float)
    if not model.ksz:
        return np.zeros(np.broadcast(m500c, z).shape)
    disp = halo_mod.velocity_dispersion_kms(z, model.v_rms_kms)
    return TCMB_K * 1e6 * (disp / C_KMS) * sz.ME_C2_KEV / sz.temperature_kev(m500c, z)


def y_stamp(
    theta500_arcmin: float,
    y500_sr: float,
    dx: float,
    dy: float,
    half: int,
    pix_arcmin: float,
    rmax: float,
) -> np.ndarray:
    """An unsmoothed Compton-y stamp ``(2 half + 1)²`` centred at sub-pixel offset (dx, dy).

    Painted with :func:`clusterfw.sim.sz.paint_halos` (the simulator's own painter: pixel sum
    equal to Y inside ``rmax R500``).
    """
    n = 2 * half + 1
    stamp = np.zeros((n, n))
    pix_sr = (pix_arcmin * ARCMIN) ** 2
    sz.paint_halos(
        stamp,
        None,
        np.array([half + dx]),
        np.array([half + dy]),
        np.array([theta500_arcmin / pix_arcmin]),
        np.array([y500_sr]),
        None,
        pix_sr,
        sz.projected_profile(rmax),
        max_radius_pix=half,
    )
    return stamp
