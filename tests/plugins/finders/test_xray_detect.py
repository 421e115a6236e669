"""Detection of the xray finder: exact Poisson significance, background, β-model vs PSF fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from clusterfw.plugins.finders.xray.detect import (
    DetectSettings,
    detect_sources,
    estimate_background,
    poisson_significance,
)

PIX = 4.0  # arcsec
PSF = 30.0  # arcsec FWHM
N = 150
BKG = 0.05  # counts per pixel


def test_poisson_significance_is_the_exact_tail():
    # P(X >= 10 | mu = 2) from scipy's Poisson survival function
    p = stats.poisson.sf(9, 2.0)
    assert poisson_significance(np.array([10]), np.array([2.0]))[0] == pytest.approx(
        stats.norm.isf(p), rel=1e-9
    )
    # a few counts: 3 over 0.1 expected is already ~3.9 sigma, not the Gaussian 9.2
    nu = poisson_significance(np.array([3.0]), np.array([0.1]))[0]
    assert 3.5 < nu < 4.2
    # huge excesses stay finite and increasing (no plateau at the float limit)
    big = poisson_significance(np.array([2000.0, 3000.0]), np.array([10.0, 10.0]))
    assert np.all(np.isfinite(big)) and big[1] > big[0] > 35


def _sky(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """A background of BKG counts/pixel, a β-model cluster (r_c 30") and a point source."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    sigma = PSF / PIX / math.sqrt(8 * math.log(2))
    rc = 30.0 / PIX
    cl = (1 + ((xx - 50) ** 2 + (yy - 60) ** 2) / rc**2) ** (-1.5)
    cl = ndimage.gaussian_filter(cl, sigma)
    cl *= 400.0 / cl.sum()
    ps = np.exp(-0.5 * ((xx - 105) ** 2 + (yy - 95) ** 2) / sigma**2)
    ps *= 150.0 / ps.sum()
    bkg = np.full((N, N), BKG)
    counts = rng.poisson(bkg + cl + ps)
    expo = np.full((N, N), 2000.0)
    return counts, expo, bkg, {"cluster": (50, 60), "point": (105, 95)}


def _nearest(src, x, y):
    d = np.hypot(src.x - x, src.y - y)
    return int(np.argmin(d)), float(d.min())


def test_cluster_is_extended_and_point_source_is_not():
    counts, expo, bkg, where = _sky(1)
    src = detect_sources(counts, expo, bkg, PSF, PIX, DetectSettings(nu_min=5.0))
    i, d = _nearest(src, *where["cluster"])
    assert d < 1.5  # pixels (6")
    assert src.ext_like[i] > 10
    assert src.det_like[i] > 50
    assert 15.0 < src.extent_arcsec[i] < 60.0  # r_c = 30"
    assert abs(src.counts[i] - 400) < 4 * src.counts_err[i]
    j, d = _nearest(src, *where["point"])
    assert d < 1.0
    assert src.ext_like[j] < 3.0
    assert abs(src.counts[j] - 150) < 4 * src.counts_err[j]
    # nothing else survives a detection likelihood of 10 on this blank background
    assert np.sum(src.det_like >= 10) == 2


def test_estimated_background_matches_the_truth_and_gives_the_same_sources():
    counts, expo, bkg, where = _sky(2)
    yy, xx = np.mgrid[0:N, 0:N]
    mask = np.zeros((N, N), bool)
    for x, y in where.values():
        mask |= np.hypot(xx - x, yy - y) < 40
    unmasked = estimate_background(counts.astype(float), expo, None, 64)
    masked = estimate_background(counts.astype(float), expo, mask, 64)
    # the sources raise the unmasked level; masking them recovers the truth within 10 %
    assert np.median(unmasked) > 1.15 * BKG
    assert np.median(masked) == pytest.approx(BKG, rel=0.10)
    src = detect_sources(counts, expo, None, PSF, PIX, DetectSettings(nu_min=5.0))
    i, d = _nearest(src, *where["cluster"])
    assert d < 1.5 and src.ext_like[i] > 10
    j, d = _nearest(src, *where["point"])
    assert d < 1.0 and src.ext_like[j] < 3.0


def test_blank_field_has_no_confident_detections():
    rng = np.random.default_rng(3)
    counts = rng.poisson(BKG, (N, N))
    src = detect_sources(counts, np.full((N, N), 2000.0), np.full((N, N), BKG), PSF, PIX)
    assert np.sum(src.det_like >= 10) == 0
