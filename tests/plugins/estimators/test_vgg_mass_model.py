"""The vgg_mass network: shapes, the mean-and-variance head, the NLL, weights files."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from clusterfw.core.errors import InputError  # noqa: E402
from clusterfw.plugins.estimators.vgg_mass.model import (  # noqa: E402
    DENSE,
    FILTERS,
    SIGMA_FLOOR,
    build_model,
    gaussian_nll,
    load_weights,
)


def test_single_and_multi_channel_shapes_and_positive_sigma():
    import keras

    m1 = build_model(40, ("y",), seed=3)
    m3 = build_model(40, ("y", "xray", "optical"), seed=3)
    rng = np.random.default_rng(0)
    for m, nch in ((m1, 1), (m3, 3)):
        x = rng.normal(0, 50, (5, 40, 40, nch)).astype(np.float32)  # wild inputs
        out = np.asarray(m({"image": x, "z": np.full((5, 1), 0.5, np.float32)}, training=False))
        assert out.shape == (5, 2)
        assert np.all(np.isfinite(out)) and np.all(out[:, 1] >= SIGMA_FLOOR)
    # one tower per channel: three conv layers each, 16/32/64 filters
    convs = [la for la in m3.layers if isinstance(la, keras.layers.Conv2D)]
    want = {
        f"{ch}_conv{k + 1}": f for ch in ("y", "xray", "optical") for k, f in enumerate(FILTERS)
    }
    assert {c.name: c.filters for c in convs} == want
    dense = [la.units for la in m1.layers if isinstance(la, keras.layers.Dense)]
    assert dense == [*DENSE, 2]
    # redshift is an input that changes the output
    x = rng.normal(0, 1, (2, 40, 40, 1)).astype(np.float32)
    a = np.asarray(m1({"image": x, "z": np.full((2, 1), 0.1, np.float32)}, training=False))
    b = np.asarray(m1({"image": x, "z": np.full((2, 1), 0.9, np.float32)}, training=False))
    assert not np.allclose(a, b)


def test_gaussian_nll_matches_the_formula():
    t = np.array([0.1, -0.4, 1.0], np.float32)
    pred = np.array([[0.0, 0.5], [-0.2, 0.1], [1.3, 2.0]], np.float32)
    want = np.mean(0.5 * ((t - pred[:, 0]) / pred[:, 1]) ** 2 + np.log(pred[:, 1]))
    assert float(gaussian_nll(t, pred)) == pytest.approx(float(want), rel=1e-6)


def test_weights_roundtrip_and_corrupt_or_mismatched_files(tmp_path):
    m = build_model(16, ("y",), seed=1)
    path = tmp_path / "vgg_mass_y.weights.h5"
    m.save_weights(str(path))
    m2 = build_model(16, ("y",), seed=2)
    load_weights(m2, str(path))
    x = {"image": np.ones((1, 16, 16, 1), np.float32), "z": np.full((1, 1), 0.4, np.float32)}
    assert np.allclose(np.asarray(m(x, training=False)), np.asarray(m2(x, training=False)))
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError) as exc:
        load_weights(build_model(16, ("y",)), str(bad))
    assert str(exc.value).startswith(f"{bad}: unreadable or mismatched weights")
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="unreadable or mismatched weights"):
        load_weights(build_model(16, ("y", "xray")), str(path))  # wrong architecture
    with pytest.raises(InputError, match=r"expected a Keras \.weights\.h5 file"):
        load_weights(m, _touch(tmp_path / "w.pkl"))


def _touch(p):
    p.write_bytes(b"\x80\x04")
    return str(p)


def test_beta_nll_weights_each_sample_by_sigma_to_the_2beta():
    pytest.importorskip("tensorflow")
    from clusterfw.plugins.estimators.vgg_mass.model import beta_nll, gaussian_nll

    t = np.array([0.1, -0.3, 0.5], dtype=np.float32)
    pred = np.array([[0.0, 0.2], [0.1, 0.5], [0.4, 0.1]], dtype=np.float32)
    nll = 0.5 * ((t - pred[:, 0]) / pred[:, 1]) ** 2 + np.log(pred[:, 1])
    assert float(gaussian_nll(t, pred)) == pytest.approx(nll.mean(), rel=1e-5)
    assert float(beta_nll(0.0)(t, pred)) == pytest.approx(nll.mean(), rel=1e-5)
    want = (nll * pred[:, 1] ** 1.0).mean()  # β = 0.5: weights σ
    assert float(beta_nll(0.5)(t, pred)) == pytest.approx(want, rel=1e-5)
