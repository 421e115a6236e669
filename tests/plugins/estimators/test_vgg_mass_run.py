"""vgg_mass end to end: `clusterfw run` on mm maps (y by the ILC), `<finder>_z` after combining,
and the bad inputs of issue 15 through the command line (one line, exit 2, no output)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterfw.core.plugin_api import Finder
from clusterfw.core.schema import candidate_table, plugin_field
from clusterfw.plugins.estimators.vgg_mass.plugin import FLAG_NO_REDSHIFT, VggMassEstimator

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def mm_files(tmp_path_factory):
    """A 1° three-band mm sky (numpy clusters + noise) on disk, and its truth."""
    from clusterfw.core.fits_io import write_flat_sky_fits
    from clusterfw.testing import small_mm_sky

    ts = small_mm_sky(2, size_deg=1.0, simulator=False)
    paths = write_flat_sky_fits(ts.sky, tmp_path_factory.mktemp("mm"))
    return paths, ts.truth


@pytest.fixture(scope="module")
def weights(tmp_path_factory, untrained_y_network):
    """An untrained y network (20 pixels of 0.5') in the estimator's format."""
    return untrained_y_network(
        tmp_path_factory.mktemp("w"), 20, seed=2, z_range=[0.05, 1.05], sigma_scale=2.0
    )


def _run(args, tmp_path):
    cmd = [sys.executable, "-c", "from clusterfw.core.cli import main; main()", "run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)


@pytest.mark.slow  # two processes' worth of mf + TensorFlow start-up: 15-60 s on two shared cores
def test_run_mf_then_vgg_mass_writes_masses_with_units_and_provenance(mm_files, weights, tmp_path):
    from clusterfw.core.catalog_io import provenance

    paths, truth = mm_files
    zcat = tmp_path / "z.parquet"
    keep = truth.slice(0, truth.num_rows - 2)  # the last two halos get no redshift
    pq.write_table(keep.select(["ra", "dec", "z"]), zcat)
    out = tmp_path / "cat.parquet"
    args = [*map(str, paths), "-f", "mf", "-e", "vgg_mass", "-o", f"vgg_mass.weights={weights}",
            "-o", f"vgg_mass.redshifts={zcat}", "-o", "vgg_mass.threads=1",
            "--out", str(out)]  # fmt: skip
    res = _run(args, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    t = pq.read_table(out)
    meta = {f.name: f.metadata for f in t.schema}
    for col in ("vgg_mass_m500c", "vgg_mass_m500c_err", "vgg_mass_m500c_ysz"):
        assert meta[col][b"unit"] == b"solMass"
    src = t.column("vgg_mass_z_source").to_pylist()
    chans = t.column("vgg_mass_channels").to_pylist()
    flag = np.array(t.column("vgg_mass_flag").to_pylist())
    m = np.array(t.column("vgg_mass_m500c").to_pylist(), dtype=float)
    has_z = np.array([s == "catalogue" for s in src])
    assert has_z.sum() >= 3  # the bright truth halos are found and matched within 1'
    # y from the mm bands by the ILC; a mass for every matched candidate, none without z
    assert all(c == "y_ilc" for c, h in zip(chans, has_z, strict=True) if h)
    assert np.isfinite(m[has_z]).all() and np.isnan(m[~has_z]).all()
    assert np.all(flag[~has_z] & FLAG_NO_REDSHIFT)
    err = np.array(t.column("vgg_mass_m500c_err").to_pylist(), dtype=float)
    assert np.all(err[has_z] > 0)
    prov = provenance(t)
    plugins = {p["name"]: p for p in prov["clusterfw.plugins"]}
    assert plugins["vgg_mass"]["kind"] == "estimator"
    assert plugins["vgg_mass"]["options"]["redshifts"] == str(zcat)


@pytest.mark.slow  # two `clusterfw run` processes (mf on a 1° sky each): 15-60 s, 2 shared cores
def test_run_without_a_usable_layer_and_with_corrupt_weights_is_one_line(mm_files, tmp_path):
    paths, truth = mm_files
    zcat = tmp_path / "z.parquet"
    pq.write_table(truth.select(["ra", "dec", "z"]), zcat)
    out = tmp_path / "cat.parquet"
    # one mm band: no y layer and too few bands for the ILC
    res = _run([str(paths[1]), "-f", "mf", "-e", "vgg_mass", "--out", str(out)], tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "clusterfw: error: estimator 'vgg_mass': no layer the networks can use (needs a ymap "
        "layer, or an mm layer of at least two bands for the y ILC; usable channels: none)"
    ]
    assert not out.exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vgg_mass_y.json").write_text(
        json.dumps(
            {
                "config_version": 1,
                "channels": ["y"],
                "npix": 20,
                "rebin": 1,
                "pixel_arcmin": 0.5,
                "normalisation": {
                    "y_scale": 1e-4,
                    "t_ref_s": 2000.0,
                    "mstar_scale": 1e10,
                    "m_pivot": 3e14,
                },
            }
        )  # fmt: skip
    )
    (bad / "vgg_mass_y.weights.h5").write_bytes(b"not an HDF5 file at all")
    args = [*map(str, paths), "-f", "mf", "-e", "vgg_mass", "-o", f"vgg_mass.weights={bad}",
            "-o", f"vgg_mass.redshifts={zcat}", "--out", str(out)]  # fmt: skip
    res = _run(args, tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"clusterfw: error: {bad / 'vgg_mass_y.weights.h5'}: unreadable or mismatched weights"
    )
    assert not out.exists()


class PhotozFinder(Finder):
    """A test finder standing in for an optical finder: the truth halos with a photo-z."""

    name = "optz"
    version = "0"
    score_kind = "probability"
    margin_arcmin = 1.0
    truth: ClassVar[pa.Table | None] = None

    def find(self, tile):
        t = type(self).truth
        ra, dec = t.column("ra").to_numpy(), t.column("dec").to_numpy()
        keep = np.asarray(tile.in_core(ra, dec), dtype=bool)
        zf = plugin_field("optz_z", pa.float64(), "", "photometric redshift", "src.redshift")
        return candidate_table(
            finder="optz", score_kind="probability", ra=ra[keep], dec=dec[keep],
            score=np.full(int(keep.sum()), 0.9), tile_id=tile.tile_id,
            extra={"optz_z": (zf, t.column("z").to_numpy()[keep])},
        )  # fmt: skip


def test_redshifts_from_an_optical_finder_after_rankprod(mm_files, weights):
    """`--finder mf --finder <optical> --combine rankprod --estimate vgg_mass`: `<finder>_z`."""
    from clusterfw.core.layers.sorting import sort_into_layers
    from clusterfw.core.pipeline import run_pipeline
    from clusterfw.core.plugins import Registry

    paths, truth = mm_files
    PhotozFinder.truth = truth
    reg = Registry()
    mf = reg.get("finder", "mf")()
    comb = reg.get("combiner", "rankprod")()
    est = VggMassEstimator({"weights": str(weights), "threads": 1})
    sky = sort_into_layers(paths)
    t = run_pipeline(sky, [mf, PhotozFinder()], comb, [est])
    src = t.column("vgg_mass_z_source").to_pylist()
    z = np.array(t.column("vgg_mass_z").to_pylist(), dtype=float)
    optz = np.array(t.column("optz_z").to_pylist(), dtype=float)
    from_optz = np.array([s == "optz_z" for s in src])
    assert from_optz.sum() >= 3
    assert np.array_equal(z[from_optz], optz[from_optz])
    m = np.array(t.column("vgg_mass_m500c").to_pylist(), dtype=float)
    assert np.isfinite(m[from_optz]).all()
    assert np.isnan(m[~from_optz]).all()  # no z column, no catalogue: null, never made up
