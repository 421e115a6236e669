"""Platt scaling recovers a known logistic relation and round-trips through JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterfw.plugins.finders.resnet.calibrate import Platt, fit_platt


def test_fit_recovers_known_slope_and_intercept(tmp_path):
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 3.0, 40000)
    p = 1.0 / (1.0 + np.exp(-(0.5 * logits - 2.0)))
    labels = rng.random(logits.size) < p
    platt = fit_platt(logits, labels)
    assert platt.a == pytest.approx(0.5, abs=0.03)
    assert platt.b == pytest.approx(-2.0, abs=0.08)
    assert platt.n_fit == logits.size and platt.n_positive == int(labels.sum())
    path = platt.save(tmp_path / "platt.json")
    data = json.loads(path.read_text())
    assert data["method"] == "platt" and isinstance(data["a"], float)
    again = Platt.load(path)
    np.testing.assert_allclose(again(logits[:10]), platt(logits[:10]))
    assert np.all(np.isfinite(platt(np.array([-1e4, 1e4]))))


def test_fit_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        fit_platt(np.arange(5.0), np.zeros(5))
