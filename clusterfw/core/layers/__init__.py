"""Multiwavelength skies as survey layers whose pixels stay on disk until a tile job reads them.

See ``docs/layers.md``. Main entry points: :func:`sort_into_layers` (files → :class:`LayerSky`),
:func:`plan_tile_jobs` (sky → picklable :class:`TileJob` list), :meth:`TileJob.read`
(→ :class:`LayerCutout`), :func:`check_requirements`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Submodules load on first use (PEP 562), so importing the light ones (``model``,
# ``requirements``) from plugin code at discovery does not pull in astropy.io.fits or scipy.
_WHERE = {
    "LayerCutout": "clusterfw.core.layers.cutout",
    "read_cutout": "clusterfw.core.layers.cutout",
    "BoxRegion": "clusterfw.core.layers.footprint",
    "Footprint": "clusterfw.core.layers.footprint",
    "TanRegion": "clusterfw.core.layers.footprint",
    "BoxCore": "clusterfw.core.layers.jobs",
    "HealpixCore": "clusterfw.core.layers.jobs",
    "TileJob": "clusterfw.core.layers.jobs",
    "plan_tile_jobs": "clusterfw.core.layers.jobs",
    "Layer": "clusterfw.core.layers.model",
    "LayerBand": "clusterfw.core.layers.model",
    "LayerKind": "clusterfw.core.layers.model",
    "LayerSky": "clusterfw.core.layers.model",
    "MmBand": "clusterfw.core.layers.model",
    "OpticalBand": "clusterfw.core.layers.model",
    "XrayBand": "clusterfw.core.layers.model",
    "YBand": "clusterfw.core.layers.model",
    "get_kind": "clusterfw.core.layers.model",
    "known_kinds": "clusterfw.core.layers.model",
    "register_kind": "clusterfw.core.layers.model",
    "FlatImage": "clusterfw.core.layers.pixelisation",
    "HealpixMap": "clusterfw.core.layers.pixelisation",
    "Mosaic": "clusterfw.core.layers.pixelisation",
    "BUILTIN_READERS": "clusterfw.core.layers.readers",
    "LayerReader": "clusterfw.core.layers.readers",
    "LayerRequirement": "clusterfw.core.layers.requirements",
    "check_requirements": "clusterfw.core.layers.requirements",
    "sort_into_layers": "clusterfw.core.layers.sorting",
}

if TYPE_CHECKING:
    from clusterfw.core.layers.cutout import LayerCutout, read_cutout
    from clusterfw.core.layers.footprint import BoxRegion, Footprint, TanRegion
    from clusterfw.core.layers.jobs import BoxCore, HealpixCore, TileJob, plan_tile_jobs
    from clusterfw.core.layers.model import (
        Layer,
        LayerBand,
        LayerKind,
        LayerSky,
        MmBand,
        OpticalBand,
        XrayBand,
        YBand,
        get_kind,
        known_kinds,
        register_kind,
    )
    from clusterfw.core.layers.pixelisation import FlatImage, HealpixMap, Mosaic
    from clusterfw.core.layers.readers import BUILTIN_READERS, LayerReader
    from clusterfw.core.layers.requirements import LayerRequirement, check_requirements
    from clusterfw.core.layers.sorting import sort_into_layers


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUILTIN_READERS",
    "BoxCore",
    "BoxRegion",
    "FlatImage",
    "Footprint",
    "HealpixCore",
    "HealpixMap",
    "Layer",
    "LayerBand",
    "LayerCutout",
    "LayerKind",
    "LayerReader",
    "LayerRequirement",
    "LayerSky",
    "MmBand",
    "Mosaic",
    "OpticalBand",
    "TanRegion",
    "TileJob",
    "XrayBand",
    "YBand",
    "check_requirements",
    "get_kind",
    "known_kinds",
    "plan_tile_jobs",
    "read_cutout",
    "register_kind",
    "sort_into_layers",
]
