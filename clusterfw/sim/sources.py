"""Extragalactic point sources: broken power-law counts, cluster members, and their painting.

Fluxes are in Jy at each band; a source of flux S in a pixel of solid angle Ω adds
``S / Ω · (dB/dT)⁻¹`` µK_CMB (:func:`clusterfw.sim.instrument.jy_per_sr_to_uk`). Sources are
deposited with cloud-in-cell (bilinear) weights, which conserves flux and keeps the sub-pixel
position; the beam then smooths them.
"""

from __future__ import annotations

import numpy as np

from clusterfw.sim.config import SourcePopulation
from clusterfw.sim.instrument import jy_per_sr_to_uk


def _segments(pop: SourcePopulation) -> list[tuple[float, float, float, float]]:
    """(S_lo, S_hi, K, beta) pieces with ``dN/dS = K S^-beta`` (per Jy per sr)."""
    sb = pop.s_break_jy
    k_f = pop.euclid_norm * sb ** (pop.beta_faint - 2.5)
    k_b = pop.euclid_norm * sb ** (pop.beta_bright - 2.5)
    return [(0.0, sb, k_f, pop.beta_faint), (sb, pop.s_max_jy, k_b, pop.beta_bright)]


def _moment(k: float, beta: float, p: int, lo: float, hi: float) -> float:
    """∫_lo^hi S^p K S^-beta dS."""
    hi = max(hi, lo)
    e = p - beta + 1.0
    if hi <= lo:
        return 0.0
    if abs(e) < 1e-12:
        return k * np.log(hi / lo)
    if lo == 0.0:
        if e < 0:
            return np.inf
        return k * hi**e / e
    return k * (hi**e - lo**e) / e


def dnds(pop: SourcePopulation, s_jy: np.ndarray) -> np.ndarray:
    """Differential counts dN/dS (Jy⁻¹ sr⁻¹) at the reference frequency."""
    s = np.asarray(s_jy, dtype=float)
    out = np.zeros_like(s)
    for lo, hi, k, beta in _segments(pop):
        sel = (s >= lo) & (s < hi) if lo > 0 else (s > 0) & (s < hi)
        out[sel] = k * s[sel] ** -beta
    return out


def number_above(pop: SourcePopulation, s_min_jy: float) -> float:
    """Sources per steradian brighter than ``s_min_jy`` (up to ``s_max_jy``)."""
    return float(sum(_moment(k, b, 0, max(lo, s_min_jy), hi) for lo, hi, k, b in _segments(pop)))


def poisson_cl_below(pop: SourcePopulation, s_cut_jy: float) -> float:
    """Poisson power ``C = ∫₀^S_cut S² dN/dS dS`` in Jy² sr⁻¹ at the reference frequency."""
    return float(sum(_moment(k, b, 2, lo, min(hi, s_cut_jy)) for lo, hi, k, b in _segments(pop)))


def sample_fluxes(
    rng: np.random.Generator, pop: SourcePopulation, n_expected_scale: float, s_min_jy: float
) -> np.ndarray:
    """Poisson-sample fluxes (Jy, reference frequency) above ``s_min_jy``.

    ``n_expected_scale`` is the solid angle in sr (or any multiplier of the per-sr counts).
    """
    out = []
    for lo, hi, k, beta in _segments(pop):
        lo = max(lo, s_min_jy)
        if hi <= lo:
            continue
        mean = _moment(k, beta, 0, lo, hi) * n_expected_scale
        n = rng.poisson(mean)
        u = rng.random(n)
        e = 1.0 - beta
        out.append((lo**e + u * (hi**e - lo**e)) ** (1.0 / e))
    return np.concatenate(out) if out else np.zeros(0)


def sample_fluxes_n(
    rng: np.random.Generator, pop: SourcePopulation, n: int, s_min_jy: float
) -> np.ndarray:
    """Exactly ``n`` fluxes (Jy) drawn from the counts above ``s_min_jy``."""
    segs = [(max(lo, s_min_jy), hi, k, b) for lo, hi, k, b in _segments(pop)]
    segs = [s for s in segs if s[1] > s[0]]
    weights = np.array([_moment(k, b, 0, lo, hi) for lo, hi, k, b in segs])
    which = rng.choice(len(segs), size=n, p=weights / weights.sum())
    u = rng.random(n)
    out = np.empty(n)
    for j, (lo, hi, _k, beta) in enumerate(segs):
        sel = which == j
        e = 1.0 - beta
        out[sel] = (lo**e + u[sel] * (hi**e - lo**e)) ** (1.0 / e)
    return out


def scale_fluxes(
    flux_ref: np.ndarray, alpha: np.ndarray, ref_freq_ghz: float, freqs_ghz: list[float]
) -> np.ndarray:
    """Fluxes at ``freqs_ghz`` for ``S ∝ ν^α``: array ``(n_band, n_source)``."""
    ratio = np.asarray(freqs_ghz, dtype=float)[:, None] / ref_freq_ghz
    return flux_ref[None, :] * ratio ** alpha[None, :]


def deposit_cic(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Cloud-in-cell deposit of ``values`` at pixel positions ``(x, y)`` onto a zero map.

    Parameters
    ----------
    shape : tuple
        ``(ny, nx)``.
    x, y : numpy.ndarray
        0-based pixel coordinates.
    values : numpy.ndarray
        ``(n,)`` or ``(k, n)`` amounts (e.g. one row per band).

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)`` or ``(k, ny, nx)`` float64.
    """
    ny, nx = shape
    values = np.atleast_2d(values)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = x - x0
    fy = y - y0
    flats, weights = [], []
    for ddy, ddx, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = x0 + ddx, y0 + ddy
        ok = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
        flats.append(yi[ok] * nx + xi[ok])
        weights.append(values[:, ok] * w[ok])
    flat = np.concatenate(flats)
    wts = np.concatenate(weights, axis=1)
    out = np.empty((values.shape[0], ny, nx))
    for b in range(values.shape[0]):
        out[b] = np.bincount(flat, weights=wts[b], minlength=ny * nx).reshape(ny, nx)
    return out


def flux_to_uk_map_factor(freq_ghz: float, pixel_sr: float) -> float:
    """µK_CMB in one pixel of ``pixel_sr`` per Jy of flux at ``freq_ghz``."""
    return float(jy_per_sr_to_uk(freq_ghz)) / pixel_sr
