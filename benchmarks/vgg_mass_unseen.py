"""A trained ``vgg_mass`` network on mass-cutout shards it never saw (e.g. a held-out setting).

Usage::

    python benchmarks/vgg_mass_unseen.py --weights DIR --channels y --data SHARDS [--data ...]
        [--threads 2] [--json OUT]

Reads the network ``DIR/vgg_mass_<channels>.{json,weights.h5}`` (as the estimator does), the
cutouts of ``--data`` (``clusterfw simulate mass-cutouts`` folders, e.g. ``--setting
battaglia_hiradio``, whose Battaglia et al. 2012 pressure profile no shipped network was trained
on), predicts every cutout with the stored σ scale and median map, runs the Y–M inversion on the
same cutouts, and prints issue 15's acceptance numbers on the clusters with M500c 1e14–1e15 and
z 0.1–1 (:func:`clusterfw.plugins.estimators.vgg_mass.train.acceptance`): the median and std of
ln(M_est/M_true) overall and per bin, the floor the shards' Y–M scatter sets, 68 % coverage, and
the Y–M inversion's std on the same clusters. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--channels", default="y")
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    from clusterfw.plugins.estimators.vgg_mass import data as data_mod
    from clusterfw.plugins.estimators.vgg_mass.plugin import VggMassEstimator
    from clusterfw.plugins.estimators.vgg_mass.train import (
        _baseline,
        acceptance,
        apply_mu_calibration,
        sigma_scales,
    )

    chans = data_mod.parse_channels(a.channels)
    model, cfg = VggMassEstimator({"weights": str(a.weights), "threads": a.threads}).network(chans)
    d = data_mod.load_many(a.data, chans, rebin=int(cfg["rebin"]), keep_y=True)
    if d.x.shape[1] != int(cfg["npix"]):
        raise SystemExit(f"{a.data[0]}: cutouts of {d.x.shape[1]} pixels, network {cfg['npix']}")
    pred = np.asarray(
        model.predict(
            {"image": d.x, "z": d.z[:, None].astype(np.float32)}, batch_size=256, verbose=0
        ),
        dtype=np.float64,
    )
    mu = apply_mu_calibration(pred[:, 0], cfg.get("mu_calibration"))
    sigma = pred[:, 1] * sigma_scales(mu, cfg)
    ln_cnn = mu - data_mod.target(d.m500c)
    idx = np.arange(d.z.size)
    m_b, _ = _baseline(d, idx)
    ln_b = np.log(m_b / d.m500c)
    floor = data_mod.ym_floor_residuals(d.m500c, d.z, d.labels["y500"])
    acc = acceptance(ln_cnn, sigma, d.m500c, d.z, ln_b, floor)
    out = {
        "weights": str(a.weights),
        "channels": list(chans),
        "data": [str(p) for p in a.data],
        "setting": str(d.manifest.get("config", {}).get("setting", "")),
        "ymap_preset": d.ymap_preset,
        "acceptance": acc,
    }
    c, sc = acc["cnn"], acc.get("same_clusters", {})
    print(
        f"{','.join(chans)} on {out['setting']} ({out['ymap_preset']}): n {c['n']}, "
        f"median {c['median']:+.3f} ± {c['median_se']:.3f}, std {c['std']:.3f}, "
        f"floor {acc.get('floor_std', float('nan')):.3f} "
        f"(ratio {acc.get('cnn_over_floor', float('nan')):.2f}), coverage "
        f"{c.get('coverage68', float('nan')):.3f}, Y-M std {sc.get('ysz_std', float('nan')):.3f} "
        f"(reduction {sc.get('reduction', float('nan')):.0%}), largest |bin median| "
        f"{acc['max_abs_bin_median']:.3f}, bins beyond 0.02+2se "
        f"{len(acc['bins_beyond_0.02_2se'])}/{acc['bins_counted']}"
    )
    for b in acc["bins"]:
        if b.get("n", 0) >= 30:
            zpart = f" z {b['zlo']}-{b['zhi']}" if "zlo" in b else ""
            print(
                f"  {b['by']} {b['lo']:.2f}-{b['hi']:.2f}{zpart}: median {b['median']:+.3f} ± "
                f"{b['median_se']:.3f} std {b['std']:.3f} (n {b['n']})"
            )
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
