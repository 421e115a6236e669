"""ResNet vs matched filter vs their ensembles on held-out simulated patches (DeepSZ Table 1).

Simulates ``--val`` validation and ``--test`` test patches (independent sky realisations, seeds
disjoint from each other and from the training data), runs ``mf`` and ``resnet`` through
:func:`clusterfw.core.pipeline.run_pipeline` with the ``rankprod`` combiner (so every group of
detections carries both finders' scores, forced where a finder did not detect it), then scores
four methods at the *cutout level*, as DeepSZ §2.3 and Table 1:

- cutouts are the ResNet's 8' cutouts at 6' stride, each owning its central 6' × 6' cell (exact
  pixel boxes of the patch, so the cells are the ones the network classifies);
- a cell is *cluster-containing* when a halo passing the ``--labels`` cut lies in it (``deepsz``:
  Mvir ≥ 2e14 Msun and z > 0.25, the default; ``sz``: M500c ≥ 1.5e14 Msun at any redshift);
- a candidate matched (:func:`clusterfw.core.evaluation.match_to_truth`: most massive halo within
  1') to such a halo is assigned to that halo's cell, any other candidate to the cell containing
  it; a cell's score is the highest score assigned to it;
- methods: MF (its SNR), ResNet (calibrated probability), AND (MF ≥ a and ResNet ≥ b for the
  same candidate, (a, b) grid-searched), rankprod (product of the reference rank percentiles of
  :func:`clusterfw.core.evaluation.calibrate` fitted on the validation catalogues), stack (the
  ``stack`` combiner's model, fitted by the same ``calibrate`` and scored by the combiner
  itself, :mod:`clusterfw.plugins.combiners.stack`), and as a diagnostic "stacked-LR", the
  same logistic fit (:func:`~clusterfw.plugins.combiners.stack.fit_logistic`) on cell-level
  features (MF SNR, ResNet logit, their product).

The calibration is the one ``clusterfw calibrate`` makes from each validation patch's combined
catalogue *and* each finder's own catalogue of it (what ``clusterfw run --finder f`` writes,
taken from the same run, :func:`recording`), with its truth, as docs/combining.md describes:
``stack``'s fallback then compares the finders by their own catalogues' validation F1
(``--combined-only``: the combined catalogues alone, as before). Besides each test F1's
bootstrap σ, each combination's F1 minus the better single finder's (``mf`` or ``resnet``) is
given with a paired bootstrap σ over the same test cells.

Every threshold is the F1-best one on the pooled validation cells, then applied to the test
cells. The patches are simulated with the ``--setting`` of :mod:`clusterfw.sim.settings`
(``default``: today's simulator; ``battaglia_hiradio``: the held-out profile family and radio
model; each patch draws its own parameters from its seed), validation and test from the same
setting. Usage::

    python benchmarks/resnet_vs_mf.py [--val 8] [--test 8] [--size-deg 3] [--setting NAME]
        [--labels deepsz|sz] [--weights FILE_OR_DIR] [--combined-only] [--json OUT]
        [--cache DIR] [--simulate-only]

``--cache DIR`` keeps each patch's combined and single-finder catalogues, truth and cells
(parquet and an npz, no pickle) and reads them back instead of simulating again, so the scoring
can be rerun (or more patches added: seeds are ``70000 + i`` and ``80000 + i``, so a run with
more patches extends a smaller one). Besides the cell table it reports each combination minus
the better single finder with σ over cells and over test patches (patch bootstrap), the same at
the catalogue level (each finder's own catalogue and the combined one at the calibrated
thresholds, 1' matching), and a leave-one-validation-patch-out check of ``stack``'s choice with
every method's threshold from the other patches.

Not run in CI (about a minute per patch on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MASS_CUT = 2e14
Z_MIN = 0.25
MASS_DEF = "mvir"
SEED_BASE = {"val": 70_000, "test": 80_000}


@dataclass
class PatchResult:
    """Per-patch cells (label) and per-candidate facts of the combined catalogue."""

    label: np.ndarray  # (n_cells,) bool
    cand: dict[str, np.ndarray]  # per combined-table row: cell ids per method, scores
    n_cells: int
    grid: np.ndarray  # (n_cells,) probability of each cell's own grid cutout (DeepSZ scoring)
    top_mass: np.ndarray  # (n_cells,) MASS_DEF mass of the cell's most massive halo (0: none)
    top_z: np.ndarray  # (n_cells,) its redshift
    halos: dict[str, np.ndarray] | None = None  # qualifying halos: ra, dec, cell


def cell_ids(sky, ra, dec, stride=24, size=32):
    """Cell (ResNet cutout core box) index of positions; -1 outside every cell."""
    ny, nx = sky.shape
    x, y = sky.wcs.celestial.world_to_pixel_values(np.asarray(ra), np.asarray(dec))
    half = (size - 1) / 2.0
    lo = half - stride / 2.0  # left edge of the first cell (3.5 for 32/24)
    kx_n = int(np.floor((nx - 0.5 - half) / stride)) + 1
    ky_n = int(np.floor((ny - 0.5 - half) / stride)) + 1
    fx = np.floor((np.asarray(x) - lo) / stride)
    fy = np.floor((np.asarray(y) - lo) / stride)
    ok = np.isfinite(fx) & np.isfinite(fy) & (fx >= 0) & (fx < kx_n) & (fy >= 0) & (fy < ky_n)
    ids = np.where(ok, np.nan_to_num(fy) * kx_n + np.nan_to_num(fx), -1).astype(np.int64)
    return ids, kx_n * ky_n


def set_labels(name):
    """Set the module's true-cluster cut (``MASS_CUT``, ``MASS_DEF``, ``Z_MIN``) from a preset."""
    global MASS_CUT, MASS_DEF, Z_MIN
    from clusterfw.sim.cutouts import label_options

    cut = label_options(name)
    MASS_CUT, MASS_DEF, Z_MIN = float(cut["mass_cut"]), str(cut["mass_definition"]), cut["z_min"]


def weights_file(path):
    """The safetensors file of ``path`` (a file, or a folder holding ``resnet.safetensors``)."""
    from pathlib import Path

    if path is None:
        return None
    p = Path(path)
    return str(p / "resnet.safetensors") if p.is_dir() else str(p)


def recording(combiner):
    """``combiner`` that also keeps the per-finder tables it is given (``combiner.singles``).

    Those tables are what ``clusterfw run --finder f`` (no ``--combine``, no ``--calibration``)
    writes for each finder ``f`` on the same sky: :func:`~clusterfw.core.pipeline.run_pipeline`
    concatenates each finder's tile tables and, without a combiner, writes them unchanged. So
    each finder's own validation catalogue comes with the combined run at no extra cost.
    """
    base = type(combiner)

    class Recording(base):  # type: ignore[misc, valid-type]
        def combine(self, tables, *args, **kwargs):
            self.singles = dict(tables)
            return super().combine(tables, *args, **kwargs)

    Recording.__name__ = base.__name__
    return Recording()


def single_catalogue(name, table):
    """Finder ``name``'s own catalogue as ``clusterfw run --finder name`` makes it from its
    tile tables (concatenated, checked against the candidate schema)."""
    from clusterfw.core.schema import concat_candidates, validate_candidates

    out = concat_candidates([table])
    validate_candidates(out, prefixes=(name,))
    return out


CACHE_ARRAYS = ("label", "grid", "top_mass", "top_z")


def save_patch(path, result, table, halos, singles):
    """Write one patch's outputs to folder ``path`` (parquet tables and an npz without pickle),
    so that the scoring can be rerun without simulating and running the finders again."""
    import os
    import tempfile

    import pyarrow.parquet as pq

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    pq.write_table(table, os.path.join(tmp, "combined.parquet"))
    pq.write_table(halos, os.path.join(tmp, "halos.parquet"))
    for name, t in singles.items():
        pq.write_table(t, os.path.join(tmp, f"single_{name}.parquet"))
    arrays = {k: getattr(result, k) for k in CACHE_ARRAYS}
    arrays.update({f"cand_{k}": v for k, v in result.cand.items()})
    arrays.update({f"halo_{k}": v for k, v in (result.halos or {}).items()})
    arrays["n_cells"] = np.array(result.n_cells)
    np.savez(os.path.join(tmp, "patch.npz"), **arrays)
    os.replace(tmp, path)


def load_patch(path):
    """Inverse of :func:`save_patch`: ``(PatchResult, combined table, Truth, singles)``."""
    import glob
    import os

    import pyarrow.parquet as pq

    from clusterfw.core.evaluation import Truth

    with np.load(os.path.join(path, "patch.npz"), allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    result = PatchResult(
        label=a["label"],
        cand={k[5:]: v for k, v in a.items() if k.startswith("cand_")},
        n_cells=int(a["n_cells"]),
        grid=a["grid"],
        top_mass=a["top_mass"],
        top_z=a["top_z"],
        halos={k[5:]: v for k, v in a.items() if k.startswith("halo_")},
    )
    table = pq.read_table(os.path.join(path, "combined.parquet"))
    truth = Truth.from_table(pq.read_table(os.path.join(path, "halos.parquet")), mass_col=MASS_DEF)
    singles = {
        os.path.basename(f)[7:-8]: pq.read_table(f)
        for f in sorted(glob.glob(os.path.join(path, "single_*.parquet")))
    }
    return result, table, truth, singles


def process_patch(seed, size_deg, finders, combiner, grid_finder, setting="default", cache=None):
    """Simulate one patch, run the pipeline, and assign candidates to cells.

    ``grid_finder`` is a ResNet finder with ``localise=False``: its candidates are the grid
    cutouts themselves, so each cell gets the probability of its own cutout (DeepSZ's scoring).
    ``combiner`` is a :func:`recording` one; the returned ``singles`` are each finder's own
    catalogue of the patch. ``cache``: a folder for this patch (:func:`save_patch`); when it
    exists the patch is read from it instead.
    """
    import os

    if cache is not None and os.path.isdir(cache):
        return load_patch(cache)
    from clusterfw.core.evaluation import Truth, match_to_truth
    from clusterfw.core.evaluation.metrics import qualifying_halo
    from clusterfw.core.pipeline import run_pipeline
    from clusterfw.sim import PatchConfig, simulate_patch

    # the setting's draws come from their own stream of the seed: the sky realisation (CMB,
    # halo positions ...) of a seed is the same under every setting
    res = simulate_patch(PatchConfig.from_setting(setting, seed, size_deg=size_deg), seed)
    sky, halos = res.sky, res.halos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = run_pipeline(sky, finders, combiner)
    singles = {n: single_catalogue(n, t) for n, t in combiner.singles.items()}
    truth = Truth.from_table(halos, mass_col=MASS_DEF)
    qualifies = (truth.mass >= MASS_CUT) & (truth.z > Z_MIN)
    hcell, n_cells = cell_ids(sky, truth.ra, truth.dec)
    label = np.zeros(n_cells, bool)
    label[hcell[qualifies & (hcell >= 0)]] = True
    col = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    cand: dict[str, np.ndarray] = {}
    for method, (rc, dc) in {
        "mf": ("mf_ra", "mf_dec"),
        "resnet": ("resnet_ra", "resnet_dec"),
        "merged": ("ra", "dec"),
    }.items():
        ra = np.asarray(col[rc], float)
        dec = np.asarray(col[dc], float)
        det = np.isfinite(ra)
        q = np.full(ra.size, -1)
        if det.any():
            q[det] = qualifying_halo(match_to_truth(ra[det], dec[det], truth), qualifies)
        own, _ = cell_ids(sky, np.where(det, ra, 0.0), np.where(det, dec, 0.0))
        cells = np.where(q >= 0, hcell[np.maximum(q, 0)], own)
        cand[f"cell_{method}"] = np.where(det, cells, -1)
        if method != "merged":
            cand[f"{method}_detected"] = det  # the finder's own detection (else forced score)
    cand["mf_score"] = np.asarray(col["mf_score"], float)
    cand["resnet_score"] = np.asarray(col["resnet_score"], float)
    tile = sky.tiles(tile_size_arcmin=1e6, margin_arcmin=0.0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = grid_finder.find(tile)
    gcell, _ = cell_ids(sky, g.column("ra").to_numpy(), g.column("dec").to_numpy())
    grid = np.full(n_cells, -np.inf)
    ok = gcell >= 0
    np.maximum.at(grid, gcell[ok], g.column("score").to_numpy()[ok])
    top_mass, top_z = np.zeros(n_cells), np.zeros(n_cells)
    inside = hcell >= 0
    order = np.argsort(truth.mass[inside])  # the most massive halo is written last
    top_mass[hcell[inside][order]] = truth.mass[inside][order]
    top_z[hcell[inside][order]] = truth.z[inside][order]
    halos_q = {
        "ra": truth.ra[qualifies],
        "dec": truth.dec[qualifies],
        "cell": hcell[qualifies],
    }
    cand["resnet_ra"] = np.asarray(col["resnet_ra"], float)
    cand["resnet_dec"] = np.asarray(col["resnet_dec"], float)
    result = PatchResult(label, cand, n_cells, grid, top_mass, top_z, halos_q)
    if cache is not None:
        save_patch(cache, result, table, halos, singles)
    return result, table, truth, singles


def position_errors(patches, grid_threshold, threshold):
    """Distance (arcmin) from each qualifying halo the grid finds (its cell's grid cutout has
    p ≥ ``grid_threshold``) to the nearest localised ``resnet`` detection with score ≥
    ``threshold`` (inf when there is none): how well the catalogue places the clusters the
    classifier sees. Returns the distances."""
    out = []
    for p in patches:
        h = p.halos
        found = (h["cell"] >= 0) & (p.grid[np.maximum(h["cell"], 0)] >= grid_threshold)
        ra, dec = p.cand["resnet_ra"], p.cand["resnet_dec"]
        ok = np.isfinite(ra) & (np.nan_to_num(p.cand["resnet_score"], nan=-1.0) >= threshold)
        ra, dec = ra[ok], dec[ok]
        for hra, hdec in zip(h["ra"][found], h["dec"][found], strict=True):
            if ra.size == 0:
                out.append(np.inf)
                continue
            dx = (ra - hra + 180.0) % 360.0 - 180.0
            d = np.hypot(dx * np.cos(np.radians(hdec)), dec - hdec) * 60.0
            out.append(float(d.min()))
    return np.asarray(out)


def error_summary(d):
    """Median, fractions beyond 1' and 2' of position errors ``d`` (arcmin)."""
    if d.size == 0:
        return {
            "n": 0,
            "median": float("nan"),
            "frac_gt_1": float("nan"),
            "frac_gt_2": float("nan"),
        }
    return {
        "n": int(d.size),
        "median": float(np.median(d)),
        "frac_gt_1": float(np.mean(d > 1.0)),
        "frac_gt_2": float(np.mean(d > 2.0)),
    }


def cell_scores(patches, method_cell, scores):
    """Pooled cell scores (max of the candidates assigned to a cell) and labels."""
    out_s, out_l = [], []
    for p, s in zip(patches, scores, strict=True):
        c = p.cand[method_cell]
        cs = np.full(p.n_cells, -np.inf)
        ok = (c >= 0) & np.isfinite(s)
        np.maximum.at(cs, c[ok], s[ok])
        out_s.append(cs)
        out_l.append(p.label)
    return np.concatenate(out_s), np.concatenate(out_l)


def matrix(s, y, t):
    """Cutout confusion matrix at threshold ``t``."""
    from clusterfw.plugins.finders.resnet.train import confusion

    return confusion(s, y, t)


def f1_sigma(cm, n_boot=4000, seed=0):
    """Standard deviation of F1 when the test cells are drawn again (multinomial bootstrap of
    the confusion counts ``tp``, ``fp``, ``fn``, ``tn``): the statistical error of a test F1."""
    counts = np.array([cm["tp"], cm["fp"], cm["fn"], cm["tn"]], float)
    draws = np.random.default_rng(seed).multinomial(
        int(counts.sum()), counts / counts.sum(), n_boot
    )
    tp, fp, fn = draws[:, 0], draws[:, 1], draws[:, 2]
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return float(f1.std())


def paired_difference(a, b, y, n_boot=2000, seed=0):
    """F1 of decisions ``a`` minus F1 of decisions ``b`` on the same cells (labels ``y``), and
    its standard deviation when the cells are drawn again (paired bootstrap: both methods see
    the same resampled cells, so what they share cancels)."""
    a, b, y = np.asarray(a, bool), np.asarray(b, bool), np.asarray(y, bool)

    def f1(d, lab, axis=None):
        tp = np.sum(d & lab, axis=axis)
        wrong = np.sum(d != lab, axis=axis)
        return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)

    idx = np.random.default_rng(seed).integers(0, y.size, size=(n_boot, y.size))
    diff = f1(a[idx], y[idx], axis=1) - f1(b[idx], y[idx], axis=1)
    return float(f1(a, y) - f1(b, y)), float(diff.std())


def patch_counts(decision, label, n_cells):
    """Per-patch ``(tp, fp, fn)`` of cell decisions pooled over patches of ``n_cells`` cells."""
    d, lab = np.asarray(decision, bool), np.asarray(label, bool)
    edges = np.cumsum([0, *n_cells])
    return np.array(
        [
            [np.sum(d[a:b] & lab[a:b]), np.sum(d[a:b] & ~lab[a:b]), np.sum(~d[a:b] & lab[a:b])]
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ],
        float,
    )


def f1_of_counts(c):
    """F1 of summed ``(tp, fp, fn)`` (last axis)."""
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def patch_bootstrap(counts_a, counts_b, n_boot=4000, seed=0):
    """Pooled F1 of ``a`` minus that of ``b`` (per-patch ``(tp, fp, fn)`` arrays, same
    patches), and its standard deviation when the *patches* are drawn again: the σ over
    patches, which keeps what the cells of one sky share (its noise, CMB, clusters)."""
    a, b = np.asarray(counts_a, float), np.asarray(counts_b, float)
    diff = float(f1_of_counts(a.sum(0)) - f1_of_counts(b.sum(0)))
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    boot = f1_of_counts(a[idx].sum(1)) - f1_of_counts(b[idx].sum(1))
    return diff, float(boot.std())


def best_threshold(s, y):
    """F1-best threshold of pooled cells."""
    from clusterfw.plugins.finders.resnet.train import best_f1

    # cells without any candidate (score -inf) stay below every finite threshold
    return best_f1(np.where(np.isfinite(s), s, -1e300), y.astype(int))[1]


def main() -> None:
    """Run the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=int, default=8, help="validation patches")
    ap.add_argument("--test", type=int, default=8, help="test patches")
    ap.add_argument("--size-deg", type=float, default=3.0, help="patch side (degrees)")
    ap.add_argument(
        "--weights",
        default=None,
        help="resnet weights: a .safetensors file or a folder with resnet.safetensors and "
        "platt.json (default: shipped)",
    )
    ap.add_argument(
        "--setting",
        default="default",
        choices=["default", "randomised", "battaglia_hiradio"],
        help="simulator setting of the validation and test patches",
    )
    ap.add_argument(
        "--labels",
        default="deepsz",
        choices=["deepsz", "sz"],
        help="true clusters: deepsz (Mvir >= 2e14, z > 0.25) or sz (M500c >= 1.5e14, any z)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the resnet")
    ap.add_argument(
        "--localise-method",
        default="auto",
        choices=["auto", "regression", "plateau"],
        help="resnet localisation (auto: the position head when the weights have one)",
    )
    ap.add_argument(
        "--combined-only",
        action="store_true",
        help="calibrate on the combined validation catalogues only (without each finder's own "
        "catalogue; stack's fallback then compares finders on the merged candidates)",
    )
    ap.add_argument(
        "--cache",
        default=None,
        help="folder keeping each patch's catalogues and cells (one sub-folder per setting, "
        "labels, weights, size and seed); patches found there are not simulated again",
    )
    ap.add_argument(
        "--simulate-only",
        action="store_true",
        help="only simulate and run the finders on the patches (fill --cache), no scoring",
    )
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument(
        "--calibration", default=None, help="write the validation calibration (JSON) here"
    )
    args = ap.parse_args()
    set_labels(args.labels)
    args.weights = weights_file(args.weights)

    from clusterfw.core.evaluation import calibrate
    from clusterfw.core.evaluation.calibration import percentiles_for
    from clusterfw.plugins.combiners.rankprod import RankProductCombiner, rank_product
    from clusterfw.plugins.combiners.stack import StackCombiner, StackEntry, fit_logistic
    from clusterfw.plugins.finders.mf.finder import MatchedFilterFinder
    from clusterfw.plugins.finders.resnet.finder import ResNetFinder

    resnet = ResNetFinder(
        {
            "weights": args.weights,
            "threads": args.threads,
            "localise_method": args.localise_method,
        }
    )
    resnet_grid = ResNetFinder(
        {"weights": args.weights, "threads": args.threads, "localise": False}
    )
    finders = [MatchedFilterFinder(), resnet]
    combiner = recording(RankProductCombiner())
    t0 = time.perf_counter()
    patches: dict[str, list[PatchResult]] = {"val": [], "test": []}
    tables: dict[str, list] = {"val": [], "test": []}
    truths: dict[str, list] = {"val": [], "test": []}
    singles: dict[str, list] = {"val": [], "test": []}
    for split, n in (("val", args.val), ("test", args.test)):
        for i in range(n):
            seed = SEED_BASE[split] + i
            cache = None
            if args.cache:
                tag = "shipped" if args.weights is None else Path(args.weights).stem
                cache = str(
                    Path(args.cache)
                    / f"{args.setting}_{args.labels}_{tag}_{args.localise_method}"
                    / f"{args.size_deg:g}deg_{seed}"
                )
            p, table, truth, own = process_patch(
                seed, args.size_deg, finders, combiner, resnet_grid, args.setting, cache
            )
            patches[split].append(p)
            tables[split].append(table)
            truths[split].append(truth)
            singles[split].append(own)
            print(
                f"{split} patch {i + 1}/{n}: {p.n_cells} cells, {int(p.label.sum())} with a "
                f"cluster, {table.num_rows} candidates ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )

    if args.simulate_only:
        return

    # the calibration a user makes with `clusterfw calibrate`, given each validation patch's
    # combined catalogue and each finder's own catalogue of it (`clusterfw run --finder f`), with
    # its truth: reference percentiles from the combined catalogues, each finder's threshold and
    # validation F1 from its own catalogues (stack's fallback compares finders by these), and
    # the stack model fitted on the combined ones (docs/combining.md)
    val_inputs = list(zip(tables["val"], truths["val"], strict=True))
    if not args.combined_only:
        val_inputs += [
            (own[name], truth)
            for own, truth in zip(singles["val"], truths["val"], strict=True)
            for name in sorted(own)
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = calibrate(val_inputs, mass_min=MASS_CUT, z_min=Z_MIN)
    if args.calibration:
        from clusterfw.core.evaluation.io import write_json_atomic

        write_json_atomic(cal.to_dict(), args.calibration)
    stack_raw = cal.combiner_entry("stack", ["mf", "resnet"]) or {}
    stack_entry = StackEntry.from_section(stack_raw, "validation calibration", "mf+resnet")

    stack = StackCombiner()

    def stack_score(p, c):
        """``stack``'s score of patch ``p``'s combined candidates under calibration ``c``, as the
        combiner computes it at run time (which finder detected a candidate itself matters: a
        fallback model passes only its finder's own detections)."""
        raw = {"mf": p.cand["mf_score"], "resnet": p.cand["resnet_score"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pct, _ = percentiles_for(raw, c)
        detected = {f: p.cand[f"{f}_detected"] for f in raw}
        return stack.combined_score_of(pct, raw, c, detected=detected)

    def method_scores(split):
        ps = patches[split]
        out = {
            "MF": cell_scores(ps, "cell_mf", [p.cand["mf_score"] for p in ps]),
            "ResNet": cell_scores(ps, "cell_resnet", [p.cand["resnet_score"] for p in ps]),
        }
        rp, st = [], []
        for p in ps:
            raw = {"mf": p.cand["mf_score"], "resnet": p.cand["resnet_score"]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pct, _ = percentiles_for(raw, cal)
            rp.append(rank_product(pct))
            st.append(stack_score(p, cal))
        out["rankprod"] = cell_scores(ps, "cell_merged", rp)
        out["stack"] = cell_scores(ps, "cell_merged", st)
        return out

    val, test = method_scores("val"), method_scores("test")

    # diagnostics: scores pooled per cell over *all* rows assigned to it (detections and forced
    # scores), DeepSZ's own cell scoring, and an upper bound for any combiner
    def cell_max(split, col):
        ps = patches[split]
        return cell_scores(ps, "cell_merged", [p.cand[col] for p in ps])

    def pct(ref, s):
        ref = np.sort(ref)
        return np.searchsorted(ref, s, side="right") / ref.size

    def grid_cells(split):
        ps = patches[split]
        return np.concatenate([p.grid for p in ps]), np.concatenate([p.label for p in ps])

    grid = {"val": grid_cells("val"), "test": grid_cells("test")}
    own = {"val": val, "test": test}

    def deepsz_rankprod(split):
        # DeepSZ EnsemblePROD: MF's own detections x grid-cutout probabilities, percentiles
        # among all validation cells
        mf_rank = pct(val["MF"][0], own[split]["MF"][0])
        return mf_rank * pct(grid["val"][0], grid[split][0]), grid[split][1]

    # upper-bound diagnostic: logistic regression on (MF SNR, ResNet logit, product) of the
    # cells, fitted once on validation (the stack combiner's fit: regularisation by
    # cross-validation): roughly the best any monotone combiner of the two scores can do
    def cell_features(split):
        mf, lab = cell_max(split, "mf_score")
        rn, _ = cell_max(split, "resnet_score")
        mf = np.where(np.isfinite(mf), mf, 0.0)
        rn = np.clip(np.where(np.isfinite(rn), rn, 0.0), 1e-6, 1 - 1e-6)
        lg = np.log(rn / (1 - rn))
        return np.c_[mf, lg, mf * lg], lab

    features = {"val": cell_features("val"), "test": cell_features("test")}
    upper, _ = fit_logistic(*features["val"], ["mf_snr", "resnet_logit", "product"])

    def stacked(split):
        x, y = features[split]
        return upper.predict(x), y

    val["ResNet-grid"], test["ResNet-grid"] = grid_cells("val"), grid_cells("test")
    val["ResNet+forced"], test["ResNet+forced"] = (
        cell_max("val", "resnet_score"),
        cell_max("test", "resnet_score"),
    )
    val["rankprod-grid"], test["rankprod-grid"] = deepsz_rankprod("val"), deepsz_rankprod("test")
    val["stacked-LR"], test["stacked-LR"] = stacked("val"), stacked("test")
    results: dict[str, dict] = {}
    single = ("MF", "ResNet", "ResNet-grid")
    combined = ("rankprod", "stack", "rankprod-grid", "ResNet+forced", "stacked-LR")
    for name in single + combined:
        t = best_threshold(*val[name])
        results[name] = {
            "threshold": t,
            "val": matrix(*val[name], t),
            "test": matrix(*test[name], t),
        }

    # AND: grid search of (a, b) on validation, decision per candidate, cell = any
    def and_cells(split, a, b):
        ps = patches[split]
        dec = [
            np.where((np.nan_to_num(p.cand["mf_score"], nan=-np.inf) >= a)
                     & (np.nan_to_num(p.cand["resnet_score"], nan=-np.inf) >= b), 1.0, 0.0)
            for p in ps
        ]  # fmt: skip
        return cell_scores(ps, "cell_merged", dec)

    mf_all = np.concatenate([p.cand["mf_score"] for p in patches["val"]])
    rn_all = np.concatenate([p.cand["resnet_score"] for p in patches["val"]])
    qa = np.unique(np.nanquantile(mf_all, np.linspace(0.5, 0.999, 40)))
    qb = np.unique(np.nanquantile(rn_all, np.linspace(0.5, 0.999, 40)))
    best = (-1.0, None, None)
    for a in qa:
        for b in qb:
            f1 = matrix(*and_cells("val", a, b), 0.5)["f1"]
            if f1 > best[0]:
                best = (f1, float(a), float(b))
    _, a, b = best
    results["AND"] = {
        "threshold": {"mf": a, "resnet": b},
        "val": matrix(*and_cells("val", a, b), 0.5),
        "test": matrix(*and_cells("test", a, b), 0.5),
    }

    f1 = {k: v["test"]["f1"] for k, v in results.items()}

    # is stack's choice right on validation data it was not fitted on? Leave one validation
    # patch out: calibrate on the others exactly as above and pick every method's cell
    # threshold on the others' cells; decide the held-out patch's cells with it; pool the
    # held-out decisions of all patches (stack, resnet and mf alike out of sample). "pooled":
    # the earlier diagnostic, one F1-best threshold on the pooled held-out stack scores
    loo = None
    n_val = len(patches["val"])
    if n_val >= 2:
        loo_scores, loo_models = [], []
        held = {"stack": [], "ResNet": [], "MF": []}
        offsets = np.cumsum([0] + [p.n_cells for p in patches["val"]])
        for k in range(n_val):
            keep = [i for i in range(n_val) if i != k]
            inputs = [(tables["val"][i], truths["val"][i]) for i in keep]
            if not args.combined_only:
                inputs += [
                    (singles["val"][i][name], truths["val"][i])
                    for i in keep
                    for name in sorted(singles["val"][i])
                ]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cal_k = calibrate(inputs, mass_min=MASS_CUT, z_min=Z_MIN, combiners=[stack])
            loo_models.append((cal_k.combiner_entry("stack", ["mf", "resnet"]) or {}).get("model"))
            loo_scores.append(stack_score(patches["val"][k], cal_k))
            out_k = np.zeros(offsets[-1], bool)
            out_k[offsets[k] : offsets[k + 1]] = True
            by_method = {
                "stack": cell_scores(
                    patches["val"], "cell_merged", [stack_score(p, cal_k) for p in patches["val"]]
                ),
                "ResNet": val["ResNet"],
                "MF": val["MF"],
            }
            for name, (s_v, lab_v) in by_method.items():
                t_k = best_threshold(s_v[~out_k], lab_v[~out_k])
                held[name].append((s_v[out_k] >= t_k, lab_v[out_k]))
        s_loo = cell_scores(patches["val"], "cell_merged", loo_scores)
        m_loo = matrix(*s_loo, best_threshold(*s_loo))

        def pooled_f1(parts):
            d = np.concatenate([p[0] for p in parts])
            lab = np.concatenate([p[1] for p in parts]).astype(bool)
            return matrix(d.astype(float), lab, 0.5)["f1"], d, lab

        f1_loo = {name: pooled_f1(parts) for name, parts in held.items()}
        diff, sd = paired_difference(f1_loo["stack"][1], f1_loo["ResNet"][1], f1_loo["ResNet"][2])
        loo = {
            "models": loo_models,
            "stack_f1": f1_loo["stack"][0],
            "resnet_f1": f1_loo["ResNet"][0],
            "mf_f1": f1_loo["MF"][0],
            "stack_minus_resnet": {"f1_difference": diff, "sigma": sd},
            "stack_f1_pooled_threshold": m_loo["f1"],
            "resnet_f1_in_sample": results["ResNet"]["val"]["f1"],
            "mf_f1_in_sample": results["MF"]["val"]["f1"],
        }
    pos_err = {
        split: error_summary(
            position_errors(
                patches[split], results["ResNet-grid"]["threshold"], results["ResNet"]["threshold"]
            )
        )
        for split in ("val", "test")
    }
    for v in results.values():
        v["test_f1_sigma"] = f1_sigma(v["test"])
    best_name = max(single, key=lambda k: f1[k])
    better = f1[best_name]

    # each combination minus the better single finder's catalogue (the acceptance's "better
    # single finder": mf or resnet as `clusterfw run` writes them) on the same test cells
    better_finder = max(("MF", "ResNet"), key=lambda k: f1[k])

    def decisions(name):
        if name == "AND":
            s_t, lab = and_cells("test", a, b)
            return s_t >= 0.5, lab
        s_t, lab = test[name]
        return s_t >= results[name]["threshold"], lab

    d_best, lab_best = decisions(better_finder)
    paired = {}
    for name in ("AND", "rankprod", "stack"):
        d, lab = decisions(name)
        assert np.array_equal(lab, lab_best)
        diff, sd = paired_difference(d, d_best, lab)
        paired[name] = {"minus": better_finder, "f1_difference": diff, "sigma": sd}

    # the same differences with σ over test patches (patch bootstrap of the pooled counts)
    n_cells_test = [p.n_cells for p in patches["test"]]
    c_best = patch_counts(d_best, lab_best, n_cells_test)
    for name in ("AND", "rankprod", "stack"):
        d, lab = decisions(name)
        diff, sd = patch_bootstrap(patch_counts(d, lab, n_cells_test), c_best)
        paired[name]["sigma_over_patches"] = sd

    # catalogue level (what `clusterfw run` writes, 1' matching as calibrate; duplicates count
    # as false positives): each finder's own catalogue at its calibrated threshold, rankprod
    # and stack on the combined catalogue at theirs; per test patch, pooled, σ over patches
    from clusterfw.core.evaluation.metrics import MatchedSample

    rp_entry = cal.combiner_entry("rankprod", ["mf", "resnet"]) or {}
    cat_counts: dict[str, list] = {"mf": [], "resnet": [], "rankprod": [], "stack": []}
    for p, table, truth, own in zip(
        patches["test"], tables["test"], truths["test"], singles["test"], strict=True
    ):
        for f in ("mf", "resnet"):
            ms = MatchedSample.from_catalogue(
                own[f], truth, ["score"], mass_min=MASS_CUT, z_min=Z_MIN
            )
            c = ms.counts(np.nan_to_num(ms.scores["score"], nan=-np.inf) >= cal.threshold(f))
            cat_counts[f].append((c.tp, c.fp, c.fn))
        ms = MatchedSample.from_catalogue(table, truth, [], mass_min=MASS_CUT, z_min=Z_MIN)
        raw = {"mf": p.cand["mf_score"], "resnet": p.cand["resnet_score"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pct_t, _ = percentiles_for(raw, cal)
        c = ms.counts(rank_product(pct_t) >= float(rp_entry.get("threshold", np.inf)))
        cat_counts["rankprod"].append((c.tp, c.fp, c.fn))
        c = ms.counts(stack_score(p, cal) >= stack_entry.threshold)
        cat_counts["stack"].append((c.tp, c.fp, c.fn))
    cat_counts = {k: np.asarray(v, float) for k, v in cat_counts.items()}
    cat_better = max(("mf", "resnet"), key=lambda k: f1_of_counts(cat_counts[k].sum(0)))
    catalogue = {
        "f1": {k: float(f1_of_counts(v.sum(0))) for k, v in cat_counts.items()},
        "counts": {k: [int(x) for x in v.sum(0)] for k, v in cat_counts.items()},
        "better_single": cat_better,
        "minus_better_single": {
            k: dict(
                zip(
                    ("f1_difference", "sigma_over_patches"),
                    patch_bootstrap(cat_counts[k], cat_counts[cat_better]),
                    strict=True,
                )
            )
            for k in ("rankprod", "stack")
        },
        "f1_sigma_over_patches": {
            k: float(
                f1_of_counts(
                    v[np.random.default_rng(0).integers(0, len(v), (4000, len(v)))].sum(1)
                ).std()
            )
            for k, v in cat_counts.items()
        },
    }

    # what the false positives are (test cells, at each method's validation threshold): the most
    # massive halo of the cell just below the mass cut, massive but below the redshift cut, or
    # neither; shows how much of the error is the mass-observable scatter both finders share
    top_mass = np.concatenate([p.top_mass for p in patches["test"]])
    top_z = np.concatenate([p.top_z for p in patches["test"]])
    fp_kinds = {}
    for name in single + ("rankprod", "stack", "ResNet+forced"):
        s_t, lab = test[name]
        fp = (s_t >= results[name]["threshold"]) & ~lab.astype(bool)
        fp_kinds[name] = {
            "near_mass_cut": int(np.sum(fp & (top_mass >= MASS_CUT / 2) & (top_mass < MASS_CUT))),
            "below_z_cut": int(np.sum(fp & (top_mass >= MASS_CUT) & (top_z <= Z_MIN))),
            "other": int(np.sum(fp & (top_mass < MASS_CUT / 2))),
        }
    summary = {
        "patches": {"val": args.val, "test": args.test, "size_deg": args.size_deg},
        "setting": args.setting,
        "labels": {
            "name": args.labels,
            "mass_cut": MASS_CUT,
            "mass_definition": MASS_DEF,
            "z_min": Z_MIN,
        },  # fmt: skip
        "weights": args.weights or "shipped",
        "cells": {s: int(sum(p.n_cells for p in patches[s])) for s in patches},
        "cluster_cells": {s: int(sum(p.label.sum() for p in patches[s])) for s in patches},
        "results": results,
        "test_f1": f1,
        "test_f1_sigma": {k: v["test_f1_sigma"] for k, v in results.items()},
        "best_single": best_name,
        "resnet_minus_mf": f1["ResNet"] - f1["MF"],
        "resnet_grid_minus_mf": f1["ResNet-grid"] - f1["MF"],
        "gain_over_best_single": {k: f1[k] - better for k in ("AND",) + combined},
        "paired_gain_over_best_single": paired,
        "catalogue_level_test": catalogue,
        "false_positive_kinds": fp_kinds,
        "position_error_arcmin": pos_err,
        "stack_model": {
            "model": stack_entry.kind,
            "weights": stack_entry.model.weights(),
            "intercept": stack_entry.model.intercept,
            "threshold": stack_entry.threshold,
            "fallback_finder": stack_raw.get("fallback_finder"),
            "validation_f1": stack_raw.get("validation_f1"),
            "note": stack_raw.get("note"),
            "calibrated_on": "combined" if args.combined_only else "combined+own",
        },
        "stack_leave_one_patch_out": loo,
        "seconds": time.perf_counter() - t0,
    }
    print()
    print(f"{'method':14s} {'threshold':>18s} | {'TP':>5s} {'FP':>5s} {'FN':>5s} {'TN':>7s} | "
          f"{'purity':>6s} {'compl.':>6s} {'F1':>5s} {'±':>5s} | val F1")  # fmt: skip
    for name in single + ("AND",) + combined:
        r = results[name]
        m = r["test"]
        t = r["threshold"]
        ts = f"{t['mf']:.2f}&{t['resnet']:.3f}" if isinstance(t, dict) else f"{t:.4g}"
        print(f"{name:14s} {ts:>18s} | {m['tp']:5d} {m['fp']:5d} {m['fn']:5d} {m['tn']:7d} | "
              f"{m['purity']:6.3f} {m['completeness']:6.3f} {m['f1']:5.3f} "
              f"{r['test_f1_sigma']:5.3f} | "
              f"{r['val']['f1']:.3f}")  # fmt: skip
    print(
        "\nfalse positives (test) by the cell's most massive halo: "
        f"{MASS_CUT / 2:.0e} <= M < cut | M >= cut but z <= {Z_MIN} | lighter"
    )
    for name, k in fp_kinds.items():
        print(f"  {name:14s} {k['near_mass_cut']:5d} {k['below_z_cut']:5d} {k['other']:5d}")
    for split, e in pos_err.items():
        print(
            f"\nresnet position error ({split}, {e['n']} clusters the grid finds): median "
            f"{e['median']:.2f}', beyond 1' {e['frac_gt_1']:.1%}, beyond 2' {e['frac_gt_2']:.1%}"
        )
    sm = summary["stack_model"]
    weights = ", ".join(f"{k} {v:+.3f}" for k, v in sm["weights"].items())
    print(f"\nstack model ({sm['model']}): intercept {sm['intercept']:+.3f}, {weights}")
    vf1 = ", ".join(f"{k} {v:.3f}" for k, v in (sm["validation_f1"] or {}).items() if v is not None)
    print(f"  calibrated on {sm['calibrated_on']}; validation F1 (catalogue level): {vf1}")
    if sm["note"]:
        print(f"  note: {sm['note']}")
    if loo is not None:
        print(
            f"  leave one validation patch out (cells, thresholds from the other patches): "
            f"stack {loo['stack_f1']:.3f} (models {', '.join(map(str, loo['models']))}) vs "
            f"ResNet {loo['resnet_f1']:.3f}, MF {loo['mf_f1']:.3f}; stack − ResNet "
            f"{loo['stack_minus_resnet']['f1_difference']:+.3f} ± "
            f"{loo['stack_minus_resnet']['sigma']:.3f} (in sample: ResNet "
            f"{loo['resnet_f1_in_sample']:.3f}; stack at one pooled threshold "
            f"{loo['stack_f1_pooled_threshold']:.3f})"
        )
    gains = ", ".join(f"{k} {v:+.3f}" for k, v in summary["gain_over_best_single"].items())
    print(
        f"\nResNet − MF F1: {summary['resnet_minus_mf']:+.3f} (catalogue), "
        f"{summary['resnet_grid_minus_mf']:+.3f} (grid); best single: {best_name} "
        f"{better:.3f}; gain over it: {gains}  ({summary['seconds']:.0f} s)"
    )
    print(
        "paired (same test cells; ± cells bootstrap / ± patches bootstrap): "
        + ", ".join(
            f"{k} − {v['minus']} {v['f1_difference']:+.3f} ± {v['sigma']:.3f} / "
            f"{v['sigma_over_patches']:.3f}"
            for k, v in paired.items()
        )
    )
    cl = catalogue
    print(
        "catalogue level (test, 1' matching, calibrated thresholds; σ over patches): "
        + ", ".join(
            f"{k} {v:.3f} ± {cl['f1_sigma_over_patches'][k]:.3f} (TP/FP/FN "
            f"{'/'.join(map(str, cl['counts'][k]))})"
            for k, v in cl["f1"].items()
        )
        + "; "
        + ", ".join(
            f"{k} − {cl['better_single']} {v['f1_difference']:+.3f} ± {v['sigma_over_patches']:.3f}"
            for k, v in cl["minus_better_single"].items()
        )
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
