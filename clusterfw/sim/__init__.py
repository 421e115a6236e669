"""Millimetre sky simulator: flat patches and HEALPix skies with truth catalogues.

Public API
----------
simulate_patch, write_patch, SimResult, PatchConfig, SimConfig, HealpixConfig, BandSpec,
Components, simulate_healpix, write_healpix, demo_sky, demo_paths, make_cutouts.

Heavy submodules are imported lazily, so ``import clusterfw.sim`` is cheap.
"""

from __future__ import annotations

from typing import Any

from clusterfw.sim.config import BandSpec, Components, HealpixConfig, PatchConfig, SimConfig

_LAZY = {
    "simulate_patch": "clusterfw.sim.patch",
    "write_patch": "clusterfw.sim.patch",
    "SimResult": "clusterfw.sim.patch",
    "simulate_healpix": "clusterfw.sim.healpix",
    "write_healpix": "clusterfw.sim.healpix",
    "HealpixResult": "clusterfw.sim.healpix",
    "demo_sky": "clusterfw.sim.demo",
    "demo_paths": "clusterfw.sim.demo",
    "DEMO_CONFIG": "clusterfw.sim.demo",
    "make_cutouts": "clusterfw.sim.cutouts",
    "iter_cutouts": "clusterfw.sim.cutouts",
    "write_cutout_shards": "clusterfw.sim.cutouts",
    "CutoutBatch": "clusterfw.sim.cutouts",
    "power_spectrum": "clusterfw.sim.spectra",
}

__all__ = ["BandSpec", "Components", "HealpixConfig", "PatchConfig", "SimConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clusterfw.sim' has no attribute {name!r}")
