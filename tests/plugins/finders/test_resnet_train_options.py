"""`clusterfw train resnet --setting/--labels`: checked first, used by the data, recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from clusterfw.plugins.finders.resnet.data import SplitSpec, ensure_split
from clusterfw.plugins.finders.resnet.plugin import LABEL_NAMES, SETTING_NAMES
from clusterfw.plugins.finders.resnet.train import TrainConfig


def cfw(*args: object) -> tuple[int, str, str]:
    """The real command group, in-process (its error handling included)."""
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def test_choices_are_the_simulator_names():
    from clusterfw.sim.cutouts import LABELS
    from clusterfw.sim.settings import SETTINGS

    assert set(SETTING_NAMES) == set(SETTINGS)
    assert set(LABEL_NAMES) == set(LABELS)


def test_config_defaults_are_randomised_sz_labels():
    cfg = TrainConfig(out=Path("."))
    assert (cfg.setting, cfg.labels) == ("randomised", "sz")
    assert (cfg.mass_cut, cfg.mass_definition, cfg.z_min) == (1.5e14, "m500c", 0.0)
    paper = TrainConfig(out=Path("."), setting="default", labels="deepsz")
    assert (paper.mass_cut, paper.mass_definition, paper.z_min) == (2e14, "mvir", 0.25)
    # an explicit part overrides the preset, the rest stays
    mixed = TrainConfig(out=Path("."), labels="sz", mass_cut=3e14)
    assert (mixed.mass_cut, mixed.mass_definition, mixed.z_min) == (3e14, "m500c", 0.0)
    d = mixed.as_dict()
    assert d["setting"] == "randomised" and d["labels"] == "sz" and d["mass_cut"] == 3e14


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"setting": "planck"}, "unknown setting 'planck'"),
        ({"labels": "act"}, "unknown labels 'act'"),
    ],
)
def test_config_rejects_unknown_names(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(out=Path("."), **kwargs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--setting", "planck"], "--setting: 'planck' is not one of"),
        (["--labels", "act"], "--labels: 'act' is not one of 'sz', 'deepsz'."),
    ],
)
def test_bad_option_one_line_before_any_simulation(tmp_path, args, message):
    out = tmp_path / "model"
    rc, _, err = cfw("train", "resnet", "--out", out, "--quiet", *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clusterfw: error: "), err
    assert message in lines[0]
    assert not out.exists()


def test_split_uses_setting_and_label_definition(tmp_path):
    spec = SplitSpec(
        n=40, mode="balanced", positive_fraction=0.5, patch_arcmin=48.0, mass_cut=1.5e14,
        mass_definition="m500c", z_min=0.0, setting="battaglia_hiradio",
    )  # fmt: skip
    folder = ensure_split(tmp_path, "train", spec, seed=3, progress=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["setting"] == "battaglia_hiradio" and manifest["mass_definition"] == "m500c"
    (shard,) = sorted(folder.glob("train_*.npz"))
    with np.load(shard, allow_pickle=False) as z:
        drawn = json.loads(str(z["setting_json"]))
        labels = z["labels"].astype(bool)
        m500 = z["meta_halo_m500c"]
        zz = z["meta_halo_z"]
    assert drawn["setting"] == "battaglia_hiradio"
    assert drawn["patches"] and all(p["profile"] == "battaglia12" for p in drawn["patches"])
    assert 15 <= labels.sum() <= 25
    # positives: the cell's primary halo passes the M500c cut; some are at low z (any z counts)
    assert np.all(m500[labels] >= 1.5e14)
    assert np.all(~(m500[~labels] >= 1.5e14))  # negatives: no qualifying halo (NaN: no halo)
    assert np.all(zz[labels] > 0.0)
    # a changed setting invalidates the cache: the split is simulated again
    spec2 = SplitSpec(**{**spec.as_dict(), "setting": "default"})
    ensure_split(tmp_path, "train", spec2, seed=3, progress=False)
    with np.load(sorted(folder.glob("train_*.npz"))[0], allow_pickle=False) as z:
        assert "setting_json" not in z.files
    assert json.loads((folder / "manifest.json").read_text())["setting"] == "default"


def test_paper_labels_end_to_end_recorded(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    rc, _, err = cfw(
        "train", "resnet", "--out", out, "--seed", "4", "--setting", "default",
        "--labels", "deepsz", "--width", "4", "--n-train", "200", "--positive-fraction", "0.3",
        "--val-patches", "1", "--test-patches", "1", "--grid-patch-arcmin", "96",
        "--ratios", "1", "--batch-size", "16", "--first-epoch-batches", "3",
        "--eval-every", "3", "--quiet",
    )  # fmt: skip
    assert rc == 0, err
    from clusterfw.plugins.finders.resnet.model import load_weights

    _, meta = load_weights(str(out / "resnet.safetensors"))
    assert meta["setting"] == "default" and meta["labels"] == "deepsz"
    assert (meta["mass_cut"], meta["mass_definition"], meta["z_min"]) == (2e14, "mvir", 0.25)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["train"]["setting"] == "default"
    assert summary["data"]["val"]["mass_definition"] == "mvir"
    card = (out / "MODEL.md").read_text()
    assert "--setting default --labels deepsz" in card
    assert "Setting: `default`" in card
    assert "Labels `deepsz`: positive when a halo with Mvir ≥ 2e+14 Msun (z > 0.25) lies" in card
    assert "## Notes" not in card
    # the card can be rewritten from summary.json with notes (measurements made afterwards)
    from clusterfw.plugins.finders.resnet.card import write_model_card

    write_model_card(summary, out / "card2.md", "clusterfw train resnet ...", notes="F1 0.7\n")
    text = (out / "card2.md").read_text()
    assert text.endswith("## Notes\nF1 0.7\n") and "Setting: `default`" in text


def _benchmark():
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "resnet_vs_mf.py"
    spec = importlib.util.spec_from_file_location("resnet_vs_mf_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks the module up
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_labels_weights_and_f1_error(tmp_path):
    bench = _benchmark()
    assert (bench.MASS_CUT, bench.MASS_DEF, bench.Z_MIN) == (2e14, "mvir", 0.25)
    bench.set_labels("sz")
    assert (bench.MASS_CUT, bench.MASS_DEF, bench.Z_MIN) == (1.5e14, "m500c", 0.0)
    assert bench.weights_file(str(tmp_path)) == str(tmp_path / "resnet.safetensors")
    assert bench.weights_file("a/b.safetensors") == "a/b.safetensors"
    assert bench.weights_file(None) is None
    # F1 0.5 on 100 cluster cells: bootstrap σ near the delta-method value, shrinking as 1/√n
    cm = {"tp": 50, "fp": 50, "fn": 50, "tn": 850}
    s1 = bench.f1_sigma(cm)
    s4 = bench.f1_sigma({k: 4 * v for k, v in cm.items()})
    assert 0.035 < s1 < 0.06
    assert s1 / s4 == pytest.approx(2.0, rel=0.1)


def test_benchmark_position_errors_of_found_clusters():
    """Only clusters whose cell the grid finds count; the nearest detection above the catalogue
    threshold gives the error; none at all is infinitely far."""
    import numpy as np

    bench = _benchmark()
    dec0 = -45.0
    halos = {
        "ra": np.array([10.0, 10.5, 11.0]),
        "dec": np.full(3, dec0),
        "cell": np.array([0, 1, 2]),
    }
    cos = np.cos(np.radians(dec0))
    cand = {
        # 0.3' east of halo 0 (score 0.9), 2' north of halo 1 (0.8), a weak one on halo 2 (0.1)
        "resnet_ra": np.array([10.0 + 0.3 / 60 / cos, 10.5, 11.0, np.nan]),
        "resnet_dec": np.array([dec0, dec0 + 2 / 60, dec0, np.nan]),
        "resnet_score": np.array([0.9, 0.8, 0.1, 0.99]),  # the last: a forced score, no detection
    }
    patch = bench.PatchResult(
        label=np.ones(3, bool), cand=cand, n_cells=3, grid=np.array([0.9, 0.9, 0.05]),
        top_mass=np.zeros(3), top_z=np.zeros(3), halos=halos,
    )  # fmt: skip
    d = bench.position_errors([patch], grid_threshold=0.5, threshold=0.5)
    np.testing.assert_allclose(d, [0.3, 2.0], atol=1e-6)  # halo 2: its cell's grid p < 0.5
    s = bench.error_summary(bench.position_errors([patch], grid_threshold=0.0, threshold=0.5))
    assert s["n"] == 3 and s["median"] == pytest.approx(2.0, abs=1e-6)
    assert s["frac_gt_1"] == pytest.approx(2 / 3) and s["frac_gt_2"] == pytest.approx(1 / 3)
