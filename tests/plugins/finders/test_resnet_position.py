"""The resnet position head and the regression localisation: batch-norm folding, features in the
scoring pass, dihedral offsets, the head fit, its file, and convergence of the iteration."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.core.errors import InputError
from clusterfw.plugins.finders.resnet.localise import LocaliseSettings, localise_regression

torch = pytest.importorskip("torch")

from clusterfw.plugins.finders.resnet.model import DeepSZResNet, fold_batchnorm  # noqa: E402
from clusterfw.plugins.finders.resnet.position import (  # noqa: E402
    DIHEDRAL,
    PositionHead,
    dihedral,
    fit_head,
    forward_with_features,
    load_head,
    n_features,
    position_errors,
    save_head,
)


def _model(seed=0):
    torch.manual_seed(seed)
    m = DeepSZResNet(width=4, blocks=(1, 1, 1), fc=8)
    # non-trivial batch-norm statistics and affine parameters, as after training
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def test_folded_batchnorm_gives_the_same_logits_and_leaves_the_model_alone():
    m = _model()
    x = torch.randn(16, 3, 32, 32)
    folded = fold_batchnorm(m)
    with torch.inference_mode():
        ref, got = m(x), folded(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert not any(isinstance(k, torch.nn.BatchNorm2d) for k in folded.modules())
    assert sum(isinstance(k, torch.nn.BatchNorm2d) for k in m.modules()) == 2 + 3 * 3 + 3


def test_features_come_out_of_the_scoring_pass():
    m = _model()
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        logits, feats = forward_with_features(m, x)
        ref = m(x)
    torch.testing.assert_close(logits, ref)
    # stage 2: 8w x 4 x 4, stage 3: 16w x 2 x 2 (w = 4)
    assert feats.shape == (5, 32 * 16 + 64 * 4) == (5, n_features(m))


@pytest.mark.parametrize("k", range(8))
def test_dihedral_moves_the_offset_with_the_image(k):
    size, pix = 32, 0.25
    img = np.zeros((1, 3, size, size), np.float32)
    col, row = 20, 13  # offsets from the centre (15.5, 15.5): +4.5, -2.5 pixels
    img[0, :, row, col] = 1.0
    dx, dy = np.array([4.5 * pix]), np.array([-2.5 * pix])
    out, tx, ty = dihedral(img, dx, dy, *DIHEDRAL[k])
    r, c = np.unravel_index(np.argmax(out[0, 0]), out[0, 0].shape)
    assert (c - 15.5) * pix == pytest.approx(tx[0])
    assert (r - 15.5) * pix == pytest.approx(ty[0])


def test_fit_head_learns_offsets_and_folds_the_standardisation():
    rng = np.random.default_rng(0)
    n, k = 3000, 40
    y = rng.uniform(-3, 3, (n, 2)).astype(np.float32)
    mix = rng.normal(size=(2, k))
    x = (y @ mix * 50 + 200 + rng.normal(0, 5.0, (n, k))).astype(np.float32)
    head, metrics, mean, scale = fit_head(x[:2500], y[:2500], x[2500:], y[2500:], hidden=32,
                                          epochs=15, seed=0)  # fmt: skip
    with torch.inference_mode():
        pred = head(torch.from_numpy(x[2500:])).numpy()
    err = position_errors(pred, y[2500:, 0], y[2500:, 1])
    assert err["median"] == pytest.approx(metrics["median"], rel=1e-4)
    assert err["median"] < 0.25  # arcmin, from raw (unstandardised) features
    assert position_errors(np.zeros_like(pred), y[2500:, 0], y[2500:, 1])["median"] > 1.5
    assert mean.shape == scale.shape == (k,)


def test_head_file_round_trip_and_checks(tmp_path):
    head = PositionHead(12, 5)
    path = tmp_path / "position.safetensors"
    save_head(head, path, {"unit": "arcmin"})
    back, meta = load_head(path, 12)
    x = torch.randn(3, 12)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), head(x))
    assert meta == {"unit": "arcmin"}
    with pytest.raises(InputError, match="takes 12 features, the classifier gives 13") as err:
        load_head(path, 13)
    assert "\n" not in str(err.value)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_head(tmp_path / "bad.safetensors", 12)


SETTINGS = LocaliseSettings(
    p_seed=0.05, suppress_pix=0, reach_pix=24, step_pix=4, plateau=0.5, merge_pix=12,
    iterations=2,
)  # fmt: skip


def _sky_of(clusters, box=12.0, err=0.0):
    """A stand-in for the network: probability 0.9 when a cluster is in the central box, and
    the offset of the nearest cluster, as seen only within ±box (clipped), plus a bias."""

    def score(x, y):
        cx = np.array([c[0] for c in clusters])
        cy = np.array([c[1] for c in clusters])
        dx = cx[None, :] - x[:, None]
        dy = cy[None, :] - y[:, None]
        j = np.argmin(np.hypot(dx, dy), axis=1)
        dx, dy = dx[np.arange(x.size), j], dy[np.arange(x.size), j]
        inside = (np.abs(dx) < box) & (np.abs(dy) < box)
        p = np.where(inside, 0.9, 0.02)
        sh = np.column_stack([np.clip(dx, -box, box) + err, np.clip(dy, -box, box) - err])
        return p, sh

    def centred(x, y):
        cx, cy = np.floor(x + 0.5), np.floor(y + 0.5)
        p, sh = score(cx, cy)
        return p, sh, cx, cy

    return score, centred


def test_regression_converges_and_merges_seeds_of_one_cluster():
    truth = (103.3, 57.6)
    score, centred = _sky_of([truth])
    gx = np.array([95.5, 111.5, 95.5, 400.0])
    gy = np.array([63.5, 63.5, 39.5, 400.0])
    p, sh = score(gx, gy)
    assert (p >= 0.5).sum() == 2  # two seeds see the cluster, two do not
    x, y = localise_regression(gx, gy, p, sh, centred, SETTINGS)
    assert x.size == 1
    assert x[0] == pytest.approx(truth[0], abs=1e-9) and y[0] == pytest.approx(truth[1], abs=1e-9)


def test_a_cluster_outside_the_seed_box_is_pulled_in_by_iterating():
    truth = (130.0, 40.0)  # 18 px (4.5') from the seed: beyond the head's ±12 px view
    score, centred = _sky_of([truth])
    gx, gy = np.array([112.0]), np.array([40.0])
    sh = np.array([[12.0, 0.0]])  # what the head sees from the seed: clipped at the box edge
    one = LocaliseSettings(**{**SETTINGS.__dict__, "iterations": 0})
    x0, _ = localise_regression(gx, gy, np.array([0.5]), sh, centred, one)
    assert x0[0] == pytest.approx(124.0)
    x, y = localise_regression(gx, gy, np.array([0.5]), sh, centred, SETTINGS)
    assert x[0] == pytest.approx(truth[0]) and y[0] == pytest.approx(truth[1])


def test_two_clusters_stay_apart_and_weak_or_nan_seeds_are_dropped():
    a, b = (50.0, 50.0), (150.0, 60.0)
    score, centred = _sky_of([a, b])
    gx = np.array([47.5, 143.5, 300.0, 60.0])
    gy = np.array([47.5, 63.5, 300.0, 60.0])
    p, sh = score(gx, gy)
    p[3] = np.nan
    x, y = localise_regression(gx, gy, p, sh, centred, SETTINGS)
    assert sorted(np.round(x).tolist()) == [50, 150]
