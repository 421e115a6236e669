"""X-ray + SZ (+ optical): ``xray``, ``mf`` (and ``frcnn`` where installed), singles, pairs and
all together with ``--combine rankprod``, on a validation and a test universe.

Everything goes through the command line, as ``benchmarks/sz_optical.py``:

1. validation universe: ``clusterfw run`` of every single finder and of every combination with
   ``--combine rankprod``; ``clusterfw calibrate`` on them (each finder's F1-best threshold,
   the reference score distributions, each finder set's rankprod threshold);
2. test universe: the same runs, combinations with ``--calibration``;
3. purity, completeness and F1 on the test universe at the validation thresholds (single
   finders: the calibration's threshold on ``score``; combinations: the rank product of their
   per-finder scores under the calibration's reference percentiles, at its rankprod threshold),
   with the test's own F1-best value beside it (optimistic), and ``clusterfw evaluate
   --plots`` figures of the single ``xray`` catalogue (completeness vs mass and redshift).

True clusters: M500c ≥ ``--mass-min`` (1e14 Msun) at z ≥ ``--z-min`` (0.05), matched within
1' (the most massive halo within the radius). The ``xray`` classifier itself answers Kosiba's
question (real group/cluster emission vs AGN and fluctuations), so groups below the mass cut
count against its purity here; ``xray_mass_cut`` adds the detection's counts, rate or extent
as a second cut (both thresholds F1-best on validation). Usage::

    python benchmarks/xray_combination.py --val U_VAL --test U_TEST --work DIR \
        [--finders mf,xray] [--json OUT]

(simulate the universes first: ``clusterfw simulate universe --out U --size 1.5 --seed N
--layers mm,xray`` — add ``optical`` for ``frcnn`` and the xray finder's optical channel).
Not run in CI.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def clusterfw(*args: object) -> None:
    """Run ``clusterfw ARGS`` (raises on failure, prints the error)."""
    cmd = [sys.executable, "-m", "clusterfw", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")


def inputs(universe: Path) -> list[Path]:
    """Every input layer file of a universe (mm, optical, xray)."""
    return sorted(p for d in ("mm", "optical", "xray") for p in (universe / d).glob("*.fits"))


def cut_args(a: argparse.Namespace) -> list[str]:
    return ["--mass-min", str(a.mass_min), "--mass-col", "m500c", "--z-min", str(a.z_min)]


def evaluate(cat: Path, truth: Path, a: argparse.Namespace, thr: float | None, plots=None):
    """``clusterfw evaluate`` JSON of ``score`` at ``thr`` (None: F1-best)."""
    out = cat.with_suffix(".eval.json")
    args = ["evaluate", cat, "--truth", truth, *cut_args(a), "--score", "score", "--json", out]
    if thr is not None:
        args += ["--threshold", repr(float(thr))]
    if plots is not None:
        args += ["--plots", plots]
    clusterfw(*args)
    return json.loads(out.read_text())["results"]["score"]


def qualifying(cat: Path, truth: Path, a: argparse.Namespace) -> tuple[np.ndarray, int]:
    """Per candidate, the index of its qualifying true cluster (-1: none); and their number."""
    import pyarrow.parquet as pq

    from clusterfw.core.evaluation import Truth, match_to_truth
    from clusterfw.core.evaluation.metrics import qualifying_halo

    t = pq.read_table(cat)
    tr = Truth.from_table(pq.read_table(truth), mass_col="m500c")
    qual = (tr.mass >= a.mass_min) & (tr.z >= a.z_min)
    q = qualifying_halo(match_to_truth(t["ra"].to_numpy(), t["dec"].to_numpy(), tr), qual)
    return q, int(qual.sum())


def counts_of(q: np.ndarray, n_true: int, decide: np.ndarray) -> dict:
    """Purity, completeness, F1 of the candidates where ``decide``."""
    sel = np.asarray(decide, bool)
    tp = int(np.unique(q[sel & (q >= 0)]).size)
    fp, fn = int(sel.sum()) - tp, n_true - tp
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "purity": tp / (tp + fp) if tp + fp else 0.0,
        "completeness": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
    }


def decision_counts(cat: Path, truth: Path, a: argparse.Namespace, decide: np.ndarray) -> dict:
    """Purity, completeness, F1 of the candidates where ``decide`` (1' matching)."""
    return counts_of(*qualifying(cat, truth, a), decide)


def mass_cut(val_cat: Path, test_cat: Path, truth: dict, a: argparse.Namespace) -> dict:
    """The ``xray`` catalogue cut on its probability *and* on a brightness column.

    The classifier answers Kosiba's question (real extended emission or not); the mass cut of
    the truth (M500c ≥ ``--mass-min``) is left to the detection's own measurements: for each
    of ``xray_counts``, ``xray_rate`` and ``xray_extent`` the pair (probability threshold,
    column threshold) with the best F1 on the validation universe is applied to the test.
    """
    import pyarrow.parquet as pq

    tv, tt = pq.read_table(val_cat), pq.read_table(test_cat)
    qv, nv = qualifying(val_cat, truth["val"], a)
    qt, nt = qualifying(test_cat, truth["test"], a)
    out: dict = {}
    pv = tv["score"].to_numpy()
    p_grid = np.unique(np.concatenate([[0.0], np.quantile(pv, np.linspace(0, 0.95, 20))]))
    for col in ("xray_counts", "xray_rate", "xray_extent"):
        cv = tv[col].to_numpy()
        c_grid = np.unique(np.quantile(cv, np.linspace(0, 0.98, 50)))
        best = (-1.0, 0.0, 0.0)
        for tp_ in p_grid:
            for tc in c_grid:
                f1 = counts_of(qv, nv, (pv >= tp_) & (cv >= tc))["f1"]
                if f1 > best[0]:
                    best = (f1, float(tp_), float(tc))
        dec = (tt["score"].to_numpy() >= best[1]) & (tt[col].to_numpy() >= best[2])
        out[col] = {
            "p_min": best[1],
            "col_min": best[2],
            "val_f1": best[0],
            "test": counts_of(qt, nt, dec),
        }
    return out


def rank_decision(cat: Path, cal: Any, finders: tuple[str, ...]) -> tuple[np.ndarray, float]:
    """``is_cluster`` of a rankprod catalogue recomputed from its per-finder scores with the
    validation calibration (reference percentiles and the finder set's threshold), whatever
    calibration the run itself used."""
    import pyarrow.parquet as pq

    from clusterfw.core.evaluation.calibration import percentiles_for
    from clusterfw.plugins.combiners.rankprod import rank_product

    t = pq.read_table(cat)
    scores = {
        f: np.asarray(t[f"{f}_score"].to_numpy(zero_copy_only=False), dtype=float) for f in finders
    }
    pct, _ = percentiles_for(scores, cal)
    thr = float(cal.combiner_entry("rankprod", list(finders))["threshold"])
    return rank_product(pct) >= thr, thr


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (module docstring); print and return the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--finders", default="mf,xray")
    ap.add_argument("--mass-min", type=float, default=1e14)
    ap.add_argument("--z-min", type=float, default=0.05)
    ap.add_argument("--tile-size", type=float, default=60.0)
    ap.add_argument("--plots", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    finders = tuple(a.finders.split(","))
    a.work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    def run(split: str, names: tuple[str, ...], calib: Path | None = None) -> Path:
        tag = "+".join(names)
        out = a.work / f"{split}_{tag}.parquet"
        if out.exists():
            return out
        args: list[object] = ["run", *inputs(a.val if split == "val" else a.test), "-q",
                              "--tile-size", a.tile_size, "--out", out]  # fmt: skip
        for f in names:
            args += ["--finder", f]
        if len(names) > 1:
            args += ["--combine", "rankprod"]
        if calib:
            args += ["--calibration", calib]
        t = time.time()
        clusterfw(*args)
        times[f"{split}_{tag}"] = round(time.time() - t, 1)
        print(f"{split} {tag}: {times[f'{split}_{tag}']} s", file=sys.stderr, flush=True)
        return out

    sets = [c for k in range(2, len(finders) + 1) for c in itertools.combinations(finders, k)]
    truth = {s: (a.val if s == "val" else a.test) / "truth_halos.parquet" for s in ("val", "test")}
    val = {(f,): run("val", (f,)) for f in finders}
    val.update({s: run("val", s) for s in sets})
    calib = a.work / "calib.json"
    if not calib.exists():
        clusterfw("calibrate", *val.values(), "--truth", truth["val"], *cut_args(a),
                  "--out", calib)  # fmt: skip
    test = {(f,): run("test", (f,)) for f in finders}
    test.update({s: run("test", s, calib) for s in sets})

    from clusterfw.core.evaluation.calibration import Calibration

    c = Calibration.coerce(calib)
    res: dict = {
        "cut": {"m500c_min": a.mass_min, "z_min": a.z_min, "radius_arcmin": 1.0},
        "finders": list(finders),
        "results": {},
    }
    for f in finders:
        thr = c.threshold(f)
        plots = a.plots if (f == "xray" and a.plots is not None) else None
        ev = evaluate(test[(f,)], truth["test"], a, thr, plots)
        res["results"][f] = {
            "threshold": thr,
            "at_threshold": ev["at_threshold"],
            "best_f1_test": ev["best_f1"],
        }
    if "xray" in finders:
        res["results"]["xray_mass_cut"] = mass_cut(val[("xray",)], test[("xray",)], truth, a)
    for s in sets:
        dec, thr = rank_decision(test[s], c, s)
        counts = decision_counts(test[s], truth["test"], a, dec)
        res["results"]["+".join(s)] = {"threshold": thr, "is_cluster": counts}
    res["seconds"] = times
    text = json.dumps(res, indent=1, default=float)
    if a.json:
        a.json.write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
