"""Training shards: manifest, sha256 checks, bit-identical reruns, one-line CLI errors."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from clusterfw.core.cli import cli as core_cli
from clusterfw.core.errors import InputError
from clusterfw.sim.cli_shards import COMMANDS
from clusterfw.sim.shards.common import (
    _npz_bytes,
    draw_mass_redshift,
    iter_shards,
    load_shard,
    read_manifest,
    rebin,
    verify,
    write_dataset,
)
from clusterfw.sim.shards.mass import MassCutoutConfig, mass_samples

SMALL = MassCutoutConfig(size_arcmin=6.0, npix=24)


def _group() -> click.Group:
    grp = type(core_cli)("simulate")  # the project's group class: one-line errors, exit 2
    for cmd in COMMANDS:
        grp.add_command(cmd)
    return grp


def _write(out, n=5, shard=2, seed=7):
    return write_dataset(
        out, "mass-cutouts", seed, SMALL.model_dump(mode="json"), n, shard,
        mass_samples(SMALL, seed, n), progress=False,
    )  # fmt: skip


def test_rerun_is_bit_identical_and_samples_do_not_depend_on_the_shard_size(tmp_path):
    a = _write(tmp_path / "a")
    b = _write(tmp_path / "b")
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    assert [s["count"] for s in a["shards"]] == [2, 2, 1]
    for s in a["shards"]:
        assert (tmp_path / "a" / s["file"]).read_bytes() == (
            tmp_path / "b" / s["file"]
        ).read_bytes()
    c = _write(tmp_path / "c", shard=5)
    whole = load_shard(tmp_path / "c", 0)
    parts = list(iter_shards(tmp_path / "a"))
    for name in whole:
        assert np.array_equal(np.concatenate([p[name] for p in parts]), whole[name]), name
    assert c["count"] == 5 and read_manifest(tmp_path / "c")["config"]["npix"] == 24
    d = _write(tmp_path / "d", seed=8)
    assert d["shards"][0]["sha256"] != a["shards"][0]["sha256"]


def test_manifest_refuses_corrupt_truncated_and_mismatched_shards(tmp_path):
    out = tmp_path / "s"
    man = _write(out)
    assert verify(out)["count"] == 5
    path = out / man["shards"][1]["file"]
    good = path.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    path.write_bytes(bytes(bad))
    with pytest.raises(InputError, match="sha256 does not match the manifest"):
        verify(out)
    load_shard(out, 0)  # the other shards still load
    path.write_bytes(good[:-10])
    with pytest.raises(InputError, match="sha256 does not match"):
        load_shard(out, 1)
    path.unlink()
    with pytest.raises(InputError, match="cannot read"):
        load_shard(out, 1)
    path.write_bytes(good)
    # a shard rewritten with another dtype but a matching sha256: the shape/dtype check refuses it
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["y"] = arrays["y"].astype(np.float64)
    data = _npz_bytes(arrays)
    path.write_bytes(data)
    m = json.loads((out / "manifest.json").read_text())
    import hashlib

    m["shards"][1].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match=r"array y is float64\[2, 24, 24\], manifest says float32"):
        load_shard(out, 1)
    m["count"] = 6
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="shard counts do not add up"):
        read_manifest(out)
    (out / "manifest.json").write_text("{")
    with pytest.raises(InputError, match="unreadable manifest"):
        read_manifest(out)
    with pytest.raises(InputError, match="no such file"):
        read_manifest(tmp_path)


def test_flat_and_mass_function_draws_and_rebin():
    rng = np.random.default_rng(1)
    m, z = draw_mass_redshift(rng, 20000, (1e14, 1e15), (0.1, 1.0), "flat")
    lm = np.log10(m)
    assert lm.min() >= 14 and lm.max() <= 15 and z.min() >= 0.1 and z.max() <= 1.0
    assert lm.mean() == pytest.approx(14.5, abs=4 * 0.2887 / np.sqrt(lm.size))
    assert np.histogram(lm, 10)[0].min() > 1800  # flat: 2000 ± 45 per bin
    m2, z2 = draw_mass_redshift(rng, 20000, (1e14, 1e15), (0.1, 1.0), "mass-function")
    assert m2.min() >= 1e14 and m2.max() <= 1e15
    # Tinker08 above 1e14: most halos sit near the floor (N(>2e14)/N(>1e14) ~ 0.2-0.3)
    assert 0.15 < np.mean(m2 > 2e14) < 0.35 and np.mean(m > 2e14) > 0.65
    img = np.arange(36.0).reshape(1, 6, 6)
    assert rebin(img, 3).sum() == img.sum() and rebin(img, 3).shape == (1, 2, 2)


@pytest.mark.parametrize(
    ("cmd", "args", "message"),
    [
        ("mass-cutouts", ["-n", "0"], "--n: 0 is not in the range"),
        ("mass-cutouts", ["-n", "2", "--mass-range", "1e15,1e14"], "--mass-range: lower end"),
        ("mass-cutouts", ["-n", "2", "--z-range", "0.1"], "--z-range: expected two numbers"),
        ("mass-cutouts", ["-n", "2", "--npix", "4"], "--npix: must be 8-1024"),
        ("mass-cutouts", ["-n", "2", "--xray-preset", "chandra"], "--preset: unknown X-ray"),
        ("mass-cutouts", ["-n", "2", "--size-arcmin", "-3"], "--size-arcmin: must be positive"),
        ("optical-fields", ["-n", "2", "--rebin", "0"], "--rebin: must be 1-64"),
        ("optical-fields", ["-n", "2", "--size", "0"], "--size: must be in (0, 1]"),
        ("optical-fields", ["-n", "2", "--bands", "g,q"], "--bands: preset 'des' has no filter"),
        ("optical-fields", ["-n", "2", "--empty-fraction", "2"], "--empty-fraction: must be"),
        ("optical-fields", ["-n", "2", "--size", "1", "--rebin", "1"], "--shard-size:"),
        ("xray-candidates", ["-n", "2", "--positive-fraction", "1"], "--positive-fraction:"),
        ("xray-candidates", ["-n", "2", "--size-arcmin", "40"], "--size-arcmin: must be"),
    ],
)
def test_cli_bad_options_one_line_exit_2_nothing_written(tmp_path, cmd, args, message):
    out = tmp_path / "o"
    res = CliRunner().invoke(_group(), [cmd, "--out", str(out), *args])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"clusterfw: error: {message}"), res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_mass_cutouts_writes_verified_shards_and_refuses_a_non_empty_out(tmp_path):
    out = tmp_path / "m"
    args = ["mass-cutouts", "--out", str(out), "-n", "3", "--shard-size", "2", "--npix", "16"]
    res = CliRunner().invoke(_group(), [*args, "--size-arcmin", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    man = verify(out)
    assert man["kind"] == "mass-cutouts" and man["count"] == 3 and len(man["shards"]) == 2
    assert man["arrays"]["xray_counts"] == {"dtype": "uint16", "shape": [16, 16]}
    res = CliRunner().invoke(_group(), args)
    assert res.exit_code == 2 and "is not empty" in res.output
