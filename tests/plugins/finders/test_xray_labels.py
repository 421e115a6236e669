"""Kosiba's label task, the shared cluster map of several X-ray draws, balanced sets."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.plugins.finders.xray import data as xdata
from clusterfw.plugins.finders.xray.train import balanced_subset


def _cands() -> dict[str, np.ndarray]:
    # fluctuation, AGN, group, cluster, group outshone by an AGN, old file (no counts)
    return {
        "kind": np.array([0, 1, 2, 3, 2, 2], np.int8),
        "label": np.array([0, 0, 0, 1, 0, 0], np.int8),
        "halo_m500c": np.array([np.nan, np.nan, 5e13, 2e14, 6e13, 4e13]),
        "halo_counts": np.array([0.0, 0.0, 40.0, 300.0, 20.0, np.nan]),
        "agn_counts": np.array([0.0, 60.0, 5.0, 0.0, 450.0, np.nan]),
    }


def test_real_task_counts_groups_and_clusters_against_agn_and_fluctuations():
    labels, kinds = xdata.task_labels(_cands(), "real")
    assert labels.tolist() == [0, 0, 1, 1, 0, 1]
    # the halo match that a 450-count AGN outshines is an AGN
    assert kinds.tolist() == [0, 1, 2, 3, 1, 2]


def test_mass_task_is_the_stored_label():
    labels, kinds = xdata.task_labels(_cands(), "mass")
    assert labels.tolist() == [0, 0, 0, 1, 0, 0]
    assert kinds.tolist() == [0, 1, 2, 3, 2, 2]
    with pytest.raises(ValueError, match="label task 'size'"):
        xdata.task_labels(_cands(), "size")


def test_balanced_subset_when_positives_are_the_majority():
    labels = np.array([1] * 30 + [0] * 7)
    idx = balanced_subset(labels, 0)
    assert idx.size == 14 and labels[idx].sum() == 7
    assert set(np.flatnonzero(labels == 0)) <= set(idx.tolist())


def test_draws_share_the_cluster_map_and_draw_zero_is_the_field():
    from clusterfw.sim.footprint import Footprint
    from clusterfw.sim.shards.classifier import XrayCandidatesConfig, _field, field_halos
    from clusterfw.sim.xray import cluster_flux_map

    cfg = XrayCandidatesConfig(field_deg=0.15, positive_fraction=0.0, abundance_boost=10.0)
    halos = field_halos(cfg, 5, 0)
    fp = Footprint(cfg.ra_deg, cfg.dec_deg, cfg.field_deg, cfg.field_deg, "TAN")
    clusters = cluster_flux_map(halos, fp, cfg.xray_preset)
    own = _field(cfg, 5, 0)
    again = _field(cfg, 5, 0, halos, 0, clusters)
    np.testing.assert_array_equal(own["xray"].counts, again["xray"].counts)
    d1 = _field(cfg, 5, 0, halos, 1, clusters)
    d1_fresh = _field(cfg, 5, 0, halos, 1)
    np.testing.assert_array_equal(d1["xray"].counts, d1_fresh["xray"].counts)
    # another draw: other counts and AGN, the same clusters
    assert not np.array_equal(d1["xray"].counts, own["xray"].counts)
    np.testing.assert_allclose(d1["xray"].cluster_counts, own["xray"].cluster_counts)
    assert d1["xray"].agn.num_rows != own["xray"].agn.num_rows or not np.allclose(
        d1["xray"].agn["flux"].to_numpy(), own["xray"].agn["flux"].to_numpy()
    )
    # expected counts: a matched halo's are its own, unmatched candidates have none
    for fld in (own, d1):
        b = fld["best"]
        assert np.all(fld["halo_counts"][b < 0] == 0)
        np.testing.assert_allclose(
            fld["halo_counts"][b >= 0], fld["xray"].cluster_counts[b[b >= 0]]
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "size"], "clusterfw: error: --label: 'size' is not one of 'real', 'mass'."),
        (["--draws", "0"], "clusterfw: error: --draws: 0 is not in the range 1<=x<=64."),
        (["--abundance-boost", "0.5"], "clusterfw: error: --abundance-boost:"),
    ],
)
def test_train_options_refused_in_one_line(tmp_path, args, message):
    import subprocess
    import sys

    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "clusterfw", "train", "xray", "--out", str(out), *args],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not out.exists()


def test_command_line_of_the_card_keeps_the_new_options():
    import click

    from clusterfw.core.train_cli import rebuilt_command_line
    from clusterfw.plugins.finders.xray.plugin import train_xray

    args = ["--out", "R", "--draws", "24", "--label", "mass", "--epoch-size", "2048"]
    with click.Context(train_xray) as ctx:
        ctx.params = train_xray.make_context("xray", args).params
        line = rebuilt_command_line(ctx)
    assert line.startswith("clusterfw train xray --out R --seed 0")
    for part in ("--draws 24", "--label mass", "--epoch-size 2048"):
        assert part in line
    assert "--abundance-boost" not in line and "--max-minutes" not in line
