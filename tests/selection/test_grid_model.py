"""Grid parsing, Wilson intervals, model clusters and injection rendering (no finder runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clusterfw.core.errors import ClusterfwError
from clusterfw.selection.grid import MassRedshiftGrid, parse_axis, parse_grid, wilson_interval
from clusterfw.selection.inject import InjectionBand, InjectionTarget, choose_positions, render
from clusterfw.selection.model import ScalingModel, draw_clusters
from clusterfw.sim import sz
from clusterfw.sim.instrument import ARCMIN, tsz_uk_per_y


def test_parse_axis_forms():
    np.testing.assert_allclose(
        parse_axis("1e14:1e16:2", "--mass-grid", log=True), [1e14, 1e15, 1e16]
    )
    np.testing.assert_allclose(parse_axis("0.1:0.5:2", "--z-grid", log=False), [0.1, 0.3, 0.5])
    np.testing.assert_allclose(parse_axis("0.1,0.2,0.7", "--z-grid", log=False), [0.1, 0.2, 0.7])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e14:1e15:0", "--mass-grid: empty grid (0 bins"),
        ("1e15:1e14:3", "--mass-grid: empty grid (HI <= LO"),
        ("1e14", "--mass-grid: empty grid (need at least two edges"),
        ("a:b:c", "must look like LO:HI:N"),
        ("2e14,1e14", "edges must be finite and increasing"),
        ("-1:1e14:2", "masses must be > 0"),
    ],
)
def test_parse_axis_refuses(text, message):
    with pytest.raises(ClusterfwError, match=message.replace("(", r"\(")):
        parse_axis(text, "--mass-grid", log=True)


def test_parse_grid_z_positive():
    with pytest.raises(ClusterfwError, match="--z-grid: redshifts must be > 0"):
        parse_grid("1e14:1e15:2", "0:1:2")


def test_wilson_interval_values():
    centre, lo, hi = wilson_interval(np.array([5, 0, 10]), np.array([10, 10, 10]))
    # p = 0.5, n = 10, z = 1: half-width sqrt(0.025 + 1/400) / 1.1
    half = math.sqrt(0.025 + 1.0 / 400.0) / 1.1
    assert centre[0] == pytest.approx(0.5)
    assert hi[0] - lo[0] == pytest.approx(2 * half, rel=1e-3)
    # k = 0: the interval starts at 0 and is not empty (1 / (n + z²) wide at z=1: 1/11)
    assert lo[1] == 0.0 and hi[1] == pytest.approx(1.0 / 11.0, rel=1e-3)
    assert hi[2] == 1.0 and lo[2] == pytest.approx(10.0 / 11.0, rel=1e-3)
    c, lo0, hi0 = wilson_interval(np.array([0]), np.array([0]))
    assert np.isnan(c[0]) and lo0[0] == 0.0 and hi0[0] == 1.0


def test_grid_cells_and_sampling():
    grid = MassRedshiftGrid(np.array([1e14, 2e14, 4e14]), np.array([0.1, 0.5, 1.0]))
    assert grid.shape == (2, 2)
    idx = grid.cell_index(np.array([1.5e14, 3e14, 5e14]), np.array([0.2, 0.7, 0.3]))
    assert idx.tolist() == [0, 3, -1]
    rng = np.random.default_rng(0)
    cells = np.repeat(np.arange(4), 50)
    m, z = grid.sample(cells, rng)
    assert np.array_equal(grid.cell_index(m, z), cells)


def test_choose_positions_respects_rules():
    allowed = np.zeros((200, 200), bool)
    allowed[20:180, 20:180] = True
    rng = np.random.default_rng(1)
    avoid = np.array([[100.0, 100.0]])
    xy = choose_positions(allowed, 40, 25.0, rng, avoid, 30.0)
    assert 5 < len(xy) <= 40
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(xy), 1)].min() >= 25.0
    assert np.hypot(xy[:, 0] - 100, xy[:, 1] - 100).min() >= 30.0
    ix, iy = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
    assert allowed[np.clip(iy, 0, 199), np.clip(ix, 0, 199)].all()


def test_render_conserves_compton_y():
    """The painted, beam-convolved stamp of each band sums to Y_tot × the tSZ factor."""
    model = ScalingModel(ksz=False, y500_scatter_ln=0.0)
    clusters = draw_clusters(np.array([4e14]), np.array([0.5]), model, np.random.default_rng(0))
    pix = 0.5
    target = InjectionTarget(None, (400, 400), pix)
    target.bands = [
        InjectionBand(None, 0, 1.0, 1.6, float(tsz_uk_per_y(95.0))),  # type: ignore[arg-type]
        InjectionBand(None, 0, 1.0, 1.0, None),  # type: ignore[arg-type]
    ]
    out = render(target, clusters, np.array([[200.3, 199.6]]), 5.0)
    _, rows, cols, per_band = out[0]
    prof = sz.projected_profile(5.0)
    y_tot = clusters.y500_sr[0] * prof.i_rmax / prof.i1
    pix_sr = (pix * ARCMIN) ** 2
    assert per_band[1].sum() * pix_sr == pytest.approx(y_tot, rel=1e-6)
    assert per_band[0].sum() * pix_sr == pytest.approx(y_tot * tsz_uk_per_y(95.0), rel=1e-6)
    # the centre of the stamp is the brightest pixel of the y map
    iy, ix = np.unravel_index(np.argmax(per_band[1]), per_band[1].shape)
    assert (rows.start + iy, cols.start + ix) in {(199, 200), (200, 200), (199, 201), (200, 201)}


def test_interpolate_completeness_extrapolates_to_edges():
    from clusterfw.selection.api import interpolate_completeness
    from clusterfw.selection.table import analytic_rows, build_table

    grid = MassRedshiftGrid(np.array([1e14, 2e14, 4e14]), np.array([0.1, 0.5, 0.9]))
    rows = analytic_rows(grid, None, np.array([0.2, 0.4, 0.6, 0.8]), np.zeros(4))
    table = build_table([rows], {})
    got = interpolate_completeness(
        table,
        np.array([math.sqrt(2) * 1e14, 1e14, 4e14, 2e14, 5e14]),
        np.array([0.3, 0.3, 0.7, 0.5, 0.5]),
    )
    # a cell centre; half a bin below the first centre (0.2 - 0.4/2); clipped at 1; the middle
    np.testing.assert_allclose(got[:4], [0.2, 0.0, 1.0, 0.5], atol=1e-12)
    assert np.isnan(got[4])  # outside the grid


def test_write_table_fits_keeps_provenance(tmp_path):
    import json

    from astropy.table import Table

    from clusterfw.selection.table import analytic_rows, build_table, write_table

    grid = MassRedshiftGrid(np.array([1e14, 2e14]), np.array([0.1, 1.0]))
    rows = [analytic_rows(grid, None, np.array([0.3]), np.zeros(1))]
    rows.append(analytic_rows(grid, 4, np.array([0.25]), np.zeros(1)))
    table = build_table(rows, {"selfn_method": "analytic", "selfn_grid": grid.to_dict()})
    out = write_table(table, tmp_path / "s.fits")
    t = Table.read(out)
    assert t["tile"].tolist() == [-1, 4]
    assert t["completeness"].tolist() == pytest.approx([0.3, 0.25])
    assert str(t["m500c_lo"].unit) == "solMass"
    prov = json.loads(t.meta["CFWPROV"])
    assert prov["selfn_method"] == "analytic"
    assert json.loads(prov["selfn_grid"])["m500c_edges"] == [1e14, 2e14]


def test_blending_fraction():
    """Area within the footprint radius of groups brighter than xi, from a toy SNR map."""
    from clusterfw.selection.analytic import Blending

    snr = np.zeros((100, 100))
    yy, xx = np.mgrid[0:100, 0:100]
    snr[np.hypot(xx - 30, yy - 30) <= 5] = 20.0  # a bright group: 81 pixels
    snr[np.hypot(xx - 70, yy - 70) <= 5] = 6.0  # a faint one
    blend = Blending(snr, np.ones((100, 100), bool), 4.0, 1.0)
    # xi = 4: the footprint radius is 0 and both groups are brighter: their area
    assert blend.fraction(np.array([4.0]), np.array([3.0]))[0] == pytest.approx(162 / 1e4)
    # xi = 10: only the bright group; footprint radius 3 * sqrt(2 ln 2.5) = 4.06 -> 4.0 pixels
    frac = blend.fraction(np.array([10.0]), np.array([3.0]))[0]
    grown = np.hypot(xx - 30, yy - 30) <= 5 + 4.0
    assert frac == pytest.approx(grown.mean(), abs=0.003)
    assert blend.fraction(np.array([30.0]), np.array([3.0]))[0] == 0.0
