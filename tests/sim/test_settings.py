"""Named simulator settings: reproducible, default unchanged, ranges, held-out never drawn."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from click.testing import CliRunner

from clusterfw.core.cli import _add_optional_commands, cli
from clusterfw.sim import PatchConfig, simulate_patch
from clusterfw.sim import settings as S
from clusterfw.sim.cli import SETTING_NAMES
from clusterfw.sim.config import SimConfig
from clusterfw.sim.cutouts import LABELS, SETTING_KEY, label_options, make_cutouts

SMALL = {"size_deg": 0.5}


def _same_sky(a, b) -> bool:
    return (
        np.array_equal(a.sky.maps, b.sky.maps)
        and np.array_equal(a.ymap, b.ymap)
        and a.halos.equals(b.halos)
        and a.sources.equals(b.sources)
    )


def test_default_setting_is_todays_simulator() -> None:
    cfg = PatchConfig.from_setting("default", 3, **SMALL)
    assert cfg.setting == "default" and cfg.setting_draws == {}
    assert cfg.model_dump(exclude={"setting"}) == PatchConfig(**SMALL).model_dump(
        exclude={"setting"}
    )
    res = simulate_patch(cfg, 3)
    assert _same_sky(res, simulate_patch(PatchConfig(**SMALL), 3))
    # numbers of this patch from the simulator before profile families and settings existed
    # (commit e23f8c1): any change of draws or painting moves them far beyond the tolerance
    assert (res.halos.num_rows, res.sources.num_rows) == (20, 84)
    sums = res.sky.maps.astype(float).sum(axis=(1, 2))
    np.testing.assert_allclose(sums, [-201380.01052738, -191486.24819937, -152725.78048183], 1e-9)
    assert float(res.ymap.astype(float).sum()) == pytest.approx(0.0057229881870059784, rel=1e-9)
    y500 = float(np.sum(res.halos.column("y500").to_numpy()))
    assert y500 == pytest.approx(0.00020432199045345025, rel=1e-12)


@pytest.mark.parametrize("name", ["randomised", "battaglia_hiradio"])
def test_settings_are_reproducible(name: str) -> None:
    a = PatchConfig.from_setting(name, 11, **SMALL)
    b = PatchConfig.from_setting(name, 11, **SMALL)
    assert a == b and a.setting == name and a.setting_draws
    assert _same_sky(simulate_patch(a, 11), simulate_patch(b, 11))
    assert PatchConfig.from_setting(name, 12, **SMALL).setting_draws != a.setting_draws


def test_setting_draw_does_not_consume_the_simulation_generator() -> None:
    cfg = PatchConfig(**SMALL)
    g = np.random.default_rng(np.random.SeedSequence(5))
    drawn = S.apply_setting(cfg, "randomised", g)
    assert drawn.setting_draws
    # g untouched: the same sky as from a fresh generator of the same seed
    assert _same_sky(simulate_patch(cfg, g), simulate_patch(cfg, np.random.default_rng(5)))
    # and the draw equals the one from the integer seed
    assert S.apply_setting(cfg, "randomised", 5) == drawn


def test_randomised_keeps_the_sky_realisation_and_changes_the_physics() -> None:
    base = simulate_patch(PatchConfig(**SMALL), 7)
    cfg = PatchConfig.from_setting("randomised", 7, **SMALL)
    rand = simulate_patch(cfg, 7)
    # same halos (masses, positions): the setting only changes what they look like
    for col in ("m500c", "z", "ra", "dec"):
        assert rand.halos.column(col).equals(base.halos.column(col))
    factor = cfg.setting_draws["ym_norm_factor"]
    ratio = (
        rand.halos.column("y500_median").to_numpy() / base.halos.column("y500_median").to_numpy()
    )
    np.testing.assert_allclose(ratio, factor, rtol=1e-10)
    assert not np.array_equal(rand.sky.maps, base.sky.maps)
    b = [(x.beam_fwhm_arcmin, x.noise_uk_arcmin) for x in rand.sky.bands]
    for band, (beam, noise) in zip(PatchConfig().bands, b, strict=True):
        assert beam == pytest.approx(
            band.beam_fwhm_arcmin * cfg.setting_draws[f"beam_factor_{band.name}"]
        )
        assert noise == pytest.approx(
            band.noise_uk_arcmin * cfg.setting_draws[f"noise_factor_{band.name}"]
        )


def test_randomised_draws_vary_within_their_ranges_and_never_the_held_out() -> None:
    base = SimConfig()
    families, seen, n_mix = set(), {k: [] for k in S.RANGES}, 0
    for seed in range(300):
        cfg = S.apply_setting(base, "randomised", seed)
        d = cfg.setting_draws
        if cfg.profile.mix:
            assert cfg.profile.mix == S.RANDOMISED_FAMILIES and d["profile"] == "mix"
            n_mix += 1
        else:
            families.add(cfg.profile.family)
            assert d["profile"] == cfg.profile.family
        assert cfg.profile.family != "battaglia12" and "battaglia12" not in cfg.profile.mix
        # the held-out radio model is never drawn: slopes fixed, spectral means ≤ −0.3
        assert (cfg.radio.beta_faint, cfg.radio.beta_bright) == (1.9, 2.5)
        assert -0.9 - 1e-12 <= cfg.radio.alpha_mean <= -0.3 + 1e-12
        assert cfg.ellipticity
        for key, value in d.items():
            stem = key.rsplit("_f", 1)[0] if key.startswith(("noise_", "beam_")) else key
            if stem in S.RANGES:
                lo, hi = S.RANGES[stem]
                assert lo - 1e-12 <= value <= hi + 1e-12, (key, value)
                seen[stem].append(value)
        assert cfg.y500_log10_norm == pytest.approx(
            base.y500_log10_norm + math.log10(d["ym_norm_factor"])
        )
        assert cfg.radio.euclid_norm == pytest.approx(base.radio.euclid_norm * d["radio_amp"])
        assert cfg.cluster_radio_per_halo == pytest.approx(
            base.cluster_radio_per_halo * d["member_radio_factor"]
        )
    assert families == set(S.RANDOMISED_FAMILIES)
    assert 100 < n_mix < 200  # half the skies mix the families halo by halo
    for key, values in seen.items():
        lo, hi = S.RANGES[key]
        assert len(values) >= 50, key
        # spread over the range: both ends' quarters are reached
        assert min(values) < lo + 0.25 * (hi - lo) and max(values) > hi - 0.25 * (hi - lo), key


def test_held_out_setting() -> None:
    base = SimConfig()
    for seed in range(20):
        cfg = S.apply_setting(base, "battaglia_hiradio", seed)
        assert cfg.profile.family == "battaglia12"
        assert (cfg.radio.beta_faint, cfg.radio.beta_bright) == (2.1, 2.9)
        assert (cfg.radio.alpha_mean, cfg.radio.alpha_std) == (-0.2, 0.45)
        assert cfg.cluster_radio_per_halo == pytest.approx(0.3)
    assert "battaglia12" not in S.RANDOMISED_FAMILIES


def test_unknown_setting_and_names() -> None:
    with pytest.raises(ValueError, match="unknown setting 'nope'"):
        PatchConfig.from_setting("nope", 1)
    assert SETTING_NAMES == tuple(S.SETTINGS)


def test_cutouts_draw_per_patch_and_record_it() -> None:
    kw = {"patch_arcmin": 24.0, "with_y": False}
    a = make_cutouts(60, 3, setting="randomised", **kw)
    b = make_cutouts(60, 3, setting="randomised", **kw)
    assert np.array_equal(a.images, b.images)
    rec = json.loads(a.meta.schema.metadata[SETTING_KEY])
    assert rec["setting"] == "randomised"
    patches = rec["patches"]
    assert len(patches) == int(a.meta.column("patch").to_numpy().max()) + 1 >= 2
    assert len({p["ym_norm_factor"] for p in patches}) == len(patches)
    assert all(len(p["bands"]) == 3 for p in patches)
    plain = make_cutouts(60, 3, **kw)
    assert SETTING_KEY not in plain.meta.schema.metadata
    assert not np.array_equal(plain.images, a.images)
    # the same seed gives the same halos (labels) under both
    assert np.array_equal(plain.meta.column("halo_m500c").to_numpy()[:10],
                          a.meta.column("halo_m500c").to_numpy()[:10])  # fmt: skip


def test_label_presets() -> None:
    assert label_options() == {"mass_cut": 2e14, "mass_definition": "mvir", "z_min": 0.25}
    assert (
        label_options("sz")
        == LABELS["sz"]
        == {
            "mass_cut": 1.5e14,
            "mass_definition": "m500c",
            "z_min": 0.0,
        }
    )
    assert label_options("sz", mass_cut=3e14, z_min=None)["mass_cut"] == 3e14
    with pytest.raises(ValueError, match="unknown labels"):
        label_options("act")
    batch = make_cutouts(40, 2, patch_arcmin=24.0, with_y=False, **label_options("sz"))
    meta = batch.meta.to_pydict()
    pos = np.array(meta["label"]) == 1
    assert pos.sum() >= 10
    assert np.all(np.array(meta["halo_m500c"])[pos] >= 1.5e14)
    # low-redshift clusters count under sz labels (DeepSZ's z > 0.25 cut is gone)
    params = json.loads(batch.meta.schema.metadata[b"clusterfw.cutout_params"].decode()
                        .replace("'", '"'))  # fmt: skip
    assert params["mass_definition"] == "m500c" and params["z_min"] == 0.0


def test_cli_setting_and_labels(tmp_path) -> None:
    _add_optional_commands(cli)  # as the clusterfw script does
    runner = CliRunner()
    out = tmp_path / "mm"
    r = runner.invoke(
        cli, ["simulate", "mm", "--out", str(out), "--size", "0.3", "--setting", "randomised"]
    )
    assert r.exit_code == 0, r.output
    meta = pq.read_schema(out / "truth_halos.parquet").metadata
    cfg = PatchConfig.model_validate_json(meta[b"clusterfw.sim_config"])
    assert cfg.setting == "randomised" and cfg == PatchConfig.from_setting(
        "randomised", 0, size_deg=0.3
    ).model_copy(update={"components": cfg.components})
    beam = fits.getheader(out / "sim_f150.fits")["BEAMFWHM"]
    assert beam == pytest.approx(1.2 * cfg.setting_draws["beam_factor_f150"])

    r = runner.invoke(cli, ["simulate", "mm", "--out", str(tmp_path / "x"), "--setting", "act"])
    assert r.exit_code == 2
    assert "--setting: 'act' is not one of 'default', 'randomised', 'battaglia_hiradio'" in (
        r.output
    )
    assert not (tmp_path / "x").exists()
    r = runner.invoke(
        cli,
        ["simulate", "mm", "--out", str(tmp_path / "h"), "--healpix-nside", "16",
         "--setting", "battaglia_hiradio"],
    )  # fmt: skip
    assert r.exit_code == 2
    assert "--setting: battaglia_hiradio is for flat patches (not --healpix-nside)" in r.output
    assert not (tmp_path / "h").exists()

    cut = tmp_path / "cut"
    r = runner.invoke(
        cli,
        ["simulate", "cutouts", "--out", str(cut), "-n", "6", "--labels", "sz",
         "--setting", "battaglia_hiradio", "--mode", "grid"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    with np.load(cut / "cutouts_00000.npz", allow_pickle=False) as d:
        rec = json.loads(str(d["setting_json"]))
        assert rec["setting"] == "battaglia_hiradio" and rec["patches"][0]["profile"] == (
            "battaglia12"
        )
        assert d["images"].shape == (6, 3, 32, 32)


def test_cli_profile_family_from_config(tmp_path) -> None:
    _add_optional_commands(cli)
    runner = CliRunner()
    bad = tmp_path / "bad.json"
    bad.write_text('{"profile": {"family": "battaglia13"}}')
    r = runner.invoke(
        cli, ["simulate", "mm", "--out", str(tmp_path / "b"), "--size", "0.2", "--config", str(bad)]
    )
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "clusterfw: error: bad simulation parameter profile.family: Input should be 'a10', "
        "'planck13', 'mcdonald14', 'battaglia12' or 'beta'"
    ]
    assert not (tmp_path / "b").exists()
    good = tmp_path / "good.json"
    good.write_text('{"profile": {"family": "battaglia12"}}')
    out = tmp_path / "g"
    r = runner.invoke(
        cli, ["simulate", "mm", "--out", str(out), "--size", "0.3", "--config", str(good)]
    )
    assert r.exit_code == 0, r.output
    halos = pq.read_table(out / "truth_halos.parquet")
    assert halos.num_rows > 0
    # Battaglia: the GNFW inner slope 0.3, α = 1, and a per-halo outer slope that grows with z
    assert set(halos.column("profile_gamma").to_pylist()) == {0.3}
    z = halos.column("z").to_numpy()
    beta = halos.column("profile_beta").to_numpy()
    assert beta[np.argmax(z)] > beta[np.argmin(z)]
