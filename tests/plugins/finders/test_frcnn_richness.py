"""``frcnn`` richness: the background-subtracted red-sequence count within 500 proper kpc."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.plugins.finders.frcnn.photoz import (
    Z_GRID,
    Sources,
    kpc_per_pixel,
    red_sequence_model,
)
from clusterfw.plugins.finders.frcnn.richness import (
    richness,
    richness_at,
    richness_profile,
    richness_scan,
)

PIX = 0.5
SIDE = 3000  # 25' at 0.5"


def _sky(z: float, n_members: int, seed: int) -> tuple[Sources, tuple[float, float]]:
    """Field sources of random colours over the image, plus ``n_members`` galaxies on the
    red sequence at ``z`` within 300 proper kpc of the image centre."""
    rng = np.random.default_rng(seed)
    gr_m, ri_m, ms = red_sequence_model()
    k = int(np.argmin(np.abs(Z_GRID - z)))
    n_field = 6000
    r = np.concatenate(
        [rng.uniform(18.0, 24.0, n_field), rng.uniform(ms[k] - 2, ms[k] + 1.3, n_members)]
    )
    gr = np.concatenate([rng.uniform(0.2, 1.9, n_field), gr_m[k] + rng.normal(0, 0.03, n_members)])
    ri = np.concatenate([rng.uniform(0.1, 1.0, n_field), ri_m[k] + rng.normal(0, 0.03, n_members)])
    c = SIDE / 2
    rad = 300.0 / kpc_per_pixel(z, PIX) * np.sqrt(rng.uniform(0, 1, n_members))
    phi = rng.uniform(0, 2 * np.pi, n_members)
    x = np.concatenate([rng.uniform(0, SIDE, n_field), c + rad * np.cos(phi)])
    y = np.concatenate([rng.uniform(0, SIDE, n_field), c + rad * np.sin(phi)])
    mags = np.stack([r + gr, r, r - ri], axis=1)
    flux = 10 ** (-0.4 * (mags - 22.5))
    return Sources(x, y, flux, flux * 0.02), (c, c)


@pytest.mark.parametrize("z", [0.25, 0.5])
def test_richness_counts_the_members_and_scales_with_them(z):
    lams = []
    for n in (10, 40):
        src, (cx, cy) = _sky(z, n, seed=n)
        prof = richness_profile(src, np.array([cx, 200.0]), np.array([cy, 200.0]), PIX, SIDE**2)
        lam_z = richness_at(prof, np.array([z, z]))
        # each member counts with its colour likelihood (≤ 1): ~0.4-0.8 here
        assert 0.35 * n < lam_z[0] < 1.0 * n, (n, lam_z)
        assert abs(lam_z[1]) < 3.0  # a corner of the field: background only
        # the per-position shortcut the finder uses agrees with the full profile
        direct = richness(src, np.array([cx, 200.0]), np.array([cy, 200.0]), np.array([z, z]),
                          PIX, SIDE**2)  # fmt: skip
        assert np.allclose(direct, lam_z, rtol=1e-9, atol=1e-9)
        lam, z_peak = richness_scan(prof[:1])
        assert abs(z_peak[0] - z) < 0.05 and lam[0] >= lam_z[0] - 1e-9
        lams.append(lam_z[0])
    assert 2.5 < lams[1] / lams[0] < 6.0


def test_richness_without_a_redshift_or_sources_is_nan_or_zero():
    src, (cx, cy) = _sky(0.3, 20, seed=1)
    prof = richness_profile(src, np.array([cx]), np.array([cy]), PIX, SIDE**2)
    assert np.isnan(richness_at(prof, np.array([np.nan]))[0])
    assert np.isnan(richness(src, [cx, cx], [cy, cy], [np.nan, 0.02], PIX, SIDE**2)).all()
    empty = Sources(np.zeros(0), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
    assert not richness_profile(empty, np.array([1.0]), np.array([1.0]), PIX, 1e6).any()
