"""Injections into X-ray counts images (β-model counts with the file's ECF and exposure)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest


def _xray_file(path: Path, exposure: float = 2000.0) -> tuple[Path, object]:
    """A 0.5°×0.5° counts image at 8″ pixels with an EXPOSURE extension, as write_xray."""
    from astropy.io import fits
    from astropy.wcs import WCS

    n = 225
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [30.0, -20.0]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    w.wcs.cdelt = [-8.0 / 3600, 8.0 / 3600]
    rng = np.random.default_rng(1)
    hdr = w.to_header()
    hdr["BUNIT"] = "count"
    hdr["ECF"] = 1.07e12
    hdr["PSFFWHM"] = 16.0
    counts = rng.poisson(0.05, (n, n)).astype(np.int32)
    expo = fits.ImageHDU(np.full((n, n), exposure, np.float32), w.to_header(), name="EXPOSURE")
    fits.HDUList([fits.PrimaryHDU(counts, hdr), expo]).writeto(path)
    return path, w


def _target(path: Path, w) -> object:
    from clusterfw.selection.inject import InjectionTarget, _xray_band

    class F:
        pass

    f = F()
    f.path, f.hdu, f.scale, f.wcs, f.shape, f.pixel_arcmin = path, 0, 1.0, w, (225, 225), 8 / 60
    band = _xray_band(f)
    return InjectionTarget(w, (225, 225), 8 / 60, [band], np.ones((225, 225), bool))


def test_xray_counts_follow_flux_ecf_and_exposure(tmp_path):
    from clusterfw.selection.inject import xray_counts
    from clusterfw.selection.model import ScalingModel, draw_clusters
    from clusterfw.sim import observables as obs
    from clusterfw.sim import sz
    from clusterfw.sim import xray as sx

    path, w = _xray_file(tmp_path / "x.fits")
    target = _target(path, w)
    facts = target.bands[0].xray
    assert facts.ecf == 1.07e12 and facts.psf_fwhm_arcsec == 16.0
    model = ScalingModel(y500_scatter_ln=0.0, ksz=False)
    m, z = np.array([3e14]), np.array([0.3])
    cl = draw_clusters(m, z, model, np.random.default_rng(0))
    counts, expected = xray_counts(
        facts, cl, np.array([30.0]), np.array([-20.0]), np.random.default_rng(2), y_scatter_ln=0.0
    )
    # the expected counts are the relation's flux × ECF × exposure (scatter drawn around it)
    cfg = obs.ObservablesConfig()
    fx_med = obs.flux_500(obs.lx500_median(m, z, cfg), z, sz.temperature_kev(m, z))
    p = sx.get_preset("erosita")
    med = fx_med * sx.beta_cylinder_to_sphere(p.beta, p.rc_r500, p.rmax_r500) * 1.07e12 * 2000.0
    assert 0.05 < expected[0] / med[0] < 20.0  # lognormal σ_lnLx = 0.40: within ±7.5σ
    # the Poisson image sums to the expected counts (all inside the image)
    assert counts.sum() == pytest.approx(expected[0], rel=5.0 / np.sqrt(expected[0]))
    assert expected[0] > 50
    # centred on the cluster
    cy, cx = np.unravel_index(np.argmax(counts), counts.shape)
    assert abs(cx - 112) <= 3 and abs(cy - 112) <= 3
    # twice the exposure, twice the expected counts (same draws)
    path2, _ = _xray_file(tmp_path / "x2.fits", exposure=4000.0)
    facts2 = _target(path2, w).bands[0].xray
    _, expected2 = xray_counts(
        facts2, cl, np.array([30.0]), np.array([-20.0]), np.random.default_rng(2), y_scatter_ln=0.0
    )
    assert expected2[0] == pytest.approx(2 * expected[0])


def test_write_injected_adds_counts_to_a_copy(tmp_path):
    from astropy.io import fits

    from clusterfw.selection.inject import write_injected
    from clusterfw.selection.model import ScalingModel, draw_clusters

    path, w = _xray_file(tmp_path / "x.fits")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    target = _target(path, w)
    cl = draw_clusters(np.array([4e14]), np.array([0.2]), ScalingModel(), np.random.default_rng(0))
    mapping = write_injected(
        target, cl, np.array([[112.0, 112.0]]), 5.0, tmp_path / "inj", np.random.default_rng(3)
    )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the user's file untouched
    with fits.open(path) as a, fits.open(mapping[path]) as b:
        old, new = a[0].data, b[0].data
        assert new.dtype.kind == "i"  # counts stay integers
        added = new.astype(np.int64) - old
        assert added.min() >= 0 and added.sum() > 100
        assert "EXPOSURE" in [h.name for h in b]


def test_xray_without_ecf_is_refused(tmp_path):
    from astropy.io import fits

    from clusterfw.selection.inject import InjectionUnsupported

    path, w = _xray_file(tmp_path / "x.fits")
    with fits.open(path, mode="update") as h:
        del h[0].header["ECF"]
    with pytest.raises(InjectionUnsupported, match="X-ray image without an ECF keyword"):
        _target(path, w)
