"""``clusterfw train vgg_mass``: a two-epoch run on a few cutouts, its files, its errors."""

from __future__ import annotations

import csv
import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from clusterfw.core.cli import cli as core_cli
from clusterfw.plugins.estimators.vgg_mass.data import (
    load_mass_data,
    normalise_xray,
    normalise_y,
    parse_channels,
    split_indices,
)
from clusterfw.plugins.estimators.vgg_mass.plugin import train_vgg_mass


def _group() -> click.Group:
    grp = type(core_cli)("train")  # the project's group class: one-line errors, exit 2
    grp.add_command(train_vgg_mass)
    return grp


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    pytest.importorskip("scipy")
    from clusterfw.sim.shards.common import write_dataset
    from clusterfw.sim.shards.mass import KIND, MassCutoutConfig, mass_samples

    cfg = MassCutoutConfig(size_arcmin=12.0, npix=24)
    out = tmp_path_factory.mktemp("shards") / "mass"
    write_dataset(out, KIND, 3, cfg.model_dump(), 40, 16, mass_samples(cfg, 3, 40), progress=False)
    return out


def test_channels_normalisation_and_split(shards):
    assert parse_channels("y, xray") == ("y", "xray")
    d = load_mass_data(shards, ("y", "xray", "optical"), rebin=2, keep_y=True)
    assert d.x.shape == (40, 12, 12, 3) and d.y_raw.shape == (40, 24, 24)
    assert d.pixel_arcmin == pytest.approx(1.0) and d.raw_pixel_arcmin == pytest.approx(0.5)
    # y: block mean / 1e-4; X-ray: asinh of counts per 2 ks (exposure 2 ks: asinh of the counts)
    assert d.x[0, 0, 0, 0] == pytest.approx(d.y_raw[0, :2, :2].mean() / 1e-4, rel=1e-5)
    c = np.array([[0.0, 3.0], [1.0, 0.0]])
    t = np.full((2, 2), 4000.0)
    assert normalise_xray(c, t, 2)[0, 0] == pytest.approx(np.arcsinh(4 * 2000 / 4000))
    assert normalise_y(np.full((4, 4), 2e-4), 2).tolist() == [[2.0, 2.0], [2.0, 2.0]]
    s = split_indices(40, 1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [28, 6, 6]
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(40))
    ra = np.repeat([10.0, 100.0, 200.0, 300.0], 10)  # four far-apart sky regions
    p = split_indices(40, 1, (0.5, 0.25, 0.25), ra=ra, dec=np.zeros(40))
    for k in ("train", "val", "test"):  # no region straddles two splits
        for other in {"train", "val", "test"} - {k}:
            assert not set(ra[p[k]]) & set(ra[p[other]])


def test_two_epoch_run_writes_weights_card_and_metrics(shards, tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "run"
    args = ["vgg_mass", "--data", str(shards), "--out", str(out), "--epochs", "2", "--smoke"]
    res = CliRunner().invoke(_group(), [*args, "--threads", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "MODEL.md", "metrics.csv", "metrics.json", "predictions.csv", "vgg_mass_y.json",
        "vgg_mass_y.weights.h5",
    ]  # fmt: skip
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"] and all(float(r["seconds"]) > 0 for r in rows)
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["split"] == {"train": 28, "val": 6, "test": 6}
    val = m["evaluation"]["val"]
    assert val["cnn"]["n"] == 6 and 0 <= val["cnn"]["coverage68"] <= 1
    assert val["ysz"]["n"] + val["ysz"]["n_failed"] == 6
    pred = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["split"] for r in pred] == ["val"] * 6 + ["test"] * 6
    assert all(float(r["m500c_cnn"]) > 0 and float(r["sigma_ln_cnn"]) > 0 for r in pred)
    card = (out / "MODEL.md").read_text()
    assert "**SMOKE RUN**" in card and "not* the estimator's final weights" in card
    assert "validation | 6 |" in card
    # the estimator reads what training wrote
    from clusterfw.plugins.estimators.vgg_mass.plugin import VggMassEstimator

    model, cfg = VggMassEstimator({"weights": str(out)}).network(("y",))
    assert cfg["npix"] == 24 and cfg["pixel_arcmin"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--channels", "y,foo"], "--channels: expected one of y, y,xray, y,xray,optical"),
        (["--data", "{tmp}/nowhere"], "{tmp}/nowhere/manifest.json: no such file"),
    ],
)
def test_bad_arguments_are_one_line_exit_2_nothing_written(shards, tmp_path, args, message):
    out = tmp_path / "o"
    base = ["vgg_mass", "--data", str(shards), "--out", str(out)]
    full = base + [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = CliRunner().invoke(_group(), full)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert lines[0].startswith("clusterfw: error: " + message.replace("{tmp}", str(tmp_path)))
    assert not out.exists()


def test_multi_channel_run_names_its_files_by_channel_set(shards, tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "run3"
    args = ["vgg_mass", "--data", str(shards), "--out", str(out), "--channels", "y,xray,optical"]
    res = CliRunner().invoke(_group(), [*args, "--epochs", "1", "--rebin", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "vgg_mass_y_xray_optical.json").read_text())
    assert cfg["channels"] == ["y", "xray", "optical"] and cfg["npix"] == 12 and cfg["rebin"] == 2
    assert (out / "vgg_mass_y_xray_optical.weights.h5").stat().st_size > 0
    assert "**SMOKE RUN**" not in (out / "MODEL.md").read_text()


def test_randomised_cutouts_draw_their_own_relation_profile_and_survey():
    """``--setting randomised``: per-cutout Y–M normalisation, σ_lnY, shapes, beam and depth."""
    from clusterfw.plugins.estimators.vgg_mass.data import ym_floor_residuals
    from clusterfw.sim.settings import RANGES
    from clusterfw.sim.shards.mass import MassCutoutConfig, pack_mass_cutout, render_mass_cutout

    cfg = MassCutoutConfig(size_arcmin=10.0, npix=20, setting="randomised", offset_arcmin=1.0)
    rows = [pack_mass_cutout(cfg, render_mass_cutout(cfg, 4, i)) for i in range(6)]
    norms = [float(r["ym_norm_factor"]) for r in rows]
    assert len(set(norms)) == 6 and all(0.8 <= v <= 1.2 for v in norms)
    for r in rows:
        assert RANGES["sigma_lny"][0] <= float(r["sigma_lny"]) <= RANGES["sigma_lny"][1]
        assert 0.5 <= float(r["axis_ratio"]) <= 1.0
        assert 0.85 <= float(r["beam_factor"]) <= 1.15 and 0.7 <= float(r["noise_factor"]) <= 1.3
        assert int(r["profile_code"]) in (0, 1, 2, 3)
        assert np.all(np.abs(r["offset_arcmin"]) <= 1.0)
        # the floor residual is exactly the drawn normalisation and scatter, over the slope
        f = ym_floor_residuals(r["m500c"], r["z"], r["y500"])
        want = (np.log(float(r["ym_norm_factor"])) + float(r["dln_y"])) / 1.78
        assert float(f) == pytest.approx(want, abs=1e-9)
    # the same index gives the same cutout; the default setting has none of these labels
    again = pack_mass_cutout(cfg, render_mass_cutout(cfg, 4, 2))
    assert np.array_equal(again["y"], rows[2]["y"])
    base = cfg.model_copy(update={"setting": "default"})
    plain = pack_mass_cutout(base, render_mass_cutout(base, 4, 0))
    assert "ym_norm_factor" not in plain
    from clusterfw.core.errors import ClusterfwError

    with pytest.raises(ClusterfwError, match="--setting: unknown setting 'nope'"):
        MassCutoutConfig(setting="nope").validate_options()


def test_sigma_recalibration_and_the_acceptance_numbers():
    from clusterfw.plugins.estimators.vgg_mass.train import (
        acceptance,
        residual_stats,
        sigma_scale_factor,
    )

    rng = np.random.default_rng(0)
    n = 4000
    m = 10 ** rng.uniform(13.7, 15.2, n)
    z = rng.uniform(0.05, 1.05, n)
    r = rng.normal(0.0, 0.2, n)
    head = np.full(n, 0.1)  # a head that is over-confident by a factor 2
    k = sigma_scale_factor(r, head)
    assert k == pytest.approx(2.0, rel=0.05)
    assert residual_stats(r, head)["coverage68"] == pytest.approx(0.38, abs=0.03)
    assert residual_stats(r, head * k)["coverage68"] == pytest.approx(0.6827, abs=0.002)
    floor = r * 0.5
    acc = acceptance(r, head * k, m, z, ln_ysz=r * 1.5, floor=floor)
    inside = (m >= 1e14) & (m <= 1e15) & (z >= 0.1) & (z <= 1.0)
    assert acc["cnn"]["n"] == int(inside.sum())
    assert acc["cnn_over_floor"] == pytest.approx(2.0, rel=1e-9)
    assert acc["same_clusters"]["reduction"] == pytest.approx(1 / 3, rel=1e-9)
    # 4 mass + 3 z + 12 (mass × z) bins, all with ≥ 30 clusters; unbiased: none beyond 2 s.e.
    assert acc["bins_counted"] == 19
    assert acc["bins_beyond_0.02_2se"] == []
    shifted = acceptance(r + 0.1, head * k, m, z)
    assert len(shifted["bins_beyond_0.02_2se"]) == 19


def test_sigma_scale_map_fixes_a_head_whose_level_drifts_with_mass():
    from clusterfw.plugins.estimators.vgg_mass.train import (
        fit_sigma_scale_map,
        residual_stats,
        sigma_scale_factor,
        sigma_scales,
    )

    rng = np.random.default_rng(4)
    n = 8000
    t = rng.uniform(-2.0, 2.0, n)
    true_sigma = 0.15 + 0.05 * (t < 0)  # noisier at low mass
    head = np.where(t < 0, 0.4, 0.1)  # under-confident low, over-confident high
    r = rng.normal(0.0, true_sigma)
    one = sigma_scale_factor(r, head)
    low, high = t < -0.5, t > 0.5
    cov_one = [residual_stats(r[b], (head * one)[b])["coverage68"] for b in (low, high)]
    assert cov_one[0] > 0.85 and cov_one[1] < 0.5  # one factor cannot fix both ends
    cmap = fit_sigma_scale_map(t, r, head)
    assert len(cmap["t"]) == 8 and cmap["n"] == n
    sig = head * sigma_scales(t, {"sigma_scale": one, "sigma_scale_map": cmap})
    for b in (low, high):
        assert residual_stats(r[b], sig[b])["coverage68"] == pytest.approx(0.6827, abs=0.03)
    # flat beyond the end knots; the scalar without a map; too few clusters: no knots
    assert sigma_scales(np.array([-9.0, 9.0]), {"sigma_scale_map": cmap}) == pytest.approx(
        [cmap["scale"][0], cmap["scale"][-1]]
    )
    assert sigma_scales(np.zeros(3), {"sigma_scale": 1.7}) == pytest.approx([1.7] * 3)
    assert fit_sigma_scale_map(t[:10], r[:10], head[:10])["t"] == []


def test_median_calibration_inverts_a_compressed_output():
    from clusterfw.plugins.estimators.vgg_mass.train import (
        apply_mu_calibration,
        fit_mu_calibration,
    )

    rng = np.random.default_rng(3)
    t = rng.uniform(-1.8, 1.7, 5000)
    mu = 0.2 + 0.7 * t + rng.normal(0, 0.05, t.size)  # biased and compressed toward the middle
    cal = fit_mu_calibration(t, mu)
    assert np.all(np.diff(cal["mu"]) > 0) and cal["n"] == 5000
    back = apply_mu_calibration(mu, cal)
    assert np.median(back - t) == pytest.approx(0.0, abs=0.01)
    assert np.std(back - t) == pytest.approx(0.05 / 0.7, rel=0.15)
    # outside the knots: extrapolated along the end segments, not clamped
    assert apply_mu_calibration(np.array([5.0]), cal)[0] > 5.0
    assert apply_mu_calibration(mu, None) is not None
    assert np.array_equal(apply_mu_calibration(mu, None), mu)
