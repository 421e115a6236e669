"""Throughput of the ``frcnn`` finder: square degrees per minute, and training time per epoch.

Runs the finder's detection path (:meth:`FrcnnFinder.detect`: working scale, asinh stretch,
overlapping windows, batched forward passes, NMS) and the red-sequence photo-z of every box
(:func:`~clusterfw.plugins.finders.frcnn.photoz.find_sources`,
:func:`~clusterfw.plugins.finders.frcnn.photoz.box_photoz`) on the fields of a ``clusterfw
simulate optical-fields`` folder with ``--threads`` torch threads (default 2), and reads the
training time per epoch from a training run's ``metrics.jsonl``. Usage::

    python benchmarks/frcnn_throughput.py --fields DIR [--n 10] [--threads 2]
        [--metrics OUT/metrics.jsonl] [--weights FILE] [--json OUT]

Times are wall-clock on whatever else the machine is doing (this project's machine has two
cores shared by several jobs: the numbers are a floor for a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    """Measure and print (JSON) the throughput numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", required=True, help="clusterfw simulate optical-fields folder")
    ap.add_argument("--n", type=int, default=10, help="fields to run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--metrics", default=None, help="metrics.jsonl of a training run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

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
            box_photoz(src, tuple(b - 0.5), img.shape[1:])
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
