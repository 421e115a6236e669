"""Edge effect (DeepSZ Fig. 9c): a cluster's score vs its offset from the cutout centre.

The same simulated clusters are scored while the 6'-stride grid is slid across them (by
cropping the map): the *grid* score is that of the fixed-grid cutout whose central 6' × 6' box
contains the cluster, so the cluster sits anywhere from the centre to the edge of the box;
the *centred* score is ``score_at`` on the cluster position, which cuts a cutout centred on it
whatever the grid. The centred score must not fall with the offset; the grid one does.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from clusterfw.core.sky import Sky  # noqa: E402
from clusterfw.plugins.finders.resnet.finder import ResNetFinder  # noqa: E402

STRIDE = 24
HALF = 15.5
SHIFTS = [(sx, sy) for sx in (0, 8, 16) for sy in (0, 8, 16)]  # pixels: grid slides by 0…4'


def offsets_and_scores(seed: int = 21, n_halos: int = 12):
    from clusterfw.sim import PatchConfig, simulate_patch

    res = simulate_patch(PatchConfig(size_deg=2.0), seed)
    sky, h = res.sky, res.halos
    x, y = sky.wcs.world_to_pixel_values(h.column("ra").to_numpy(), h.column("dec").to_numpy())
    mvir, z = h.column("mvir").to_numpy(), h.column("z").to_numpy()
    ny, nx = sky.shape
    ok = (mvir >= 2e14) & (z > 0.25) & (x > 40) & (x < nx - 40) & (y > 40) & (y < ny - 40)
    pick = np.flatnonzero(ok)[np.argsort(-mvir[ok])][:n_halos]
    ra, dec = h.column("ra").to_numpy()[pick], h.column("dec").to_numpy()[pick]
    finder = ResNetFinder({"localise": False})  # the DeepSZ grid: cutout centres as candidates
    rows = []
    for sx, sy in SHIFTS:
        wcs = sky.wcs.slice((slice(sy, None), slice(sx, None)))
        sub = Sky(sky.maps[:, sy:, sx:], wcs, sky.bands)
        tile = sub.tiles(tile_size_arcmin=1e4, margin_arcmin=0.0)[0]
        table = finder.find(tile)
        gx, gy = tile.world_to_pixel(table.column("ra").to_numpy(), table.column("dec").to_numpy())
        score = table.column("score").to_numpy()
        hx, hy = tile.world_to_pixel(ra, dec)
        kx = np.floor((hx - (HALF - STRIDE / 2)) / STRIDE)
        ky = np.floor((hy - (HALF - STRIDE / 2)) / STRIDE)
        cx, cy = HALF + STRIDE * kx, HALF + STRIDE * ky
        grid = np.array(
            [score[np.argmin(np.hypot(gx - a, gy - b))] for a, b in zip(cx, cy, strict=True)]
        )
        # Chebyshev offset from the cutout centre in arcmin (the labelled box is square)
        off = np.maximum(np.abs(hx - cx), np.abs(hy - cy)) * 0.25
        centred = finder.score_at(tile, ra, dec)
        rows.append(np.c_[np.arange(pick.size), off, grid, centred])
    return np.vstack(rows)


def test_centred_score_does_not_fall_with_offset():
    r = offsets_and_scores()
    halo, off, grid, centred = r.T
    assert np.all(off <= 3.0 + 1e-6)
    # centred scores see the same pixels whatever the grid: identical for every shift
    for h in np.unique(halo):
        c = centred[halo == h]
        assert np.ptp(c) < 1e-4
    inner, outer = off < 1.5, off >= 2.0
    # per cluster: mean score with the cluster near the centre minus near the edge of the box
    drop_grid, drop_centred = [], []
    for h in np.unique(halo):
        a, b = (halo == h) & inner, (halo == h) & outer
        if a.any() and b.any():
            drop_grid.append(grid[a].mean() - grid[b].mean())
            drop_centred.append(centred[a].mean() - centred[b].mean())
    assert len(drop_grid) >= 5
    assert np.max(np.abs(drop_centred)) < 1e-4  # the centred score does not fall
    assert np.mean(drop_grid) > 0.05  # the fixed grid loses clusters near the box edge
    assert grid[outer].mean() < centred[outer].mean() - 0.05
