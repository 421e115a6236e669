"""The vgg_mass estimator: discovery, columns and flags on a y layer, one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterfw.core.errors import InputError, PluginError
from clusterfw.core.schema import candidate_table, field_metadata
from clusterfw.plugins.estimators.vgg_mass.plugin import (
    FLAG_NO_CUTOUT,
    FLAG_NO_REDSHIFT,
    FLAG_Z_OUTSIDE_TRAINING,
    VggMassEstimator,
)

HALOS = {"m500c": [4e14, 2e14], "z": [0.3, 0.6], "ra": [30.0, 30.1], "dec": [-10.0, -10.05]}


def test_discovery_registers_vgg_mass_without_importing_tensorflow():
    code = (
        "import sys; from clusterfw.core.plugins import Registry; r = Registry(); "
        "from clusterfw.core.cli import main; "
        "print(r.names('estimator'), "
        "sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, heavy = out.stdout.strip().rsplit("] ", 1)
    assert "'vgg_mass'" in names
    assert heavy == "[]"


@pytest.fixture(scope="module")
def y_sky(tmp_path_factory):
    """A 0.4° ACT-like y layer (0.5' pixels) with two halos, and their table."""
    pytest.importorskip("scipy")
    from clusterfw.core.layers.sorting import sort_into_layers
    from clusterfw.sim import ymap
    from clusterfw.sim.footprint import Footprint
    from clusterfw.sim.shards.common import halo_table

    rng = np.random.default_rng(0)
    h = halo_table(*(np.array(HALOS[k]) for k in ("m500c", "z", "ra", "dec")), rng)
    field = ymap.render_ymap(h, Footprint(30.05, -10.02, 0.4, 0.4, "TAN"), "act", rng)
    path = ymap.write_ymap(field, tmp_path_factory.mktemp("ysky"))["ymap"]
    return sort_into_layers([path], check_overlap=False), h


@pytest.fixture(scope="module")
def weights(tmp_path_factory, untrained_y_network):
    """A small untrained network (16 pixels of 0.5') saved as the estimator reads it."""
    return untrained_y_network(tmp_path_factory.mktemp("weights"), 16, seed=5)


def _candidates(extra_z):
    ra = np.array([30.0, 30.1, 35.0, 30.0])  # the third is outside the y layer
    dec = np.array([-10.0, -10.05, -10.0, -10.0])
    t = candidate_table(finder="mf", score_kind="snr", ra=ra, dec=dec, score=np.arange(4.0, 0, -1))
    field = pa.field("z", pa.float64(), metadata=field_metadata("", "Redshift (test input)"))
    return t.append_column(field, pa.array(extra_z, pa.float64()))


def test_estimate_columns_flags_and_the_ym_baseline(y_sky, weights, tmp_path):
    from clusterfw.testing import check_estimator_contract

    sky, h = y_sky
    cat = tmp_path / "z.parquet"
    pq.write_table(pa.table({"ra": [30.1], "dec": [-10.05], "z": [0.6]}), cat)
    table = _candidates([0.3, None, 0.5, 2.5])
    est = VggMassEstimator({"weights": str(weights), "redshifts": str(cat), "threads": 1})
    out = est.estimate(table, sky)
    assert out.column_names[-9:] == [f.name for f in VggMassEstimator.columns]
    assert out.column("vgg_mass_survey").to_pylist() == ["act", "act", None, "act"]
    flag = out.column("vgg_mass_flag").to_pylist()
    assert flag == [0, 0, FLAG_NO_CUTOUT, FLAG_Z_OUTSIDE_TRAINING]
    assert out.column("vgg_mass_z_source").to_pylist() == ["z", "catalogue", "z", "z"]
    assert out.column("vgg_mass_channels").to_pylist() == ["y", "y", None, "y"]
    m = np.array(out.column("vgg_mass_m500c").to_pylist(), dtype=float)
    err = np.array(out.column("vgg_mass_m500c_err").to_pylist(), dtype=float)
    assert np.all(np.isfinite(m[[0, 1, 3]])) and math.isnan(m[2])
    assert np.all(err[[0, 1, 3]] > 0)
    assert out.schema.field("vgg_mass_m500c").metadata[b"unit"] == b"solMass"
    # the Y–M baseline gives the mass the halo's own (scattered) Y500 implies
    m_y = np.array(out.column("vgg_mass_m500c_ysz").to_pylist(), dtype=float)
    implied = h["m500c"].to_numpy() * (h["y500"].to_numpy() / h["y500_median"].to_numpy()) ** (
        1 / 1.78
    )
    sig = np.array(out.column("vgg_mass_m500c_ysz_err").to_pylist(), dtype=float)[:2] / m_y[:2]
    assert np.all(sig >= 0.2 / 1.78)  # the relation's scatter plus the aperture noise
    assert np.all(np.abs(np.log(m_y[:2] / implied)) < 3 * np.sqrt(sig**2 - (0.2 / 1.78) ** 2))
    check_estimator_contract(est, table, sky=sky)
    # what `clusterfw run` hands estimators: the same numbers
    from clusterfw.core.pipeline import CutoutProvider, check_plugins

    again = est.estimate(table, CutoutProvider(sky))
    assert again.column("vgg_mass_m500c").to_pylist() == out.column("vgg_mass_m500c").to_pylist()
    check_plugins(sky, [], [est])  # a y layer: the run's requirement check passes


def test_no_redshift_gives_a_null_mass_and_the_flag(y_sky, weights):
    sky, _ = y_sky
    est = VggMassEstimator({"weights": str(weights), "threads": 1})
    out = est.estimate(_candidates([None, 0.4, None, None]).slice(0, 2), sky)
    assert out.column("vgg_mass_flag").to_pylist() == [FLAG_NO_REDSHIFT, 0]
    assert out.column("vgg_mass_m500c").to_pylist()[0] is None
    assert out.column("vgg_mass_m500c_ysz").to_pylist()[0] is None
    assert out.column("vgg_mass_z_source").to_pylist() == ["none", "z"]


def test_a_sky_without_a_usable_layer_is_one_line():
    from clusterfw.core.pipeline import check_plugins
    from clusterfw.testing import small_mm_sky

    sky = small_mm_sky(0, simulator=False).sky  # in memory: no layers to cut (nor an ILC)
    check_plugins(sky, [], [VggMassEstimator()])  # "ymap or mm" is checked in estimate()
    with pytest.raises(PluginError) as exc:
        VggMassEstimator().estimate(_candidates([0.3, 0.3, 0.3, 0.3]), sky)
    assert str(exc.value) == (
        "estimator 'vgg_mass': no layer the networks can use (needs a ymap layer, or an mm "
        "layer of at least two bands for the y ILC; usable channels: none)"
    )


def test_missing_and_corrupt_weights_name_the_file(y_sky, weights, tmp_path):
    sky, _ = y_sky
    table = _candidates([0.3, 0.3, 0.3, 0.3])
    with pytest.raises(PluginError, match=rf"^{tmp_path}: no vgg_mass network for channels y"):
        VggMassEstimator({"weights": str(tmp_path)}).estimate(table, sky)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vgg_mass_y.json").write_bytes((weights / "vgg_mass_y.json").read_bytes())
    (bad / "vgg_mass_y.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(InputError) as exc:
        VggMassEstimator({"weights": str(bad)}).estimate(table, sky)
    msg = str(exc.value)
    assert msg.startswith(f"{bad / 'vgg_mass_y.weights.h5'}: unreadable or mismatched weights")
    assert "\n" not in msg
    (bad / "vgg_mass_y.json").write_text('{"config_version": 1}')
    with pytest.raises(InputError, match=r"vgg_mass_y.json: network config lacks one of"):
        VggMassEstimator({"weights": str(bad)}).estimate(table, sky)


def test_unknown_option_and_bad_channels_are_one_line(y_sky, weights):
    with pytest.raises(PluginError, match=r"bad option for estimator 'vgg_mass': vgg_mass.nope"):
        VggMassEstimator({"nope": 1})
    sky, _ = y_sky
    est = VggMassEstimator({"weights": str(weights), "channels": "y,xray"})
    with pytest.raises(PluginError, match=r"channels y,xray need layers the sky lacks"):
        est.estimate(_candidates([0.3, 0.3, 0.3, 0.3]), sky)


def test_xray_cutouts_keep_the_counts_and_carry_the_exposure(tmp_path):
    """Counts resampled onto the network's 10" grid sum to the layer's counts in that square."""
    from clusterfw.core.layers.sorting import sort_into_layers
    from clusterfw.plugins.estimators.vgg_mass.cutouts import (
        available_channels,
        candidate_cutouts,
    )
    from clusterfw.sim import xray, ymap
    from clusterfw.sim.footprint import Footprint, world_to_pixel
    from clusterfw.sim.shards.common import halo_table

    rng = np.random.default_rng(0)
    h = halo_table(*(np.array(HALOS[k]) for k in ("m500c", "z", "ra", "dec")), rng)
    fp = Footprint(30.05, -10.02, 0.4, 0.4, "TAN")
    ypath = ymap.write_ymap(ymap.render_ymap(h, fp, "act", rng), tmp_path / "y")["ymap"]
    xf = xray.render_xray(h, fp, "erosita", rng)
    xpath = xray.write_xray(xf, tmp_path / "x")["image"]
    sky = sort_into_layers([ypath, xpath], check_overlap=False)
    assert available_channels(sky) == ("y", "xray")
    cut = candidate_cutouts(sky, "xray", np.array([30.0]), np.array([-10.0]), 60, 1 / 6)
    assert cut.valid.tolist() == [True]
    assert np.nanmean(cut.exposure) == pytest.approx(2000.0)
    x, y = world_to_pixel(xf.wcs, np.array([30.0]), np.array([-10.0]))
    half = 5.0 * 60 / 4.0  # 5' in 4" pixels
    x0, y0 = int(round(x[0] - half + 0.5)), int(round(y[0] - half + 0.5))
    native = xf.counts[y0 : y0 + int(2 * half), x0 : x0 + int(2 * half)].sum()
    assert np.nansum(cut.pixels) == pytest.approx(native, rel=0.03)
