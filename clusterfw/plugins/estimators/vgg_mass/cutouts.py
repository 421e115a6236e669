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
Without a ``ymap`` layer, the ``y`` channel is made from an ``mm`` layer of at least two bands
by the estimator's constrained ILC (:mod:`~clusterfw.plugins.estimators.vgg_mass.ilc`): the
bands are read over the candidate's 60' region on the network's raw pixels, combined with
tSZ response 1 and CMB response 0, and the centre is the cutout (``source`` ``"ilc:<layer>"``,
``beam_fwhm_arcmin`` the common beam, ``noise_per_pixel`` the combination's rms measured
on the region).
A candidate outside a layer's footprint, or whose cutout holds NaN at its centre, is invalid
for that layer.
"""

from __future__ import annotations

import math
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
    source: str = ""
    noise_per_pixel: np.ndarray | None = None


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


def find_mm_layer(sky: Any) -> Any | None:
    """The first ``mm`` layer with at least two bands (the ILC's input), else ``None``."""
    ls = layer_sky(sky)
    if ls is None:
        return None
    for layer in ls:
        if layer.kind == "mm" and len(layer.bands) >= 2:
            return layer
    return None


def y_source(sky: Any) -> str | None:
    """Where the ``y`` channel comes from: ``"ymap:<layer>"``, ``"ilc:<layer>"`` or ``None``."""
    layer = find_layer(sky, "y")
    if layer is not None:
        return f"ymap:{layer.name}"
    mm = find_mm_layer(sky)
    return None if mm is None else f"ilc:{mm.name}"


def available_channels(sky: Any) -> tuple[str, ...]:
    """The channels the sky can feed (``y`` also from mm bands by the ILC), in network order."""
    return tuple(
        ch
        for ch in CHANNEL_LAYERS
        if find_layer(sky, ch) is not None or (ch == "y" and find_mm_layer(sky) is not None)
    )


def ilc_cutouts(
    layer: Any, ra: np.ndarray, dec: np.ndarray, npix: int, pixel_arcmin: float
) -> ChannelCutouts:
    """y cutouts made from an mm layer by the constrained ILC (one region per candidate)."""
    from clusterfw.core.layers.cutout import read_cutout
    from clusterfw.core.layers.footprint import TanRegion, tan_wcs
    from clusterfw.plugins.estimators.vgg_mass.ilc import REGION_ARCMIN, ilc_y

    n = np.size(ra)
    pixels = np.full((n, npix, npix), np.nan, dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    noise = np.full(n, np.nan)
    big = max(npix, int(math.ceil(REGION_ARCMIN / pixel_arcmin)))
    big += (big - npix) % 2  # same centre pixel as the network's grid
    o = (big - npix) // 2
    freqs = [float(b.facts.freq_ghz) for b in layer.bands]
    beams = [float(b.facts.beam_fwhm_arcmin) for b in layer.bands]
    beam = max(beams)
    inside = (
        np.asarray(layer.footprint.contains(np.asarray(ra), np.asarray(dec)), dtype=bool)
        if layer.footprint is not None
        else np.ones(n, dtype=bool)
    )
    c = npix // 2
    for i in np.flatnonzero(inside):
        grid = (tan_wcs(float(ra[i]), float(dec[i]), pixel_arcmin, big), big, big)
        region = TanRegion(float(ra[i]), float(dec[i]), big * pixel_arcmin / 2.0)
        cut = read_cutout(layer, region, grid=grid)
        try:
            y, _w, beam = ilc_y(cut.pixels, freqs, beams, pixel_arcmin)
        except (ValueError, np.linalg.LinAlgError):
            continue
        pixels[i] = y[o : o + npix, o : o + npix]
        finite = y[np.isfinite(y)]
        noise[i] = 1.4826 * float(np.median(np.abs(finite - np.median(finite))))
        valid[i] = bool(np.isfinite(pixels[i, c - 1 : c + 1, c - 1 : c + 1]).all())
    return ChannelCutouts(pixels, valid, None, beam, f"ilc:{layer.name}", noise)


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
    if layer is None and channel == "y" and find_mm_layer(sky) is not None:
        return ilc_cutouts(find_mm_layer(sky), ra, dec, npix, pixel_arcmin)
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
    return ChannelCutouts(pixels, valid, exposure, beam, f"{layer.kind}:{layer.name}")
