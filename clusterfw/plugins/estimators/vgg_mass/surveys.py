"""Which y survey's networks to use: shipped folders per survey, chosen from the y map's noise.

A network learns the noise of the y maps it was trained on: the ACT-like networks (1e-5 y·arcmin)
cannot tell 1e14 from 2e14 Msun where a deep map can, and a deep-map network fed an ACT-like
map reads noise as signal. So ``vgg_mass`` ships one folder of networks per y survey preset
(:data:`clusterfw.sim.ymap.YMAP_PRESETS`): ``weights/`` for ``act`` and ``weights/deep/`` for
``deep``. With ``-o vgg_mass.survey=auto`` (the default) the estimator measures the white-noise
level of the run's y cutouts on 2' scales (:func:`measured_y_noise`; also for y made by the
ILC from mm bands) and takes the survey whose training
noise is nearest in log (:func:`nearest_survey`); ``-o vgg_mass.survey=act|deep`` forces one,
and ``-o vgg_mass.weights=DIR`` bypasses the choice.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: Folders of shipped networks, per y survey preset (the networks' ``ymap_preset``).
WEIGHTS_DIR = Path(__file__).parent / "weights"
SURVEY_DIRS: dict[str, Path] = {"act": WEIGHTS_DIR, "deep": WEIGHTS_DIR / "deep"}
#: Pixels closer than this to the cutout centre are left out of the noise measurement.
NOISE_INNER_ARCMIN = 5.0
#: Block side of the noise measurement: the scale of the clusters the networks weigh.
NOISE_BLOCK_ARCMIN = 2.0


def measured_y_noise(
    pixels: np.ndarray, pixel_arcmin: float, block_arcmin: float = NOISE_BLOCK_ARCMIN
) -> float:
    """White-noise depth (y·arcmin) of y cutouts, measured at the scale of clusters.

    Each cutout is averaged in blocks of about ``block_arcmin`` (k × k pixels); the differences
    of blocks two apart horizontally (so that beam-smoothed noise is not correlated between
    them) further than :data:`NOISE_INNER_ARCMIN` (or a quarter of
    the cutout side) from the centre give σ_block = 1.4826 MAD / √2, and the depth is
    σ_block × (block side in arcmin), the median over the cutouts. For white noise that is the
    map's depth; for noise smoothed by a beam smaller than the block (an ILC y map) it is the
    depth of white noise with the same variance on cluster scales — which is what the network
    feels, where the per-pixel rms of smoothed noise would read far too low.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(n, npix, npix)`` Compton-y cutouts (NaN where invalid).
    pixel_arcmin : float
        Their pixel side.
    block_arcmin : float
        Side of the averaging blocks.

    Returns
    -------
    float
        y·arcmin, NaN when no cutout has enough finite blocks.
    """
    a = np.asarray(pixels, dtype=np.float64)
    if a.ndim != 3 or a.shape[0] == 0:
        return math.nan
    k = max(1, round(block_arcmin / pixel_arcmin))
    nb = a.shape[-1] // k
    if nb < 5:
        return math.nan
    a = a[:, : nb * k, : nb * k].reshape(a.shape[0], nb, k, nb, k).mean(axis=(2, 4))
    side = k * pixel_arcmin
    c = (nb - 1) / 2.0
    yy, xx = np.mgrid[0:nb, 0 : nb - 2]
    r = np.hypot(yy - c, xx + 1.0 - c) * side
    outer = r >= min(NOISE_INNER_ARCMIN, nb * side / 4.0)
    d = (a[:, :, 2:] - a[:, :, :-2])[:, outer]  # blocks two apart: beam-correlated noise too
    sigmas = []
    for row in d:
        row = row[np.isfinite(row)]
        if row.size >= 12:
            sigmas.append(1.4826 * np.median(np.abs(row - np.median(row))) / math.sqrt(2.0))
    return float(np.median(sigmas) * side) if sigmas else math.nan


def nearest_survey(noise: float, candidates: dict[str, float]) -> str:
    """The survey whose training noise (y·arcmin) is nearest ``noise`` in log.

    Parameters
    ----------
    noise : float
        Measured depth, y·arcmin (NaN or ≤ 0: the first candidate is returned).
    candidates : dict
        Survey name → training depth.
    """
    names = list(candidates)
    if not (math.isfinite(noise) and noise > 0):
        return names[0]
    return min(names, key=lambda k: abs(math.log(noise / candidates[k])))
