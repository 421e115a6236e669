"""What layers and bands a plugin needs, and the check that a sky has them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clusterfw.core.errors import PluginError
from clusterfw.core.layers.model import LayerSky


@dataclass(frozen=True)
class LayerRequirement:
    """A plugin's need for one layer.

    Parameters
    ----------
    kind : str
        Layer kind (``mm``, ``optical``, ``xray``, ``ymap`` ...).
    bands : tuple of str
        Bands that must all be present (e.g. ``("g", "r", "i")``).
    min_bands : int
        At least this many bands (e.g. 2 for a multi-frequency matched filter).
    optional : bool
        Used where the inputs have it, never required: a run without it goes on, and the
        plugin's tiles simply lack the layer (the ``xray`` finder's optical layer).
    """

    kind: str
    bands: tuple[str, ...] = ()
    min_bands: int = 1
    optional: bool = False


def matching_layers(requirement: LayerRequirement, sky: LayerSky) -> list[str]:
    """Names of the layers of ``sky`` that satisfy ``requirement``."""
    return [
        layer.name
        for layer in sky.of_kind(requirement.kind)
        if set(requirement.bands) <= set(layer.band_names)
        and len(layer.bands) >= requirement.min_bands
    ]


def check_requirements(
    plugin_name: str, requirements: Sequence[LayerRequirement], sky: LayerSky
) -> None:
    """Raise a one-line :class:`PluginError` unless ``sky`` has what a plugin needs.

    Raises
    ------
    PluginError
        Naming the plugin and the missing layer or band.
    """
    for req in requirements:
        if req.optional or matching_layers(req, sky):
            continue
        candidates = sky.of_kind(req.kind)
        if not candidates:
            have = ", ".join(f"{layer.name} ({layer.kind})" for layer in sky) or "none"
            raise PluginError(
                f"{plugin_name}: needs a {req.kind!r} layer; the inputs have none (layers: {have})"
            )
        layer = max(candidates, key=lambda la: len(set(req.bands) & set(la.band_names)))
        missing = [b for b in req.bands if b not in layer.band_names]
        if missing:
            raise PluginError(
                f"{plugin_name}: {req.kind!r} layer {layer.name!r} lacks band(s) "
                f"{', '.join(missing)} (has {', '.join(layer.band_names)})"
            )
        raise PluginError(
            f"{plugin_name}: needs a {req.kind!r} layer with at least {req.min_bands} bands; "
            f"{layer.name!r} has {len(layer.bands)} ({', '.join(layer.band_names)})"
        )
