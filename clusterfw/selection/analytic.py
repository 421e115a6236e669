"""The fast analytic selection function of the ``mf`` finder (no injections).

For every tile, the filter's own noise is measured by the mf plugin itself
(:meth:`~clusterfw.plugins.finders.mf.finder.MatchedFilterFinder.filter_tile`: ``σ_s`` of the
central-y estimate at each search scale ``s``, in the finder's SNR unit), and the tile's noise
weights ``q(k) = aᵀP⁻¹a`` are rebuilt from the same band transforms and covariance estimate
(:mod:`clusterfw.plugins.finders.mf.filters`, :mod:`~clusterfw.plugins.finders.mf.bands`).
A model cluster of mass ``M500c`` at redshift ``z`` (A10 profile of scale θ500, total Compton-Y
from the scaling relation) then has the noise-free SNR

``ζ = max_s  Y_eff Q_s / σ_s``,  ``Q_s = Σ_k n_k τ_s(k) t(k) q(k) / Σ_k n_k τ_s(k)² q(k)``,

where ``τ_s`` is the filter's template at scale ``s``, ``t`` the cluster's own profile
(normalised to 1 at its centre) and ``Y_eff = Y_tot / t(0)`` its central y: ``Q_s`` is the
filter-mismatch factor (nemo's *Q*) of a template that is not the cluster's shape. The measured
SNR of a peak search over position and scale is biased up (Vanderlinde et al. 2010):
``ξ ~ N(√(ζ² + d), 1)`` with ``d`` free parameters (3: two for the position, one for the
scale), so the completeness at threshold ``q`` is ``Φ(√(ζ² + d) − q)``, times the chance of
not being merged into a brighter detection group of the map itself (:class:`MergeTable`: the mf
finder reports one peak per group of connected pixels above ``snr_min`` in the maximum over
scales). When mf estimates its noise covariance from the data, ζ is first lowered by the
cluster's own signal in that estimate (:mod:`clusterfw.selection.selfpower`). All is averaged
over the lognormal Y–M scatter (Gauss–Hermite), over the (M, z) cell (log-uniform in M, uniform
in z, as the injections) and, for the whole map, over the tiles weighted by their area open to
injections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import special

from clusterfw.selection.grid import MassRedshiftGrid
from clusterfw.selection.model import ScalingModel, ksz_sigma_uk_per_y, median_y500_sr
from clusterfw.sim import sz
from clusterfw.sim.instrument import ARCMIN

#: Points per cell axis (mass, redshift), Gauss–Hermite nodes of the Y scatter and of the kSZ.
N_MASS, N_Z, N_SCATTER, N_KSZ = 8, 6, 24, 12


def tile_noise_weights(
    finder: Any, tile: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(k_fine, counts, q, q_ksz)`` of ``tile``: the filter's band-combined noise weight
    ``q = aᵀP⁻¹a`` per mode and its response to a spectrally flat (kSZ, CMB-unit) signal
    ``q_ksz = 1ᵀP⁻¹a`` (``a``: the tSZ spectrum in µK per y).

    Rebuilt with the mf plugin's own functions, as :func:`~clusterfw.plugins.finders.mf.
    filters.run_filter` does before its scale loop (data covariance from the windowed,
    beam-deconvolved, point-source-cleaned band transforms, or the noise model).
    """
    from clusterfw.plugins.finders.mf import filters as mff
    from clusterfw.plugins.finders.mf import noise as noise_mod
    from clusterfw.plugins.finders.mf.bands import transform_bands
    from clusterfw.plugins.finders.mf.grid import fourier_grid, padded_shape
    from clusterfw.plugins.finders.mf.templates import tsz_uk_per_y

    settings = finder._settings()
    maps = np.asarray(tile.maps, dtype=np.float32)
    nb, ny, nx = maps.shape
    pix_arcmin = tile.pixel_scale_arcmin
    pix = round(float(pix_arcmin), 9)
    shape = padded_shape(ny, nx)
    grid = fourier_grid(shape, pix)
    apod_pix = settings.apod_arcmin / pix_arcmin
    valid = np.all(np.isfinite(maps), axis=0)
    all_valid = bool(valid.all())
    window, _ = noise_mod.apodisation(valid, apod_pix)
    w2 = float(np.sum(window.astype(np.float64) ** 2)) / grid.npix
    freqs = [b.freq_ghz for b in tile.bands]
    beams = [b.beam_fwhm_arcmin for b in tile.bands]
    modelled = None
    if settings.noise == "model":
        p = noise_mod.model_power(
            grid, freqs, beams, [float(b.noise_uk_arcmin) for b in tile.bands], settings.cmb_dl
        )
        modelled = noise_mod.NoiseCov.from_fine(p, grid)
    fmaps, binned, _ = transform_bands(
        maps,
        window,
        None if all_valid else valid,
        grid,
        mff._beam_inverse(shape, pix, tuple(float(b) for b in beams)),
        beams,
        pix_arcmin,
        w2,
        settings.point_sources,
        settings.ps_snr_min,
        modelled,
        settings.workers,
        lambda: np.empty((ny, nx), dtype=np.float32),
    )
    del fmaps
    if modelled is not None:
        power = modelled
    else:
        assert binned is not None  # measured when no noise model is given
        power = noise_mod.NoiseCov.from_bins(noise_mod.regularise(binned), grid)
    fsz = np.atleast_1d(tsz_uk_per_y(np.asarray(freqs)))
    a = np.broadcast_to(fsz, power.power.shape[:2])
    v_rows, q_rows = mff.combine_weights(power.power, a)
    return grid.k_fine, grid.counts, q_rows[power.fine_row], v_rows.sum(axis=1)[power.fine_row]


def snr_per_y(
    finder: Any,
    sigma_y: np.ndarray,
    k: np.ndarray,
    counts: np.ndarray,
    q: np.ndarray,
    theta500_arcmin: np.ndarray,
    q_ksz: np.ndarray | None = None,
    radii: np.ndarray | None = None,
    envelope: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free SNR per unit total Compton-Y (arcmin²) at each θ500, ``max_s Q_s/(t(0) σ_s)``,
    the index of the scale giving it, the kSZ response at that scale and the cluster's filtered
    profile around its peak.

    The profile ``P(r) = Σ_k n τ t q J0(k r) / Σ_k n τ t q`` (1 at the centre) is the filtered
    map's response at distance ``r`` (``radii``, arcmin; shape ``(θ, radii)``, empty without
    ``radii``): a cluster of SNR ξ lies above ``snr_min`` out to where ``ξ P(r) = snr_min``.
    With ``envelope``, ``P(r)`` is instead the maximum over the scales of each scale's SNR
    response at ``r``, over the peak SNR: the mf finder groups pixels of the map that is the
    maximum over scales, in which a cluster's wings are those of the broader templates (at
    2′ from a θ500 = 3.5′ cluster, 0.29 of its peak SNR against 0.04 at its best scale).

    The kSZ response ``R = Σ_k n τ t q_ksz / Σ_k n τ t q`` (per µK_CMB / y of kSZ) turns a
    cluster's kSZ signal ``κ`` (µK per y, same profile) into ``ζ → ζ (1 + κ R)``; zeros when
    ``q_ksz`` is not given.
    """
    from clusterfw.plugins.finders.mf.templates import template_transform

    scales = finder.scales
    w = counts * q
    tau = np.stack([template_transform(finder.options.profile, s, k) for s in scales])
    f_sum = (tau * tau * w).sum(axis=1)
    out = np.empty(theta500_arcmin.size)
    best = np.empty(theta500_arcmin.size, dtype=np.int64)
    resp = np.zeros(theta500_arcmin.size)
    rr = np.zeros(0) if radii is None else np.asarray(radii, float)
    bessel = special.j0(np.outer(k, rr)) if rr.size else None
    prof = np.zeros((theta500_arcmin.size, rr.size))
    for i, th in enumerate(theta500_arcmin):
        t = template_transform("arnaud", float(th), k)
        t0 = float(template_transform("arnaud", float(th), np.zeros(1))[0])
        cross = (tau * t[None, :] * w).sum(axis=1)
        per = cross / f_sum / sigma_y
        best[i] = int(np.argmax(per))
        out[i] = per[best[i]] / t0
        tt = tau[best[i]] * t * counts
        if q_ksz is not None:
            resp[i] = float((tt * q_ksz).sum() / (tt * q).sum())
        if bessel is not None and envelope:
            at_r = ((tau * t[None, :] * w) @ bessel) / f_sum[:, None] / sigma_y[:, None]
            prof[i] = at_r.max(axis=0) / float(per[best[i]])
        elif bessel is not None:
            prof[i] = (tt * q) @ bessel / float((tt * q).sum())
    return out, best, resp, prof


class Blending:
    """How often a cluster lands in a detection group of a brighter peak of the map itself.

    The mf finder groups connected pixels above ``snr_min`` and reports each group's peak: a
    cluster whose own above-``snr_min`` footprint touches a group with a brighter peak is
    merged into it and not reported at its own position. From the tile's (un-injected) SNR map,
    ``fraction(xi, r)`` is the share of the detectable area within ``r`` arcmin of a group whose
    peak exceeds ``xi``; a cluster of measured SNR ξ has a footprint of radius
    ``r = ℓ √(2 ln(ξ / snr_min))`` with ``ℓ = √(2/<k²>)`` of its best scale (a Gaussian peak of
    the filtered map).
    """

    #: Radii (arcmin) of the tabulated fractions and footprint profiles.
    RADII = np.linspace(0.0, 15.0, 61)

    def __init__(self, snr_map: np.ndarray, detectable: np.ndarray, snr_min: float, pix: float):
        from scipy import ndimage

        m = np.where(detectable, snr_map, 0.0)
        labels, n = ndimage.label(m >= snr_min)
        peaks = (
            np.asarray(ndimage.maximum(m, labels, index=np.arange(1, n + 1))) if n else np.zeros(0)
        )
        self.snr_min = snr_min
        self.levels = np.unique(np.concatenate([[snr_min], np.geomspace(snr_min, 200.0, 24)]))
        self.radii = self.RADII
        self.table = np.zeros((self.levels.size, self.radii.size))
        area = max(int(detectable.sum()), 1)
        for i, level in enumerate(self.levels):
            big = np.isin(labels, np.flatnonzero(peaks > level) + 1)
            if not big.any():
                continue
            dist = ndimage.distance_transform_edt(~big) * pix
            d = np.sort(dist[detectable])
            self.table[i] = np.searchsorted(d, self.radii, side="right") / area

    def fraction(self, xi: np.ndarray, ell_arcmin: np.ndarray) -> np.ndarray:
        """Probability of being merged into a brighter group, Gaussian footprint (see the
        class docstring)."""
        xi = np.asarray(xi, float)
        r = np.asarray(ell_arcmin, float) * np.sqrt(
            2.0 * np.log(np.maximum(xi / self.snr_min, 1.0))
        )
        return self.fraction_at(xi, r)

    def footprint_radius(self, xi: np.ndarray, profile: np.ndarray) -> np.ndarray:
        """Radius (arcmin) out to which a cluster of SNR ``xi`` stays above ``snr_min``.

        ``profile`` (``(n, radii)``, on :attr:`radii`) is each cluster's filtered profile
        (:func:`snr_per_y`); ``xi`` is ``(n, ...)``. The radius is the first crossing of
        ``xi P(r) = snr_min`` (linear between the tabulated radii).
        """
        xi = np.asarray(xi, float)
        out = np.empty(xi.shape)
        for i in range(xi.shape[0]):
            env = np.minimum.accumulate(np.asarray(profile[i], float))  # first crossing
            level = self.snr_min / np.maximum(xi[i], 1e-12)
            out[i] = np.interp(level, env[::-1], self.radii[::-1])
        return out

    def fraction_at(self, xi: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Share of the detectable area within ``r`` arcmin of a group brighter than ``xi``."""
        xi = np.asarray(xi, float)
        r = np.asarray(r, float)
        li = np.clip(np.searchsorted(self.levels, xi) - 1, 0, self.levels.size - 1)
        ri = np.clip(np.searchsorted(self.radii, r), 0, self.radii.size - 1)
        return self.table[li, ri]


class MergeTable:
    """How often an injected cluster is merged into a brighter group of the map, measured on the
    tile's own SNR map.

    The filter is linear: a cluster of noise-free SNR ζ and filtered profile ``P(r)``
    (:func:`snr_per_y`; in :func:`analytic_selection` the envelope over the scales, as the
    finder groups the maximum over scales) placed at ``x0`` turns the tile's SNR map ``s`` into
    about ``s + ζ P(|x − x0|)``.
    The mf finder reports one peak per connected group above ``snr_min``: the cluster is lost
    when the group holding ``x0`` peaks farther than ``radius`` from it (a brighter real cluster
    whose wings, noise and the cluster's own wings bridge the gap). For ``n_pos`` random
    detectable positions (as the injections: away from the map's detections above the
    threshold), each θ500 of a grid and each ζ of a grid, the group is labelled in a window
    around ``x0``; :meth:`lost` interpolates the lost fraction in (ln θ500, ln ζ).

    The positions lie on a square lattice with a random offset (``sampling="lattice"``, about
    ``n_pos`` of them): the lost fraction is an area share, which a lattice measures far better
    than random positions. With 60 random positions the share carried a binomial error of
    ±0.035 (at 0.08), enough to move a cell's analytic completeness by ±0.03 from one seed of
    the table to the next (0.884–0.951 for 1.58–2.32e14, z 0.2–0.6 on the 2°×2° test sky);
    on a lattice the spread is 0.014 with 60 positions and 0.008 with 200 (default 100).
    """

    THETA = np.geomspace(0.6, 10.0, 7)
    ZETA = np.geomspace(4.0, 120.0, 10)

    def __init__(
        self,
        snr_map: np.ndarray,
        detectable: np.ndarray,
        snr_min: float,
        pix: float,
        profile_of_theta: Any,
        avoid_xy: np.ndarray,
        avoid_pix: float,
        radius_arcmin: float = 1.0,
        n_pos: int = 100,
        seed: int = 0,
        sampling: str = "lattice",
    ) -> None:
        from scipy import ndimage

        rng = np.random.default_rng(seed)
        ny, nx = snr_map.shape
        iy, ix = np.nonzero(detectable)
        if iy.size and len(avoid_xy):
            from scipy.spatial import cKDTree

            d, _ = cKDTree(np.asarray(avoid_xy, float)).query(np.column_stack([ix, iy]))
            keep = d >= avoid_pix
            iy, ix = iy[keep], ix[keep]
        self.table = np.zeros((self.THETA.size, self.ZETA.size))
        self.n_positions = 0
        if iy.size == 0:
            return
        if sampling == "lattice":
            pick = self.lattice(iy, ix, (ny, nx), n_pos, rng)
        elif sampling == "random":
            pick = rng.integers(0, iy.size, n_pos)
        else:
            raise ValueError(f"unknown sampling {sampling!r}")
        self.n_positions = int(pick.size)
        n_pos = max(int(pick.size), 1)
        radii = Blending.RADII
        half = int(np.ceil((radii[-1] + 10.0) / pix))
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
        rgrid = np.hypot(yy, xx) * pix
        inside = rgrid <= radii[-1]
        near = rgrid <= radius_arcmin
        base = np.where(detectable, snr_map, -np.inf)
        prof = profile_of_theta(self.THETA)
        for ti in range(self.THETA.size):
            stamp = np.where(inside, np.interp(rgrid, radii, prof[ti]), 0.0)
            lost = np.zeros(self.ZETA.size)
            for j in pick:
                cy, cx = int(iy[j]), int(ix[j])
                y0, y1 = max(cy - half, 0), min(cy + half + 1, ny)
                x0, x1 = max(cx - half, 0), min(cx + half + 1, nx)
                win = base[y0:y1, x0:x1]
                sl = (slice(y0 - cy + half, y1 - cy + half), slice(x0 - cx + half, x1 - cx + half))
                st, nr = stamp[sl], near[sl]
                for zi, zeta in enumerate(self.ZETA):
                    m = win + zeta * st
                    labels, _ = ndimage.label(m > snr_min)
                    lab = labels[cy - y0, cx - x0]
                    if lab == 0:
                        continue
                    group = labels == lab
                    top = float(m[group].max())
                    lost[zi] += top > float(m[group & nr].max(initial=-np.inf)) + 1e-9
            self.table[ti] = lost / n_pos

    @staticmethod
    def lattice(
        iy: np.ndarray, ix: np.ndarray, shape: tuple[int, int], n: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Indices into ``(iy, ix)`` of about ``n`` positions on a square lattice with a random
        offset (systematic sampling of the open area).

        The lost fraction is the share of the open area near brighter groups; a lattice
        measures an area share with a far smaller error than as many random positions (those
        carry the binomial error √(f(1−f)/n): ±0.035 at f = 0.08, n = 60).
        """
        mask = np.full(shape, -1, dtype=np.int64)
        mask[iy, ix] = np.arange(iy.size)
        step = max(1.0, float(np.sqrt(iy.size / max(n, 1))))
        oy, ox = rng.uniform(0.0, step, 2)
        gy = np.round(np.arange(oy, shape[0], step)).astype(np.int64)
        gx = np.round(np.arange(ox, shape[1], step)).astype(np.int64)
        gy, gx = gy[gy < shape[0]], gx[gx < shape[1]]
        idx = mask[np.ix_(gy, gx)].ravel()
        return idx[idx >= 0]

    def lost(self, zeta: np.ndarray, theta500_arcmin: np.ndarray) -> np.ndarray:
        """Lost fraction at noise-free SNR ``zeta`` ``(n, ...)`` for θ500 ``(n,)`` (arcmin)."""
        from scipy.interpolate import RegularGridInterpolator

        interp = RegularGridInterpolator(
            (np.log(self.THETA), np.log(self.ZETA)), self.table, bounds_error=False, fill_value=None
        )
        zeta = np.asarray(zeta, float)
        lt = np.broadcast_to(
            np.log(np.clip(theta500_arcmin, self.THETA[0], self.THETA[-1])).reshape(
                (-1,) + (1,) * (zeta.ndim - 1)
            ),
            zeta.shape,
        )
        lz = np.log(np.clip(zeta, self.ZETA[0], self.ZETA[-1]))
        out = interp(np.stack([lt.ravel(), lz.ravel()], axis=1)).reshape(zeta.shape)
        return np.clip(out, 0.0, 1.0)


def completeness_from_snr(zeta: np.ndarray, threshold: float, dof: float) -> np.ndarray:
    """``P(ξ >= q)`` for ``ξ ~ N(√(ζ² + dof), 1)``."""
    mean = np.sqrt(np.square(zeta) + dof)
    return 0.5 * special.erfc((threshold - mean) / np.sqrt(2.0))


def cell_completeness(
    grid: MassRedshiftGrid,
    model: ScalingModel,
    threshold: float,
    dof: float,
    snr_of_theta: Any,
    blending: Blending | None = None,
    merging: MergeTable | None = None,
    snr_factor: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean completeness of every cell and its spread (std over the cell's points).

    ``snr_of_theta(theta500_arcmin) -> (SNR per unit Y (arcmin²), footprint scale ℓ (arcmin)
    [, kSZ response R])``; with ``R`` and a model with kSZ, the SNR is averaged over the
    cluster's kSZ, ``ζ (1 + κ R)`` with ``κ ~ N(0, σ_κ(M, z))``
    (:func:`~clusterfw.selection.model.ksz_sigma_uk_per_y`); with ``blending``, the completeness
    is multiplied by ``1 − fraction(ξ, ℓ)``; with ``snr_factor``
    (:class:`~clusterfw.selection.selfpower.SelfPowerTable`), every ζ is first scaled by
    ``snr_factor.factor(ζ, θ500)`` (the cluster's own signal in a data-estimated covariance).
    """
    nm, nz = grid.shape
    um = (np.arange(N_MASS) + 0.5) / N_MASS
    uz = (np.arange(N_Z) + 0.5) / N_Z
    x, wgh = np.polynomial.hermite_e.hermegauss(N_SCATTER)
    wgh = wgh / wgh.sum()
    xk, wk = np.polynomial.hermite_e.hermegauss(N_KSZ)
    wk = wk / wk.sum()
    rmax = model.profile_rmax_r500
    prof = sz.projected_profile(rmax)
    comp = np.empty(grid.n_cells)
    spread = np.empty(grid.n_cells)
    for im in range(nm):
        lm = np.log(grid.m_edges[im]) + um * np.log(grid.m_edges[im + 1] / grid.m_edges[im])
        for iz in range(nz):
            zz = grid.z_edges[iz] + uz * (grid.z_edges[iz + 1] - grid.z_edges[iz])
            m, z = np.meshgrid(np.exp(lm), zz, indexing="ij")
            m, z = m.ravel(), z.ravel()
            th = sz.theta500_rad(m, z) / ARCMIN
            y_tot = median_y500_sr(m, z, model) * prof.i_rmax / prof.i1 / ARCMIN**2
            got = snr_of_theta(th)
            per_y, ell = got[0], got[1]
            resp = got[2] if len(got) > 2 else np.zeros_like(per_y)
            profile = got[3] if len(got) > 3 else None
            sk = resp * ksz_sigma_uk_per_y(m, z, model)  # fractional 1σ of the SNR from kSZ
            zeta = (
                (per_y * y_tot)[:, None, None]
                * np.exp(model.y500_scatter_ln * x)[None, :, None]
                * np.maximum(1.0 + sk[:, None, None] * xk[None, None, :], 0.0)
            )
            if snr_factor is not None:
                zeta = zeta * snr_factor.factor(zeta, th)
            p = completeness_from_snr(zeta, threshold, dof)
            if merging is not None:
                p = p * (1.0 - merging.lost(zeta, th))
            elif blending is not None:
                xi = np.sqrt(np.square(zeta) + dof)
                if profile is not None and profile.size:
                    lost = blending.fraction_at(xi, blending.footprint_radius(xi, profile))
                else:
                    lost = blending.fraction(xi, np.broadcast_to(ell[:, None, None], xi.shape))
                p = p * (1.0 - lost)
            c = np.einsum("psk,s,k->p", p, wgh, wk)
            comp[im * nz + iz] = c.mean()
            spread[im * nz + iz] = c.std()
    return comp, spread


def _tile_views(prepared: Any) -> list[Any]:
    """Each tile as the mf finder sees it (layered skies: read per job)."""
    from clusterfw.core.layers.model import LayerSky
    from clusterfw.core.pipeline import _tile_core, read_job_layers, tile_from_cutouts

    if not isinstance(prepared.sky, LayerSky):
        return list(prepared.tiles)
    names = prepared.finder_layers[0]
    return [
        (job, tile_from_cutouts(job.tile_id, _tile_core(job), read_job_layers(job, names)))
        for job in prepared.tiles
    ]


def tile_merge_table(
    finder: Any,
    tile: Any,
    res: Any,
    noise: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    match_radius_arcmin: float,
    n_pos: int = 100,
) -> MergeTable:
    """The :class:`MergeTable` of one tile: its brighter-than-``threshold`` detections (found by
    ``finder`` itself) and the envelope profile over the filter's scales.

    ``res`` is ``finder.filter_tile(tile)`` and ``noise`` the ``(sigma_y, k, counts, q)`` of
    :func:`tile_noise_weights` for that tile.
    """
    sigma, k, counts, q = noise
    pix = tile.pixel_scale_arcmin
    found = finder.find(tile)
    bright = found.column("score").to_numpy() >= threshold
    bx, by = tile.world_to_pixel(
        found.column("ra").to_numpy()[bright], found.column("dec").to_numpy()[bright]
    )

    def profile_of_theta(th: np.ndarray) -> np.ndarray:
        # the finder groups the maximum over scales: the envelope of the scales' wings
        return snr_per_y(finder, sigma, k, counts, q, th, None, Blending.RADII, True)[3]

    return MergeTable(
        res.max_snr,
        res.detectable,
        finder.options.snr_min,
        pix,
        profile_of_theta,
        np.column_stack([bx, by]),
        2.0 * match_radius_arcmin / pix,
        match_radius_arcmin,
        n_pos=n_pos,
    )


def analytic_selection(
    prepared: Any,
    grid: MassRedshiftGrid,
    model: ScalingModel,
    threshold: float,
    opt_bias_dof: float = 3.0,
    per_tile: bool = True,
    provenance: Mapping[str, Any] | None = None,
    edge_arcmin: float = 10.0,
    blending: bool = True,
    match_radius_arcmin: float = 1.0,
    self_power: bool = True,
) -> pa.Table:
    """The analytic completeness table of ``mf`` (see the module docstring).

    Parameters
    ----------
    prepared : PreparedRun
        From :func:`clusterfw.selection.api.prepare`, with the mf finder alone.
    grid : MassRedshiftGrid
    model : ScalingModel
    threshold : float
        The catalogue's SNR threshold (from the calibration).
    opt_bias_dof : float
        Free parameters of the peak search in the optimisation bias.
    per_tile : bool
        Also the per-tile rows.
    edge_arcmin : float
        Area weights count pixels this far from edges and masks (as the injections).
    blending : bool
        Include the loss to merging into the map's own brighter detection groups
        (:class:`MergeTable`, measured on each tile's SNR map).
    match_radius_arcmin : float
        The match radius of "recovered" (a merged group must peak within it).
    self_power : bool
        When mf estimates its noise from the data (``noise="data"``, no
        ``noise_iterations``), scale each cluster's ζ by the loss to its own signal in that
        estimate (:mod:`clusterfw.selection.selfpower`: self-cancellation and self-power,
        from the tile's noise spectrum and bins, nothing fitted).
    """
    from clusterfw.selection.inject import allowed_pixels, build_target
    from clusterfw.selection.injection import tile_of
    from clusterfw.selection.table import analytic_rows, build_table

    finder = prepared.finders[0]
    target = build_target(prepared.sky, prepared.finders, prepared.finder_layers)
    allowed = allowed_pixels(target, edge_arcmin)
    iy, ix = np.nonzero(allowed[::4, ::4])
    ra, dec = target.wcs.pixel_to_world_values(ix * 4.0, iy * 4.0)
    weights_by_tile = np.bincount(
        np.maximum(tile_of(prepared.tiles, np.asarray(ra) % 360.0, np.asarray(dec)), 0)
        if ra.size
        else np.zeros(0, np.int64),
    )
    parts = []
    comps, weights, spreads = [], [], []
    for item in _tile_views(prepared):
        job, tile = item if isinstance(item, tuple) else (item, item)
        if finder.blank_band(tile) is not None:
            continue
        res = finder.filter_tile(tile)
        k, counts, q, q_ksz = tile_noise_weights(finder, tile)
        sigma = np.asarray(res.sigma_y, float)

        ell_scale = np.sqrt(2.0 / np.asarray(res.kvar, float))

        def snr_of_theta(
            th: np.ndarray, s=sigma, kk=k, cc=counts, qq=q, qk=q_ksz, ls=ell_scale
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            per_y, best, resp, prof = snr_per_y(finder, s, kk, cc, qq, th, qk, Blending.RADII)
            return per_y, ls[best], resp, prof

        factor = None
        if self_power:
            from clusterfw.selection.selfpower import table_for_tile

            factor = table_for_tile(finder, tile, k, counts, q)
        merge = None
        if blending:
            merge = tile_merge_table(
                finder, tile, res, (sigma, k, counts, q), threshold, match_radius_arcmin
            )
        comp, spread = cell_completeness(
            grid, model, threshold, opt_bias_dof, snr_of_theta, merging=merge, snr_factor=factor
        )
        tid = int(job.tile_id)
        w = float(weights_by_tile[tid]) if tid < weights_by_tile.size else 0.0
        comps.append(comp)
        spreads.append(spread)
        weights.append(w)
        if per_tile:
            parts.append(analytic_rows(grid, tid, comp, spread))
    if not comps:
        from clusterfw.core.errors import ClusterfwError

        raise ClusterfwError("--method analytic: no tile with data to filter")
    wts = np.asarray(weights)
    if wts.sum() <= 0:
        wts = np.ones_like(wts)
    wts = wts / wts.sum()
    whole = np.tensordot(wts, np.asarray(comps), axes=1)
    spread = np.tensordot(wts, np.asarray(spreads), axes=1)
    return build_table([analytic_rows(grid, None, whole, spread), *parts], provenance or {})
