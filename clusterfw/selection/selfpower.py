"""A cluster's own signal in the noise covariance that ``mf`` estimates from the data.

With ``noise="data"`` the mf finder measures the band cross-spectra of the tile itself, in
coarse radial bins ``b`` of ``N_b`` full-plane modes, normalised by the window's mean square
``w2`` (:func:`clusterfw.plugins.finders.mf.noise.cross_spectra`), and weights the bands with
``Ĉ_b⁻¹ a`` (``a``: the tSZ spectrum). A cluster ``s_k a`` in the tile changes the estimate to

``Ĉ_b = C_b + S_b a aᵀ + a cᵀ + c aᵀ``,  ``S_b = Σ_{k∈b} |s_k|² / (N_b w2)``,
``c = Σ_{k∈b} Re(s_k* n_k) / (N_b w2)``,

its own power along ``a`` and its cross term with the noise ``n``. Two effects follow.

**Self-power** (``S_b``). By Sherman–Morrison ``(C_b + S_b a aᵀ)⁻¹ a = C_b⁻¹ a / (1 + x_b)``
with ``x_b = S_b aᵀC_b⁻¹a``, the cluster's signal-to-noise power per mode averaged over its
bin: every mode of bin ``b`` is weighted down by ``u_b = 1 / (1 + x_b)``. As the filter is
matched, ``ζ² = Σ_k |s_k|² q_k``, so ``x_b = A² g_b`` with ``g_b = Σ_{k∈b} n t² q / (N_b w2)``
and ``A = ζ / max_s Σ n τ_s t q / √(Σ n τ_s² q)`` (``t`` the cluster's profile, ``τ_s`` the
templates, ``q = aᵀC⁻¹a``, ``n`` the modes per ``|k|``). With ``snr_calibration="filter"``
(the filter's own σ from the reweighted ``q u``) the SNR drops by about ``ζ² / (2 N_eff)``
(:func:`effective_modes`); with ``"measured"`` (the default: the filtered map's robust RMS,
the noise the reweighted filter really passes) the mean down-weighting cancels and only its
spread over the modes remains (second order in ``x``: below 0.2 % at ζ = 25 on the test sky).

**Self-cancellation** (``c``). The cross term has zero mean, but it is correlated with the
noise the filter sees at the cluster: to first order the band weights change by
``δv = −C⁻¹(a cᵀ + c aᵀ)C⁻¹a``, and ``E[δvᵀ n_k] = −s_k q (n_band + 1) / N_b`` (from
``E[c n_kᵀ] = s_k C / N_b`` for a stationary Gaussian field, ``tr(C⁻¹C) = n_band``): the
filter removes a share ``ε_b = (n_band + 1) / N_b`` of the cluster's own signal in bin ``b``,
independent of ζ (the ILC's signal loss to its own covariance). The loss is largest for large
clusters, whose signal sits in the few-mode low-``k`` bins. For the periodic, unwindowed case
this is exact to first order; the direct test on a windowed tile (a cluster added to the maps,
mf run with the covariance re-estimated and frozen) agrees with ``N_b`` and not with
``N_b w2`` (0.9753 predicted, 0.979 ± 0.002 measured for θ500 = 2′ on the 2°×2° test sky;
0.9695 against 0.970 ± 0.002 for 3.5′; white noise alone: 0.945, 0.926 against 0.949 ± 0.005,
0.926 ± 0.005; ``N_b w2`` would give 0.969, 0.962, 0.931, 0.908). A likely reason the
window's ``w2`` drops out (argued, not derived in full): the bins are one fundamental mode
wide, so the bin-limited cross term and the filter's noise at the cluster correlate through
band-passed kernels that span the whole tile, and that correlation carries the window's mean
square as well, cancelling the ``1 / w2`` of the normalisation.

The filter at scale ``s`` then reports ``ξ_s = A Σ n τ t q u (1 − ε) / √(Σ n τ² q D)`` with
``D = u²`` (measured) or ``u`` (filter), and ``ξ = max_s ξ_s``;
:func:`self_power_factor` returns ``ξ / ζ``. Left out: other clusters of the tile (already in
the covariance the analytic path uses), and the noise of the covariance estimate itself (the
same with and without the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BinGeometry:
    """How the mf finder bins a tile's noise spectrum.

    Attributes
    ----------
    bin_of_fine : numpy.ndarray
        Coarse bin of every ``k_fine`` entry.
    bin_counts : numpy.ndarray
        Full-plane modes per coarse bin (``N_b``).
    w2 : float
        Mean square of the apodisation window over the padded grid.
    """

    bin_of_fine: np.ndarray
    bin_counts: np.ndarray
    w2: float


def tile_bins(finder: Any, tile: Any) -> BinGeometry:
    """The :class:`BinGeometry` of ``tile`` as the mf finder builds it (same padded grid and
    apodisation as :func:`clusterfw.plugins.finders.mf.filters.run_filter`)."""
    from clusterfw.plugins.finders.mf import noise as noise_mod
    from clusterfw.plugins.finders.mf.grid import fourier_grid, padded_shape

    settings = finder._settings()
    maps = np.asarray(tile.maps)
    _, ny, nx = maps.shape
    pix_arcmin = float(tile.pixel_scale_arcmin)
    grid = fourier_grid(padded_shape(ny, nx), round(pix_arcmin, 9))
    valid = np.all(np.isfinite(maps), axis=0)
    window, _ = noise_mod.apodisation(valid, settings.apod_arcmin / pix_arcmin)
    w2 = float(np.sum(window.astype(np.float64) ** 2)) / grid.npix
    return BinGeometry(np.asarray(grid.bin_of_fine), np.asarray(grid.bin_counts, float), w2)


def self_power_factor(
    k: np.ndarray,
    counts: np.ndarray,
    q: np.ndarray,
    bins: BinGeometry,
    profile: str,
    scales_arcmin: np.ndarray,
    theta500_arcmin: np.ndarray,
    zeta: np.ndarray,
    calibration: str = "measured",
    n_bands: int = 1,
    cancellation: bool = True,
) -> np.ndarray:
    """``ξ / ζ``: the SNR mf reports for a cluster of noise-free SNR ``ζ`` whose own signal
    enters the data-estimated covariance (see the module docstring).

    Parameters
    ----------
    k, counts, q : numpy.ndarray
        The tile's fine ``|k|`` grid, modes per entry and noise weight ``aᵀP⁻¹a``
        (:func:`clusterfw.selection.analytic.tile_noise_weights`).
    bins : BinGeometry
        The coarse bins of the covariance estimate (:func:`tile_bins`).
    profile : str
        The filter's template profile; ``scales_arcmin`` its scales.
    theta500_arcmin : numpy.ndarray
        ``(n,)`` cluster sizes (A10 profile).
    zeta : numpy.ndarray
        ``(m,)`` noise-free SNRs.
    calibration : {"measured", "filter"}
        The mf finder's ``snr_calibration``.
    n_bands : int
        Bands combined (the cross term's ``n_band + 1``).
    cancellation : bool
        Include the cross term's self-cancellation (else only the self-power).

    Returns
    -------
    numpy.ndarray
        ``(n, m)``, at most 1.
    """
    from clusterfw.plugins.finders.mf.templates import template_transform

    if calibration not in ("measured", "filter"):
        raise ValueError(f"unknown calibration {calibration!r}")
    zeta = np.asarray(zeta, float)
    w = np.asarray(counts, float) * np.asarray(q, float)
    nbin = bins.bin_counts.size
    tau = np.stack([template_transform(profile, float(s), k) for s in scales_arcmin])
    f_sum = (tau * tau * w).sum(axis=1)
    nmodes = np.maximum(bins.bin_counts, 1.0)
    keep = 1.0 - (n_bands + 1.0) / nmodes if cancellation else np.ones(nbin)
    keep = np.maximum(keep, 0.0)[bins.bin_of_fine]
    out = np.ones((np.size(theta500_arcmin), zeta.size))
    for i, th in enumerate(np.atleast_1d(theta500_arcmin)):
        t = template_transform("arnaud", float(th), k)
        c = (tau * t * w).sum(axis=1) / np.sqrt(f_sum)
        zeta_per_a = float(c.max())
        if not zeta_per_a > 0:
            continue
        # x_b per unit A²: Σ_{k∈b} n t² q / (N_b w2); ζ² = A² Σ n t² q at the matched scale
        g = np.bincount(bins.bin_of_fine, weights=t * t * w, minlength=nbin)
        g = g / (nmodes * bins.w2)
        amp2 = (zeta / zeta_per_a) ** 2
        u = 1.0 / (1.0 + amp2[:, None] * g[bins.bin_of_fine][None, :])  # (ζ, k)
        num = (u * (keep * t * w)) @ tau.T  # (ζ, scale)
        den = (u * u if calibration == "measured" else u) @ (tau * tau * w).T
        out[i] = np.max(num / np.sqrt(den), axis=1) / zeta_per_a
    return np.minimum(out, 1.0)


def effective_modes(
    k: np.ndarray,
    counts: np.ndarray,
    q: np.ndarray,
    bins: BinGeometry,
    theta500_arcmin: float,
) -> float:
    """``N_eff = w2 (Σ_b N_b g_b)² / Σ_b N_b g_b²``: the number of modes that carry a
    cluster's SNR (``ξ ≈ ζ / √(1 + ζ²/N_eff)`` for a matched filter with the filter's own σ)."""
    from clusterfw.plugins.finders.mf.templates import template_transform

    w = np.asarray(counts, float) * np.asarray(q, float)
    t = template_transform("arnaud", float(theta500_arcmin), k)
    nb = bins.bin_counts
    g = np.bincount(bins.bin_of_fine, weights=t * t * w, minlength=nb.size)
    g = g / (np.maximum(nb, 1.0) * bins.w2)
    return float(bins.w2 * (nb * g).sum() ** 2 / max((nb * g * g).sum(), 1e-300))


class SelfPowerTable:
    """:func:`self_power_factor` of one tile on a (θ500, ζ) grid, interpolated in
    (ln θ500, ln ζ) — the analytic path's correction of ζ when mf estimates its noise from the
    data (about 0.1 s per tile).

    Parameters
    ----------
    k, counts, q, bins, profile, scales_arcmin, calibration, n_bands
        As :func:`self_power_factor`.
    """

    THETA = np.geomspace(0.5, 12.0, 9)
    ZETA = np.geomspace(2.0, 200.0, 11)

    def __init__(
        self,
        k: np.ndarray,
        counts: np.ndarray,
        q: np.ndarray,
        bins: BinGeometry,
        profile: str,
        scales_arcmin: np.ndarray,
        calibration: str = "measured",
        n_bands: int = 1,
    ) -> None:
        self.table = self_power_factor(
            k, counts, q, bins, profile, scales_arcmin, self.THETA, self.ZETA, calibration, n_bands
        )

    def factor(self, zeta: np.ndarray, theta500_arcmin: np.ndarray) -> np.ndarray:
        """``ξ / ζ`` at noise-free SNR ``zeta`` ``(n, ...)`` for θ500 ``(n,)`` (arcmin)."""
        from scipy.interpolate import RegularGridInterpolator

        interp = RegularGridInterpolator((np.log(self.THETA), np.log(self.ZETA)), self.table)
        zeta = np.asarray(zeta, float)
        th = np.clip(np.asarray(theta500_arcmin, float), self.THETA[0], self.THETA[-1])
        lt = np.broadcast_to(np.log(th).reshape((-1,) + (1,) * (zeta.ndim - 1)), zeta.shape)
        lz = np.log(np.clip(zeta, self.ZETA[0], self.ZETA[-1]))
        out = interp(np.stack([lt.ravel(), lz.ravel()], axis=1)).reshape(zeta.shape)
        return np.clip(out, 0.0, 1.0)


def table_for_tile(
    finder: Any, tile: Any, k: np.ndarray, counts: np.ndarray, q: np.ndarray
) -> SelfPowerTable | None:
    """The :class:`SelfPowerTable` of ``finder`` on ``tile``, or None when it does not apply.

    The loss exists only when mf estimates its noise covariance from the map itself
    (``noise="data"`` without ``noise_iterations``); ``k``, ``counts`` and ``q`` are the tile's
    radial bins, their mode counts and the filter responses, as the analytic path computes them.
    """
    if finder.options.noise != "data" or finder.options.noise_iterations != 0:
        return None
    return SelfPowerTable(
        k,
        counts,
        q,
        tile_bins(finder, tile),
        finder.options.profile,
        np.asarray(finder.scales, float),
        finder.options.snr_calibration,
        len(tile.bands),
    )
