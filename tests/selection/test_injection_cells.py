"""Which cells a round's injections go to."""

from __future__ import annotations

import numpy as np


def test_fewer_positions_than_cells_reach_every_cell():
    """Two injections a round over twelve cells: every cell gets some, about equally."""
    from clusterfw.selection.injection import assign_cells

    rng = np.random.default_rng(0)
    todo = np.arange(12)
    got = np.concatenate([assign_cells(todo, 2, rng) for _ in range(600)])
    counts = np.bincount(got, minlength=12)
    assert counts.sum() == 1200
    assert counts.min() > 60 and counts.max() < 140  # 100 each, Poisson-like spread
    # the two of one round are different cells
    pairs = [assign_cells(todo, 2, rng) for _ in range(50)]
    assert all(a != b for a, b in pairs)


def test_more_positions_than_cells_share_evenly():
    from clusterfw.selection.injection import assign_cells

    rng = np.random.default_rng(1)
    todo = np.array([3, 5, 8])
    cells = assign_cells(todo, 8, rng)
    counts = {int(c): int((cells == c).sum()) for c in todo}
    assert sorted(counts.values()) == [2, 3, 3]
    assert set(cells.tolist()) == {3, 5, 8}
    assert assign_cells(np.zeros(0, np.int64), 4, rng).size == 0
