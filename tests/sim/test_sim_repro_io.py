"""Reproducibility, component independence, files written and read back."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from clusterfw.sim import Components, PatchConfig, simulate_patch, write_patch
from clusterfw.sim.truth import CONFIG_KEY

CFG = PatchConfig(size_deg=0.75)


def test_same_seed_bit_identical_and_different_seed_differs():
    a = simulate_patch(CFG, 42)
    b = simulate_patch(CFG, 42)
    c = simulate_patch(CFG, 43)
    assert a.sky.maps.tobytes() == b.sky.maps.tobytes()
    assert a.halos.equals(b.halos) and a.sources.equals(b.sources)
    assert a.ymap.tobytes() == b.ymap.tobytes()
    assert not np.array_equal(a.sky.maps, c.sky.maps)
    assert not a.halos.equals(c.halos)
    g = simulate_patch(CFG, np.random.default_rng(42))
    assert g.sky.maps.tobytes() == a.sky.maps.tobytes()


def test_switching_a_component_off_keeps_the_others():
    full = simulate_patch(CFG, 3, keep_components=True)
    no_ksz = simulate_patch(
        CFG.model_copy(update={"components": Components(ksz=False)}), 3, keep_components=True
    )
    assert np.array_equal(full.components["cmb"], no_ksz.components["cmb"])
    assert np.array_equal(full.ymap, no_ksz.ymap)
    assert full.halos.equals(no_ksz.halos)
    assert not np.array_equal(full.sky.maps, no_ksz.sky.maps)


def test_write_patch_round_trip(tmp_path):
    from clusterfw.core.fits_io import read_flat_fits

    res = simulate_patch(CFG, 5)
    written = write_patch(res, tmp_path, prefix="sim")
    assert [p.name for p in written["maps"]] == ["sim_f095.fits", "sim_f150.fits", "sim_f220.fits"]
    sky = read_flat_fits(written["maps"])
    assert np.array_equal(sky.maps, res.sky.maps)
    assert [b.freq_ghz for b in sky.bands] == [95.0, 150.0, 220.0]
    assert [b.beam_fwhm_arcmin for b in sky.bands] == [1.6, 1.2, 1.0]
    assert [b.noise_uk_arcmin for b in sky.bands] == [2.8, 2.6, 6.6]
    halos = pq.read_table(written["halos"])
    assert halos.num_rows == res.halos.num_rows
    cfg = json.loads(halos.schema.metadata[CONFIG_KEY])
    assert PatchConfig.model_validate(cfg) == CFG
    assert halos.schema.field("m500c").metadata[b"unit"] == b"solMass"
    src = pq.read_table(written["sources"])
    assert {"flux_f095", "flux_f150", "flux_f220", "population"} <= set(src.column_names)
    # truth positions agree with the map WCS
    ra, dec = sky.wcs.pixel_to_world_values(halos["x_pix"].to_numpy(), halos["y_pix"].to_numpy())
    assert np.allclose(np.asarray(ra) % 360, halos["ra"].to_numpy())
    assert np.allclose(dec, halos["dec"].to_numpy())


@pytest.mark.parametrize("projection", ["CAR", "TAN"])
def test_projection_geometry(projection):
    from astropy.wcs.utils import proj_plane_pixel_scales

    cfg = PatchConfig(size_deg=1.0, projection=projection, ra_deg=10.0, dec_deg=-50.0)
    res = simulate_patch(cfg, 1)
    w = res.sky.wcs
    assert np.allclose(proj_plane_pixel_scales(w) * 60, 0.25)
    ra, dec = w.pixel_to_world_values(119.5, 119.5)
    assert ra == pytest.approx(10.0) and dec == pytest.approx(-50.0)
    # one pixel step east-west at the centre is 0.25' on the sky
    from astropy.coordinates import SkyCoord

    a = SkyCoord(*w.pixel_to_world_values(119.5, 119.5), unit="deg")
    b = SkyCoord(*w.pixel_to_world_values(120.5, 119.5), unit="deg")
    assert a.separation(b).arcmin == pytest.approx(0.25, rel=1e-4)
