"""The one place ``vgg_mass`` gets its cutouts from: the layers of the run's sky.

:func:`candidate_cutouts` is the only function that knows how the sky hands out pixels; the
layer wiring of the pipeline (issue 12, ``docs/layers.md``) is still moving, so everything else
in the estimator sees only its result — arrays on the network's own grid.

For each candidate a TAN grid of ``npix × npix`` pixels of ``pixel_arcmin`` centred on it
(:func:`clusterfw.core.layers.footprint.tan_wcs`, the same centring as the training cutouts:
the candidate at pixel ``((npix-1)/2, (npix-1)/2)``) is filled from the layer by
:func:`clusterfw.core.layers.cutout.read_cutout` (bilinear resampling where grids differ).
Resampling keeps surface brightness, so per-pixel quantities (X-ray counts and exposure-weighted
counts, stellar mass per pixel) are rescaled by the ratio of pixel areas.

Layers looked for: ``ymap`` (kind; Compton-y), ``xray`` (kind; counts with an exposure plane),
``stellar_mass`` (by name; Msun per pixel, as ``clusterfw simulate universe`` writes it).
A candidate outside a layer's footprint, or whose cutout holds NaN at its centre, is invalid
for that layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: network channel → (how to find the layer: "kind" or "name", its kind/name)
CHANNEL_LAYERS = {
    "y": ("kind", "ymap"),
    "xray": ("kind", "xray"),
    "optical": ("name", "stellar_mass"),
}


@dataclass
class ChannelCutouts:
    """Cutouts of one channel: ``pixels`` (and ``exposure`` for X-ray), validity, beam."""

    pixels: np.ndarray
    valid: np.ndarray
    exposure: np.ndarray | None = None
    beam_fwhm_arcmin: float | None = None


def layer_sky(sky: Any) -> Any | None:
    """The :class:`~clusterfw.core.layers.model.LayerSky` behind ``sky``, if there is one.

    ``clusterfw run`` hands estimators a :class:`clusterfw.core.pipeline.CutoutProvider`
    (``.sky`` is the run's ``LayerSky``); tests may pass the ``LayerSky`` itself.
    """
    from clusterfw.core.layers.model import LayerSky

    if isinstance(sky, LayerSky):
        return sky
    for attr in ("sky", "layer_sky", "layers"):  # the pipeline's CutoutProvider has .sky
        inner = getattr(sky, attr, None)
        if isinstance(inner, LayerSky):
            return inner
    return None


def find_layer(sky: Any, channel: str) -> Any | None:
    """The layer that feeds ``channel`` (``y``, ``xray``, ``optical``), else ``None``."""
    ls = layer_sky(sky)
    if ls is None:
        return None
    how, key = CHANNEL_LAYERS[channel]
    for layer in ls:
        if (how == "kind" and layer.kind == key) or (how == "name" and layer.name == key):
            return layer
    return None


def available_channels(sky: Any) -> tuple[str, ...]:
    """The channels whose layer the sky has, in network order."""
    return tuple(ch for ch in CHANNEL_LAYERS if find_layer(sky, ch) is not None)


def candidate_cutouts(
    sky: Any,
    channel: str,
    ra: np.ndarray,
    dec: np.ndarray,
    npix: int,
    pixel_arcmin: float,
) -> ChannelCutouts:
    """Cutouts of ``channel`` around each position, on the network's grid.

    Parameters
    ----------
    sky : LayerSky or a sky carrying one
    channel : str
    ra, dec : numpy.ndarray
        Degrees.
    npix : int
    pixel_arcmin : float

    Returns
    -------
    ChannelCutouts
        ``pixels`` ``(n, npix, npix)`` float32 (Compton-y, counts or Msun per pixel), NaN
        where invalid; ``exposure`` (s) for X-ray.
    """
    from clusterfw.core.layers.cutout import read_cutout
    from clusterfw.core.layers.footprint import TanRegion, tan_wcs

    n = np.size(ra)
    pixels = np.full((n, npix, npix), np.nan, dtype=np.float32)
    exposure = np.full((n, npix, npix), np.nan, dtype=np.float32) if channel == "xray" else None
    valid = np.zeros(n, dtype=bool)
    layer = find_layer(sky, channel)
    if layer is None:
        return ChannelCutouts(pixels, valid, exposure)
    facts = layer.bands[0].facts if layer.bands else None
    beam = getattr(facts, "beam_fwhm_arcmin", None)
    area = 1.0
    if channel in ("xray", "optical"):
        area = (pixel_arcmin / float(layer.pixelisation.pixel_arcmin)) ** 2
    inside = (
        np.asarray(layer.footprint.contains(np.asarray(ra), np.asarray(dec)), dtype=bool)
        if layer.footprint is not None
        else np.ones(n, dtype=bool)
    )
    half = npix * pixel_arcmin / 2.0
    c = npix // 2
    for i in np.flatnonzero(inside):
        grid = (tan_wcs(float(ra[i]), float(dec[i]), pixel_arcmin, npix), npix, npix)
        cut = read_cutout(layer, TanRegion(float(ra[i]), float(dec[i]), half), grid=grid)
        pixels[i] = cut.pixels[0] * area
        if exposure is not None and cut.exposure is not None:
            exposure[i] = cut.exposure[0]
        valid[i] = bool(np.isfinite(pixels[i, c - 1 : c + 1, c - 1 : c + 1]).all())
    return ChannelCutouts(pixels, valid, exposure, beam)
