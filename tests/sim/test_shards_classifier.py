"""X-ray candidates: the detection's significance, candidate labels, balance, cutouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clusterfw.sim.shards.classifier import XrayCandidatesConfig, _field, candidate_samples, detect

CFG = XrayCandidatesConfig(field_deg=0.3, size_arcmin=3.0, optical_preset="sdss")


def test_significance_is_unit_normal_on_blank_sky_and_finds_a_point_source():
    rng = np.random.default_rng(3)
    bkg = np.full((400, 400), 0.5)
    counts = rng.poisson(bkg).astype(float)
    yy, xx, snr = detect(counts, bkg, 3.0)
    # peaks of pure noise: no 6-sigma ones, and a few above 3
    assert snr.max() < 6.0 and (snr > 3).sum() >= 1
    from scipy import ndimage

    sig = ndimage.gaussian_filter(counts - bkg, 3.0)
    var = ndimage.gaussian_filter(bkg, 3.0 / math.sqrt(2)) / (4 * math.pi * 9)
    full = (sig / np.sqrt(var))[20:-20, 20:-20]
    assert full.std() == pytest.approx(1.0, rel=0.05) and abs(full.mean()) < 0.05
    counts[200, 120] += 60
    yy, xx, snr = detect(counts, bkg, 3.0)
    top = np.argmax(snr)
    assert (yy[top], xx[top]) == (200, 120)
    # a point source of C counts, Gaussian filter σ over a background b: S/N = C / (√π σ √b)
    assert snr[top] == pytest.approx(60 / (math.sqrt(math.pi) * 3 * math.sqrt(0.5)), rel=0.15)


def test_candidates_are_labelled_by_their_halo_or_agn():
    fld = _field(CFG, 2, 0)
    kind = fld["kind"]
    assert (fld["snr"] >= CFG.snr_min).all() and kind.size > 5
    h = fld["halos"]
    m = h["m500c"].to_numpy()
    th = h["theta500_arcmin"].to_numpy()
    for j in range(kind.size):
        b = fld["best"][j]
        if kind[j] >= 2:  # matched to a halo within max(1', θ500/2); cluster iff above the cut
            assert fld["dist"][j] <= max(1.0, th[b] / 2) + 1e-9
            assert (kind[j] == 3) == (m[b] >= CFG.label_mass)
        else:
            assert b == -1
            assert (kind[j] == 1) == (fld["agn_flux"][j] >= CFG.agn_flux_min)
    assert (kind == 3).any() and (kind == 1).any()


def test_balanced_samples_cutouts_and_rerun():
    out = list(candidate_samples(CFG, 5, 8))
    labels = np.array([int(s["label"]) for s in out])
    n_pos, n_neg = int(labels.sum()), int((labels == 0).sum())
    assert n_pos + n_neg == 8 and n_neg <= n_pos + 1
    for s in out:
        assert (int(s["label"]) == 1) == (int(s["kind"]) == 3)
        if int(s["label"]):
            assert s["halo_m500c"] >= 1e14
        assert s["xray_counts"].shape == (45, 45) and s["xray_counts"].dtype == np.uint16
        n_opt = round(3.0 * 60 / 0.396) // 4
        assert s["optical"].shape == (3, n_opt, n_opt) and s["optical"].dtype == np.float16
        # the candidate sits at the centre of its X-ray cutout: the brightest smoothed spot
        assert s["xray_counts"][18:27, 18:27].sum() > s["xray_counts"][:9, :9].sum()
    again = list(candidate_samples(CFG, 5, 3))
    for a, b in zip(out[:3], again, strict=True):
        for name in a:
            assert np.array_equal(a[name], b[name], equal_nan=True), name
