"""Helpers of ``benchmarks/resnet_vs_mf.py`` added for ``stack``'s test-area run (issue 14): the
σ over test patches of a combination minus the better single finder (patch bootstrap of
pooled counts) and the patch cache (parquet and npz, no pickle) that lets the scoring be rerun
without simulating again."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "resnet_vs_mf.py"
    spec = importlib.util.spec_from_file_location("resnet_vs_mf_stack_bench", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks the module up
    spec.loader.exec_module(mod)
    return mod


def test_patch_counts_and_pooled_f1(bench):
    lab = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1], bool)
    dec = np.array([1, 0, 1, 0, 1, 1, 0, 0, 0, 1], bool)
    c = bench.patch_counts(dec, lab, [4, 3, 3])
    np.testing.assert_array_equal(c, [[1, 1, 1], [1, 1, 0], [1, 0, 1]])
    assert bench.f1_of_counts(c.sum(0)) == pytest.approx(2 * 3 / (2 * 3 + 2 + 2))


def test_patch_bootstrap_is_the_spread_over_patches(bench):
    # b finds 5 of 10 clusters on every patch; a finds all on half the patches and 5 on the rest
    b = np.array([[5, 0, 5]] * 8, float)
    a = np.array([[10, 0, 0]] * 4 + [[5, 0, 5]] * 4, float)
    diff, sd = bench.patch_bootstrap(a, b, n_boot=2000)
    assert diff == pytest.approx(2 * 60 / (2 * 60 + 20) - 2 * 40 / (2 * 40 + 40))
    # resampling 8 patches of which half gain: a clearly non-zero, bounded spread
    assert 0.03 < sd < 0.12
    assert bench.patch_bootstrap(b, b) == (0.0, 0.0)  # identical counts: no spread
    # more patches of the same kind: the σ shrinks as 1/sqrt(n)
    _, sd4 = bench.patch_bootstrap(np.tile(a, (4, 1)), np.tile(b, (4, 1)), n_boot=2000)
    assert sd4 == pytest.approx(sd / 2, rel=0.2)


def test_patch_cache_round_trip_without_pickle(bench, tmp_path):
    rng = np.random.default_rng(0)
    n_cells = 12
    cand = {
        "cell_mf": np.array([0, 3, -1]),
        "cell_resnet": np.array([1, -1, 5]),
        "cell_merged": np.array([0, 3, 5]),
        "mf_detected": np.array([True, True, False]),
        "resnet_detected": np.array([True, False, True]),
        "mf_score": np.array([9.0, 5.5, 3.2]),
        "resnet_score": np.array([0.9, np.nan, 0.4]),
        "resnet_ra": np.array([10.0, np.nan, 10.2]),
        "resnet_dec": np.array([-1.0, np.nan, -1.1]),
    }
    result = bench.PatchResult(
        label=rng.random(n_cells) < 0.3,
        cand=cand,
        n_cells=n_cells,
        grid=rng.random(n_cells),
        top_mass=rng.random(n_cells) * 1e15,
        top_z=rng.random(n_cells),
        halos={"ra": np.array([10.0]), "dec": np.array([-1.0]), "cell": np.array([0])},
    )
    table = pa.table({"ra": [10.0, 10.1, 10.2], "dec": [-1.0, -1.05, -1.1], "score": [1, 2, 3]})
    halos = pa.table(
        {"ra": [10.0, 11.0], "dec": [-1.0, -1.5], "mvir": [3e14, 1e14], "z": [0.3, 0.5]}
    )
    singles = {"mf": table.slice(0, 2), "resnet": table.slice(1, 2)}
    path = tmp_path / "cache" / "3deg_80000"
    bench.save_patch(str(path), result, table, halos, singles)
    assert sorted(p.name for p in path.iterdir()) == [
        "combined.parquet",
        "halos.parquet",
        "patch.npz",
        "single_mf.parquet",
        "single_resnet.parquet",
    ]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    with np.load(path / "patch.npz", allow_pickle=False) as z:  # readable without pickle
        assert z["n_cells"] == n_cells
    back, table2, truth, singles2 = bench.load_patch(str(path))
    assert back.n_cells == n_cells
    for k in ("label", "grid", "top_mass", "top_z"):
        np.testing.assert_array_equal(getattr(back, k), getattr(result, k))
    assert set(back.cand) == set(cand)
    for k, v in cand.items():
        np.testing.assert_array_equal(back.cand[k], v)
    assert back.cand["mf_detected"].dtype == bool
    np.testing.assert_array_equal(back.halos["cell"], [0])
    assert table2.equals(table)
    assert set(singles2) == {"mf", "resnet"} and singles2["resnet"].equals(singles["resnet"])
    np.testing.assert_array_equal(truth.mass, [3e14, 1e14])  # MASS_DEF: mvir by default
    np.testing.assert_array_equal(truth.z, [0.3, 0.5])
