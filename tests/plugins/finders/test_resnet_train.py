"""Training pieces (schedule, stratified sampling, F1) and a tiny end-to-end `train resnet`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clusterfw.plugins.finders.resnet.train import (
    TrainConfig,
    best_f1,
    confusion,
    lr_at,
    stratified_batch,
)


def test_lr_schedule_warmup_then_drop():
    cfg = TrainConfig(out=Path("."), lr=6e-3, warmup_fraction=0.2, decay_fraction=0.5)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(2e-3)  # a third of the peak, as the paper's 5/3e-3 -> 5e-3
    assert np.all(np.diff(lrs[:20]) > 0) and lrs[20] == pytest.approx(6e-3)
    assert lrs[49] == pytest.approx(6e-3) and lrs[50] == pytest.approx(6e-4)


@pytest.mark.parametrize("ratio", [1, 4, 15])
def test_stratified_batches_have_ratio(ratio):
    rng = np.random.default_rng(0)
    pos, neg = np.arange(10), np.arange(10, 1000)
    idx = np.concatenate([stratified_batch(rng, pos, neg, 128, ratio) for _ in range(200)])
    frac = np.mean(idx < 10)
    assert frac == pytest.approx(1.0 / (1.0 + ratio), rel=0.06)


def test_best_f1_matches_brute_force():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.1).astype(int)
    s = rng.normal(y * 1.5, 1.0).round(1)  # ties on purpose
    f1, thr = best_f1(s, y)
    brute = max((confusion(s, y, t)["f1"], t) for t in np.unique(s))
    assert f1 == pytest.approx(brute[0])
    assert confusion(s, y, thr)["f1"] == pytest.approx(f1)


def test_train_command_end_to_end(tmp_path):
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    out = tmp_path / "run"
    args = [
        "train", "resnet", "--out", str(out), "--seed", "5", "--width", "4", "--n-train", "300",
        "--positive-fraction", "0.3", "--val-patches", "2", "--test-patches", "1",
        "--grid-patch-arcmin", "96",
        "--ratios", "1,2", "--batch-size", "16", "--first-epoch-batches", "4",
        "--max-batches", "4", "--eval-every", "2", "--quiet",
    ]  # fmt: skip
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("resnet.safetensors", "platt.json", "metrics.jsonl", "MODEL.md", "summary.json"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r["event"] == "epoch"]
    assert [e["ratio"] for e in epochs] == [1, 2]
    assert log[-1]["event"] == "final"
    summary = json.loads((out / "summary.json").read_text())
    # val and test are whole grid-tiled patches; train is balanced at the requested fraction
    assert summary["n"]["val"] == 2 * 225 and summary["n"]["test"] == 225
    assert 75 <= summary["positives"]["train"] <= 90  # windows clipped at patch edges
    card = (out / "MODEL.md").read_text()
    assert "clusterfw train resnet --out" in card and "seed 5" in card
    # the weights load through the finder's loader
    from clusterfw.plugins.finders.resnet.model import load_weights

    model, meta = load_weights(str(out / "resnet.safetensors"))
    assert meta["seed"] == 5 and len(meta["scales_uk"]) == 3
    # the defaults: the randomised training mixture and SZ-survey labels, recorded everywhere
    assert meta["setting"] == "randomised" and meta["labels"] == "sz"
    assert (meta["mass_cut"], meta["mass_definition"], meta["z_min"]) == (1.5e14, "m500c", 0.0)
    assert "--setting randomised --labels sz" in card
    assert "M500c ≥ 1.5e+14 Msun (any redshift) lies\nin the central" in card
    assert all(summary["data"][k]["setting"] == "randomised" for k in ("train", "val", "test"))


@pytest.mark.slow
def test_position_head_command_and_finder_use_it(tmp_path):
    """`train resnet-position` on a tiny trained model's cache; the finder then localises with
    the head (one forward pass per seed and iteration) and refuses a head of another size."""
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    out = tmp_path / "run"
    args = [
        "train", "resnet", "--out", str(out), "--seed", "5", "--width", "4", "--n-train", "200",
        "--positive-fraction", "0.5", "--val-patches", "1", "--test-patches", "1",
        "--grid-patch-arcmin", "96", "--ratios", "1", "--batch-size", "16",
        "--first-epoch-batches", "2", "--eval-every", "2", "--quiet",
    ]  # fmt: skip
    assert CliRunner().invoke(cli, args, catch_exceptions=False).exit_code == 0
    args = [
        "train", "resnet-position", "--weights", str(out / "resnet.safetensors"),
        "--data-dir", str(out / "data"), "--out", str(out), "--epochs", "2", "--hidden", "8",
        "--quiet",
    ]  # fmt: skip
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "median error" in res.output
    summary = json.loads((out / "position_summary.json").read_text())
    trained = json.loads((out / "summary.json").read_text())
    assert summary["n_train"] == 2 * trained["positives"]["train"]  # two orientations each
    assert summary["test_grid_centre"]["median"] > 0.5  # positives sit anywhere in the 6' box

    from clusterfw.plugins.finders.resnet.finder import ResNetFinder, shipped_weights
    from clusterfw.sim import PatchConfig, simulate_patch

    platt = str(shipped_weights() / "platt.json")  # a 2-batch model's own Platt fit may be < 0

    tile = simulate_patch(PatchConfig(size_deg=0.5), 3).sky
    tile = tile.tiles(tile_size_arcmin=1e4, margin_arcmin=0.0)[0]
    finder = ResNetFinder(
        {"weights": str(out / "resnet.safetensors"), "calibration": platt, "p_seed": 0.0}
    )
    assert finder._net().position is not None
    table = finder.find(tile)
    assert table.num_rows >= 1
    bad = ResNetFinder(
        {
            "weights": str(out / "resnet.safetensors"),
            "calibration": platt,
            "localise_method": "plateau",
        }  # fmt: skip
    )._net()
    assert bad.position is None

    missing = CliRunner().invoke(
        cli, ["train", "resnet-position", "--weights", str(out / "resnet.safetensors"),
              "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "no train cutouts" in missing.output
