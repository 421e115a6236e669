"""Throughput of the ``frcnn`` finder: square degrees per minute, and training time per epoch.

Runs the finder's detection path (:meth:`FrcnnFinder.detect`: working scale, asinh stretch,
overlapping windows, batched forward passes, NMS) and the red-sequence photo-z of every box
(:func:`~clusterfw.plugins.finders.frcnn.photoz.find_sources`,
:func:`~clusterfw.plugins.finders.frcnn.photoz.box_photoz`) on the fields of a ``clusterfw
simulate optical-fields`` folder with ``--threads`` torch threads (default 2), and reads the
training time per epoch from a training run's ``metrics.jsonl``. Usage::

    python benchmarks/frcnn_throughput.py --fields DIR [--n 10] [--threads 2]
        [--metrics OUT/metrics.jsonl] [--weights FILE] [--json OUT]

With ``--universe DIR --tile-size T`` it instead times one tile of a ``clusterfw simulate
universe`` optical mosaic as ``clusterfw run`` makes it (the tile job's cutout read by the
layer reader, then the finder's ``find``): seconds to read, seconds to find, the cutout's
shape and the process's peak RSS (run it once per tile size: the peak is per process).

Times are wall-clock on whatever else the machine is doing (this project's machine has two
cores shared by several jobs: the numbers are a floor for a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def mosaic_tile(
    universe: str, tile_size: float, job: int, threads: int, weights: str | None
) -> dict:
    """Time and peak memory of one ``frcnn`` tile of a universe's optical mosaic."""
    import resource

    import torch

    from clusterfw.core.layers.jobs import plan_tile_jobs
    from clusterfw.core.layers.model import LayerSky
    from clusterfw.core.layers.sorting import sort_into_layers
    from clusterfw.core.pipeline import _tile_core, read_job_layers, tile_from_cutouts
    from clusterfw.plugins.finders.frcnn.finder import FrcnnFinder

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    torch.set_num_threads(threads)
    finder = FrcnnFinder({"weights": weights, "threads": threads})
    files = sorted(Path(universe, "optical").glob("*.fits"))
    sky = LayerSky(tuple(sort_into_layers(files, {}, check_overlap=False)), tuple(map(str, files)))
    jobs = plan_tile_jobs(sky, {"optical": FrcnnFinder.margin_arcmin}, tile_size)
    j = jobs[job if job >= 0 else len(jobs) // 2]
    rss0 = rss_mb()
    t0 = time.perf_counter()
    cut = read_job_layers(j, ["optical"])
    t_read = time.perf_counter() - t0
    rss_read = rss_mb()
    tile = tile_from_cutouts(0, _tile_core(j), cut)
    t0 = time.perf_counter()
    table = finder.find(tile)
    t_find = time.perf_counter() - t0
    return {
        "universe": str(universe),
        "tile_size_arcmin": tile_size,
        "n_jobs": len(jobs),
        "cutout_shape": list(cut["optical"].pixels.shape),
        "read_s": round(t_read, 1),
        "find_s": round(t_find, 1),
        "candidates": table.num_rows,
        "peak_rss_mb_before_read": round(rss0),
        "peak_rss_mb_after_read": round(rss_read),
        "peak_rss_mb": round(rss_mb()),
    }


def main(argv: list[str] | None = None) -> dict:
    """Measure and print (JSON) the throughput numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", default=None, help="clusterfw simulate optical-fields folder")
    ap.add_argument("--universe", default=None, help="clusterfw simulate universe folder")
    ap.add_argument("--tile-size", type=float, default=15.0, help="arcmin (with --universe)")
    ap.add_argument("--job", type=int, default=-1, help="tile job (default: the middle one)")
    ap.add_argument("--n", type=int, default=10, help="fields to run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--metrics", default=None, help="metrics.jsonl of a training run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.universe:
        res = mosaic_tile(args.universe, args.tile_size, args.job, args.threads, args.weights)
        text = json.dumps(res, indent=1)
        if args.json:
            Path(args.json).write_text(text)
        print(text)
        return res
    if not args.fields:
        ap.error("give --fields or --universe")

    import torch

    from clusterfw.plugins.finders.frcnn.data import shard_pixel_arcsec
    from clusterfw.plugins.finders.frcnn.finder import FrcnnFinder
    from clusterfw.plugins.finders.frcnn.photoz import box_photoz, find_sources
    from clusterfw.sim.shards.common import iter_shards, read_manifest

    torch.set_num_threads(args.threads)
    finder = FrcnnFinder({"weights": args.weights, "threads": args.threads, "p_min": 0.0})
    pix = shard_pixel_arcsec(args.fields)
    size_deg = float(read_manifest(args.fields)["config"]["size_deg"])
    images = []
    for shard in iter_shards(args.fields):
        for j in range(shard["images"].shape[0]):
            images.append((shard["images"][j].astype(np.float32), shard["psf_fwhm_arcsec"][j]))
            if len(images) >= args.n:
                break
        if len(images) >= args.n:
            break
    finder.detect(images[0][0], pix)  # warm-up (first call allocates)
    t_det = t_pz = 0.0
    n_boxes = 0
    for img, psf in images:
        t0 = time.perf_counter()
        det = finder.detect(img, pix)
        t1 = time.perf_counter()
        keep = finder._net().prob(det["raw"]) >= 0.05
        src = find_sources(img, pix, psf)
        for b in det["boxes"][keep]:
            box_photoz(src, tuple(b - 0.5), img.shape[1:], pixel_arcsec=pix)
        t_pz += time.perf_counter() - t1
        t_det += t1 - t0
        n_boxes += int(keep.sum())
    area = len(images) * size_deg**2
    res = {
        "fields": len(images),
        "area_deg2": area,
        "threads": args.threads,
        "pixel_arcsec": pix,
        "detect_s": round(t_det, 2),
        "photoz_s": round(t_pz, 2),
        "boxes_p_ge_0.05": n_boxes,
        "deg2_per_minute_detect": area / (t_det / 60.0),
        "deg2_per_minute_total": area / ((t_det + t_pz) / 60.0),
    }
    if args.metrics:
        rows = [json.loads(line) for line in Path(args.metrics).read_text().splitlines() if line]
        secs = [r["train_s"] for r in rows]
        res["training_epochs"] = len(secs)
        res["training_s_per_epoch_median"] = float(np.median(secs))
        res["training_steps_per_epoch"] = rows[0]["step"] if rows else 0
    text = json.dumps(res, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return res


if __name__ == "__main__":
    main()
