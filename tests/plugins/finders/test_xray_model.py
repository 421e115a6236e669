"""Kosiba's network, weights I/O, network-grid cutouts and the training loop of ``xray``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clusterfw.core.errors import InputError
from clusterfw.plugins.finders.xray import data as xdata
from clusterfw.plugins.finders.xray.cutouts import to_net_grid
from clusterfw.plugins.finders.xray.model import KosibaCNN, load_weights, save_weights


def test_table3_architecture():
    m = KosibaCNN(5)
    convs = [c for c in m.features if isinstance(c, torch.nn.Conv2d)]
    pools = [p for p in m.features if isinstance(p, torch.nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [64, 32, 32, 32, 32, 32]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert len(pools) == 6 and all(p.ceil_mode for p in pools)
    dense = [d for d in m.head if isinstance(d, torch.nn.Linear)]
    assert [d.out_features for d in dense] == [256, 2]
    assert [d.p for d in m.head if isinstance(d, torch.nn.Dropout)] == [0.65]
    # 32 -> 16 -> 8 -> 4 -> 2 -> 1 -> 1: flatten of 32 features
    assert dense[0].in_features == 32
    assert m(torch.zeros(3, 5, 32, 32)).shape == (3, 2)


def test_weights_round_trip_and_refusals(tmp_path: Path):
    m = KosibaCNN(2).eval()
    path = tmp_path / "w.safetensors"
    save_weights(m, str(path), {"mode": "xray", "optical_scales": None})
    back, meta = load_weights(str(path))
    x = torch.randn(4, 2, 32, 32)
    assert torch.equal(m(x), back(x))
    assert meta["mode"] == "xray"
    wrong = tmp_path / "wrong.safetensors"
    save_weights(m, str(wrong), {"mode": "both", "optical_scales": [1.0, 1.0, 1.0]})
    with pytest.raises(InputError, match="metadata mode 'both' does not match the model"):
        load_weights(str(wrong))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_weights(str(junk))


def _wcs(pix: float, n: int):
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [30.0, -10.0]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-pix / 3600.0, pix / 3600.0]
    return w


def test_net_grid_is_exact_block_sums_of_4_arcsec_counts():
    rng = np.random.default_rng(0)
    img = rng.poisson(2.0, (1, 100, 100)).astype(float)
    w = _wcs(4.0, 100)
    ra, dec = w.pixel_to_world_values(50.3, 49.8)  # snapped to the pixel edge at 49.5/50.5
    cut, cov = to_net_grid(img, w, float(ra), float(dec))
    assert cov == 1.0
    x0 = int(np.floor(50.3)) + 0.5 - 32  # grid edge in layer pixel coordinates
    y0 = int(np.floor(49.8)) + 0.5 - 32
    ref = xdata.block_sum(
        img[0, int(y0 + 0.5) : int(y0 + 0.5) + 64, int(x0 + 0.5) : int(x0 + 0.5) + 64], 2
    )
    np.testing.assert_array_equal(cut[0], ref)


def test_net_grid_conserves_flux_from_finer_pixels_and_reports_coverage():
    w = _wcs(2.0, 200)
    img = np.ones((1, 200, 200))  # 1 per 2" pixel = 16 per 8" pixel
    ra, dec = w.pixel_to_world_values(99.5, 99.5)
    cut, cov = to_net_grid(img, w, float(ra), float(dec))
    np.testing.assert_allclose(cut, 16.0)
    assert cov == 1.0
    ra, dec = w.pixel_to_world_values(0.0, 99.5)  # half the grid off the image
    cut, cov = to_net_grid(img, w, float(ra), float(dec))
    assert cov == pytest.approx(0.5, abs=0.04)


def _fake(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    lab = rng.integers(0, 2, n)
    yy, xx = np.mgrid[0:40, 0:40]
    blob = np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 20.0)
    counts = rng.poisson(0.1 + 4 * lab[:, None, None] * blob).astype(np.uint16)
    return {
        "xray_counts": counts,
        "xray_background": np.full((n, 40, 40), 0.1, np.float32),
        "xray_exposure": np.full((n, 40, 40), 2000.0, np.float32),
        "optical": rng.normal(0, 1, (n, 3, 40, 40)).astype(np.float32),
        "label": lab.astype(np.int8),
        "kind": (3 * lab).astype(np.int8),
        "snr": np.ones(n, np.float32),
        "ra": np.zeros(n),
        "dec": np.zeros(n),
        "field": np.arange(n, dtype=np.int32) // 10,
        "halo_m500c": np.where(lab == 1, 2e14, np.nan),
        "halo_z": np.zeros(n),
        "agn_flux": np.zeros(n),
    }


def test_augmentation_thins_counts_and_keeps_the_crop_shape():
    from clusterfw.plugins.finders.xray.train import augment_batch

    d = _fake(64, np.random.default_rng(1))
    idx = np.arange(64)
    c0, b0, o0 = augment_batch(d, idx, np.random.default_rng(0), False, np.ones(3))
    np.testing.assert_array_equal(c0, d["xray_counts"][:, 4:36, 4:36])
    c1, b1, o1 = augment_batch(d, idx, np.random.default_rng(0), True, np.ones(3))
    assert c1.shape == (64, 32, 32) and o1.shape == (64, 3, 32, 32)
    # thinning never adds counts; some cutouts were thinned (background scaled with them)
    assert c1.sum() < d["xray_counts"][:, :, :].sum()
    assert np.any(b1.mean(axis=(1, 2)) < 0.099) and np.all(b1 <= 0.1 + 1e-6)


@pytest.mark.slow
def test_training_writes_calibrated_weights(tmp_path: Path):
    from clusterfw.plugins.finders.xray.calibrate import Platt
    from clusterfw.plugins.finders.xray.train import TrainConfig, train

    rng = np.random.default_rng(2)
    for seed, n in ((1, 96), (2, 48), (3, 48)):
        np.savez(tmp_path / f"cand_{seed}_0000-0000.npz", **_fake(n, rng))
    cfg = TrainConfig(
        out=tmp_path / "out", data_dir=tmp_path, train_fields="0-1", val_fields="0-1",
        test_fields="0-1", chunk_fields=1, epochs=3, modes=("xray",),
    )  # fmt: skip
    s = train(cfg, progress=False)
    out = tmp_path / "out"
    assert (out / "xray_xray.safetensors").is_file()
    platt = Platt.load(out / "platt_xray.json")  # refuses a non-positive slope
    assert platt.a > 0
    m = s["modes"]["xray"]
    assert m["test_balanced"]["auc"] > 0.9  # a bright blob is easy
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]
