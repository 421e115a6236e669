"""What ``sz_optical.py`` and ``xray_combination.py`` share: finder-subset checkpoints made from
one checkpointed run of more finders, and a sub-patch bootstrap of purity, completeness and F1.

**Subset checkpoints.** ``clusterfw run --checkpoint DIR`` saves, per tile, each finder's
candidate table and, for a combination, every finder's forced score (``score_at``) and coverage
at the positions *all* the run's finders found in that tile (``clusterfw.core.pipeline.
run_tile``). A run of a subset S of those finders over the same tiles computes the same tables
and the forced scores at a subset of those positions. :func:`subset_checkpoint` writes the
checkpoint that run would have written — the manifest with the fingerprint ``clusterfw run``
computes for the subset's request (:func:`clusterfw.core.runner.run_fingerprint`), each tile
restricted to S (forced scores and coverage at the positions S found, in S's order) — through
the library's own :class:`~clusterfw.core.checkpoint.Checkpoint`. ``clusterfw run ... --finder
S... --checkpoint DEST`` then finds every tile done and only merges, combines and writes: the
catalogue comes from the command line itself, without a second pass of the expensive finder
(``frcnn``: ~80 CPU-s per 30' tile here).

Refused (:class:`ValueError`) when the subset's tile plan differs from the source run's (a
single finder on one flat image gets pixel-box tiles, not HEALPix cores), when a finder's version
or options differ, or when the source checkpoint is not of the given inputs. Reported, not
refused: a layer whose margin differs (each layer is read with the largest margin any finder of
the run asks for: the ``optical`` layer with 6' for ``frcnn``, 5' for ``xray`` alone) — a finder
that reads it may see a slightly larger cutout; the benchmarks check one such pair against a
full run.

**Partial area.** While the checkpointed runs are still going, :func:`partial_universe` cuts a
universe to the cores of the finished tiles (its truth table) and
:func:`catalogue_from_checkpoint` writes any finder set's catalogue over those tiles through the
library's post-tile steps (``--partial`` of both benchmarks): a preliminary table on less sky.

**Bootstrap.** :func:`patch_counts` splits the footprint into square sub-patches and counts, per
patch, the true clusters found and missed (by the true cluster's position) and the false
positives (by the candidate's position); :func:`bootstrap` draws the patches again with
replacement — the same draws for every method, so differences are paired — and gives the
standard deviation of purity, completeness, F1 and of F1 differences.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MASS_BINS = (1e14, 2e14, 4e14, np.inf)


def open_checkpoint(source: Path) -> tuple[Any, list[str], dict]:
    """A run's checkpoint folder: its ``Checkpoint`` (tile count set), finder names, manifest."""
    from clusterfw.core.checkpoint import Checkpoint

    doc = json.loads((Path(source) / "manifest.json").read_text())
    ck = Checkpoint(source, doc["fingerprint"])
    ck.n_tiles = int(doc["n_tiles"])
    return ck, [f["name"] for f in doc["fingerprint"]["finders"]], doc


def _core_key(job: Any) -> tuple:
    core = job.core
    if hasattr(core, "ipix"):
        return ("healpix", int(core.order), int(core.ipix))
    return ("box", int(core.y0), int(core.y1), int(core.x0), int(core.x1))


def subset_checkpoint(
    source: Path,
    dest: Path,
    inputs: Sequence[Path],
    finders: Sequence[str],
    tile_size: float,
    *,
    combine: bool = True,
    source_inputs: Sequence[Path] | None = None,
    tile_grid: str | None = None,
) -> dict[str, Any]:
    """Write ``dest``: the checkpoint of ``clusterfw run INPUTS --finder F... [--combine C]
    --tile-size T [--tile-grid G]`` made from ``source``, a checkpoint of a run of more
    finders.

    Parameters
    ----------
    source : Path
        A complete checkpoint of a run whose finders include ``finders`` (same options).
    dest : Path
        New folder (must not exist).
    inputs : sequence of Path
        The subset run's input files.
    finders : sequence of str
        The subset, in the order the subset run lists them.
    tile_size : float
        ``--tile-size`` of both runs.
    combine : bool
        Whether the subset run has a combiner (forced scores are kept only then, and only for
        two finders or more, as ``clusterfw run`` computes them).
    source_inputs : sequence of Path, optional
        The source run's inputs (default: ``inputs``).
    tile_grid : str, optional
        ``--tile-grid`` of both runs.

    Returns
    -------
    dict
        ``n_tiles``, ``finders`` and ``margin_differences`` (layer: [source, subset] margins).

    Raises
    ------
    ValueError
        Different tile plans, finder versions or options, inputs, or an incomplete source.
    """
    from clusterfw.core.checkpoint import Checkpoint
    from clusterfw.core.cli import cli_registry
    from clusterfw.core.pipeline import check_plugins, plan_jobs
    from clusterfw.core.runner import RunRequest, instantiate, read_inputs, run_fingerprint

    source, dest = Path(source), Path(dest)
    if dest.exists():
        raise ValueError(f"{dest}: exists")
    doc = json.loads((source / "manifest.json").read_text())
    src_fp = doc["fingerprint"]
    src_specs = {f["name"]: f for f in src_fp["finders"]}
    src_names = [f["name"] for f in src_fp["finders"]]
    missing = [f for f in finders if f not in src_specs]
    if missing:
        raise ValueError(f"{source}: has no finder {missing}")
    registry = cli_registry()
    src_finders = [instantiate(registry, "finder", n, src_specs[n]["options"]) for n in src_names]
    sub_finders = [instantiate(registry, "finder", n, {}) for n in finders]
    want_forced = combine and len(finders) > 1
    sky, files = read_inputs(registry, [Path(p) for p in inputs], {}, {})
    if source_inputs is None:
        src_sky, src_files = sky, files
    else:
        src_sky, src_files = read_inputs(registry, [Path(p) for p in source_inputs], {}, {})
    src_req = RunRequest(inputs=list(source_inputs or inputs), finders=src_names,
                         tile_size_arcmin=float(tile_size), tile_grid=tile_grid)  # fmt: skip
    again = run_fingerprint(src_req, src_finders, src_files, bool(src_fp["forced"]))
    if json.dumps(again, sort_keys=True, default=str) != json.dumps(
        src_fp, sort_keys=True, default=str
    ):
        raise ValueError(f"{source}: not a checkpoint of these inputs, finders and tile size")
    sub_req = RunRequest(inputs=[Path(p) for p in inputs], finders=list(finders),
                         tile_size_arcmin=float(tile_size), tile_grid=tile_grid)  # fmt: skip
    fp = run_fingerprint(sub_req, sub_finders, files, want_forced)
    for spec in fp["finders"]:  # defaults of the subset run = the source's options
        if spec != src_specs[spec["name"]]:
            raise ValueError(f"finder {spec['name']}: version or options differ from {source}")
    src_jobs = plan_jobs(src_sky, src_finders, check_plugins(src_sky, src_finders),
                         float(tile_size), tile_grid)  # fmt: skip
    sub_jobs = plan_jobs(sky, sub_finders, check_plugins(sky, sub_finders), float(tile_size),
                         tile_grid)  # fmt: skip
    if [_core_key(j) for j in src_jobs] != [_core_key(j) for j in sub_jobs]:
        raise ValueError(
            f"tile plans differ ({len(src_jobs)} source tiles, {len(sub_jobs)} subset tiles "
            "or other cores)"
        )
    src_margins, sub_margins = dict(src_jobs[0].margins), dict(sub_jobs[0].margins)
    margin_diff = {k: [src_margins.get(k), v] for k, v in sub_margins.items()
                   if src_margins.get(k) != v}  # fmt: skip
    src_ck, _, _ = open_checkpoint(source)
    done = src_ck.finished()
    if done != list(range(len(src_jobs))):
        raise ValueError(f"{source}: {len(done)} of {len(src_jobs)} tiles finished")
    out = Checkpoint(dest, fp)
    out.start(len(sub_jobs))
    for i in done:
        out.save(i, restrict(src_ck.load(i), src_names, finders, want_forced))
    return {"n_tiles": len(done), "finders": list(finders), "margin_differences": margin_diff}


def restrict(res: Any, src_names: Sequence[str], finders: Sequence[str], want_forced: bool) -> Any:
    """One tile's result (``TileResult`` of a run of ``src_names``) as a run of ``finders``
    would have made it: their tables, and (``want_forced``) their forced scores and coverage at
    the positions they found, in their order."""
    from clusterfw.core.pipeline import TileResult

    tables = {n: res.tables[n] for n in finders}
    sub = TileResult(res.tile_id, tables)
    if not want_forced:
        return sub
    # positions of the source run's forced scores: its finders' candidates in its order
    lengths = [res.tables[n].num_rows for n in src_names]
    starts = dict(zip(src_names, np.cumsum([0, *lengths[:-1]]).tolist(), strict=True))
    idx = np.concatenate(
        [np.arange(starts[n], starts[n] + tables[n].num_rows) for n in finders]
    ).astype(np.int64)
    ra = np.concatenate([t.column("ra").to_numpy() for t in tables.values()])
    dec = np.concatenate([t.column("dec").to_numpy() for t in tables.values()])
    for n in finders:
        for src, dst in ((res.forced, sub.forced), (res.covered, sub.covered)):
            s_ra, s_dec, value = src[n]
            if not (np.array_equal(s_ra[idx], ra) and np.array_equal(s_dec[idx], dec)):
                raise ValueError(f"tile {res.tile_id}: forced positions out of order")
            dst[n] = (ra, dec, value[idx])
    return sub


def check_tiles(
    source: Path,
    inputs: Sequence[Path],
    finders: Sequence[str],
    tiles: Sequence[int],
    tile_size: float,
) -> list[dict]:
    """Run tiles of the subset ``finders`` afresh (``clusterfw.core.pipeline.run_tile_job``, its
    own tile plan and margins, forced scores as a combination computes them) and compare them
    with :func:`restrict` of the same tiles of ``source``: per tile, rows and the largest
    difference of position and score per finder, and of each forced score and coverage."""
    from clusterfw.core.cli import cli_registry
    from clusterfw.core.pipeline import check_plugins, plan_jobs, run_tile_job
    from clusterfw.core.runner import instantiate, read_inputs

    ck, src_names, _ = open_checkpoint(source)
    registry = cli_registry()
    objs = [instantiate(registry, "finder", n, {}) for n in finders]
    sky, _ = read_inputs(registry, [Path(p) for p in inputs], {}, {})
    layers = check_plugins(sky, objs)
    jobs = plan_jobs(sky, objs, layers, float(tile_size))
    want_forced = len(finders) > 1
    out = []
    for i in tiles:
        fresh = run_tile_job(objs, jobs[i], layers, want_forced)
        old = restrict(ck.load(i), src_names, finders, want_forced)
        row: dict[str, Any] = {"tile": int(i)}
        for n in finders:
            a, b = fresh.tables[n], old.tables[n]
            row[f"{n}_rows"] = [a.num_rows, b.num_rows]
            if a.num_rows == b.num_rows and a.num_rows:
                for col in ("ra", "dec", "score"):
                    x = np.asarray(a[col].to_numpy(zero_copy_only=False), float)
                    y = np.asarray(b[col].to_numpy(zero_copy_only=False), float)
                    row[f"{n}_{col}_max_diff"] = float(np.max(np.abs(x - y)))
            if want_forced and n in fresh.forced and n in old.forced:
                fa, fb = fresh.forced[n][2], old.forced[n][2]
                if fa.shape == fb.shape:
                    d = np.abs(np.asarray(fa, float) - np.asarray(fb, float))
                    same_nan = bool(np.array_equal(np.isnan(fa), np.isnan(fb)))
                    row[f"{n}_forced_max_diff"] = (
                        float(np.nanmax(d)) if np.isfinite(d).any() else 0.0
                    )
                    row[f"{n}_forced_nan_same"] = same_nan
                    row[f"{n}_covered_same"] = bool(
                        np.array_equal(fresh.covered[n][2], old.covered[n][2])
                    )
                else:
                    row[f"{n}_forced_shapes"] = [fa.shape[0], fb.shape[0]]
        out.append(row)
    return out


def partial_universe(universe: Path, source: Path, dest: Path, tile_size: float) -> dict:
    """``dest``: ``universe`` cut to the cores of the tiles ``source`` (a checkpoint of a run of
    every layer file of ``universe``) has finished — links to its layer folders, its
    ``universe.json``, and ``truth_halos.parquet`` keeping the halos in those cores only.

    For a preliminary table while the checkpointed runs are still going
    (:func:`catalogue_from_checkpoint`).
    """
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from clusterfw.core.cli import cli_registry
    from clusterfw.core.pipeline import check_plugins, plan_jobs
    from clusterfw.core.runner import instantiate, read_inputs

    ck, _, doc = open_checkpoint(source)
    done = ck.finished()
    registry = cli_registry()
    files = sorted(p for d in ("mm", "optical", "xray") for p in (universe / d).glob("*.fits"))
    sky, _ = read_inputs(registry, files, {}, {})
    finders = [instantiate(registry, "finder", f["name"], f["options"])
               for f in doc["fingerprint"]["finders"]]  # fmt: skip
    jobs = plan_jobs(sky, finders, check_plugins(sky, finders), float(tile_size))
    if len(jobs) != ck.n_tiles:
        raise ValueError(f"{source}: {ck.n_tiles} tiles, this plan {len(jobs)}")
    truth = pq.read_table(universe / "truth_halos.parquet")
    ra, dec = truth["ra"].to_numpy(), truth["dec"].to_numpy()
    keep = np.zeros(ra.size, bool)
    for i in done:
        keep |= np.asarray(jobs[i].core.contains(ra, dec), bool)
    dest.mkdir(parents=True)
    for d in ("mm", "optical", "xray"):
        if (universe / d).exists():
            os.symlink((universe / d).resolve(), dest / d)
    (dest / "universe.json").write_text((universe / "universe.json").read_text())
    pq.write_table(truth.filter(pa.array(keep)), dest / "truth_halos.parquet")
    return {"tiles": done, "n_tiles": ck.n_tiles, "halos_kept": int(keep.sum())}


def catalogue_from_checkpoint(
    source: Path,
    out: Path,
    finders: Sequence[str],
    combine: str | None = None,
    calibration: Path | None = None,
) -> None:
    """Write the catalogue of ``finders`` (combined by ``combine``) over the tiles ``source``
    has finished, as :func:`clusterfw.core.pipeline.run_pipeline` makes it after the tile loop
    (concatenated candidates; the combiner with the forced scores of the tiles; coverage; for
    one finder the calibration's ``is_cluster``), through the library's own functions. No
    provenance metadata; a forced score the tiles do not hold is an error, not a new tile pass.
    """
    from clusterfw.core.catalog_io import write_catalogue
    from clusterfw.core.cli import cli_registry
    from clusterfw.core.pipeline import (
        ForcedScoreLookup,
        _apply_single_calibration,
        add_coverage,
        check_combiner_output,
    )
    from clusterfw.core.runner import instantiate, load_calibration
    from clusterfw.core.schema import concat_candidates

    ck, src_names, _ = open_checkpoint(source)
    registry = cli_registry()
    objs = [instantiate(registry, "finder", n, {}) for n in finders]
    want_forced = combine is not None and len(finders) > 1
    results = [restrict(ck.load(i), src_names, finders, want_forced) for i in ck.finished()]
    tables = {n: concat_candidates([r.tables[n] for r in results]) for n in finders}
    cal = load_calibration(calibration, want_default=combine is not None)
    if combine is not None:
        combiner = instantiate(registry, "combiner", combine, {})

        class Known(ForcedScoreLookup):
            def __call__(self, name: str, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
                keys = zip(np.asarray(ra, float).tolist(), np.asarray(dec, float).tolist(),
                           strict=True)  # fmt: skip
                if any(k not in self._known[name] for k in keys):
                    raise ValueError(f"{source}: a forced score of {name} is not in the tiles")
                return super().__call__(name, ra, dec)

        forced = Known(objs, [], results) if want_forced else None
        table = combiner.combine(tables, forced, cal)
        table = check_combiner_output(combiner, tables, table)
        if forced is not None:
            table = add_coverage(table, forced)
    else:
        table = _apply_single_calibration(concat_candidates(list(tables.values())), objs, cal)
    write_catalogue(table, Path(out))


def patch_of(ra: np.ndarray, dec: np.ndarray, centre: tuple[float, float], size_deg: float,
             n_side: int) -> np.ndarray:  # fmt: skip
    """Sub-patch index (``n_side`` × ``n_side`` squares of a ``size_deg`` patch) of positions."""
    ra0, dec0 = centre
    x = ((np.asarray(ra, float) - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec0))
    y = np.asarray(dec, float) - dec0
    step = size_deg / n_side
    i = np.clip(np.floor((x + size_deg / 2) / step), 0, n_side - 1).astype(int)
    j = np.clip(np.floor((y + size_deg / 2) / step), 0, n_side - 1).astype(int)
    return j * n_side + i


def patch_counts(
    cand_ra: np.ndarray,
    cand_dec: np.ndarray,
    qhalo: np.ndarray,
    decide: np.ndarray,
    true_idx: np.ndarray,
    true_ra: np.ndarray,
    true_dec: np.ndarray,
    geometry: tuple[tuple[float, float], float, int],
) -> np.ndarray:
    """(n_patches, 3) array of TP, FP, FN per sub-patch (counted as the benchmarks count: one
    true positive per true cluster, every further selected candidate a false positive).

    ``qhalo``: per candidate the index of its true cluster or -1; ``true_idx``: the indices of
    the true clusters (positions ``true_ra``/``true_dec``); ``geometry``: (centre, size, n_side).
    """
    centre, size, n_side = geometry
    sel = np.asarray(decide, bool)
    hit = np.unique(qhalo[sel & (qhalo >= 0)])
    found = np.isin(true_idx, hit)
    pt = patch_of(true_ra, true_dec, centre, size, n_side)
    out = np.zeros((n_side * n_side, 3), dtype=np.int64)
    np.add.at(out[:, 0], pt[found], 1)
    np.add.at(out[:, 2], pt[~found], 1)
    # false positives: every selected candidate beyond the first on each found cluster
    fp_mask = sel.copy()
    for h in hit:
        first = np.flatnonzero(sel & (qhalo == h))[0]
        fp_mask[first] = False
    pc = patch_of(np.nan_to_num(cand_ra), np.nan_to_num(cand_dec, nan=centre[1]), centre, size,
                  n_side)  # fmt: skip
    np.add.at(out[:, 1], pc[fp_mask], 1)
    return out


def _metrics(c: np.ndarray) -> np.ndarray:
    """purity, completeness, F1 of (..., 3) counts."""
    tp, fp, fn = c[..., 0].astype(float), c[..., 1].astype(float), c[..., 2].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return np.stack([p, r, f], axis=-1)


def bootstrap(
    counts: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]] = (),
    n_boot: int = 4000,
    seed: int = 0,
) -> dict[str, Any]:
    """σ of purity, completeness and F1 of each method, and of F1 differences, when the
    sub-patches are drawn again with replacement (the same draws for every method).

    Parameters
    ----------
    counts : mapping of name to (n_patches, 3) array
        :func:`patch_counts` of each method on the same sub-patches.
    pairs : sequence of (a, b)
        F1(a) − F1(b) is reported with its paired σ.
    """
    rng = np.random.default_rng(seed)
    used = np.any([np.asarray(v).sum(1) > 0 for v in counts.values()], axis=0)
    counts = {k: np.asarray(v)[used] for k, v in counts.items()}  # no cluster, no candidate
    n = next(iter(counts.values())).shape[0]
    draws = rng.integers(0, n, size=(n_boot, n))
    weights = np.stack([np.bincount(d, minlength=n) for d in draws])  # (n_boot, n)
    boot = {k: _metrics(weights @ np.asarray(v)) for k, v in counts.items()}
    out: dict[str, Any] = {"n_patches_used": n, "n_boot": n_boot, "sigma": {}, "differences": {}}
    for k, b in boot.items():
        out["sigma"][k] = dict(zip(("purity", "completeness", "f1"), b.std(0).tolist(),
                                   strict=True))  # fmt: skip
    for a, b in pairs:
        d = boot[a][:, 2] - boot[b][:, 2]
        full = _metrics(np.asarray(counts[a]).sum(0))[2] - _metrics(np.asarray(counts[b]).sum(0))[2]
        out["differences"][f"{a} - {b}"] = {
            "f1_difference": float(full),
            "sigma": float(d.std()),
            "p_le_0": float(np.mean(d <= 0)),
        }
    return out


def truth_info(truth: Path, mass_min: float, z_min: float) -> dict:
    """Indices, positions and masses of the true clusters of a truth table."""
    import pyarrow.parquet as pq

    from clusterfw.core.evaluation import Truth

    tr = Truth.from_table(pq.read_table(truth), mass_col="m500c")
    idx = np.flatnonzero((tr.mass >= mass_min) & (tr.z >= z_min))
    return {"idx": idx, "ra": tr.ra[idx], "dec": tr.dec[idx], "mass": tr.mass[idx]}


def geometry(universe: Path, n_side: int) -> tuple[tuple[float, float], float, int]:
    """(centre, size, n_side) of a universe's footprint (``universe.json``) for the bootstrap."""
    fp = json.loads((universe / "universe.json").read_text())["footprint"]
    return (float(fp["ra_deg"]), float(fp["dec_deg"])), float(fp["width_deg"]), n_side


def by_mass(q: np.ndarray, decide: np.ndarray, ti: dict) -> list[dict]:
    """Completeness of a decision per M500c bin (:data:`MASS_BINS`)."""
    hit = np.isin(ti["idx"], np.unique(q[np.asarray(decide, bool) & (q >= 0)]))
    out = []
    for lo, hi in zip(MASS_BINS[:-1], MASS_BINS[1:], strict=True):
        m = (ti["mass"] >= lo) & (ti["mass"] < hi)
        out.append({"m500c": [lo, None if np.isinf(hi) else hi], "n_true": int(m.sum()),
                    "found": int(hit[m].sum())})  # fmt: skip
    return out


def compare_catalogues(a_path: Path, b_path: Path) -> dict:
    """Rows, and the largest difference of every numeric column shared by two catalogues
    (rows in their own order: both are sorted by decreasing combined score)."""
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a_path), pq.read_table(b_path)
    out: dict = {"rows": [ta.num_rows, tb.num_rows], "max_abs_difference": {}}
    if ta.num_rows != tb.num_rows:
        return out
    for name in ta.column_names:
        if name not in tb.column_names or name == "candidate_id":
            continue
        try:
            x = np.asarray(ta[name].to_numpy(zero_copy_only=False), float)
            y = np.asarray(tb[name].to_numpy(zero_copy_only=False), float)
        except (TypeError, ValueError, AttributeError):
            same = ta[name].to_pylist() == tb[name].to_pylist()
            out["max_abs_difference"][name] = 0.0 if same else "differs"
            continue
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            out["max_abs_difference"][name] = "null where the other is not"
            continue
        d = np.abs(x - y)
        out["max_abs_difference"][name] = float(np.nanmax(d)) if np.isfinite(d).any() else 0.0
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="partial-universe: a universe cut to the cores of "
                                 "the tiles a checkpoint has finished")  # fmt: skip
    ap.add_argument("universe", type=Path)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tile-size", type=float, required=True)
    a = ap.parse_args()
    print(json.dumps(partial_universe(a.universe, a.checkpoint, a.out, a.tile_size)))
