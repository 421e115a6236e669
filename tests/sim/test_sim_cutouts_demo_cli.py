"""Training cutouts, the cached demo sky, the HEALPix path and the ``simulate`` CLI."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterfw.sim.cutouts import make_cutouts, write_cutout_shards


def test_balanced_cutouts_labels_follow_the_deepsz_rule():
    batch = make_cutouts(300, 7, positive_fraction=0.5)
    assert batch.images.shape == (300, 3, 32, 32) and batch.images.dtype == np.float32
    assert batch.ymaps.shape == (300, 32, 32)
    assert batch.bands == ("f095", "f150", "f220")
    meta = batch.meta.to_pydict()
    labels = batch.labels.astype(bool)
    assert 0.4 < labels.mean() < 0.6
    # every positive has a halo with Mvir >= 2e14 and z > 0.25 inside the central 6' box
    n_q = np.array(meta["n_qualifying"])
    assert np.all(n_q[labels] >= 1) and np.all(n_q[~labels] == 0)
    mvir = np.array(meta["halo_mvir"], dtype=float)
    dx = np.abs(np.array(meta["halo_dx_arcmin"], dtype=float))
    dy = np.abs(np.array(meta["halo_dy_arcmin"], dtype=float))
    assert np.all(mvir[labels] >= 2e14)
    assert np.all(np.array(meta["halo_z"])[labels] > 0.25)
    assert np.all(dx[labels] <= 3.0) and np.all(dy[labels] <= 3.0)
    # positives carry a tSZ decrement at 95 GHz and more Compton-Y in the core
    centre = batch.images[:, 0, 12:20, 12:20].mean(axis=(1, 2))
    assert np.median(centre[labels]) < np.median(centre[~labels]) - 10.0
    y_core = batch.ymaps[:, 4:28, 4:28].sum(axis=(1, 2))
    assert np.median(y_core[labels]) > 2 * np.median(y_core[~labels])


def test_grid_cutouts_and_reproducibility():
    a = make_cutouts(200, 3, mode="grid")
    b = make_cutouts(200, 3, mode="grid")
    assert a.images.tobytes() == b.images.tobytes()
    meta = a.meta.to_pydict()
    # grid stride 6' = 24 pixels
    x0 = np.unique(meta["x0"])
    assert np.all(np.diff(x0) == 24)
    assert a.labels.mean() < 0.2


@pytest.mark.parametrize("fmt", ["npz", "parquet"])
def test_cutout_shards(tmp_path, fmt):
    paths = write_cutout_shards(tmp_path, 50, 1, chunk_size=20, fmt=fmt)
    assert len(paths) == 3
    if fmt == "npz":
        with np.load(paths[0], allow_pickle=False) as data:
            assert data["images"].shape == (20, 3, 32, 32)
            assert data["labels"].shape == (20,)
            assert data["ymaps"].shape == (20, 32, 32)
    else:
        t = pq.read_table(paths[-1])
        assert t.num_rows == 10
        img = np.asarray(t.column("image").combine_chunks().flatten()).reshape(10, 3, 32, 32)
        assert np.isfinite(img).all()
        assert t.schema.metadata[b"clusterfw.cutout_shape"] == b"(3, 32, 32)"


def test_demo_sky_is_cached_and_deterministic(tmp_path, monkeypatch):
    from clusterfw.sim import demo

    monkeypatch.setenv("CLUSTERFW_CACHE_DIR", str(tmp_path))
    sky, halos = demo.demo_sky()
    assert sky.maps.shape == (3, 480, 480)
    assert [b.name for b in sky.bands] == ["f095", "f150", "f220"]
    assert halos.num_rows > 200
    paths = demo.demo_paths()
    assert all(p.parent == tmp_path / paths["directory"].name for p in paths["maps"])
    mtime = paths["maps"][0].stat().st_mtime_ns
    sky2, halos2 = demo.demo_sky()  # from cache: files untouched
    assert paths["maps"][0].stat().st_mtime_ns == mtime
    assert np.array_equal(sky.maps, sky2.maps) and halos.equals(halos2)
    # regenerating from the seed gives the same bits
    from clusterfw.sim import simulate_patch

    fresh = simulate_patch(demo.DEMO_CONFIG, demo.DEMO_SEED)
    assert np.array_equal(fresh.sky.maps, sky.maps)


def test_cli_simulate_mm(tmp_path):
    from clusterfw.sim.cli import simulate

    out = tmp_path / "sim"
    result = CliRunner().invoke(
        simulate, ["mm", "--size", "0.5", "--seed", "3", "--out", str(out), "--disable", "ksz"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "sim_f095.fits",
        "sim_f150.fits",
        "sim_f220.fits",
        "truth_halos.parquet",
        "truth_sources.parquet",
        "truth_ymap.fits",
    ]
    bad = CliRunner().invoke(simulate, ["mm", "--out", str(out), "--disable", "nope"])
    assert bad.exit_code == 2 and "unknown component" in bad.output


def test_healpix_simulation(tmp_path):
    import healpy as hp

    from clusterfw.core.fits_io import read_healpix_fits
    from clusterfw.sim import HealpixConfig, simulate_healpix, write_healpix
    from clusterfw.sim.cmb import lensed_cl_tt
    from clusterfw.sim.config import Components

    comps = Components(radio=False, dusty=False, unresolved_sources=False, noise=False)
    res = simulate_healpix(HealpixConfig(nside=128, m500c_min=4e14, components=comps), 2)
    assert res.sky.maps.shape == (3, hp.nside2npix(128))
    assert res.halos.num_rows > 500
    # CMB dominates at l < 250: compare with camb x beam x pixel window
    lmax = 250
    cl = hp.anafast(res.sky.maps[1].astype(float), lmax=lmax)
    ell = np.arange(lmax + 1)
    model = lensed_cl_tt(ell) * hp.gauss_beam(np.radians(1.2 / 60), lmax=lmax) ** 2
    ratio = cl[100:251].sum() / model[100:251].sum()
    assert ratio == pytest.approx(1.0, abs=0.1)
    # tSZ decrements at the most massive halo
    h = res.halos.to_pydict()
    i = int(np.argmax(h["m500c"]))
    pix = hp.ang2pix(128, h["ra"][i], h["dec"][i], lonlat=True)
    assert res.ymap[pix] > 1e-5
    written = write_healpix(res, tmp_path)
    back = read_healpix_fits(written["maps"])
    assert np.allclose(back.maps, res.sky.maps)
