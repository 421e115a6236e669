"""SZ + optical: ``mf`` on the mm maps, ``frcnn`` on g, r, i, and their combinations.

Two simulated universes (``clusterfw simulate universe --layers mm,optical``, the same halos
seen by the ACT-like mm maps and DES-like images): a validation one and a test one, from
different seeds. Everything goes through the command line:

1. validation: ``clusterfw run`` with ``--finder mf``, ``--finder frcnn`` and ``--finder mf
   --finder frcnn --combine rankprod``; ``clusterfw calibrate`` on the three (thresholds, the
   reference score distributions, the rankprod threshold and the ``and`` threshold pair);
2. test: the two single finders, and ``--combine rankprod`` / ``--combine and`` with
   ``--calibration``;
3. ``clusterfw evaluate`` of every test catalogue at its validation threshold (single finders:
   the calibration's threshold; combiners: their ``is_cluster`` decision) with the DeepSZ Table-1
   cutout confusion matrix (``--cutout``);
4. a stacked logistic model on the validation rankprod catalogue's per-candidate features
   (``mf`` SNR, ``frcnn`` logit of the forced/detected probability, their product;
   scikit-learn, class weights none), its F1-best validation threshold applied to the test
   candidates — and, as an upper bound, the same model fitted and thresholded on the test
   candidates themselves.

True clusters: M500c ≥ ``--mass-min`` (1e14 Msun, the optical training cut) at z ≥ ``--z-min``
(0.05), matched within 1' (DeepSZ's rule, the most massive halo within the radius). Usage::

    python benchmarks/sz_optical.py --val U_VAL --test U_TEST --work DIR [--json OUT]

(simulate the universes first, e.g. ``clusterfw simulate universe --out U --size 1.5 --seed N
--layers mm,optical --optical-preset des-coarse``). Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FINDERS = ("mf", "frcnn")


def clusterfw(*args: object) -> None:
    """Run ``clusterfw ARGS`` (raises on failure, prints the error)."""
    cmd = [sys.executable, "-m", "clusterfw", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")


def inputs(universe: Path) -> list[Path]:
    """The mm and optical files of a universe."""
    return sorted((universe / "mm").glob("*.fits")) + sorted((universe / "optical").glob("*.fits"))


def cut_args(a: argparse.Namespace) -> list[str]:
    return ["--mass-min", str(a.mass_min), "--mass-col", "m500c", "--z-min", str(a.z_min)]


def evaluate(cat: Path, truth: Path, a: argparse.Namespace, score: str, thr: float | None) -> dict:
    """``clusterfw evaluate`` JSON of one score column at ``thr`` (None: F1-best)."""
    out = cat.with_suffix(f".{score}.eval.json")
    args = ["evaluate", cat, "--truth", truth, *cut_args(a), "--score", score,
            "--cutout", str(a.cutout), "--json", out]  # fmt: skip
    if thr is not None:
        args += ["--threshold", repr(float(thr))]
    clusterfw(*args)
    return json.loads(out.read_text())["results"][score]


def counts(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    c = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "purity": p, "completeness": c,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0}  # fmt: skip


def decision_counts(cat: Path, truth: Path, a: argparse.Namespace, decide: np.ndarray) -> dict:
    """Purity, completeness, F1 of the candidates where ``decide`` (DeepSZ matching)."""
    import pyarrow.parquet as pq

    from clusterfw.core.evaluation import Truth, match_to_truth
    from clusterfw.core.evaluation.metrics import qualifying_halo

    t = pq.read_table(cat)
    tr = Truth.from_table(pq.read_table(truth), mass_col="m500c")
    qual = (tr.mass >= a.mass_min) & (tr.z >= a.z_min)
    ra, dec = t["ra"].to_numpy(), t["dec"].to_numpy()
    q = qualifying_halo(match_to_truth(ra, dec, tr), qual)
    sel = np.asarray(decide, bool)
    hit = np.unique(q[sel & (q >= 0)])
    tp = int(hit.size)
    fp = int(sel.sum()) - tp
    fn = int(qual.sum()) - tp
    return counts(tp, fp, fn)


def features(cat: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stacking features (mf SNR, frcnn logit, product) of a combined catalogue, and ra/dec."""
    import pyarrow.parquet as pq

    t = pq.read_table(cat)
    snr = np.nan_to_num(t["mf_score"].to_numpy(zero_copy_only=False).astype(float), nan=0.0)
    p = np.nan_to_num(t["frcnn_score"].to_numpy(zero_copy_only=False).astype(float), nan=1e-4)
    p = np.clip(p, 1e-4, 1 - 1e-4)
    lg = np.log(p / (1 - p))
    return np.column_stack([snr, lg, snr * lg]), np.column_stack(
        [t["ra"].to_numpy(), t["dec"].to_numpy()]
    )


def labels(cat: Path, truth: Path, a: argparse.Namespace) -> np.ndarray:
    """1 where a candidate's most massive halo within 1' is a true cluster (first such only)."""
    import pyarrow.parquet as pq

    from clusterfw.core.evaluation import Truth, match_to_truth
    from clusterfw.core.evaluation.metrics import qualifying_halo

    t = pq.read_table(cat)
    tr = Truth.from_table(pq.read_table(truth), mass_col="m500c")
    qual = (tr.mass >= a.mass_min) & (tr.z >= a.z_min)
    q = qualifying_halo(match_to_truth(t["ra"].to_numpy(), t["dec"].to_numpy(), tr), qual)
    return (q >= 0).astype(int)


def best_threshold(prob: np.ndarray, cat: Path, truth: Path, a: argparse.Namespace) -> float:
    """F1-best threshold of ``prob`` on ``cat``."""
    best, thr = -1.0, 1.0
    for t in np.unique(prob)[::-1][:400]:
        f = decision_counts(cat, truth, a, prob >= t)["f1"]
        if f > best:
            best, thr = f, float(t)
    return thr


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (module docstring); print and return the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--mass-min", type=float, default=1e14)
    ap.add_argument("--z-min", type=float, default=0.05)
    ap.add_argument("--cutout", type=float, default=6.0)
    ap.add_argument("--tile-size", type=float, default=40.0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times: dict[str, float] = {}

    def run(split: str, name: str, finders: tuple[str, ...], combine: str | None,
            calib: Path | None = None) -> Path:  # fmt: skip
        out = a.work / f"{split}_{name}.parquet"
        if out.exists():
            return out
        args: list[object] = ["run", *inputs(a.val if split == "val" else a.test), "-q",
                              "--tile-size", a.tile_size, "--out", out]  # fmt: skip
        for f in finders:
            args += ["--finder", f]
        if combine:
            args += ["--combine", combine]
        if calib:
            args += ["--calibration", calib]
        t = time.time()
        clusterfw(*args)
        times[f"{split}_{name}"] = round(time.time() - t, 1)
        print(f"{split} {name}: {times[f'{split}_{name}']} s", file=sys.stderr, flush=True)
        return out

    truth = {s: (a.val if s == "val" else a.test) / "truth_halos.parquet" for s in ("val", "test")}
    val = {n: run("val", n, (n,), None) for n in FINDERS}
    val["rankprod"] = run("val", "rankprod", FINDERS, "rankprod")
    calib = a.work / "calib.json"
    if not calib.exists():
        clusterfw("calibrate", *val.values(), "--truth", truth["val"], *cut_args(a),
                  "--out", calib)  # fmt: skip
    cal = json.loads(calib.read_text())
    test = {n: run("test", n, (n,), None) for n in FINDERS}
    test["rankprod"] = run("test", "rankprod", FINDERS, "rankprod", calib)
    test["and"] = run("test", "and", FINDERS, "and", calib)

    from clusterfw.core.evaluation.calibration import Calibration

    c = Calibration.coerce(calib)
    res: dict = {"cut": {"m500c_min": a.mass_min, "z_min": a.z_min, "radius_arcmin": 1.0}}
    for n in FINDERS:
        thr = c.threshold(n)
        ev = evaluate(test[n], truth["test"], a, "score", thr)
        res[n] = {"threshold": thr, "at_threshold": ev["at_threshold"],
                  "cutouts": ev.get("cutouts"), "best_f1_test": ev["best_f1"]}  # fmt: skip
    import pyarrow.parquet as pq

    for n in ("rankprod", "and"):
        t = pq.read_table(test[n])
        dec = t["is_cluster"].to_numpy(zero_copy_only=False).astype(bool)
        res[n] = {"is_cluster": decision_counts(test[n], truth["test"], a, dec)}
        # the is_cluster decision (1/0) as a score at threshold 1: its cutout table
        ev = evaluate(test[n], truth["test"], a, "is_cluster", 1.0)
        res[n]["is_cluster_evaluate"] = ev["at_threshold"]
        res[n]["cutouts"] = ev.get("cutouts")
    # stacked logistic model on the rankprod candidates
    from sklearn.linear_model import LogisticRegression

    xv, _ = features(val["rankprod"])
    yv = labels(val["rankprod"], truth["val"], a)
    xt, _ = features(test["rankprod"])
    yt = labels(test["rankprod"], truth["test"], a)
    mu, sd = xv.mean(0), xv.std(0) + 1e-9
    lr = LogisticRegression(C=1.0, max_iter=2000).fit((xv - mu) / sd, yv)
    pv = lr.predict_proba((xv - mu) / sd)[:, 1]
    thr = best_threshold(pv, val["rankprod"], truth["val"], a)
    pt = lr.predict_proba((xt - mu) / sd)[:, 1]
    val_fit = decision_counts(test["rankprod"], truth["test"], a, pt >= thr)
    res["stacked_lr_val_fit"] = {"threshold": thr, **val_fit}
    mu2, sd2 = xt.mean(0), xt.std(0) + 1e-9
    lr2 = LogisticRegression(C=1.0, max_iter=2000).fit((xt - mu2) / sd2, yt)
    pt2 = lr2.predict_proba((xt - mu2) / sd2)[:, 1]
    thr2 = best_threshold(pt2, test["rankprod"], truth["test"], a)
    res["stacked_lr_upper_bound_test_fit"] = {
        "threshold": thr2,
        **decision_counts(test["rankprod"], truth["test"], a, pt2 >= thr2),
    }
    res["calibration_thresholds"] = {n: c.threshold(n) for n in FINDERS}
    res["calibration_combiners"] = cal.get("combiners", {})
    res["seconds"] = {**times, "total": round(time.time() - t0, 1)}
    text = json.dumps(res, indent=1, default=float)
    if a.json:
        a.json.write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
