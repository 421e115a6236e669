"""Pressure-profile families for the tSZ signal, all normalised to the same ``Y500``.

Every family is written as a generalised NFW (GNFW) *shape* in ``x = r / R500``::

    p(x) = 1 / ((c x)^γ (1 + (c x)^α)^((β - γ)/α))

(only the shape matters: the amplitude is fixed by ``Y500`` from the Y500–M500 relation, as for
the default A10 profile in :mod:`clusterfw.sim.sz`):

``a10``
    Arnaud et al. (2010): c = 1.177, γ = 0.3081, α = 1.0510, β = 5.4905.
``planck13``
    Planck Collaboration Int. V (2013): c = 1.81, γ = 0.31, α = 1.33, β = 4.13.
``mcdonald14``
    McDonald et al. (2014), SPT-selected clusters: z < 0.6 — c = 2.59, γ = 0.26, α = 1.63,
    β = 3.30; z ≥ 0.6 — c = 2.59, γ = 0.15, α = 2.27, β = 3.48.
``battaglia12``
    Battaglia et al. (2012), AGN-feedback model, Δ = 200:
    ``P ∝ (x₂₀₀/x_c)^-0.3 (1 + x₂₀₀/x_c)^-β`` with ``x_c = 0.497 (M200c/1e14)^-0.00865
    (1+z)^0.731`` and ``β = 4.35 (M200c/1e14)^0.0393 (1+z)^0.415`` (M200c in Msun). In R500
    units this is a GNFW with γ = 0.3, α = 1, ``c = R500 / (x_c R200)`` and ``β + 0.3``: a larger
    core and shallower outskirts than A10 that change with mass and redshift.
``beta``
    Isothermal β-model, ``P ∝ n_e ∝ (1 + (r/r_c)²)^(-3β/2)``: γ = 0, α = 2, c = R500/r_c and
    GNFW β = 3β.

The concentration ``c`` of every family is multiplied by ``ProfileSpec.c500_scale`` and, per
halo, by ``exp(c500_scatter_ln · N(0, 1))``. With ``ProfileSpec.mix`` every halo draws its family
uniformly from the listed ones (so neighbouring clusters — and training cutouts — differ).

Per-halo shape parameters are quantised (``c`` to 4 % in ln, the outer slope to 0.1) so that
halos share tabulated projections: each distinct shape is projected once, vectorised
(Gauss–Legendre in ``t`` with ``l = X sinh t``), in ~10 ms, and cached; the plain A10 shape
reuses :func:`clusterfw.sim.sz.projected_profile` (bit-identical to the default simulator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import integrate

from clusterfw.sim import sz
from clusterfw.sim.config import ProfileSpec

#: GNFW shape parameters ``(c500, gamma, alpha, beta)`` of the fixed-shape families.
GNFW_PARAMS: dict[str, tuple[float, float, float, float]] = {
    "a10": (sz.A10["c500"], sz.A10["gamma"], sz.A10["alpha"], sz.A10["beta"]),
    "planck13": (1.81, 0.31, 1.33, 4.13),
    "mcdonald14_lowz": (2.59, 0.26, 1.63, 3.30),
    "mcdonald14_highz": (2.59, 0.15, 2.27, 3.48),
}
#: Battaglia et al. (2012) Table 1, AGN feedback, Δ = 200: ``(A0, α_m, α_z)`` of
#: ``A0 (M200c / 1e14 Msun)^α_m (1 + z)^α_z``.
BATTAGLIA12_AGN = {"xc": (0.497, -0.00865, 0.731), "beta": (4.35, 0.0393, 0.415)}
BATTAGLIA12_GAMMA = 0.3  # -γ of Battaglia's parametrisation (their γ = -0.3)
#: Quantisation of per-halo shapes: ``ln c`` to this step, and the outer slope to ``_BETA_STEP``.
_LNC_STEP = 0.04
_BETA_STEP = 0.1
_N_GAUSS = 64


@dataclass(frozen=True)
class GNFWShape:
    """A dimensionless GNFW pressure shape ``p(x)``, ``x = r / R500`` (hashable: cache key)."""

    c500: float
    gamma: float
    alpha: float
    beta: float

    def pressure(self, x: np.ndarray | float) -> np.ndarray:
        """``p(x) = 1 / ((c x)^γ (1 + (c x)^α)^((β−γ)/α))``."""
        cx = self.c500 * np.asarray(x, dtype=float)
        return 1.0 / (
            cx**self.gamma * (1.0 + cx**self.alpha) ** ((self.beta - self.gamma) / self.alpha)
        )

    def sphere_integral(self, x: float) -> float:
        """``I(x) = 3 ∫₀ˣ p(u) u² du``."""
        val, _ = integrate.quad(
            lambda u: 3.0 * float(self.pressure(u)) * u * u,
            0.0,
            x,
            limit=200,
            points=[min(x, 1.0 / self.c500)],
        )
        return float(val)


A10_SHAPE = GNFWShape(*GNFW_PARAMS["a10"])


def _quantise(shape: GNFWShape) -> GNFWShape:
    c = math.exp(round(math.log(shape.c500) / _LNC_STEP) * _LNC_STEP)
    b = round(shape.beta / _BETA_STEP) * _BETA_STEP
    return GNFWShape(round(c, 6), shape.gamma, shape.alpha, round(b, 6))


def project_shape(shape: GNFWShape, rmax: float, xs: np.ndarray) -> np.ndarray:
    """Line-of-sight projection ``g(X) = 2 ∫₀^√(rmax²−X²) p(√(X²+l²)) dl``, vectorised.

    With ``l = X sinh t`` the integrand ``p(X cosh t) X cosh t`` is smooth in ``t`` for every
    ``X`` (also near the cusp), so one Gauss–Legendre rule of :data:`_N_GAUSS` nodes per radius
    is accurate to < 1e-8 (2e-6 against the A10 ``quad`` table); ``X = 0`` is evaluated at
    ``X = 1e-9 rmax`` (the cusp ``γ < 1`` makes ``g`` finite there; the difference is
    ``O(X^(1−γ))``).
    """
    big_x = np.maximum(np.asarray(xs, dtype=float), 1e-9 * rmax)
    lmax = np.sqrt(np.maximum(rmax**2 - big_x**2, 0.0))
    t_max = np.arcsinh(lmax / big_x)
    nodes, weights = _gauss_legendre(_N_GAUSS)
    t = 0.5 * t_max[:, None] * (nodes[None, :] + 1.0)
    r = big_x[:, None] * np.cosh(t)
    vals = shape.pressure(r) * r  # p(r) dl/dt with dl/dt = X cosh t = r
    return 2.0 * 0.5 * t_max * (vals * weights[None, :]).sum(axis=1)


@lru_cache(maxsize=4)
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


@lru_cache(maxsize=4096)
def projected_table(shape: GNFWShape, rmax: float = 5.0, n: int = 400) -> sz.ProjectedProfile:
    """The tabulated projection of ``shape`` truncated at ``rmax`` (cached per shape).

    The A10 shape returns :func:`clusterfw.sim.sz.projected_profile` itself, so the default
    simulator is unchanged bit for bit. Other shapes use :func:`project_shape` on the same radii.
    """
    if shape == A10_SHAPE:
        return sz.projected_profile(rmax, n)
    xs = np.concatenate([[0.0], np.geomspace(1e-4, rmax, n)])
    g = project_shape(shape, rmax, xs)
    g[-1] = 0.0
    return sz.ProjectedProfile(rmax, xs, g, shape.sphere_integral(1.0), shape.sphere_integral(rmax))


def battaglia12_shape(m200c: float, z: float, r500_over_r200: float) -> GNFWShape:
    """The Battaglia et al. (2012) AGN-feedback shape of one halo, in R500 units."""
    a, am, az = BATTAGLIA12_AGN["xc"]
    xc = a * (m200c / 1e14) ** am * (1.0 + z) ** az
    a, am, az = BATTAGLIA12_AGN["beta"]
    beta = a * (m200c / 1e14) ** am * (1.0 + z) ** az
    return GNFWShape(1.0 / (xc / r500_over_r200), BATTAGLIA12_GAMMA, 1.0, beta + BATTAGLIA12_GAMMA)


def family_shapes(
    family: str, spec: ProfileSpec, m500c: np.ndarray, z: np.ndarray, m200c: np.ndarray
) -> list[GNFWShape]:
    """The unscaled shape of ``family`` for every halo (β-model parameters from ``spec``)."""
    n = np.asarray(m500c).size
    if family == "battaglia12":
        ratio = (np.asarray(m500c) * 200.0 / (np.asarray(m200c, dtype=float) * 500.0)) ** (1 / 3)
        return [battaglia12_shape(m2, zz, rr) for m2, zz, rr in zip(m200c, z, ratio, strict=True)]
    if family == "beta":
        return [GNFWShape(1.0 / spec.rc_r500, 0.0, 2.0, 3.0 * spec.beta)] * n
    if family == "mcdonald14":
        lo = GNFWShape(*GNFW_PARAMS["mcdonald14_lowz"])
        hi = GNFWShape(*GNFW_PARAMS["mcdonald14_highz"])
        return [lo if zz < 0.6 else hi for zz in np.asarray(z)]
    return [GNFWShape(*GNFW_PARAMS[family])] * n


def halo_shapes(
    spec: ProfileSpec,
    m500c: np.ndarray,
    z: np.ndarray,
    m200c: np.ndarray,
    c_factor: np.ndarray | None = None,
    family_index: np.ndarray | None = None,
) -> tuple[np.ndarray, list[GNFWShape]]:
    """The (quantised) pressure shape of every halo.

    Parameters
    ----------
    spec : ProfileSpec
        Family and concentration options.
    m500c, z, m200c : numpy.ndarray
        Halo masses (Msun) and redshifts.
    c_factor : numpy.ndarray, optional
        Per-halo concentration factors (``exp(c500_scatter_ln · ε)``); default 1.
    family_index : numpy.ndarray, optional
        With ``spec.mix``: each halo's family as an index into ``spec.mix``.

    Returns
    -------
    group : numpy.ndarray
        ``(n,)`` int index of each halo's shape in ``shapes``.
    shapes : list of GNFWShape
        The distinct shapes, sorted.
    """
    m500c = np.asarray(m500c, dtype=float)
    n = m500c.size
    z = np.asarray(z, dtype=float)
    scale = spec.c500_scale * (np.ones(n) if c_factor is None else np.asarray(c_factor, float))
    if spec.mix:
        if family_index is None or np.asarray(family_index).shape != (n,):
            raise ValueError("a profile mix needs one family index per halo")
        options = [family_shapes(f, spec, m500c, z, m200c) for f in spec.mix]
        per = [options[k][i] for i, k in enumerate(np.asarray(family_index))]
    else:
        per = family_shapes(spec.family, spec, m500c, z, m200c)
    shapes_all = []
    for s, f in zip(per, scale, strict=True):
        shaped = GNFWShape(s.c500 * f, s.gamma, s.alpha, s.beta) if f != 1.0 else s
        shapes_all.append(shaped if shaped == A10_SHAPE else _quantise(shaped))
    distinct = sorted(set(shapes_all), key=lambda s: (s.c500, s.gamma, s.alpha, s.beta))
    index = {s: i for i, s in enumerate(distinct)}
    group = np.array([index[s] for s in shapes_all], dtype=np.int64)
    return group, distinct


def y0_over_y500(table: sz.ProjectedProfile, theta500_rad: float | np.ndarray) -> np.ndarray:
    """Central y per unit ``Y500`` (sr⁻¹): ``g(0) / (θ500² 4π/3 I(1))``."""
    return table.g[0] / (np.asarray(theta500_rad) ** 2 * 4.0 * np.pi / 3.0 * table.i1)
