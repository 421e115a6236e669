"""Multiwavelength skies as survey layers whose pixels stay on disk until a tile job reads them.

See ``docs/layers.md``. Main entry points: :func:`sort_into_layers` (files → :class:`LayerSky`),
:func:`plan_tile_jobs` (sky → picklable :class:`TileJob` list), :meth:`TileJob.read`
(→ :class:`LayerCutout`), :func:`check_requirements`.
"""

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
