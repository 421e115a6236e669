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

``--from-checkpoint VAL_CKPT TEST_CKPT``: the folders of one ``clusterfw run --finder mf
--finder frcnn --finder xray --combine rankprod --checkpoint DIR`` per universe (same inputs and
``--tile-size``). Every other finder set's run is then made by ``clusterfw run ... --checkpoint``
on a subset checkpoint (:func:`combo_common.subset_checkpoint`: the same tiles' candidates and
forced scores; the command line only combines), so ``frcnn`` runs once per universe; a set
whose tile plan differs (``mf`` alone: pixel-box tiles) is run in full unless it holds a finder
of ``--never-rerun`` (default ``frcnn``). ``--verify mf,xray`` also runs that set in full on the
validation universe and compares the two catalogues (rows, positions, scores).

``--stack``: also every finder set's ``--combine stack`` on the test universe (the learned
combiner that ``clusterfw calibrate`` fitted on the same validation catalogues), its calibrated
``is_cluster``, with paired σ against the set's finders and its rank product.

σ: the test footprint is cut into ``--patches`` × ``--patches`` squares, drawn again with
replacement (:func:`combo_common.bootstrap`, the same draws for every method): σ of purity,
completeness and F1, and paired σ of F1(all three) − F1(each pair and single) and of F1(pair) −
F1(its better single). Completeness per M500c bin for every method.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from combo_common import (  # noqa: E402
    bootstrap,
    by_mass,
    catalogue_from_checkpoint,
    compare_catalogues,
    geometry,
    patch_counts,
    subset_checkpoint,
    truth_info,
)


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
    ap.add_argument(
        "--tile-grid", default=None, help="clusterfw run --tile-grid (mm: box tiles for all sets)"
    )
    ap.add_argument("--from-checkpoint", nargs=2, type=Path, default=None,
                    metavar=("VAL_CKPT", "TEST_CKPT"),
                    help="checkpoints of one run of all --finders per universe")  # fmt: skip
    ap.add_argument(
        "--never-rerun",
        default="frcnn",
        help="finders never run again when a set cannot come from the checkpoint",
    )
    ap.add_argument("--verify", default=None, help="a finder set (a,b) also run in full on val")
    ap.add_argument("--patches", type=int, default=5, help="bootstrap sub-patches per side")
    ap.add_argument("--partial", action="store_true",
                    help="every catalogue from the finished tiles of --from-checkpoint (on "
                    "universes cut by combo_common.py partial-universe)")  # fmt: skip
    ap.add_argument(
        "--stack", action="store_true", help="also every set's stack combiner on test (is_cluster)"
    )
    ap.add_argument("--plots", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.partial and (a.from_checkpoint is None or a.verify):
        ap.error("--partial needs --from-checkpoint and takes no --verify")
    finders = tuple(a.finders.split(","))
    a.work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    derived: dict[str, dict] = {}
    never = set(filter(None, a.never_rerun.split(",")))

    def run(split: str, names: tuple[str, ...], calib: Path | None = None,
            full: bool = False, combiner: str = "rankprod") -> Path:  # fmt: skip
        tag = "+".join(names)
        suffix = "" if combiner == "rankprod" else f"_{combiner}"
        out = a.work / f"{split}_{tag}{suffix}{'.full' if full else ''}.parquet"
        if out.exists():
            return out
        files = inputs(a.val if split == "val" else a.test)
        args: list[object] = ["run", *files, "-q", "--tile-size", a.tile_size, "--out", out]
        if a.tile_grid:
            args += ["--tile-grid", a.tile_grid]
        for f in names:
            args += ["--finder", f]
        if len(names) > 1:
            args += ["--combine", combiner]
        if calib:
            args += ["--calibration", calib]
        if a.partial:
            source = a.from_checkpoint[0 if split == "val" else 1]
            t = time.time()
            catalogue_from_checkpoint(source, out, names, "rankprod" if len(names) > 1 else None,
                                      calib)  # fmt: skip
            times[f"{split}_{tag}"] = round(time.time() - t, 1)
            return out
        if a.from_checkpoint is not None and not full:
            source = a.from_checkpoint[0 if split == "val" else 1]
            dest = a.work / f"ckpt_{split}_{tag}"
            try:
                if not dest.exists():
                    derived[f"{split}_{tag}"] = subset_checkpoint(
                        source, dest, files, names, a.tile_size, combine=len(names) > 1,
                        tile_grid=a.tile_grid,
                    )
                args += ["--checkpoint", dest]
            except ValueError as exc:
                if never & set(names):
                    msg = f"{split} {tag}: not from {source} ({exc}); not rerun"
                    raise SystemExit(msg) from None
                derived[f"{split}_{tag}"] = {"run_in_full": str(exc)}
        t = time.time()
        clusterfw(*args)
        times[f"{split}_{tag}{'.full' if full else ''}"] = round(time.time() - t, 1)
        print(f"{split} {tag}: {times[f'{split}_{tag}' + ('.full' if full else '')]} s",
              file=sys.stderr, flush=True)  # fmt: skip
        return out

    sets = [c for k in range(2, len(finders) + 1) for c in itertools.combinations(finders, k)]
    truth = {s: (a.val if s == "val" else a.test) / "truth_halos.parquet" for s in ("val", "test")}
    val = {(f,): run("val", (f,)) for f in finders}
    val.update({s: run("val", s) for s in sets})
    verify: dict = {}
    if a.verify:
        vs = tuple(a.verify.split(","))
        verify = {"set": list(vs), **compare_catalogues(val[vs], run("val", vs, full=True))}
    calib = a.work / "calib.json"
    if not calib.exists():
        clusterfw("calibrate", *val.values(), "--truth", truth["val"], *cut_args(a),
                  "--out", calib)  # fmt: skip
    test = {(f,): run("test", (f,)) for f in finders}
    test.update({s: run("test", s, calib) for s in sets})

    import pyarrow.parquet as pq

    from clusterfw.core.evaluation.calibration import Calibration

    c = Calibration.coerce(calib)
    res: dict = {
        "cut": {"m500c_min": a.mass_min, "z_min": a.z_min, "radius_arcmin": 1.0},
        "finders": list(finders),
        "tile_size_arcmin": a.tile_size,
        "tile_grid": a.tile_grid,
        "partial": bool(a.partial),
        "results": {},
    }
    ti = truth_info(truth["test"], a.mass_min, a.z_min)
    geo = geometry(a.test, a.patches)
    pcounts: dict[str, np.ndarray] = {}
    mass: dict[str, list] = {}

    def tally(name: str, cat: Path, decide: np.ndarray) -> None:
        t = pq.read_table(cat)
        q, _ = qualifying(cat, truth["test"], a)
        pcounts[name] = patch_counts(t["ra"].to_numpy(), t["dec"].to_numpy(), q, decide,
                                     ti["idx"], ti["ra"], ti["dec"], geo)  # fmt: skip
        mass[name] = by_mass(q, decide, ti)

    for f in finders:
        thr = c.threshold(f)
        plots = a.plots if (f == "xray" and a.plots is not None) else None
        ev = evaluate(test[(f,)], truth["test"], a, thr, plots)
        res["results"][f] = {
            "threshold": thr,
            "at_threshold": ev["at_threshold"],
            "best_f1_test": ev["best_f1"],
        }
        score = pq.read_table(test[(f,)])["score"].to_numpy(zero_copy_only=False).astype(float)
        tally(f, test[(f,)], np.nan_to_num(score, nan=-np.inf) >= thr)
    if "xray" in finders:
        res["results"]["xray_mass_cut"] = mass_cut(val[("xray",)], test[("xray",)], truth, a)
    for s in sets:
        dec, thr = rank_decision(test[s], c, s)
        counts = decision_counts(test[s], truth["test"], a, dec)
        res["results"]["+".join(s)] = {"threshold": thr, "is_cluster": counts}
        tally("+".join(s), test[s], dec)
    if a.stack:  # the learned combiner, fitted by clusterfw calibrate on the same validation
        for s in sets:
            cat = run("test", s, calib, combiner="stack")
            entry = c.combiner_entry("stack", list(s)) or {}
            dec = pq.read_table(cat)["is_cluster"].to_numpy(zero_copy_only=False)
            dec = np.asarray([bool(v) for v in dec])
            name = "stack:" + "+".join(s)
            res["results"][name] = {
                "model": entry.get("model"),
                "validation_f1": entry.get("validation_f1"),
                "is_cluster": decision_counts(cat, truth["test"], a, dec),
            }
            tally(name, cat, dec)
    f1 = {k: 2 * v[:, 0].sum() / max(1, 2 * v[:, 0].sum() + v[:, 1].sum() + v[:, 2].sum())
          for k, v in pcounts.items()}  # fmt: skip
    pairs = []
    for s in sets:
        name = "+".join(s)
        for k in range(1, len(s)):
            pairs += [(name, "+".join(sub)) for sub in itertools.combinations(s, k)]
        better = max(s, key=lambda f: f1[f])
        if (name, better) not in pairs:
            pairs.append((name, better))
        if a.stack:
            pairs += [("stack:" + name, f) for f in s] + [("stack:" + name, name)]
    res["bootstrap"] = bootstrap(pcounts, pairs)
    res["completeness_by_mass"] = mass
    res["n_true_test"] = int(ti["idx"].size)
    res["verify"] = verify
    res["derived_from_checkpoint"] = derived
    res["seconds"] = times
    text = json.dumps(res, indent=1, default=float)
    if a.json:
        a.json.write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
