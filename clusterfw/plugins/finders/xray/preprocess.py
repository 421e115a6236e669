"""Network inputs from cutouts on the network grid (shared by training and the finder).

Every cutout is on the network's grid (``NET_PIX`` × ``NET_PIX`` pixels of 8", 4.27'):

* X-ray, two channels: ``asinh(counts)`` and ``asinh(S / 2)`` with ``S`` the Gaussian-smoothed
  significance ``G_σ ⊛ (counts − bkg) / √(G_σ² ⊛ bkg)`` (σ = 1.5 pixels = 12", the eROSITA
  PSF's σ), so the network sees both the raw Poisson counts and their excess over the
  expected background at any exposure;
* optical, three channels (g, r, i nanomaggies per 8" pixel): ``asinh((x − median) / s_b)``
  with fixed per-band scales ``s_b`` (the robust σ of the training pixels, stored with the
  weights).

Channel sets: ``xray`` (2), ``optical`` (3), ``both`` (5, X-ray first).
"""

from __future__ import annotations

import math

import numpy as np

SMOOTH_SIGMA_PIX = 1.5
MODES = {"xray": 2, "optical": 3, "both": 5}


def xray_channels(counts: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``(n, 2, ny, nx)`` float32 X-ray channels of ``(n, ny, nx)`` counts and background."""
    from scipy import ndimage

    counts = np.asarray(counts, dtype=np.float64)
    bkg = np.nan_to_num(np.asarray(background, dtype=np.float64), nan=0.0)
    s = SMOOTH_SIGMA_PIX
    sig = (0, s, s)
    signal = ndimage.gaussian_filter(counts - bkg, sig, mode="nearest")
    var = ndimage.gaussian_filter(bkg, (0, s / math.sqrt(2.0), s / math.sqrt(2.0)), mode="nearest")
    var /= 4.0 * math.pi * s**2
    snr = signal / np.sqrt(np.maximum(var, 1e-6))
    return np.stack([np.arcsinh(counts), np.arcsinh(snr / 2.0)], axis=1).astype(np.float32)


def optical_channels(optical: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``(n, 3, ny, nx)`` float32 optical channels; NaN (no data) becomes 0 after scaling."""
    x = np.asarray(optical, dtype=np.float64)
    med = np.nanmedian(x.reshape(*x.shape[:2], -1), axis=2)[..., None, None]
    med = np.nan_to_num(med, nan=0.0)
    out = np.arcsinh((x - med) / np.asarray(scales, float)[None, :, None, None])
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def network_input(
    mode: str,
    counts: np.ndarray | None,
    background: np.ndarray | None,
    optical: np.ndarray | None,
    scales: np.ndarray | None,
) -> np.ndarray:
    """The ``(n, C, ny, nx)`` input of a network of ``mode`` (``xray``, ``optical``, ``both``)."""
    parts = []
    if mode in ("xray", "both"):
        assert counts is not None and background is not None
        parts.append(xray_channels(counts, background))
    if mode in ("optical", "both"):
        assert optical is not None and scales is not None
        parts.append(optical_channels(optical, scales))
    return np.concatenate(parts, axis=1)


def robust_scales(optical: np.ndarray) -> np.ndarray:
    """Per-band robust σ (1.4826 × MAD) of ``(n, 3, ny, nx)`` optical cutouts."""
    x = np.asarray(optical, dtype=np.float64)
    flat = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    med = np.median(flat, axis=1, keepdims=True)
    return 1.4826 * np.median(np.abs(flat - med), axis=1)
