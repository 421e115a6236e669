"""A tiny simulated sky (written once per session) for the selection-function tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sky(tmp_path_factory) -> list[Path]:
    """A 1°×1° three-band sky at 0.5' pixels (seeded), as FITS band maps."""
    from clusterfw.sim import PatchConfig, simulate_patch
    from clusterfw.sim.patch import write_patch

    out = tmp_path_factory.mktemp("selfn_sky")
    res = simulate_patch(PatchConfig(size_deg=1.0, pixel_arcmin=0.5), 5)
    return [Path(p) for p in write_patch(res, out)["maps"]]
