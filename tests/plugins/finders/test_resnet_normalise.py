"""Normalisation: fixed per-band scale + arcsinh keeps SZ amplitudes next to bright sources."""

from __future__ import annotations

import numpy as np

from clusterfw.plugins.finders.resnet.normalise import normalise, robust_scales


def _cutouts(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, [10.0, 10.0, 20.0], size=(n, 32, 32, 3)).transpose(0, 3, 1, 2)


def test_robust_scales_ignore_bright_pixels():
    x = _cutouts()
    clean = robust_scales(x)
    np.testing.assert_allclose(clean, [10.0, 10.0, 20.0], rtol=0.05)
    x[:, :, 16, 16] += 5000.0  # one bright source in every cutout
    np.testing.assert_allclose(robust_scales(x), clean, rtol=0.02)


def test_bright_source_leaves_decrement_amplitude_alone():
    scales = np.array([10.0, 10.0, 20.0])
    x = np.zeros((2, 3, 32, 32), np.float32)
    x[:, 0, 10, 10] = -20.0  # an SZ-like decrement pixel
    x[1, 0, 25, 25] = 5000.0  # a bright radio source elsewhere in the second cutout
    y = normalise(x, scales)
    # the decrement keeps its normalised value; min-max scaling would have shrunk it ~250x
    assert y[0, 0, 10, 10] == y[1, 0, 10, 10] == np.float32(np.arcsinh(-2.0))
    # the source is compressed logarithmically
    assert 6.0 < y[1, 0, 25, 25] < 7.0


def test_median_removed_and_nan_zero():
    x = np.full((1, 3, 32, 32), 300.0, np.float32)
    x[0, 1, :4, :4] = np.nan
    y = normalise(x, np.ones(3))
    assert np.all(y == 0.0)
