"""Red-sequence richness in a fixed proper aperture: a mass proxy for optical detections.

A detector's confidence says "a red overdensity is here"; it does not say how massive. At the
real sky density most optical detections just below a mass cut are groups that look like
clusters to a detector, and the number of red-sequence galaxies is the optical mass proxy
(Abell's counts, the MaxBCG N_gal, redMaPPer's λ: Rykoff et al. 2014).

``λ(z)``
    The background-subtracted sum of the red-sequence weights at redshift ``z``
    (:func:`clusterfw.plugins.finders.frcnn.photoz.red_sequence_weights`: colours within the
    red sequence's scatter, brighter than m*_r(z) + 1.5) of the sources within ``radius_kpc``
    (proper) of a position. The background is the mean weight per pixel of all sources given
    (a tile: tens of arcminutes, so the clusters in it raise it by a few per cent), times the
    aperture's area.
At a detection
    ``λ`` at its red-sequence redshift (``frcnn_z``; :func:`richness`).
At a position without a redshift
    The redshift scan (:func:`richness_profile`, :func:`richness_scan`): the largest ``λ(z)``
    over ``z_min ≤ z ≤ z_max`` (smoothed over 5 grid steps, as the photo-z is), and the
    redshift where it peaks. The finder does not use it (``score_at`` stays the detector's
    score); it measured the optical richness at SZ positions (docs/combining.md).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from clusterfw.plugins.finders.frcnn.photoz import Z_GRID, Sources, red_sequence_weights

#: Aperture radius, proper kpc (redMaPPer's R_λ for λ ≈ 20 is ~0.9 Mpc/h; a smaller fixed
#: aperture keeps the background low for the groups this must reject).
RICHNESS_KPC = 500.0
#: Above this many sources, :func:`richness` takes the background from a regular subsample.
BACKGROUND_SOURCES = 30_000
#: Redshifts scanned when none is given (the optical training range, with a margin).
SCAN_Z = (0.05, 0.9)


@lru_cache(maxsize=1)
def _kpc_per_arcsec() -> np.ndarray:
    from clusterfw.sim.cosmology import angular_diameter_distance

    return np.asarray(angular_diameter_distance(Z_GRID), float) * 1000.0 / 206264.806


def aperture_pixels(pixel_arcsec: float, radius_kpc: float = RICHNESS_KPC) -> np.ndarray:
    """Radius of the aperture in pixels at every redshift of :data:`Z_GRID`."""
    return radius_kpc / (_kpc_per_arcsec() * pixel_arcsec)


def richness_profile(
    src: Sources,
    x: np.ndarray,
    y: np.ndarray,
    pixel_arcsec: float,
    valid_pixels: float,
    radius_kpc: float = RICHNESS_KPC,
) -> np.ndarray:
    """``λ(z)`` on :data:`Z_GRID` at each position (module docstring).

    Parameters
    ----------
    src : Sources
        The sources of the image the positions lie in.
    x, y : numpy.ndarray
        Positions, input pixels (the sources' frame).
    pixel_arcsec : float
    valid_pixels : float
        Number of pixels with data in the image (the background's area).
    radius_kpc : float

    Returns
    -------
    numpy.ndarray
        ``(n_positions, n_z)``.
    """
    from scipy.spatial import cKDTree

    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    out = np.zeros((x.size, Z_GRID.size))
    if len(src) == 0 or x.size == 0 or not valid_pixels > 0:
        return out
    w = red_sequence_weights(src)
    r_pix = aperture_pixels(pixel_arcsec, radius_kpc)
    lo = int(np.searchsorted(Z_GRID, SCAN_Z[0] - 0.011))  # covers the smoothing window
    r_max = float(r_pix[lo:].max())
    background = w.sum(axis=0) / float(valid_pixels) * np.pi * r_pix**2
    tree = cKDTree(np.column_stack([src.x, src.y]))
    for k, near in enumerate(tree.query_ball_point(np.column_stack([x, y]), r_max)):
        near = np.asarray(near, int)
        d = np.hypot(src.x[near] - x[k], src.y[near] - y[k])
        inside = d[:, None] <= r_pix[None, :]
        out[k] = (w[near] * inside).sum(axis=0) - background
    out[:, :lo] = np.nan  # below the scanned range the aperture outgrows a tile
    return out


def richness(
    src: Sources,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    pixel_arcsec: float,
    valid_pixels: float,
    radius_kpc: float = RICHNESS_KPC,
) -> np.ndarray:
    """``λ`` of each position at its own redshift ``z`` (NaN where ``z`` is NaN or below
    :data:`SCAN_Z`): :func:`richness_at` of :func:`richness_profile`, computed only on the five
    grid redshifts the smoothing needs (a tile's hundreds of detections in well under a
    second).

    Parameters
    ----------
    src : Sources
    x, y, z : numpy.ndarray
        Positions (input pixels, the sources' frame) and their redshifts.
    pixel_arcsec, valid_pixels, radius_kpc : float
        As for :func:`richness_profile`.
    """
    from scipy.spatial import cKDTree

    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    z = np.atleast_1d(np.asarray(z, float))
    out = np.full(x.size, np.nan)
    lo = int(np.searchsorted(Z_GRID, SCAN_Z[0] - 0.011))
    ok = np.isfinite(z)
    j = np.full(z.size, -1)
    j[ok] = np.abs(Z_GRID[None, :] - z[ok, None]).argmin(axis=1)
    ok &= j >= lo
    if not ok.any():
        return out
    if len(src) == 0 or not valid_pixels > 0:
        out[ok] = 0.0
        return out
    r_pix = aperture_pixels(pixel_arcsec, radius_kpc)
    tree = cKDTree(np.column_stack([src.x, src.y]))
    todo = np.flatnonzero(ok)
    cols = np.clip(j[todo, None] + np.arange(-2, 3)[None, :], 0, Z_GRID.size - 1)  # 'nearest'
    near = tree.query_ball_point(
        np.column_stack([x[todo], y[todo]]), r_pix[cols].max(axis=1), return_sorted=False
    )
    step = max(1, len(src) // BACKGROUND_SOURCES)
    if step == 1:  # the background needs every source's likelihoods anyway
        w = red_sequence_weights(src)
        background = w.sum(axis=0)
    else:
        # a crowded tile: likelihoods only of the sources some aperture holds, and the
        # background from a regular subsample (its noise is negligible there)
        union = np.unique(np.concatenate([np.asarray(v, int) for v in near]))
        w = np.zeros((len(src), Z_GRID.size))
        w[union] = red_sequence_weights(src.subset(union))
        sub = red_sequence_weights(src.subset(slice(None, None, step)))
        background = sub.sum(axis=0) * (len(src) / sub.shape[0])
    background *= np.pi * r_pix**2 / float(valid_pixels)
    for k, c, idx in zip(todo, cols, near, strict=True):
        idx = np.asarray(idx, int)
        d = np.hypot(src.x[idx] - x[k], src.y[idx] - y[k])
        inside = d[:, None] <= r_pix[None, c]
        out[k] = float(np.mean((w[idx][:, c] * inside).sum(axis=0) - background[c]))
    return out


def richness_at(profile: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``λ`` of each row of ``profile`` at its redshift ``z`` (NaN where ``z`` is NaN)."""
    z = np.atleast_1d(np.asarray(z, float))
    out = np.full(z.size, np.nan)
    ok = np.isfinite(z)
    j = np.abs(Z_GRID[None, :] - z[ok, None]).argmin(axis=1)
    out[ok] = _smooth(profile[ok])[np.arange(j.size), j]
    return out


def richness_scan(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The peak ``λ`` of each row of ``profile`` within :data:`SCAN_Z` and its redshift."""
    sm = _smooth(profile)
    in_range = (Z_GRID >= SCAN_Z[0]) & (Z_GRID <= SCAN_Z[1])
    sm = np.where(in_range[None, :], np.nan_to_num(sm, nan=-np.inf), -np.inf)
    j = sm.argmax(axis=1)
    lam = sm[np.arange(j.size), j]
    return np.where(np.isfinite(lam), lam, np.nan), Z_GRID[j]


def _smooth(profile: np.ndarray) -> np.ndarray:
    """Running mean over 5 grid steps along the redshift axis (NaN stays NaN)."""
    from scipy.ndimage import uniform_filter1d

    p = np.atleast_2d(profile)
    filled = uniform_filter1d(np.nan_to_num(p, nan=0.0), 5, axis=1, mode="nearest")
    return np.where(np.isfinite(p), filled, np.nan)
