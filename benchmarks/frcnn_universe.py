"""``frcnn`` on simulated universes at the real sky's cluster density, in its training range.

Reads the ``frcnn`` candidates from the checkpoints of one ``clusterfw run ... --finder frcnn
[...] --checkpoint DIR`` per universe (validation and test), and scores them against the
universes' truth: true clusters M500c ≥ ``--mass-min`` at ``--z-min`` ≤ z ≤ ``--z-max`` (the
training range); a detection whose reach holds a ≥ ``--mass-min`` halo outside that redshift
range is counted neither way; one true positive per halo (the most probable detection first);
the most massive halo within reach is the match. Reach: 1' or 100 proper kpc at the halo's
redshift (Deep-CEE's rule). The probability threshold is the F1-best one on the validation
universe, for each rule. Median centre offset of the matches in kpc. Usage::

    python benchmarks/frcnn_universe.py --val U_VAL CK_VAL --test U_TEST CK_TEST [--json OUT]

Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from combo_common import open_checkpoint  # noqa: E402


def load(universe: Path, checkpoint: Path) -> tuple:
    """The ``frcnn`` candidates of every finished tile and the universe's halo table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ck, _, _ = open_checkpoint(checkpoint)
    t = pa.concat_tables(
        [ck.load(i).tables["frcnn"] for i in ck.finished()], promote_options="default"
    )
    return t, pq.read_table(universe / "truth_halos.parquet").to_pandas()


def score(t, halos, thr: float, rule: str, a: argparse.Namespace) -> dict:
    """Counts, purity, completeness, F1 and median offset at probability ``thr``."""
    import astropy.units as u
    from astropy.cosmology import Planck18

    ra, dec, p = t["ra"].to_numpy(), t["dec"].to_numpy(), t["score"].to_numpy()
    big = halos[halos.m500c >= a.mass_min]
    hz = big.z.to_numpy()
    in_range = (hz >= a.z_min) & (hz <= a.z_max)
    hra, hdec, mass = big.ra.to_numpy(), big.dec.to_numpy(), big.m500c.to_numpy()
    kpc_per_arcmin = Planck18.kpc_proper_per_arcmin(hz).to(u.kpc / u.arcmin).value
    reach = np.full(hz.size, 1.0) if rule == "1'" else 100.0 / kpc_per_arcmin
    order = np.flatnonzero(p >= thr)
    order = order[np.argsort(-p[order])]
    taken: set[int] = set()
    tp = fp = 0
    offsets = []
    for i in order:
        d = np.hypot((hra - ra[i]) * np.cos(np.radians(dec[i])), hdec - dec[i]) * 60.0
        near = np.flatnonzero(d <= reach)
        if near.size == 0:
            fp += 1
            continue
        j = int(near[np.argmax(mass[near])])
        if not in_range[j]:
            continue
        if j in taken:
            fp += 1
            continue
        taken.add(j)
        tp += 1
        offsets.append(d[j] * kpc_per_arcmin[j])
    n = int(in_range.sum())
    fn = n - tp
    return {
        "threshold": float(thr),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_true": n,
        "purity": tp / max(tp + fp, 1),
        "completeness": tp / max(n, 1),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "median_offset_kpc": float(np.median(offsets)) if offsets else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (module docstring); print and return the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", nargs=2, type=Path, required=True, metavar=("UNIVERSE", "CKPT"))
    ap.add_argument("--test", nargs=2, type=Path, required=True, metavar=("UNIVERSE", "CKPT"))
    ap.add_argument("--mass-min", type=float, default=1e14)
    ap.add_argument("--z-min", type=float, default=0.05)
    ap.add_argument("--z-max", type=float, default=0.7)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    tv, hv = load(*a.val)
    tt, ht = load(*a.test)
    out: dict = {}
    for rule in ("1'", "100kpc"):
        grid = np.unique(tv["score"].to_numpy())
        best = max(grid, key=lambda s: score(tv, hv, s, rule, a)["f1"])
        out[rule] = {
            "validation": score(tv, hv, best, rule, a),
            "test": score(tt, ht, best, rule, a),
        }
    text = json.dumps(out, indent=1)
    if a.json:
        a.json.write_text(text)
    print(text)
    return out


if __name__ == "__main__":
    main()
