"""Throughput of the ``vgg_mass`` estimator on the CPU: candidates per second.

Builds a simulated ACT-like Compton-y layer (``clusterfw.sim.ymap``, 0.5' pixels, with
``--n`` halos of 1e14–1e15 Msun at 0.1 < z < 1 on a grid), writes it as FITS, reads it as a
:class:`~clusterfw.core.layers.model.LayerSky`, and times, with ``--threads`` TensorFlow threads:

- the cutouts alone (:func:`clusterfw.plugins.estimators.vgg_mass.cutouts.candidate_cutouts`);
- the network alone (``model.predict`` on the normalised cutouts);
- the Y–M inversion alone;
- the whole ``VggMassEstimator.estimate`` (redshift lookup, cutouts, network, baseline, columns),
  after one warm-up call that builds the network and loads its weights.

With ``--ilc`` the sky is three mm bands (90/150/220 GHz, the same halos' tSZ at the y map's
1.6' beam, white noise of 20/15/50 µK·arcmin) and no y layer: the y cutouts come from the
estimator's constrained ILC (:mod:`clusterfw.plugins.estimators.vgg_mass.ilc`).

Usage::

    python benchmarks/vgg_mass_throughput.py [--n 200] [--threads 2] [--weights DIR] [--ilc]
        [--json OUT]

Without ``--weights`` an untrained network of the training shards' grid (120 pixels of 10",
``--rebin`` blocks) is saved to a temporary folder: the speed does not depend on the weights.
Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _network_dir(out: Path, rebin: int) -> Path:
    from clusterfw.plugins.estimators.vgg_mass import data as d
    from clusterfw.plugins.estimators.vgg_mass.model import build_model

    npix = 120 // rebin
    build_model(npix, ("y",)).save_weights(str(out / "vgg_mass_y.weights.h5"))
    cfg = {
        "config_version": 1, "name": "vgg_mass_y", "channels": ["y"], "npix": npix,
        "rebin": rebin, "pixel_arcmin": rebin / 6.0, "cutout_arcmin": 20.0,
        "z_range": [0.1, 1.0], "ymap_preset": "act",
        "normalisation": {"y_scale": d.Y_SCALE, "t_ref_s": d.T_REF,
                          "mstar_scale": d.MSTAR_SCALE, "m_pivot": d.M_PIVOT},
    }  # fmt: skip
    (out / "vgg_mass_y.json").write_text(json.dumps(cfg))
    return out


def _sky(out: Path, n: int, seed: int, ilc: bool = False):
    import pyarrow as pa

    from clusterfw.core.layers.sorting import sort_into_layers
    from clusterfw.core.schema import candidate_table, field_metadata
    from clusterfw.sim import ymap
    from clusterfw.sim.footprint import Footprint
    from clusterfw.sim.shards.common import halo_table

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    step = 25.0 / 60  # 25' apart
    size = side * step + 0.5
    ra0, dec0 = 40.0, -20.0
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    dx = ((gx.ravel() - (side - 1) / 2) * step)[:n]
    dy = ((gy.ravel() - (side - 1) / 2) * step)[:n]
    ra = ra0 + dx / np.cos(np.radians(dec0 + dy))
    dec = dec0 + dy
    m = 10 ** rng.uniform(14, 15, n)
    z = rng.uniform(0.1, 1.0, n)
    h = halo_table(m, z, ra, dec, rng)
    field = ymap.render_ymap(h, Footprint(ra0, dec0, size, size, "TAN"), "act", rng)
    if ilc:
        from clusterfw.core.fits_io import write_flat_sky_fits
        from clusterfw.core.sky import Band, Sky
        from clusterfw.plugins.estimators.vgg_mass.ilc import tsz_uk_per_y

        bands = (Band("f090", 90.0, 1.6, 20.0), Band("f150", 150.0, 1.6, 15.0),
                 Band("f220", 220.0, 1.6, 50.0))  # fmt: skip
        pix = field.preset.pixel_arcmin
        maps = np.stack(
            [
                field.y_signal * float(tsz_uk_per_y(b.freq_ghz))
                + rng.standard_normal(field.y.shape) * b.noise_uk_arcmin / pix
                for b in bands
            ]
        ).astype(np.float32)
        paths = write_flat_sky_fits(Sky(maps, field.wcs, bands), out)
        sky = sort_into_layers(paths, check_overlap=False)
    else:
        path = ymap.write_ymap(field, out)["ymap"]
        sky = sort_into_layers([path], check_overlap=False)
    t = candidate_table(finder="truth", score_kind="snr", ra=ra, dec=dec, score=np.ones(n))
    t = t.append_column(pa.field("z", pa.float64(), metadata=field_metadata("", "z")), pa.array(z))
    return sky, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="candidates")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rebin", type=int, default=1, help="network grid (untrained network only)")
    ap.add_argument("--weights", default=None, help="folder of trained vgg_mass weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ilc", action="store_true", help="mm bands only: y from the ILC")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from clusterfw.plugins.estimators.vgg_mass import data as d
    from clusterfw.plugins.estimators.vgg_mass.baseline import ysz_mass
    from clusterfw.plugins.estimators.vgg_mass.cutouts import candidate_cutouts
    from clusterfw.plugins.estimators.vgg_mass.plugin import VggMassEstimator

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        wdir = Path(a.weights) if a.weights else _network_dir(tmp_path, a.rebin)
        sky, table = _sky(tmp_path, a.n, a.seed, a.ilc)
        est = VggMassEstimator({"weights": str(wdir), "threads": a.threads})
        est.estimate(table.slice(0, 2), sky)  # warm-up: network built, weights loaded
        model, cfg = est.network(("y",))
        rebin, npix = cfg["rebin"], cfg["npix"]
        raw = cfg["pixel_arcmin"] / rebin
        ra = table.column("ra").to_numpy()
        dec = table.column("dec").to_numpy()
        z = table.column("z").to_numpy()
        t0 = time.perf_counter()
        cuts = candidate_cutouts(sky, "y", ra, dec, npix * rebin, raw)
        t_cut = time.perf_counter() - t0
        x = d.stack_channels({"y": np.nan_to_num(cuts.pixels)}, ("y",), rebin)
        t0 = time.perf_counter()
        model.predict({"image": x, "z": z[:, None].astype(np.float32)}, batch_size=256, verbose=0)
        t_net = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(a.n):
            ysz_mass(cuts.pixels[i], float(z[i]), raw, 1.6)
        t_ysz = time.perf_counter() - t0
        t0 = time.perf_counter()
        est.estimate(table, sky)
        t_all = time.perf_counter() - t0
    rows = {
        "cutouts": t_cut, "network": t_net, "ym_inversion": t_ysz, "estimate (all)": t_all,
    }  # fmt: skip
    src = "y from mm bands (ILC)" if a.ilc else "y layer"
    print(
        f"vgg_mass on {a.n} candidates, {a.threads} TensorFlow threads, {npix}² network input, "
        f"{src}"
    )
    for k, t in rows.items():
        print(f"  {k:16s} {t:8.2f} s  {a.n / t:8.1f} candidates/s")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"n": a.n, "threads": a.threads, "npix": npix, "ilc": a.ilc, "seconds": rows},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
