"""Shared fixtures of the estimator tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _save_untrained_y_network(
    out: Path, npix: int, *, seed: int = 0, preset: str = "act", **extra: Any
) -> Path:
    """An untrained vgg_mass y network on ``npix`` pixels of 0.5', as the estimator reads it."""
    from clusterfw.plugins.estimators.vgg_mass import data as d
    from clusterfw.plugins.estimators.vgg_mass.model import build_model

    out.mkdir(parents=True, exist_ok=True)
    build_model(npix, ("y",), seed=seed).save_weights(str(out / "vgg_mass_y.weights.h5"))
    cfg = {
        "config_version": 1, "name": "vgg_mass_y", "channels": ["y"], "npix": npix, "rebin": 1,
        "pixel_arcmin": 0.5, "cutout_arcmin": npix * 0.5, "z_range": [0.1, 1.0],
        "normalisation": {"y_scale": d.Y_SCALE, "t_ref_s": d.T_REF,
                          "mstar_scale": d.MSTAR_SCALE, "m_pivot": d.M_PIVOT},
        "ymap_preset": preset, **extra,
    }  # fmt: skip
    (out / "vgg_mass_y.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="session")
def untrained_y_network() -> Callable[..., Path]:
    """``f(out, npix, seed=0, preset="act", **config)``: write an untrained y network to ``out``."""
    pytest.importorskip("tensorflow")
    return _save_untrained_y_network
