"""Catalogue-level numbers of new ``xray`` weights without re-running the detection.

The ``xray`` finder's detection (``detect.py``) does not depend on the weights, and on the
shared 2-core machine it can take long (a detection-only run on the 1° validation universe
did not finish in 15 min at load average ≈ 20; a whole ``clusterfw run`` took ≈ 3 min at
≈ 11). This script takes ``xray`` catalogues already written by ``clusterfw run ...
--finder xray`` (X-ray layer only, so every candidate was scored by the X-ray-only network) and
re-classifies their candidates with other weights by the finder's own path
(``XrayFinder._classify``: counts and ``BACKGROUND`` planes of the universe's X-ray file,
pixels without exposure blanked, ``to_net_grid`` cutouts centred on each candidate, at least
90 % covered, the X-ray network's Platt-calibrated probability). Then, against truth
(M500c ≥ ``--mass-min``, z ≥ ``--z-min``, 1' matching): purity, completeness and F1 of the test
catalogue at the validation's F1-best probability threshold, the test's own F1-best value
(optimistic), and the probability + counts/rate/extent cut of ``xray_combination.mass_cut``.

Usage::

    python benchmarks/xray_rescore.py --val-universe U_VAL --val-catalogue VAL.parquet \
        --test-universe U_TEST --test-catalogue TEST.parquet --work DIR [--weights DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rescore(universe: Path, catalogue: Path, weights: Path, out: Path) -> Path:
    """``catalogue`` with ``score`` and ``xray_p_xray`` from ``weights``, written to ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.io import fits
    from astropy.wcs import WCS

    from clusterfw.plugins.finders.xray.cutouts import to_net_grid
    from clusterfw.plugins.finders.xray.finder import MIN_COVERED, _Net

    (path,) = sorted((universe / "xray").glob("*.fits"))
    with fits.open(path) as h:
        counts = h[0].data.astype(np.float64)
        wcs = WCS(h[0].header).celestial
        expo = np.nan_to_num(h["EXPOSURE"].data.astype(np.float64), nan=0.0)
        bkg = h["BACKGROUND"].data.astype(np.float64)
    planes = np.where(expo > 0, np.stack([counts, bkg]), np.nan)
    t = pq.read_table(catalogue)
    ra, dec = t["ra"].to_numpy(), t["dec"].to_numpy()
    n = ra.size
    cc = np.zeros((n, 32, 32))
    bb = np.zeros((n, 32, 32))
    ok = np.zeros(n, bool)
    for j in range(n):
        cut, cov = to_net_grid(planes, wcs, float(ra[j]), float(dec[j]))
        if cov >= MIN_COVERED:
            ok[j] = True
            cc[j], bb[j] = np.nan_to_num(cut[0]), np.nan_to_num(cut[1])
    p = np.full(n, np.nan)
    p[ok] = _Net(weights, "xray").probability(cc[ok], bb[ok], None)
    for name in ("score", "xray_p_xray"):
        i = t.schema.get_field_index(name)
        t = t.set_column(i, t.schema.field(i), pa.array(p.astype(np.float32)))
    pq.write_table(t, out)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Rescore both catalogues and print the JSON results."""
    import pyarrow.parquet as pq
    from xray_combination import counts_of, mass_cut, qualifying

    from clusterfw.plugins.finders.xray.finder import shipped_weights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val-universe", type=Path, required=True)
    ap.add_argument("--val-catalogue", type=Path, required=True)
    ap.add_argument("--test-universe", type=Path, required=True)
    ap.add_argument("--test-catalogue", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--mass-min", type=float, default=1e14)
    ap.add_argument("--z-min", type=float, default=0.05)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    weights = a.weights or shipped_weights()
    cats = {
        "val": rescore(a.val_universe, a.val_catalogue, weights, a.work / "val_xray.parquet"),
        "test": rescore(a.test_universe, a.test_catalogue, weights, a.work / "test_xray.parquet"),
    }
    truth = {"val": a.val_universe / "truth_halos.parquet"}
    truth["test"] = a.test_universe / "truth_halos.parquet"
    q = {s: qualifying(cats[s], truth[s], a) for s in cats}
    p = {s: np.nan_to_num(pq.read_table(cats[s])["score"].to_numpy(), nan=-1.0) for s in cats}

    def best(s: str) -> tuple[float, dict]:
        grid = np.unique(p[s][p[s] >= 0])
        f1 = [counts_of(*q[s], p[s] >= g)["f1"] for g in grid]
        g = float(grid[int(np.argmax(f1))])
        return g, counts_of(*q[s], p[s] >= g)

    thr, val_best = best("val")
    res = {
        "weights": str(weights),
        "cut": {"m500c_min": a.mass_min, "z_min": a.z_min, "radius_arcmin": 1.0},
        "candidates": {s: int(p[s].size) for s in cats},
        "val_f1_best": {"threshold": thr, **val_best},
        "test_at_val_threshold": {"threshold": thr, **counts_of(*q["test"], p["test"] >= thr)},
        "test_f1_best": dict(zip(("threshold", "counts"), best("test"), strict=True)),
        "test_every_candidate": counts_of(*q["test"], np.ones(p["test"].size, bool)),
        "mass_cut": mass_cut(cats["val"], cats["test"], truth, a),
    }
    text = json.dumps(res, indent=1, default=float)
    if a.json:
        a.json.write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
