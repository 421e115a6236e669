"""SZ + optical: ``mf`` on the mm maps, ``frcnn`` on g, r, i, and their combinations.

Two simulated universes (``clusterfw simulate universe --layers mm,optical``, the same halos
seen by the ACT-like mm maps and DES-like images): a validation one and a test one, from
different seeds. Everything goes through the command line:

1. validation: ``clusterfw run`` with ``--finder mf`` and with ``--finder mf --finder frcnn
   --combine rankprod``; ``clusterfw calibrate`` on the two (thresholds, reference score
   distributions, the rankprod threshold and the ``and`` threshold pair);
2. test: ``--finder mf``, and ``--combine rankprod`` with ``--calibration`` (``--and-run``: also
   ``--combine and``);
3. on the test universe, at thresholds from validation: ``mf`` (``clusterfw evaluate`` at its
   calibrated threshold), ``frcnn`` alone (its own detections in the combined catalogue, at the
   F1-best threshold of its own detections on validation), ``rankprod`` (its ``is_cluster``),
   ``and`` (the ``and`` combiner's decision, :func:`clusterfw.plugins.combiners.and_.
   and_decision` with the calibrated pair, on the same merged candidates — what ``--combine
   and`` computes, without a third pass of the optical finder), each with the DeepSZ Table-1
   cutout confusion matrix (``--cutout``) where ``clusterfw evaluate`` gives it;
4. a stacked logistic model on the validation rankprod catalogue's per-candidate features
   (``mf`` SNR, ``frcnn`` logit of the forced/detected probability, their product; the
   ``stack`` combiner's fit, :func:`clusterfw.plugins.combiners.stack.fit_logistic`, as the
   "stacked-LR" of ``benchmarks/resnet_vs_mf.py``), its F1-best validation threshold applied
   to the test candidates — and, in-sample and optimistic, the same fit and threshold made on
   the test candidates themselves.

``--from-checkpoint VAL_CKPT TEST_CKPT``: checkpoints of one ``clusterfw run`` per universe of
more finders (e.g. ``--finder mf --finder frcnn --finder xray --combine rankprod`` on all the
universe's layers, the same ``--tile-size``): the ``mf`` + ``frcnn`` runs are then ``clusterfw
run ... --checkpoint`` on a subset checkpoint (:func:`combo_common.subset_checkpoint`), so
``frcnn`` is not run again; ``mf`` alone (pixel-box tiles) is run in full. σ: the test footprint
cut into ``--patches`` × ``--patches`` squares drawn again with replacement
(:func:`combo_common.bootstrap`), paired between methods; completeness per M500c bin.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from combo_common import (  # noqa: E402
    bootstrap,
    by_mass,
    catalogue_from_checkpoint,
    geometry,
    patch_counts,
    subset_checkpoint,
    truth_info,
)

FINDERS = ("mf", "frcnn")


def clusterfw(*args: object) -> None:
    """Run ``clusterfw ARGS`` (raises on failure, prints the error)."""
    cmd = [sys.executable, "-m", "clusterfw", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        how = (f"killed by signal {-res.returncode}" if res.returncode < 0
               else f"exit code {res.returncode}")  # fmt: skip
        raise SystemExit(
            f"failed ({how}): {' '.join(cmd)}\nstderr: {res.stderr[-2000:]}\n"
            f"stdout: {res.stdout[-1000:]}"
        )


def inputs(universe: Path) -> list[Path]:
    """The mm and optical files of a universe."""
    return sorted((universe / "mm").glob("*.fits")) + sorted((universe / "optical").glob("*.fits"))


def all_inputs(universe: Path) -> list[Path]:
    """Every input layer file of a universe (mm, optical, xray): a checkpoint source's inputs."""
    return sorted(p for d in ("mm", "optical", "xray") for p in (universe / d).glob("*.fits"))


def cut_args(a: argparse.Namespace) -> list[str]:
    return ["--mass-min", str(a.mass_min), "--mass-col", "m500c", "--z-min", str(a.z_min)]


def evaluate(cat: Path, truth: Path, a: argparse.Namespace, score: str, thr: float | None) -> dict:
    """``clusterfw evaluate`` JSON of one score column at ``thr`` (None: F1-best).

    A failure (e.g. a column ``evaluate`` cannot use as a score) gives ``{}`` and a message.
    """
    out = cat.with_suffix(f".{score}.eval.json")
    args = ["evaluate", cat, "--truth", truth, *cut_args(a), "--score", score,
            "--cutout", str(a.cutout), "--json", out]  # fmt: skip
    if thr is not None:
        args += ["--threshold", repr(float(thr))]
    try:
        clusterfw(*args)
    except SystemExit as exc:
        print(f"evaluate {cat.name} {score}: {str(exc)[-300:]}", file=sys.stderr)
        return {}
    return json.loads(out.read_text())["results"][score]


def counts(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    c = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "purity": p, "completeness": c,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0}  # fmt: skip


def matched(
    cat: Path, truth: Path, a: argparse.Namespace, pos: tuple[str, str] = ("ra", "dec")
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Positions (``pos`` columns, null → 0, -90), each candidate's true cluster (-1: none,
    DeepSZ matching) and the number of true clusters."""
    import pyarrow.parquet as pq

    from clusterfw.core.evaluation import Truth, match_to_truth
    from clusterfw.core.evaluation.metrics import qualifying_halo

    t = pq.read_table(cat)
    tr = Truth.from_table(pq.read_table(truth), mass_col="m500c")
    qual = (tr.mass >= a.mass_min) & (tr.z >= a.z_min)
    ra = np.nan_to_num(np.asarray(t[pos[0]].to_numpy(zero_copy_only=False), float), nan=0.0)
    dec = np.nan_to_num(np.asarray(t[pos[1]].to_numpy(zero_copy_only=False), float), nan=-90.0)
    q = qualifying_halo(match_to_truth(ra, dec, tr), qual)
    return ra, dec, q, int(qual.sum())


def decision_counts(
    cat: Path,
    truth: Path,
    a: argparse.Namespace,
    decide: np.ndarray,
    pos: tuple[str, str] = ("ra", "dec"),
) -> dict:
    """Purity, completeness, F1 of the candidates where ``decide`` (DeepSZ matching)."""
    _, _, q, n_true = matched(cat, truth, a, pos)
    sel = np.asarray(decide, bool)
    hit = np.unique(q[sel & (q >= 0)])
    tp = int(hit.size)
    fp = int(sel.sum()) - tp
    fn = n_true - tp
    return counts(tp, fp, fn)


def rankprod_decision(col: dict, cal: object) -> np.ndarray:
    """The rankprod combiner's calibrated decision: the product of each covering finder's
    percentile under the calibration's reference ≥ the calibrated threshold."""
    from clusterfw.core.evaluation.calibration import percentile

    prod = np.ones(len(col["ra"]))
    for f in FINDERS:
        p = percentile(np.asarray(col[f"{f}_score"], float), cal.reference(f))
        cov = np.asarray(col.get(f"{f}_covered", np.ones(prod.size)), bool)
        prod *= np.where(cov, p, 1.0)
    entry = cal.combiner_entry("rankprod", list(FINDERS))
    return prod >= float(entry["threshold"])


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


def best_threshold(
    prob: np.ndarray,
    cat: Path,
    truth: Path,
    a: argparse.Namespace,
    pos: tuple[str, str] = ("ra", "dec"),
) -> float:
    """F1-best threshold of ``prob`` on ``cat`` (NaN never passes)."""
    best, thr = -1.0, 1.0
    for t in np.unique(prob[np.isfinite(prob)])[::-1][:400]:
        f = decision_counts(cat, truth, a, np.nan_to_num(prob, nan=-np.inf) >= t, pos)["f1"]
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
    ap.add_argument("--tile-size", type=float, default=15.0)
    ap.add_argument(
        "--tile-grid", default=None, help="clusterfw run --tile-grid (mm: box tiles for all runs)"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--and-run", action="store_true", help="also run --combine and on test")
    ap.add_argument("--from-checkpoint", nargs=2, type=Path, default=None,
                    metavar=("VAL_CKPT", "TEST_CKPT"),
                    help="checkpoints of one run of more finders per universe")  # fmt: skip
    ap.add_argument("--patches", type=int, default=5, help="bootstrap sub-patches per side")
    ap.add_argument("--partial", action="store_true",
                    help="every catalogue from the finished tiles of --from-checkpoint (on "
                    "universes cut by combo_common.py partial-universe)")  # fmt: skip
    ap.add_argument("--test-uncalibrated", type=Path, default=None,
                    help="a test rankprod catalogue made without --calibration")  # fmt: skip
    a = ap.parse_args(argv)
    if a.partial and a.from_checkpoint is None:
        ap.error("--partial needs --from-checkpoint")
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times: dict[str, float] = {}
    derived: dict[str, dict] = {}

    def run(split: str, name: str, finders: tuple[str, ...], combine: str | None,
            calib: Path | None = None) -> Path:  # fmt: skip
        out = a.work / f"{split}_{name}.parquet"
        if out.exists():
            return out
        universe = a.val if split == "val" else a.test
        if a.partial:
            source = a.from_checkpoint[0 if split == "val" else 1]
            t = time.time()
            catalogue_from_checkpoint(source, out, finders, combine, calib)
            times[f"{split}_{name}"] = round(time.time() - t, 1)
            return out
        args: list[object] = ["run", *inputs(universe), "-q",
                              "--tile-size", a.tile_size, "--out", out]  # fmt: skip
        if a.tile_grid:
            args += ["--tile-grid", a.tile_grid]
        for f in finders:
            args += ["--finder", f]
        if combine:
            args += ["--combine", combine]
        if calib:
            args += ["--calibration", calib]
        if a.from_checkpoint is not None and len(finders) > 1:
            source = a.from_checkpoint[0 if split == "val" else 1]
            dest = a.work / f"ckpt_{split}_{'+'.join(finders)}"
            if not dest.exists():
                derived[f"{split}_{'+'.join(finders)}"] = subset_checkpoint(
                    source, dest, inputs(universe), finders, a.tile_size,
                    source_inputs=all_inputs(universe), tile_grid=a.tile_grid,
                )  # fmt: skip
            args += ["--checkpoint", dest]
        t = time.time()
        clusterfw(*args)
        times[f"{split}_{name}"] = round(time.time() - t, 1)
        print(f"{split} {name}: {times[f'{split}_{name}']} s", file=sys.stderr, flush=True)
        return out

    truth = {s: (a.val if s == "val" else a.test) / "truth_halos.parquet" for s in ("val", "test")}
    val = {"mf": run("val", "mf", ("mf",), None)}
    val["rankprod"] = run("val", "rankprod", FINDERS, "rankprod")
    calib = a.work / "calib.json"
    if not calib.exists():
        clusterfw("calibrate", *val.values(), "--truth", truth["val"], *cut_args(a),
                  "--out", calib)  # fmt: skip
    cal = json.loads(calib.read_text())
    test = {"mf": run("test", "mf", ("mf",), None)}
    if a.test_uncalibrated is not None:
        # a test rankprod run made without --calibration: the finders' scores are the same, the
        # calibrated decision is recomputed below from the calibration (rankprod_decision)
        test["rankprod"] = a.test_uncalibrated
    else:
        test["rankprod"] = run("test", "rankprod", FINDERS, "rankprod", calib)
    if a.and_run:
        test["and"] = run("test", "and", FINDERS, "and", calib)

    import pyarrow as pa
    import pyarrow.parquet as pq

    from clusterfw.core.evaluation.calibration import Calibration
    from clusterfw.plugins.combiners.and_ import and_decision, and_thresholds

    c = Calibration.coerce(calib)
    res: dict = {"cut": {"m500c_min": a.mass_min, "z_min": a.z_min, "radius_arcmin": 1.0}}
    ev = evaluate(test["mf"], truth["test"], a, "score", c.threshold("mf"))
    res["mf"] = {"threshold": c.threshold("mf"), "at_threshold": ev.get("at_threshold"),
                 "cutouts": ev.get("cutouts"), "best_f1_test": ev.get("best_f1")}  # fmt: skip
    # frcnn alone: its own detections in the combined catalogue (positions frcnn_ra/dec)
    t = pq.read_table(test["rankprod"])
    col = {k: t[k].to_numpy(zero_copy_only=False) for k in t.column_names}
    own = np.isfinite(np.asarray(col["frcnn_ra"], float))
    # its threshold: F1-best of its own detections in the validation combined catalogue
    tv = pq.read_table(val["rankprod"])
    own_v = np.isfinite(tv["frcnn_ra"].to_numpy(zero_copy_only=False).astype(float))
    sv = np.where(own_v, tv["frcnn_score"].to_numpy(zero_copy_only=False).astype(float), np.nan)
    thr_f = best_threshold(sv, val["rankprod"], truth["val"], a, ("frcnn_ra", "frcnn_dec"))
    fr = own & (np.nan_to_num(np.asarray(col["frcnn_score"], float), nan=-1) >= thr_f)
    res["frcnn"] = {"threshold": thr_f,
                    "at_threshold": decision_counts(test["rankprod"], truth["test"], a, fr,
                                                    pos=("frcnn_ra", "frcnn_dec"))}  # fmt: skip
    if a.test_uncalibrated is not None:
        dec = rankprod_decision(col, c)
    else:
        dec = np.asarray(col["is_cluster"], bool)
    res["rankprod"] = {"is_cluster": decision_counts(test["rankprod"], truth["test"], a, dec)}
    ev = evaluate(test["rankprod"], truth["test"], a, "is_cluster", 1.0)
    res["rankprod"]["cutouts"] = ev.get("cutouts")
    # AND: the and combiner's decision on the same merged candidates and scores
    th = and_thresholds(c, list(FINDERS))
    scores = {f: np.asarray(col[f"{f}_score"], float) for f in FINDERS}
    cov = {f: np.asarray(col[f"{f}_covered"], bool) for f in FINDERS if f"{f}_covered" in col}
    dec_and = and_decision(scores, th, cov)
    d_and = decision_counts(test["rankprod"], truth["test"], a, dec_and)
    res["and"] = {"thresholds": th, "decision": d_and}
    if a.and_run:
        ta = pq.read_table(test["and"])
        d2 = ta["is_cluster"].to_numpy(zero_copy_only=False).astype(bool)
        res["and"]["is_cluster_of_and_run"] = decision_counts(test["and"], truth["test"], a, d2)
        ev = evaluate(test["and"], truth["test"], a, "is_cluster", 1.0)
        res["and"]["cutouts"] = ev.get("cutouts")
    # the same cutout table for frcnn's own detections and the and decision, as 0/1 scores
    for name, decide, pos in (("frcnn", fr, ("frcnn_ra", "frcnn_dec")),
                              ("and", dec_and, ("ra", "dec"))):  # fmt: skip
        tab = pa.table({"ra": np.nan_to_num(np.asarray(col[pos[0]], float)),
                        "dec": np.nan_to_num(np.asarray(col[pos[1]], float), nan=-90.0),
                        "score": np.where(decide, 1.0, 0.0)})  # fmt: skip
        path = a.work / f"test_{name}_decision.parquet"
        pq.write_table(tab.filter(pa.array(np.isfinite(np.asarray(col[pos[0]], float)))), path)
        res[name]["cutouts"] = evaluate(path, truth["test"], a, "score", 1.0).get("cutouts")
    # stacked logistic model on the rankprod candidates: the stack combiner's fit
    # (clusterfw.plugins.combiners.stack.fit_logistic, regularisation by cross-validation) on
    # the validation candidates' (mf SNR, frcnn logit, product), its F1-best validation
    # threshold applied to test - the "stacked-LR" diagnostic of benchmarks/resnet_vs_mf.py
    from clusterfw.plugins.combiners.stack import fit_logistic

    names = ["mf_snr", "frcnn_logit", "product"]
    xv, _ = features(val["rankprod"])
    yv = labels(val["rankprod"], truth["val"], a)
    xt, _ = features(test["rankprod"])
    yt = labels(test["rankprod"], truth["test"], a)
    model, info = fit_logistic(xv, yv.astype(bool), names)
    pv = model.predict(xv)
    thr = best_threshold(pv, val["rankprod"], truth["val"], a)
    pt = model.predict(xt)
    val_fit = decision_counts(test["rankprod"], truth["test"], a, pt >= thr)
    res["stacked_lr_val_fit"] = {"threshold": thr, "fit": info, "model": model.to_dict(),
                                 **val_fit}  # fmt: skip
    # the same fit and threshold on the test candidates themselves: in-sample, optimistic
    model2, info2 = fit_logistic(xt, yt.astype(bool), names)
    pt2 = model2.predict(xt)
    thr2 = best_threshold(pt2, test["rankprod"], truth["test"], a)
    res["stacked_lr_upper_bound_test_fit"] = {
        "threshold": thr2,
        "fit": info2,
        **decision_counts(test["rankprod"], truth["test"], a, pt2 >= thr2),
    }
    # σ over test sub-patches (paired) and completeness per mass bin, for every decision above
    ti = truth_info(truth["test"], a.mass_min, a.z_min)
    geo = geometry(a.test, a.patches)
    score_mf = pq.read_table(test["mf"])["score"].to_numpy(zero_copy_only=False).astype(float)
    rp = ("ra", "dec")
    decisions = {
        "mf": (test["mf"], np.nan_to_num(score_mf, nan=-np.inf) >= c.threshold("mf"), rp),
        "frcnn": (test["rankprod"], fr, ("frcnn_ra", "frcnn_dec")),
        "rankprod": (test["rankprod"], dec, rp),
        "and": (test["rankprod"], dec_and, rp),
        "stacked_lr_val_fit": (test["rankprod"], pt >= thr, rp),
        "stacked_lr_upper_bound_test_fit": (test["rankprod"], pt2 >= thr2, rp),
    }
    if a.and_run:
        decisions["and_run"] = (test["and"], d2, rp)
    pcounts, mass = {}, {}
    for name, (cat, decide, pos) in decisions.items():
        ra, dec_, q, _ = matched(cat, truth["test"], a, pos)
        pcounts[name] = patch_counts(ra, dec_, q, decide, ti["idx"], ti["ra"], ti["dec"], geo)
        mass[name] = by_mass(q, decide, ti)
    f1 = {k: counts(*(int(x) for x in v.sum(0)))["f1"] for k, v in pcounts.items()}
    better = max(FINDERS, key=lambda f: f1[f])
    res["better_single_test"] = better
    res["bootstrap"] = bootstrap(
        pcounts, [(k, better) for k in pcounts if k not in FINDERS] + [("frcnn", "mf")]
    )
    res["bootstrap"]["totals"] = {k: v.sum(0).tolist() for k, v in pcounts.items()}
    res["completeness_by_mass"] = mass
    res["derived_from_checkpoint"] = derived
    res["tile_size_arcmin"] = a.tile_size
    res["tile_grid"] = a.tile_grid
    res["partial"] = bool(a.partial)
    res["calibration_thresholds"] = {n: c.threshold(n) for n in FINDERS}
    res["n_true_test"] = res["mf"]["at_threshold"].get("n_true")
    res["calibration_combiners"] = cal.get("combiners", {})
    res["seconds"] = {**times, "total": round(time.time() - t0, 1)}
    text = json.dumps(res, indent=1, default=float)
    if a.json:
        a.json.write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
