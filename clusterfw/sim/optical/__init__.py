"""Optical (g, r, i, z) sky renderer: cluster members, field galaxies, stars, PSF and noise.

Public API: :func:`render_optical`, :class:`OpticalField`, :class:`OpticalFootprint`,
:func:`write_optical`, :func:`pointed_fields`, :data:`PRESETS`, :func:`get_preset`.
See docs/sim-optical.md.
"""

from __future__ import annotations

from clusterfw.sim.optical.field import OpticalField, OpticalFootprint, render_optical
from clusterfw.sim.optical.io import pointed_fields, write_optical
from clusterfw.sim.optical.presets import PRESETS, OpticalPreset, get_preset

__all__ = [
    "PRESETS",
    "OpticalField",
    "OpticalFootprint",
    "OpticalPreset",
    "get_preset",
    "pointed_fields",
    "render_optical",
    "write_optical",
]
