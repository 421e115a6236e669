"""The ``xray`` finder with its shipped weights: columns, channels, forced scores, CLI run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from clusterfw.core.layers.cutout import LayerCutout
from clusterfw.core.layers.model import OpticalBand, XrayBand
from clusterfw.core.sky import PixelBoxCore, Tile

RA0, DEC0 = 150.0, 2.0
NX = 140  # 4" pixels: 9.3'
NO = 160  # 2" optical pixels: 5.3', centred on the cluster only
CLUSTER = (55, 80)  # X-ray pixel (x, y)
POINT = (110, 40)


def wcs(pix_arcsec: float, n: int, centre=(RA0, DEC0)) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(centre)
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-pix_arcsec / 3600.0, pix_arcsec / 3600.0]
    return w


def xray_sky(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts with a bright β-model cluster (r_c 40") and a point source, 2 ks, 0.09 bkg."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:NX, 0:NX].astype(float)
    sig = 30.0 / 4.0 / math.sqrt(8 * math.log(2))
    cl = (1 + ((xx - CLUSTER[0]) ** 2 + (yy - CLUSTER[1]) ** 2) / 10.0**2) ** (-1.5)
    cl = ndimage.gaussian_filter(cl, sig)
    cl *= 600.0 / cl.sum()
    ps = np.exp(-0.5 * ((xx - POINT[0]) ** 2 + (yy - POINT[1]) ** 2) / sig**2)
    ps *= 200.0 / ps.sum()
    bkg = np.full((NX, NX), 0.0236)  # 4" pixels of the erosita preset at 2 ks
    return rng.poisson(bkg + cl + ps).astype(np.int32), np.full((NX, NX), 2000.0), bkg


def optical_sky(seed: int = 1) -> tuple[np.ndarray, WCS]:
    """g, r, i noise (nanomaggies, DES-like per 2" pixel) plus red galaxies at the cluster."""
    rng = np.random.default_rng(seed)
    w = wcs(4.0, NX)
    ra, dec = w.pixel_to_world_values(*CLUSTER)
    wo = wcs(2.0, NO, (float(ra), float(dec)))
    img = rng.normal(0.0, 0.05, (3, NO, NO))
    gx, gy = rng.normal(NO / 2, 15, (2, 40))
    for k, amp in enumerate((0.5, 2.0, 3.5)):
        for x, y in zip(gx, gy, strict=True):
            ix, iy = int(np.clip(x, 0, NO - 1)), int(np.clip(y, 0, NO - 1))
            img[k, iy, ix] += amp
    return img.astype(np.float32), wo


def make_tile(with_optical: bool) -> Tile:
    counts, expo, bkg = xray_sky()
    w = wcs(4.0, NX)
    xband = XrayBand("0.5-2keV", 0.5, 2.0, 30.0, "map", True)
    layers = {
        "xray": LayerCutout(
            "xray", "xray", "count", (xband,), counts[None].astype(np.float32), w,
            expo[None].astype(np.float32), bkg[None].astype(np.float32),
        )
    }  # fmt: skip
    if with_optical:
        img, wo = optical_sky()
        bands = tuple(OpticalBand(b, 1.0) for b in ("g", "r", "i"))
        layers["optical"] = LayerCutout("optical", "optical", "nanomaggy", bands, img, wo)
    core = PixelBoxCore(w, 0, NX, 0, NX)
    return Tile(0, counts[None].astype(np.float32), w, (), core, layers)


@pytest.fixture(scope="module")
def finder():
    from clusterfw.plugins.finders.xray.finder import XrayFinder

    return XrayFinder({"threads": 1})


@pytest.fixture(scope="module")
def found(finder):
    """The finder's tables of the tile without and with the optical layer (run once)."""
    return {opt: finder.find(make_tile(with_optical=opt)) for opt in (False, True)}


def test_find_keeps_the_extended_source_and_drops_the_point_source(found):
    t = found[False]
    w = wcs(4.0, NX)
    x, y = w.world_to_pixel_values(t["ra"].to_numpy(), t["dec"].to_numpy())
    d_cl = np.hypot(x - CLUSTER[0], y - CLUSTER[1])
    d_ps = np.hypot(x - POINT[0], y - POINT[1])
    assert d_cl.min() < 2.0  # pixels
    assert d_ps.min() > 5.0  # the AGN-like source is point-like: not a candidate
    i = int(np.argmin(d_cl))
    assert t["xray_ext_like"][i].as_py() > 10
    assert t["xray_channels"][i].as_py() == "xray"
    assert t["xray_p_both"][i].as_py() is None  # no optical: null
    p = t["score"].to_numpy()
    assert np.all((p >= 0) & (p <= 1))
    assert t["score"][i].as_py() == pytest.approx(t["xray_p_xray"][i].as_py(), rel=1e-6)
    assert t["score_kind"][0].as_py() == "probability"


def test_optical_layer_switches_to_the_both_channel_network(found):
    t = found[True]
    w = wcs(4.0, NX)
    x, y = w.world_to_pixel_values(t["ra"].to_numpy(), t["dec"].to_numpy())
    i = int(np.argmin(np.hypot(x - CLUSTER[0], y - CLUSTER[1])))
    assert t["xray_channels"][i].as_py() == "xray+optical"
    assert t["score"][i].as_py() == pytest.approx(t["xray_p_both"][i].as_py(), rel=1e-6)
    assert 0.0 <= t["xray_p_xray"][i].as_py() <= 1.0


def test_score_at_uses_optical_where_it_covers_and_nan_off_the_data(finder):
    w = wcs(4.0, NX)
    tile = make_tile(with_optical=True)
    ra, dec = w.pixel_to_world_values(
        np.array([CLUSTER[0], 105.0, 1000.0]), np.array([CLUSTER[1], 100.0, 1000.0])
    )
    p = finder.score_at(tile, ra, dec)
    prob, p_x, p_b, with_opt = finder._classify(tile, np.asarray(ra), np.asarray(dec))
    assert with_opt.tolist() == [True, False, False]
    assert p[0] == pytest.approx(p_b[0]) and p[1] == pytest.approx(p_x[1])
    assert math.isnan(p[2])  # off the X-ray data
    # the bright cluster scores above an empty patch of sky
    assert p_x[0] > p_x[1]


@pytest.mark.slow
def test_cli_run_writes_the_catalogue(tmp_path: Path):
    from clusterfw.core import cli as cli_mod

    counts, expo, bkg = xray_sky()
    h = wcs(4.0, NX).to_header()
    h.update({"BUNIT": "count", "E_MIN": 0.5, "E_MAX": 2.0, "PSFFWHM": 30.0})
    path = tmp_path / "x.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(counts, h),
            fits.ImageHDU(expo.astype(np.float32), wcs(4.0, NX).to_header(), name="EXPOSURE"),
        ]
    ).writeto(path)
    out = tmp_path / "cat.parquet"
    try:
        cli_mod.cli.main(["run", str(path), "--finder", "xray", "--out", str(out), "-q"])
    except SystemExit as exc:
        assert not exc.code
    t = pq.read_table(out)
    assert t.num_rows >= 1
    assert {"xray_channels", "xray_det_like", "xray_ext_like", "xray_extent"} <= set(t.column_names)
    assert set(t["xray_channels"].to_pylist()) == {"xray"}


def test_missing_weights_is_one_line(tmp_path):
    from clusterfw.core.errors import PluginError
    from clusterfw.plugins.finders.xray.finder import XrayFinder

    with pytest.raises(PluginError, match=r"xray: .*xray_xray.safetensors: file not found"):
        XrayFinder({"weights": str(tmp_path)})
