"""Tile jobs: today's mm tiles expressed as layers, HEALPix regions, pickling, requirements."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from clusterfw.core.errors import PluginError
from clusterfw.core.fits_io import read_flat_fits, read_healpix_fits, write_healpix_sky_fits
from clusterfw.core.layers import (
    HealpixCore,
    LayerRequirement,
    TileJob,
    check_requirements,
    plan_tile_jobs,
    sort_into_layers,
)
from clusterfw.core.sky import Band, HealpixSky
from clusterfw.core.tiling import flat_tiles, healpix_tiles

from .conftest import tan_header, write_image


def test_mm_layer_tiles_equal_todays_tiles(blob_maps):
    paths, _, _, _ = blob_maps
    lsky = sort_into_layers(paths)
    today = flat_tiles(read_flat_fits(paths), tile_size_arcmin=30.0, margin_arcmin=5.0)
    jobs = plan_tile_jobs(lsky, {"mm": 5.0}, tile_size_arcmin=30.0)
    assert len(jobs) == len(today) == 16
    for job, tile in zip(jobs, today, strict=True):
        cut = job.read("mm")
        assert cut.unit == "uK_CMB"
        assert cut.band_names == ("f095", "f150", "f220")
        np.testing.assert_array_equal(cut.pixels, tile.maps)
        assert cut.wcs.wcs.compare(tile.wcs.wcs)
        ra, dec = tile.pixel_to_world(np.array([3.0, 40.0]), np.array([7.0, 20.0]))
        np.testing.assert_array_equal(job.in_core(ra, dec), tile.in_core(ra, dec))
    assert job.read("mm", bands=["f220"]).pixels.shape[0] == 1


def _healpix_sky(nside=64, seed=3):
    import healpy as hp

    rng = np.random.default_rng(seed)
    npix = hp.nside2npix(nside)
    maps = rng.normal(0, 20, (2, npix)).astype(np.float32)
    ra, dec = hp.pix2ang(nside, np.arange(npix), lonlat=True)
    maps[:, (dec < -30) | (ra > 120)] = np.nan
    bands = (Band("f090", 90.0, 2.0), Band("f150", 150.0, 1.4))
    return HealpixSky(maps, bands)


def test_healpix_layer_regions_equal_todays_tiles(tmp_path):
    sky = _healpix_sky()
    paths = write_healpix_sky_fits(sky, tmp_path, "hp")
    today = healpix_tiles(read_healpix_fits(paths), 600.0, 30.0, region=[5, 40])
    lsky = sort_into_layers(paths)
    assert type(lsky["mm"].pixelisation).__name__ == "HealpixMap"
    # footprint: masked pixels are not in it
    assert not lsky["mm"].footprint.contains(np.array([200.0]), np.array([0.0]))[0]
    assert lsky["mm"].footprint.contains(np.array([60.0]), np.array([0.0]))[0]
    for tile in today:
        job = TileJob(
            0, HealpixCore(tile.core.order, tile.core.ipix), (lsky["mm"],), (("mm", 30.0),)
        )
        cut = job.read("mm")
        # same grid, same mask; values equal to float32 rounding (1 pixel in 2450 differs by
        # one ulp: the summation of the 4 weighted neighbours is not bit-identical)
        np.testing.assert_array_equal(np.isnan(cut.pixels), np.isnan(tile.maps))
        np.testing.assert_allclose(cut.pixels, tile.maps, rtol=3e-7, atol=0)
        # today's tiles round-trip their WCS through a header (portable_wcs): equal to ~1e-12
        probe = (np.array([0.0, 17.0, 34.0]), np.array([0.0, 20.0, 34.0]))
        np.testing.assert_allclose(
            cut.wcs.pixel_to_world_values(*probe),
            tile.wcs.pixel_to_world_values(*probe),
            rtol=0,
            atol=1e-10,
        )


def test_healpix_nested_file_reads_the_same(tmp_path):
    import healpy as hp
    from astropy.io import fits

    sky = _healpix_sky(nside=32)
    ring = write_healpix_sky_fits(sky, tmp_path, "ring")
    nest_path = tmp_path / "nest.fits"
    hp.write_map(
        str(nest_path),
        np.nan_to_num(hp.reorder(sky.maps[0], r2n=True), nan=hp.UNSEEN),
        nest=True,
        extra_header=[("FREQ", 90.0), ("BEAMFWHM", 2.0), ("BUNIT", "uK_CMB")],
        dtype=np.float32,
    )
    assert fits.getheader(nest_path, 1)["ORDERING"] == "NESTED"
    a = sort_into_layers([ring[0]])["mm"]
    b = sort_into_layers([nest_path])["mm"]
    core = HealpixCore(1, 2)
    ca = TileJob(0, core, (a,), (("mm", 20.0),)).read("mm")
    cb = TileJob(0, core, (b,), (("mm", 20.0),)).read("mm")
    np.testing.assert_array_equal(ca.pixels, cb.pixels)
    assert np.isfinite(ca.pixels).mean() > 0.3


def _mm_shape(job):
    """Run in a worker process: the shape of the job's mm pixels, read there."""
    return job.read("mm").pixels.shape[1:]


def test_pickled_job_size_does_not_follow_map_size(tmp_path):
    sizes = []
    for n in (64, 2048):
        h = tan_header(30.0, -20.0, 1.0 * 2048 / n, n, n)  # same sky area
        path = tmp_path / f"m{n}.fits"
        write_image(
            path,
            np.zeros((n, n), np.float32),
            h,
            {"FREQ": 150.0, "BEAMFWHM": 1.4, "BUNIT": "uK_CMB"},
        )
        jobs = plan_tile_jobs(sort_into_layers([path]), {"mm": 5.0}, tile_size_arcmin=15.0)
        blob = pickle.dumps(jobs[0])  # what a process pool sends to its worker
        with ProcessPoolExecutor(max_workers=1) as pool:  # the worker reads its own pixels
            there = pool.submit(_mm_shape, jobs[0]).result()
        assert there == jobs[0].read("mm").pixels.shape[1:]
        sizes.append((len(jobs), len(blob)))
    assert sizes[0][0] == sizes[1][0] == 9
    assert sizes[1][1] < 4000 and abs(sizes[1][1] - sizes[0][1]) < 50
    assert (64 * 64 * 4) > sizes[0][1]  # smaller than even the small map's pixels


def test_requirements(blob_maps, tmp_path):
    paths, _, _, _ = blob_maps
    sky = sort_into_layers(paths)
    check_requirements("mf", [LayerRequirement("mm", min_bands=2)], sky)
    with pytest.raises(PluginError) as err:
        check_requirements("frcnn", [LayerRequirement("optical", bands=("g", "r", "i"))], sky)
    assert (
        str(err.value) == "frcnn: needs a 'optical' layer; the inputs have none (layers: mm (mm))"
    )
    with pytest.raises(PluginError) as err:
        check_requirements("mf", [LayerRequirement("mm", bands=("f150", "f280"))], sky)
    assert str(err.value) == "mf: 'mm' layer 'mm' lacks band(s) f280 (has f095, f150, f220)"
    with pytest.raises(PluginError) as err:
        check_requirements("mf", [LayerRequirement("mm", min_bands=4)], sky)
    assert "at least 4 bands; 'mm' has 3" in str(err.value)


def test_healpix_cores_cover_union_of_layers(tmp_path):
    a = write_image(
        tmp_path / "a.fits",
        np.zeros((60, 60), np.float32),
        tan_header(10.0, 0.0, 60.0, 60, 60),
        {"FREQ": 150.0, "BEAMFWHM": 1.4, "BUNIT": "uK_CMB"},
    )
    b = write_image(
        tmp_path / "b.fits",
        np.ones((60, 60), np.float32),
        tan_header(10.5, 0.5, 60.0, 60, 60),
        {"FILTER": "r", "BUNIT": "nanomaggy"},
    )
    sky = sort_into_layers([a, b])
    jobs = plan_tile_jobs(sky, {"mm": 10.0, "optical": 2.0}, tile_size_arcmin=60.0)
    assert all(isinstance(j.core, HealpixCore) for j in jobs)
    cores = {j.core.ipix for j in jobs}
    assert len(cores) == len(jobs)
    # every valid pixel centre of both layers lies in exactly one core
    rng = np.random.default_rng(0)
    ra = rng.uniform(9.6, 10.9, 400)
    dec = rng.uniform(-0.4, 0.9, 400)
    inside = sky.union_footprint().contains(ra, dec)
    owners = np.sum([j.in_core(ra, dec) for j in jobs], axis=0)
    assert np.all(owners[inside] == 1)
    job = next(j for j in jobs if j.in_core(np.array([10.5]), np.array([0.5]))[0])
    cut = job.read("optical")
    assert cut.unit == "nanomaggy" and np.nanmax(cut.pixels) == 1.0
    assert job.region("mm").half_width_arcmin - job.region(
        "optical"
    ).half_width_arcmin == pytest.approx(8.0)
