"""Sorting files into layers: kinds from keywords, priorities, overrides, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.core.errors import InputError
from clusterfw.core.layers import (
    FlatImage,
    Mosaic,
    OpticalBand,
    XrayBand,
    sort_into_layers,
)
from clusterfw.core.layers.readers import BUILTIN_READERS

from .conftest import tan_header, write_image

RA, DEC = 150.0, 2.0


def _optical(tmp_path, name, filt="r", unit="nanomaggy", ra=RA, **cards):
    h = tan_header(ra, DEC, 1.0, 60, 60)
    base = {"BUNIT": unit, "PSFFWHM": 1.1}
    if filt is not None:
        base["FILTER"] = filt
    base.update(cards)
    return write_image(tmp_path / name, np.ones((60, 60), np.float32), h, base)


def _xray(tmp_path, name, exposure=True, ra=RA, **cards):
    h = tan_header(ra, DEC, 4.0, 20, 20)
    base = {"BUNIT": "count", "E_MIN": 0.5, "E_MAX": 2.0, "PSFFWHM": 15.0}
    base.update(cards)
    ext = {"EXPOSURE": np.full((20, 20), 900.0, np.float32)} if exposure else {}
    return write_image(tmp_path / name, np.zeros((20, 20), np.float32), h, base, ext)


def _mm(tmp_path, name, freq=150.0, ra=RA, **cards):
    h = tan_header(ra, DEC, 30.0, 40, 40)
    base = {"FREQ": freq, "BEAMFWHM": 1.4, "BUNIT": "uK_CMB"}
    base.update(cards)
    return write_image(tmp_path / name, np.zeros((40, 40), np.float32), h, base)


def test_files_sorted_into_kinds_and_bands(tmp_path):
    paths = [
        _mm(tmp_path, "m90.fits", 90.0),
        _optical(tmp_path, "g.fits", "g"),
        _xray(tmp_path, "x.fits"),
        _mm(tmp_path, "m150.fits", 150.0),
        _optical(tmp_path, "r.fits", "r DECam SDSS c0002", unit="count", MAGZERO=30.0),
        write_image(
            tmp_path / "y.fits",
            np.zeros((20, 20), np.float32),
            tan_header(RA, DEC, 60.0, 20, 20),
            {"BUNIT": "Compton-y", "BEAMFWHM": 10.0},
        ),
    ]
    sky = sort_into_layers(paths)
    assert sky.names == ("mm", "optical", "xray", "ymap")
    assert sky["mm"].band_names == ("f090", "f150")
    assert isinstance(sky["mm"].pixelisation, FlatImage)
    assert sky["optical"].band_names == ("g", "r")
    # count with MAGZERO 30 -> nanomaggies: 10**(-0.4 * 7.5)
    assert sky["optical"].band("r").files[0].scale == pytest.approx(10 ** (-3.0))
    assert sky["optical"].band("g").facts == OpticalBand("g", 1.1, 22.5, None)
    assert sky["xray"].bands[0].facts == XrayBand("0.5-2keV", 0.5, 2.0, 15.0, "map", False)
    assert sky["xray"].bands[0].files[0].exposure_hdu == 1
    assert sky["ymap"].bands[0].facts.beam_fwhm_arcmin == 10.0
    assert sky["ymap"].unit == "Compton-y" and sky["mm"].unit == "uK_CMB"


def test_priorities_are_explicit_not_alphabetical(tmp_path):
    # an X-ray file that also carries FILTER and FREQ: xray (priority 40) wins
    path = _xray(tmp_path, "x.fits", FILTER="r", FREQ=150.0)
    sky = sort_into_layers([path])
    assert sky.names == ("xray",)
    assert sorted(r.priority for r in BUILTIN_READERS) == [10, 20, 25, 30, 40]
    assert [r.kind for r in sorted(BUILTIN_READERS, key=lambda r: -r.priority)] == [
        "xray",
        "ymap",
        "stellar_mass",
        "optical",
        "mm",
    ]


def test_stellar_mass_maps_are_their_own_layer(tmp_path):
    from clusterfw.core.layers.model import StellarMassBand

    h = tan_header(RA, DEC, 10.0, 20, 20)
    path = write_image(tmp_path / "mstar.fits", np.ones((20, 20), np.float32), h,
                       {"BUNIT": "solMass"})  # fmt: skip
    sky = sort_into_layers([path])
    assert sky.names == ("stellar_mass",)
    layer = sky.layers[0]
    assert layer.kind == "stellar_mass"
    assert [b.facts for b in layer.bands] == [StellarMassBand("mstar")]


def test_overrides_global_and_per_glob(tmp_path):
    a = _optical(tmp_path, "a_r.fits", filt=None)
    b = _optical(tmp_path, "b_g.fits", filt=None, ra=RA + 0.01)
    sky = sort_into_layers([a, b], {"*_r.fits:FILTER": "r", "*_g.fits:FILTER": "g"})
    assert sky["optical"].band_names == ("r", "g")
    sky = sort_into_layers([a, b], {"FILTER": "i", "LAYER": "des"})
    assert sky.names == ("des",)
    assert sky["des"].band_names == ("i",)
    # both files in one band -> a mosaic (different grids)
    assert isinstance(sky["des"].pixelisation, Mosaic)
    assert len(sky["des"].band("i").files) == 2


def test_optical_without_filter(tmp_path):
    path = _optical(tmp_path, "nofilter.fits", filt=None)
    with pytest.raises(InputError) as err:
        sort_into_layers([path])
    assert str(err.value) == f"{path}: missing FILTER header keyword (u, g, r, i, z or y)"


@pytest.mark.parametrize(
    ("maker", "message"),
    [
        (
            lambda p: _optical(p, "o.fits", unit="Jy"),
            "unknown BUNIT 'Jy' for an optical image (expected nanomaggy, or count with MAGZERO)",
        ),
        (
            lambda p: _xray(p, "x.fits", BUNIT="erg/s/cm2"),
            "unknown BUNIT 'erg/s/cm2' for an X-ray image (expected count)",
        ),
        (
            lambda p: _mm(p, "m.fits", BUNIT="furlong"),
            "unknown BUNIT 'furlong' (expected one of uK_CMB, K_CMB, mK_CMB, Jy/sr, MJy/sr)",
        ),
    ],
)
def test_unknown_bunit_per_kind(tmp_path, maker, message):
    path = maker(tmp_path)
    with pytest.raises(InputError) as err:
        sort_into_layers([path])
    assert str(err.value) == f"{path}: {message}"
    assert "\n" not in str(err.value)


def test_unknown_bunit_for_forced_ymap(tmp_path):
    path = _mm(tmp_path, "m.fits")
    with pytest.raises(InputError, match=r"unknown BUNIT 'uK_CMB' for a y map"):
        sort_into_layers([path], {"KIND": "ymap"})


def test_xray_without_exposure(tmp_path):
    path = _xray(tmp_path, "x.fits", exposure=False)
    with pytest.raises(InputError) as err:
        sort_into_layers([path])
    assert str(err.value) == (
        f"{path}: no exposure: neither an EXPOSURE image extension nor an EXPOSURE keyword"
    )
    # a uniform EXPOSURE keyword is enough
    sky = sort_into_layers([_xray(tmp_path, "x2.fits", exposure=False, EXPOSURE=1200.0)])
    assert sky["xray"].bands[0].facts.exposure == "uniform"
    assert sky["xray"].bands[0].files[0].exposure_s == 1200.0


def test_mosaic_files_disagree_on_filter(tmp_path):
    a = _optical(tmp_path, "t1.fits", "r", BANDNAME="r")
    b = _optical(tmp_path, "t2.fits", "g", BANDNAME="r", ra=RA + 0.01)
    with pytest.raises(InputError) as err:
        sort_into_layers([a, b])
    assert str(err.value) == f"{b}: mosaic band 'r' mixes FILTER g (this file) and r ({a})"


def test_layer_without_overlap(tmp_path):
    mm = _mm(tmp_path, "m.fits")
    far = _optical(tmp_path, "far.fits", "r", ra=RA + 20.0)
    with pytest.raises(InputError) as err:
        sort_into_layers([mm, far])
    assert str(err.value) == (
        f"{far}: layer 'optical' (1 file(s)) has no overlap with the other layers (mm)"
    )
    near = _optical(tmp_path, "near.fits", "r", ra=RA + 0.05)
    assert sort_into_layers([mm, near]).names == ("mm", "optical")


def test_unclaimed_and_missing_files(tmp_path):
    path = write_image(
        tmp_path / "anon.fits", np.zeros((5, 5), np.float32), tan_header(RA, DEC, 1, 5, 5), {}
    )
    with pytest.raises(InputError, match="cannot tell the layer kind"):
        sort_into_layers([path])
    with pytest.raises(InputError, match="file not found"):
        sort_into_layers([tmp_path / "nope.fits"])
    with pytest.raises(InputError, match=r"unknown layer KIND 'radio'"):
        sort_into_layers([path], {"KIND": "radio"})
    text = tmp_path / "t.fits"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a FITS file"):
        sort_into_layers([text])


def test_footprint_union_and_area(tmp_path):
    sky = sort_into_layers([_mm(tmp_path, "m.fits")])
    fp = sky["mm"].footprint
    # a 20' x 20' map: footprint pixels (order 8, 13.7') cover it, not much more
    assert fp.contains(np.array([RA]), np.array([DEC]))[0]
    assert not fp.contains(np.array([RA + 1.0]), np.array([DEC]))[0]
    assert 20.0 / 3600 * 20 <= fp.area_deg2 * 60 <= 60.0 * 0.5 * 60
