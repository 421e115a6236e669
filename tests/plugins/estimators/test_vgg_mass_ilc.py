"""vgg_mass's constrained ILC: y from mm bands, tSZ response 1, CMB nulled; the estimator path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clusterfw.plugins.estimators.vgg_mass.ilc import (
    cilc_weights,
    ilc_y,
    smooth_to_beam,
    tsz_uk_per_y,
)

FREQS = (90.0, 150.0, 220.0)
BEAMS = (2.2, 1.4, 1.0)
NOISE = (20.0, 15.0, 50.0)  # µK-arcmin
PIX = 0.5
N = 120


def test_tsz_response_is_the_simulators():
    from clusterfw.sim.instrument import tsz_uk_per_y as sim_response

    got = tsz_uk_per_y(np.array([90.0, 150.0, 217.0, 353.0]))
    want = np.array([sim_response(f) for f in (90.0, 150.0, 217.0, 353.0)], dtype=float)
    assert got == pytest.approx(want, rel=1e-6)
    assert got[1] == pytest.approx(-2.59e6, rel=0.01)  # f(x) ≈ −0.95 at 150 GHz
    assert abs(got[2]) < 0.01 * abs(got[1]) and got[3] > 0  # the tSZ null, then an increment


def test_weights_meet_the_constraints():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((4, 4))
    cov = m @ m.T + 4 * np.eye(4)
    a = np.stack([tsz_uk_per_y(np.array([90.0, 150.0, 220.0, 280.0])), np.ones(4)], axis=1)
    w = cilc_weights(cov, a)
    assert w @ a[:, 0] == pytest.approx(1.0, rel=1e-12)
    assert abs(w @ a[:, 1]) < 1e-12 * np.abs(w).sum()
    with pytest.raises(ValueError, match="1 bands cannot meet 2 constraints"):
        cilc_weights(np.eye(1), a[:1])


def _beam(img, fwhm):
    return smooth_to_beam(img, 0.0, fwhm, PIX)


def _sky(seed, y0=2e-4, cmb_rms=100.0, noise=True):
    """Bands of a β-model cluster at the centre, a red CMB field and white noise (µK_CMB)."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(N)[:, None]
    kx = np.fft.fftfreq(N)[None, :]
    k = np.hypot(kx, ky)
    k[0, 0] = np.inf
    cmb = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((N, N))) * k**-1.5))
    cmb *= cmb_rms / cmb.std()
    c = (N - 1) / 2.0
    yy, xx = np.mgrid[:N, :N]
    r = np.hypot(xx - c, yy - c) * PIX
    y_true = y0 * (1 + (r / 1.5) ** 2) ** -0.5 * (r < 10.0)
    bands, cmb_bands = [], []
    for f, b, s in zip(FREQS, BEAMS, NOISE, strict=True):
        sig = _beam(cmb, b) + _beam(y_true, b) * float(tsz_uk_per_y(f))
        if noise:
            sig = sig + rng.standard_normal((N, N)) * s / PIX
        bands.append(sig)
        cmb_bands.append(_beam(cmb, b))
    return np.array(bands), np.array(cmb_bands), y_true


def test_ilc_recovers_an_injected_y_amplitude_and_nulls_the_cmb():
    bands, cmb_bands, y_true = _sky(3)
    y, w, beam = ilc_y(bands, FREQS, BEAMS, PIX)
    assert beam == 2.2  # the largest beam: nothing is deconvolved
    a = tsz_uk_per_y(np.array(FREQS))
    assert w @ a == pytest.approx(1.0, rel=1e-10)
    assert abs(w.sum()) < 1e-10 * np.abs(w).sum()
    # the amplitude of the injected profile (at the common beam), fitted in its central 4'
    tmpl = _beam(y_true, beam)
    c = N // 2
    sl = (slice(c - 8, c + 8), slice(c - 8, c + 8))
    amp = float((y[sl] * tmpl[sl]).sum() / (tmpl[sl] ** 2).sum())
    assert amp == pytest.approx(1.0, abs=0.05)
    # the CMB's part of the output: the weights applied to the CMB alone (smoothed alike)
    cmb_part = np.tensordot(w, np.stack([smooth_to_beam(m, b, beam, PIX) for m, b in
                                         zip(cmb_bands, BEAMS, strict=True)]), axes=1)  # fmt: skip
    assert np.std(cmb_part) < 1e-9 * 100.0 * np.abs(w).sum()
    # without the CMB constraint (a tSZ-only ILC) the same maps leave CMB in y
    smooth = np.stack([smooth_to_beam(m, b, beam, PIX) for m, b in zip(bands, BEAMS, strict=True)])
    pix = smooth.reshape(3, -1)
    w1 = cilc_weights(np.cov(pix), a[:, None], (1.0,))
    leak = np.tensordot(w1, np.stack([smooth_to_beam(m, b, beam, PIX) for m, b in
                                      zip(cmb_bands, BEAMS, strict=True)]), axes=1)  # fmt: skip
    assert np.std(leak) > 1e3 * np.std(cmb_part)


def test_noiseless_amplitude_is_exact_and_nan_regions_are_kept():
    bands, _, y_true = _sky(4, noise=False, cmb_rms=50.0)
    bands[:, :10, :] = np.nan  # a strip without data in every band
    bands = bands + np.random.default_rng(0).standard_normal(bands.shape) * 1e-3  # full rank
    y, _, beam = ilc_y(bands, FREQS, BEAMS, PIX)
    assert np.isnan(y[:10]).all() and np.isfinite(y[20:]).all()
    c = N // 2
    tmpl = _beam(y_true, beam)
    assert y[c, c] == pytest.approx(tmpl[c, c], rel=1e-3)
    with pytest.raises(ValueError, match="at least two mm bands"):
        ilc_y(bands[:1], FREQS[:1], BEAMS[:1], PIX)
    with pytest.raises(ValueError, match="pixels with data in every band"):
        ilc_y(np.full((3, 10, 10), np.nan), FREQS, BEAMS, PIX)


@pytest.fixture(scope="module")
def mm_layers(tmp_path_factory):
    """Three ACT-like mm bands (1°, 0.5' pixels) with one cluster: an mm-only layered sky."""
    from astropy.wcs import WCS

    from clusterfw.core.fits_io import write_flat_sky_fits
    from clusterfw.core.layers.sorting import sort_into_layers
    from clusterfw.core.sky import Band, Sky

    global N
    n_old, N = N, 120
    try:
        bands, _, y_true = _sky(7, y0=3e-4)
    finally:
        N = n_old
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [60.0, -45.0]
    w.wcs.crpix = [(120 + 1) / 2.0, (120 + 1) / 2.0]
    w.wcs.cdelt = [-PIX / 60.0, PIX / 60.0]
    sky = Sky(
        bands.astype(np.float32),
        w,
        tuple(Band(f"f{int(f):03d}", f, b, s) for f, b, s in zip(FREQS, BEAMS, NOISE, strict=True)),
    )
    paths = write_flat_sky_fits(sky, tmp_path_factory.mktemp("mm"))
    return sort_into_layers(paths, check_overlap=False), y_true


def test_cutouts_from_an_mm_only_sky_come_from_the_ilc(mm_layers):
    from clusterfw.plugins.estimators.vgg_mass.cutouts import (
        available_channels,
        candidate_cutouts,
        y_source,
    )

    sky, y_true = mm_layers
    assert available_channels(sky) == ("y",)
    assert y_source(sky) == "ilc:mm"
    cut = candidate_cutouts(sky, "y", np.array([60.0, 80.0]), np.array([-45.0, -45.0]), 16, PIX)
    assert cut.valid.tolist() == [True, False]  # the second is off the map
    assert cut.source == "ilc:mm" and cut.beam_fwhm_arcmin == 2.2
    # the centre of the cutout is the cluster's beamed peak
    peak = _beam(y_true, 2.2)[59:61, 59:61].mean()
    assert cut.pixels[0, 7:9, 7:9].mean() == pytest.approx(peak, rel=0.1)
    assert 0 < cut.noise_per_pixel[0] < 0.2 * peak
    assert math.isnan(cut.noise_per_pixel[1])
